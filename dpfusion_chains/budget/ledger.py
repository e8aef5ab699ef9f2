"""The storage side of the privacy budget: the `Ledger` interface, its records, the rules every
backend shares, and `open_ledger` (URL → backend).

A ledger stores, per privacy unit, the total RDP charged at one Rényi order α (settled calls plus
outstanding reservations), and one row per (call, unit). It knows nothing about ε limits beyond
the RDP caps the budget passes in; the decisions it takes inside its transaction (does this call
fit? may this settle lower the charge?) come from the pure functions below, so the memory, SQLite
and PostgreSQL ledgers decide identically.
"""

from __future__ import annotations

import math
import numbers
import os
import re
from abc import ABC, abstractmethod
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Literal
from urllib.parse import parse_qs, urlsplit

from dpfusion_chains.core.accounting import rdp_to_epsilon

from .errors import AlphaMismatchError

RESERVED: str = "reserved"
SETTLED: str = "settled"
SettleResult = Literal["settled", "already", "missing"]

# Reserved amounts are usually calibrated so that max_new_tokens · ρ_step equals the cap; summing
# them in floating point can land one ulp above it. A relative slack of 1e-9 absorbs that rounding
# (it moves ε by less than 1e-9·ε) without admitting a real extra call.
CAP_SLACK: float = 1e-9
DEFAULT_TIMEOUT_S: float = 30.0
ENV_LEDGER: str = "DPFUSION_LEDGER"

# Ids end up in every row; keep them short identifiers so no one stores a document in them.
_MAX_ID_LEN = 256
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


@dataclass(frozen=True)
class LedgerEntry:
    """One (call, unit) row. Holds ids, numbers and the model name only — never text."""

    call_id: str
    unit: str
    alpha: float
    rdp: float  # charged RDP: the reserved worst case until settled, then the actual cost
    reserved_rdp: float  # the worst case reserved before the call
    epsilon: float  # the unit's total ε right after this call (at the δ of the budget that wrote it)
    tokens: int | None
    model: str | None
    status: str  # "reserved" | "settled"
    created_at: datetime
    settled_at: datetime | None

    def as_dict(self) -> dict[str, object]:
        row = asdict(self)
        row["created_at"] = self.created_at.isoformat()
        row["settled_at"] = self.settled_at.isoformat() if self.settled_at else None
        return row


FIELDS: tuple[str, ...] = tuple(LedgerEntry.__dataclass_fields__)


@dataclass(frozen=True)
class UnitState:
    """A unit's running total: RDP at order ``alpha``; ``delta`` is the δ last used to report ε."""

    unit: str
    rdp: float
    alpha: float
    delta: float

    def epsilon(self, delta: float | None = None) -> float:
        return epsilon_of(self.rdp, self.alpha, self.delta if delta is None else delta)


@dataclass(frozen=True)
class ReserveOutcome:
    """What a ledger did with a reservation request.

    ``created``: new rows were written and charged. Otherwise either ``refused`` names the units
    that would not fit (unit → its current total RDP; nothing was written), or the call id already
    existed and ``amounts``/``status`` describe the stored reservation (nothing new was charged).
    """

    created: bool
    amounts: dict[str, float]
    status: str
    refused: dict[str, float]


def epsilon_of(rdp: float, alpha: float, delta: float) -> float:
    """ε of a total RDP; 0 when nothing was charged (the conversion offset alone is not spending)."""
    if rdp <= 0.0:
        return 0.0
    return max(0.0, rdp_to_epsilon(rdp, alpha, delta))


def utc(ts: float) -> datetime:
    return datetime.fromtimestamp(ts, timezone.utc)


def check_id(value: object, what: str) -> str:
    if not isinstance(value, str) or not value or len(value) > _MAX_ID_LEN or _CONTROL.search(value):
        # Describe the value, never quote it: a long or multi-line "id" is often the private text itself.
        if not isinstance(value, str):
            got = type(value).__name__
        elif not value:
            got = "''"
        else:
            got = f"a string of {len(value)} characters" + (" with control characters" if _CONTROL.search(value) else "")
        raise ValueError(
            f"{what} must be a non-empty string of at most {_MAX_ID_LEN} characters without control characters "
            f"(an id such as a document or user id, never the text itself), got {got}"
        )
    return value


