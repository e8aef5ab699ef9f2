"""API keys per tenant, kept only as SHA-256 hashes.

Entries are ``tenant:key`` or ``tenant:sha256$<64 hex digits>`` (the hash of the key, what
``dpfusion serve --hash-key tenant:key`` prints), separated by commas or newlines; ``#`` starts a
comment. They come from ``--api-keys-file`` and/or the ``DPFUSION_API_KEYS`` environment variable.
A plain key is hashed on load and never stored; prefer hashed entries in files. API keys are long
random strings, so one SHA-256 is enough (no password-style stretching needed).

Tenants namespace privacy units: tenant ``acme``'s unit ``rec-7`` is ``acme:rec-7`` in the ledger,
so no tenant can read or spend another's budget.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import re
from collections.abc import Iterable, Mapping
from pathlib import Path

ENV_KEYS = "DPFUSION_API_KEYS"
HASH_PREFIX = "sha256$"
MIN_KEY_LEN = 16
_TENANT = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
_HASH = re.compile(r"^[0-9a-f]{64}$")


def hash_key(key: str) -> str:
    """The at-rest form of an API key."""
    return HASH_PREFIX + hashlib.sha256(key.encode("utf-8")).hexdigest()


def scope_unit(tenant: str, unit: str) -> str:
    """The ledger id of a tenant's unit. Tenants have no ':' so the first ':' splits them."""
    return f"{tenant}:{unit}"


def unscope_unit(tenant: str, scoped: str) -> str:
    prefix = f"{tenant}:"
    return scoped[len(prefix):] if scoped.startswith(prefix) else scoped


class KeyStore:
    """Hashed API keys → tenant. Holds no plain key, so it can be pickled to Ray replicas."""

    def __init__(self, hashes: Mapping[str, str]) -> None:
        self._hashes: dict[str, str] = dict(hashes)  # "sha256$…" → tenant

    @classmethod
    def parse(cls, text: str, source: str = "keys") -> KeyStore:
        hashes: dict[str, str] = {}
        entries = (e.strip() for line in text.splitlines() for e in line.split("#", 1)[0].split(","))
        for n, entry in enumerate(e for e in entries if e):
            tenant, sep, secret = entry.partition(":")
            tenant, secret = tenant.strip(), secret.strip()
            where = f"{source}, entry {n + 1}"
            if not sep or not secret:
                raise ValueError(f"{where}: expected 'tenant:key' or 'tenant:{HASH_PREFIX}<hex>'")
            if not _TENANT.match(tenant):
                raise ValueError(f"{where}: tenant {tenant[:64]!r} must be 1-64 letters, digits, '_', '.' or '-' "
                                 "(no ':', which separates tenant and unit in the ledger)")
            if secret.startswith(HASH_PREFIX):
                if not _HASH.match(secret[len(HASH_PREFIX):]):
                    raise ValueError(f"{where}: a hashed key is '{HASH_PREFIX}' and 64 lowercase hex digits")
                digest = secret
            elif len(secret) < MIN_KEY_LEN:
                raise ValueError(f"{where}: the key of tenant {tenant!r} is shorter than {MIN_KEY_LEN} characters; "
                                 "use a long random key (e.g. python -c 'import secrets; print(secrets.token_urlsafe(32))')")
            else:
                digest = hash_key(secret)
            if hashes.get(digest, tenant) != tenant:
                raise ValueError(f"{where}: the same key is given to two tenants")
            hashes[digest] = tenant
        return cls(hashes)

    @classmethod
    def load(cls, path: str | os.PathLike[str] | None = None, env: Mapping[str, str] | None = None) -> KeyStore:
        """Keys from a file and the DPFUSION_API_KEYS variable together; at least one key is required."""
        env = os.environ if env is None else env
        hashes: dict[str, str] = {}
        if path is not None:
            hashes.update(cls.parse(Path(path).read_text(encoding="utf-8"), source=str(path))._hashes)
        if env.get(ENV_KEYS):
            for digest, tenant in cls.parse(env[ENV_KEYS], source=ENV_KEYS)._hashes.items():
                if hashes.get(digest, tenant) != tenant:
                    raise ValueError(f"{ENV_KEYS} gives a key of tenant {hashes[digest]!r} to tenant {tenant!r}")
                hashes[digest] = tenant
        if not hashes:
            raise ValueError(f"no API keys: give --api-keys-file FILE or set {ENV_KEYS}='tenant:key,…' "
                             "(every request must carry one)")
        return cls(hashes)

    @classmethod
    def from_pairs(cls, pairs: Iterable[tuple[str, str]]) -> KeyStore:
        return cls.parse("\n".join(f"{tenant}:{key}" for tenant, key in pairs))

    def tenant_for(self, key: str | None) -> str | None:
        """The tenant of a presented key, or None. Compares every stored hash (no early exit)."""
        if not key:
            return None
        digest = hash_key(key)
        found = None
        for stored, tenant in self._hashes.items():
            if hmac.compare_digest(stored, digest):
                found = tenant
        return found

    @property
    def tenants(self) -> set[str]:
        return set(self._hashes.values())

    def __repr__(self) -> str:
        return f"KeyStore({len(self._hashes)} keys, tenants={sorted(self.tenants)})"


def key_from_headers(authorization: str | None, x_api_key: str | None) -> str | None:
    """``Authorization: Bearer <key>`` (what OpenAI clients send) or ``X-API-Key: <key>``."""
    if authorization:
        scheme, _, token = authorization.strip().partition(" ")
        if scheme.lower() == "bearer" and token.strip():
            return token.strip()
    return x_api_key.strip() if x_api_key and x_api_key.strip() else None
