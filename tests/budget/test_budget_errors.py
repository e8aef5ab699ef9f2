"""Storage failures give clear errors and never charge twice or lose a charge."""

from __future__ import annotations

import socket
import sqlite3
import time

import psycopg
import pytest

from dpfusion_chains.budget import (
    SCHEMA_VERSION,
    LedgerCorruptError,
    LedgerLockedError,
    LedgerSchemaError,
    LedgerUnavailableError,
    PrivacyBudget,
)

ALPHA, DELTA = 8.0, 1e-5


def make(url: str, **kw) -> PrivacyBudget:
    return PrivacyBudget(epsilon=10.0, delta=DELTA, alpha=ALPHA, ledger=url, **kw)


def _split_pg(url: str) -> tuple[str, str]:
    base, schema = url.split("?schema=")
    return base, schema


# -- SQLite ---------------------------------------------------------------------------------------


def test_corrupt_file_is_named_and_refused(tmp_path):
    path = tmp_path / "budget.db"
    path.write_bytes(b"this is not a database, it is a text file\n" * 200)
    with pytest.raises(LedgerCorruptError) as err:
        make(f"sqlite:///{path}")
    assert str(path) in str(err.value) and "not a readable dpfusion ledger" in str(err.value)
    assert path.read_bytes().startswith(b"this is not a database")  # left untouched for inspection


def test_truncated_ledger_is_refused(tmp_path):
    path = tmp_path / "budget.db"
    budget = make(f"sqlite:///{path}")
    for i in range(50):
        budget.reserve({f"u{i}"}, rdp=0.1)
    budget.close()
    data = path.read_bytes()
    path.write_bytes(data[:100] + b"\xff" * (len(data) - 100))  # header kept, every page destroyed
    with pytest.raises(LedgerCorruptError):
        make(f"sqlite:///{path}").spent("u1")


def test_foreign_sqlite_database_is_not_taken_over(tmp_path):
    path = tmp_path / "app.db"
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE customers (name TEXT)")
    with pytest.raises(LedgerCorruptError, match="not a dpfusion ledger"):
        make(f"sqlite:///{path}")


def test_missing_directory_is_unavailable(tmp_path):
    with pytest.raises(LedgerUnavailableError, match="directory exists"):
        make(f"sqlite:///{tmp_path}/no/such/dir/budget.db")


def test_locked_database_times_out_clearly_and_charges_once(tmp_path):
    path = tmp_path / "budget.db"
    budget = make(f"sqlite:///{path}?timeout=0.2")
    budget.reserve({"doc"}, rdp=0.5, call_id="c-0")
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    try:
        started = time.monotonic()
        with pytest.raises(LedgerLockedError) as err:
            budget.reserve({"doc"}, rdp=0.5, call_id="c-1")
        assert time.monotonic() - started < 5
        assert "locked" in str(err.value) and "timeout" in str(err.value) and "charged nothing" in str(err.value)
        assert budget.spent_rdp("doc") == pytest.approx(0.5)  # readers still work (WAL)
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    budget.reserve({"doc"}, rdp=0.5, call_id="c-1")  # the retry after the lock is gone
    budget.reserve({"doc"}, rdp=0.5, call_id="c-1")  # and a replay of it
    assert budget.spent_rdp("doc") == pytest.approx(1.0)
    assert [e.call_id for e in budget.entries()] == ["c-0", "c-1"]


def test_settle_on_a_locked_database_keeps_the_full_charge(tmp_path):
    path = tmp_path / "budget.db"
    budget = make(f"sqlite:///{path}?timeout=0.1")
    reservation = budget.reserve({"doc"}, rdp=0.5, call_id="c-1")
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    try:
        with pytest.raises(LedgerLockedError):
            reservation.settle(rdp=0.1)
        with reservation:  # leaving cannot write either: logged, the reserved charge stands
            pass
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert budget.spent_rdp("doc") == pytest.approx(0.5)
    assert budget.entries()[0].status == "reserved"


@pytest.mark.parametrize("version", [SCHEMA_VERSION + 98, 0])
def test_wrong_schema_version_sqlite(tmp_path, version):
    path = tmp_path / "budget.db"
    make(f"sqlite:///{path}").reserve({"doc"}, rdp=0.5)
    with sqlite3.connect(path) as conn:
        conn.execute("UPDATE schema_version SET version = ?", (version,))
    with pytest.raises(LedgerSchemaError) as err:
        make(f"sqlite:///{path}")
    msg = str(err.value)
    assert f"version {version}" in msg and f"reads version {SCHEMA_VERSION}" in msg
    assert ("upgrade" in msg) == (version > SCHEMA_VERSION)