def check_rdp(value: object, what: str = "rdp") -> float:
    # numbers.Real admits numpy scalars as well as int and float.
    if not isinstance(value, numbers.Real) or isinstance(value, bool) or not math.isfinite(value) or value < 0:
        raise ValueError(f"{what} must be a finite number >= 0 (RDP at the budget's alpha), got {value!r}")
    return float(value)


def over_cap(states: Mapping[str, UnitState], amounts: Mapping[str, float], caps: Mapping[str, float], alpha: float) -> dict[str, float]:
    """Units whose total would pass their RDP cap (unit → current total). Raises on an α mismatch.

    Runs inside the backend's transaction, on totals read under its lock.
    """
    mismatched = {u: s.alpha for u, s in states.items() if u in amounts and s.alpha != alpha}
    if mismatched:
        raise alpha_mismatch(mismatched, alpha)
    refused: dict[str, float] = {}
    for unit, amount in amounts.items():
        total = states[unit].rdp if unit in states else 0.0
        cap = caps[unit]
        if amount > 0.0 and total + amount > cap + CAP_SLACK * max(abs(cap), 1.0):
            refused[unit] = total
    return refused


def alpha_mismatch(units: Mapping[str, float], alpha: float) -> AlphaMismatchError:
    listed = ", ".join(f"{u!r} (alpha={a:g})" for u, a in sorted(units.items()))
    return AlphaMismatchError(
        f"unit(s) {listed} are composed at another Rényi order than this budget's alpha={alpha:g}; RDP only adds "
        "up at one order. Use a budget with that alpha for these units, another ledger, or reset them."
    )


def plan_settle(call_id: str, stored: Mapping[str, tuple[float, str]], actual: Mapping[str, float]) -> dict[str, float] | SettleResult:
    """Decide a settle from the stored rows (unit → (reserved RDP, status)).

    Returns "missing" (no rows: unknown call id, or its units were reset), "already" (settled
    before: a replay changes nothing) or unit → the RDP to charge. Units in ``actual`` without a
    row were reset meanwhile and are skipped.
    """
    if not stored:
        return "missing"
    if all(status == SETTLED for _, status in stored.values()):
        return "already"
    missing = sorted(set(stored) - set(actual))
    if missing:
        raise ValueError(f"settle for call {call_id!r} gives no RDP for reserved unit(s) {missing}")
    plan: dict[str, float] = {}
    for unit, (reserved, _) in stored.items():
        value = check_rdp(actual[unit], f"settled rdp for unit {unit!r}")
        if value > reserved + CAP_SLACK * max(reserved, 1.0):
            raise ValueError(
                f"call {call_id!r} reserved rdp={reserved:.6g} for unit {unit!r} but settles {value:.6g}: a call "
                "may not cost more than its reserved worst case. Reserve max_new_tokens · per-step RDP."
            )
        plan[unit] = min(value, reserved)
    return plan


class Ledger(ABC):
    """Storage of a privacy filter. Every mutating method is one atomic transaction."""

    url: str = ""

    @abstractmethod
    def reserve(
        self,
        call_id: str,
        amounts: Mapping[str, float],
        caps: Mapping[str, float],
        *,
        alpha: float,
        delta: float,
        model: str | None,
    ) -> ReserveOutcome:
        """All-or-nothing: add ``amounts`` (RDP) to every unit if each total stays within its cap.

        A call id that exists already is not charged again (see `ReserveOutcome`).
        """

    @abstractmethod
    def settle(self, call_id: str, actual: Mapping[str, float], *, tokens: int | None, delta: float) -> SettleResult:
        """Replace the call's reservation by its actual RDP (≤ reserved). Idempotent."""

    @abstractmethod
    def states(self, units: Iterable[str] | None = None) -> dict[str, UnitState]:
        """Current totals of the given units (all when None); units never charged are absent."""

    @abstractmethod
    def entries(self, unit: str | None = None) -> list[LedgerEntry]:
        """Rows, oldest first."""

    @abstractmethod
    def reset(self, unit: str) -> int:
        """Forget a unit's history and total; returns the number of rows removed."""

    def units(self) -> list[str]:
        return sorted(self.states())

    def close(self) -> None:
        """Release connections (the ledger reopens them if used again)."""

    def __enter__(self) -> Ledger:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.url!r})"


