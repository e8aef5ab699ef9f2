"""Fixtures of the budget tests: one temp ledger per test, on every backend.

PostgreSQL is a real server, started once per session on 127.0.0.1 (as an unprivileged user when
we are root). When its binaries are missing and we are root, they are installed with apt-get.
Set DPFUSION_TEST_POSTGRES_URL to use an existing server instead.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import uuid
from collections.abc import Iterator

import pytest

from dpfusion_chains.budget.pgtemp import TemporaryPostgres, find_pg_bin

def _install_postgres() -> str | None:
    """Install the server with apt-get when possible; returns why not otherwise."""
    if os.geteuid() != 0:
        return "not root, so apt-get install postgresql is not possible here"
    if shutil.which("apt-get") is None:
        return "no apt-get on this machine"
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for cmd in (["apt-get", "update"], ["apt-get", "install", "-y", "--no-install-recommends", "postgresql"]):
        done = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=900)
        if done.returncode != 0:
            return f"{' '.join(cmd)} failed: {done.stderr.strip()[-500:]}"
    return None


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[str]:
    external = os.environ.get("DPFUSION_TEST_POSTGRES_URL")
    if external:
        yield external
        return
    if find_pg_bin() is None:
        why = _install_postgres()
        if why is not None or find_pg_bin() is None:
            pytest.skip(f"POSTGRESQL TESTS SKIPPED: no PostgreSQL server binaries (initdb, pg_ctl) and {why or 'install found none'}")
    server = TemporaryPostgres(fsync=False)
    try:
        server.start()
    except (RuntimeError, OSError, subprocess.SubprocessError) as exc:
        pytest.skip(f"POSTGRESQL TESTS SKIPPED: could not start a local server: {exc}")
    yield server.url
    server.stop()


def _pg_url(base: str) -> str:
    sep = "&" if "?" in base else "?"
    return f"{base}{sep}schema=t_{uuid.uuid4().hex[:12]}"


def _url(kind: str, request: pytest.FixtureRequest, tmp_path) -> str:
    if kind == "memory":
        return "memory://"
    if kind == "sqlite":
        return f"sqlite:///{tmp_path / 'budget.db'}"
    return _pg_url(request.getfixturevalue("postgres_server"))


@pytest.fixture(params=["memory", "sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def ledger_url(request: pytest.FixtureRequest, tmp_path) -> str:
    """A fresh, empty ledger on each backend (PostgreSQL: a schema of its own)."""
    return _url(request.param, request, tmp_path)


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def shared_url(request: pytest.FixtureRequest, tmp_path) -> str:
    """A fresh ledger that several processes can share (no memory://)."""
    return _url(request.param, request, tmp_path)


@pytest.fixture
def pg_url(postgres_server: str) -> str:
    return _pg_url(postgres_server)