def test_dropped_table_sqlite(tmp_path):
    path = tmp_path / "budget.db"
    budget = make(f"sqlite:///{path}")
    with sqlite3.connect(path) as conn:
        conn.execute("DROP TABLE unit_totals")
    with pytest.raises(LedgerSchemaError, match="lacks the tables"):
        budget.reserve({"doc"}, rdp=0.5)


def test_schema_is_created_once_by_concurrent_openers(tmp_path):
    path = tmp_path / "budget.db"
    budgets = [make(f"sqlite:///{path}") for _ in range(3)]
    budgets[0].reserve({"doc"}, rdp=0.1)
    with sqlite3.connect(path) as conn:
        assert conn.execute("SELECT version FROM schema_version").fetchall() == [(SCHEMA_VERSION,)]
        assert conn.execute("PRAGMA journal_mode").fetchone() == ("wal",)
    assert budgets[2].spent_rdp("doc") == pytest.approx(0.1)


# -- PostgreSQL -----------------------------------------------------------------------------------


def test_unreachable_postgres_is_a_clear_error_without_the_password():
    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    started = time.monotonic()
    with pytest.raises(LedgerUnavailableError) as err:
        make(f"postgresql://alice:s3cret@127.0.0.1:{port}/ledger?connect_timeout=3")
    msg = str(err.value)
    assert "cannot reach the PostgreSQL ledger" in msg and f"127.0.0.1:{port}" in msg and "s3cret" not in msg
    assert time.monotonic() - started < 10


@pytest.mark.postgres
def test_postgres_lock_timeout_is_clear_and_charges_once(pg_url):
    budget = make(pg_url + "&timeout=0.3")
    budget.reserve({"doc"}, rdp=0.5, call_id="c-0")
    base, schema = _split_pg(pg_url)
    with psycopg.connect(base) as holder:
        holder.execute(f"LOCK TABLE {schema}.unit_totals IN ACCESS EXCLUSIVE MODE")
        with pytest.raises(LedgerLockedError, match="charged nothing"):
            budget.reserve({"doc"}, rdp=0.5, call_id="c-1")
        holder.rollback()
    budget.reserve({"doc"}, rdp=0.5, call_id="c-1")
    budget.reserve({"doc"}, rdp=0.5, call_id="c-1")
    assert budget.spent_rdp("doc") == pytest.approx(1.0) and len(budget.entries()) == 2


@pytest.mark.postgres
def test_postgres_reconnects_after_the_connection_is_killed(pg_url):
    budget = make(pg_url)
    reservation = budget.reserve({"doc"}, rdp=0.5, call_id="c-1")
    base, _ = _split_pg(pg_url)
    with psycopg.connect(base, autocommit=True) as admin:
        killed = admin.execute(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE pid <> pg_backend_pid() "
            "AND datname = current_database() AND backend_type = 'client backend'"
        ).fetchone()[0]
    assert killed >= 1
    reservation.settle(rdp=0.2, tokens=2)  # the next operation reconnects and succeeds once
    reservation.settle(rdp=0.2, tokens=2)
    assert budget.spent_rdp("doc") == pytest.approx(0.2) and budget.entries()[0].tokens == 2


@pytest.mark.postgres
@pytest.mark.parametrize("version", [SCHEMA_VERSION + 98, 0])
def test_wrong_schema_version_postgres(pg_url, version):
    make(pg_url).reserve({"doc"}, rdp=0.5)
    base, schema = _split_pg(pg_url)
    with psycopg.connect(base) as conn:
        conn.execute(f"UPDATE {schema}.schema_version SET version = %s", (version,))
    with pytest.raises(LedgerSchemaError) as err:
        make(pg_url)
    assert f"version {version}" in str(err.value) and f"reads version {SCHEMA_VERSION}" in str(err.value)


@pytest.mark.postgres
def test_postgres_schema_with_foreign_tables_is_not_taken_over(pg_url):
    base, schema = _split_pg(pg_url)
    with psycopg.connect(base) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
        conn.execute(f"CREATE TABLE {schema}.customers (name text)")
    with pytest.raises(LedgerCorruptError, match="not a dpfusion ledger"):
        make(pg_url)


@pytest.mark.postgres
def test_postgres_dropped_table(pg_url):
    budget = make(pg_url)
    base, schema = _split_pg(pg_url)
    with psycopg.connect(base) as conn:
        conn.execute(f"DROP TABLE {schema}.unit_totals")
    with pytest.raises(LedgerSchemaError, match="lacks the tables"):
        budget.reserve({"doc"}, rdp=0.5)


def test_bad_postgres_schema_name_is_refused():
    with pytest.raises(ValueError, match="lower-case identifier"):
        make("postgresql://u@127.0.0.1:1/db?schema=Robert'); DROP TABLE x;--")