def default_ledger_path() -> Path:
    import platformdirs

    return Path(platformdirs.user_data_dir("dpfusion-chains")) / "budget.db"


def _timeout_from_query(query: str, default: float | None) -> float:
    params = parse_qs(query)
    raw = params.pop("timeout", [None])[-1]
    if params:
        raise ValueError(f"unknown ledger URL parameter(s) {sorted(params)}; the SQLite ledger accepts only ?timeout=SECONDS")
    value = default if raw is None else raw
    try:
        timeout = DEFAULT_TIMEOUT_S if value is None else float(value)
    except ValueError:
        raise ValueError(f"ledger timeout must be a number of seconds, got {raw!r}") from None
    if not math.isfinite(timeout) or timeout < 0:
        raise ValueError(f"ledger timeout must be a number of seconds >= 0, got {value!r}")
    return timeout


def open_ledger(spec: str | os.PathLike[str] | Ledger | None = None, *, timeout: float | None = None) -> Ledger:
    """A ledger from a URL, a path (SQLite), a `Ledger` object, or None for the default.

    Default: ``$DPFUSION_LEDGER`` if set, else a SQLite file under the user data directory.
    URLs: ``memory://``, ``sqlite:///relative.db``, ``sqlite:////absolute.db`` (``?timeout=S``),
    ``postgresql://user:pass@host:port/db`` (``?schema=NAME``, ``&timeout=S``, libpq parameters).
    ``timeout`` is how long to wait for another writer's lock before `LedgerLockedError`.
    """
    if isinstance(spec, Ledger):
        return spec
    if spec is None:
        env = os.environ.get(ENV_LEDGER)
        if env:
            return open_ledger(env, timeout=timeout)
        from .sqlite import SQLiteLedger

        path = default_ledger_path()
        path.parent.mkdir(parents=True, exist_ok=True)
        return SQLiteLedger(path, timeout=DEFAULT_TIMEOUT_S if timeout is None else timeout)
    if isinstance(spec, os.PathLike):
        from .sqlite import SQLiteLedger

        return SQLiteLedger(Path(spec), timeout=DEFAULT_TIMEOUT_S if timeout is None else timeout)
    if not isinstance(spec, str):
        raise TypeError(f"ledger must be a URL string, a path, a Ledger object or None, got {type(spec).__name__}")
    scheme = spec.split("://", 1)[0].lower() if "://" in spec else ""
    if scheme == "memory":
        from .memory import MemoryLedger

        if spec.rstrip("/") != "memory:":
            raise ValueError(f"the in-memory ledger URL is exactly 'memory://', got {spec!r}")
        return MemoryLedger()
    if scheme == "sqlite":
        from .sqlite import SQLiteLedger

        parts = urlsplit(spec)
        if parts.netloc or not parts.path.startswith("/") or len(parts.path) < 2:
            raise ValueError(
                f"SQLite ledger URLs look like 'sqlite:///relative/budget.db' or 'sqlite:////abs/budget.db', got {spec!r}"
            )
        return SQLiteLedger(Path(parts.path[1:]), timeout=_timeout_from_query(parts.query, timeout))
    if scheme in ("postgresql", "postgres", "postgresql+psycopg"):
        from .postgres import PostgresLedger

        return PostgresLedger(spec, timeout=timeout)
    raise ValueError(
        f"unknown ledger {spec!r}: use 'sqlite:///path/budget.db' (default), 'postgresql://user@host:5432/db', "
        "'memory://' (tests; lost at exit), a pathlib.Path to a SQLite file, or a Ledger object"
    )
