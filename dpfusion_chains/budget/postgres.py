"""PostgreSQL ledger: one budget shared by many workers on many machines.

A reservation is one READ COMMITTED transaction that locks the units' total rows with
``SELECT … FOR UPDATE`` (in sorted order, so concurrent calls over overlapping units queue instead
of deadlocking), checks the caps on the locked totals and adds the amounts. A transaction-scoped
advisory lock on the call id makes "reserve with an existing call id" a replay, never a second
charge, even when two workers race with the same id. Tables live in their own PostgreSQL schema
(``dpfusion`` unless ``?schema=NAME``), so the ledger can share a database with an application.

Needs the ``postgres`` extra (psycopg 3).

Production set-up (once, as a DBA; the library then creates and versions its tables itself):

    CREATE ROLE dpfusion LOGIN PASSWORD '…';
    CREATE SCHEMA dpfusion AUTHORIZATION dpfusion;      -- or GRANT USAGE, CREATE ON SCHEMA …
    -- ledger="postgresql://dpfusion:…@db-host:5432/appdb?sslmode=require&schema=dpfusion"

Keep ``fsync`` and ``synchronous_commit`` on: a committed reservation must survive a crash.
Every worker process opens one connection per thread that uses the budget (with a session-level
lock_timeout and prepared statements, so use session pooling if a pooler sits in front); size
``max_connections`` for that.
"""

from __future__ import annotations

import os
import random
import re
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from contextlib import AbstractContextManager, nullcontext
from datetime import datetime, timezone
from typing import TypeVar
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from dpfusion_chains.core.accounting import conversion_offset

from .errors import LedgerCorruptError, LedgerError, LedgerLockedError, LedgerSchemaError, LedgerUnavailableError
from .ledger import (
    DEFAULT_TIMEOUT_S,
    RESERVED,
    SETTLED,
    Ledger,
    LedgerEntry,
    ReserveOutcome,
    SettleResult,
    UnitState,
    epsilon_of,
    over_cap,
    plan_settle,
)
from .schema import SCHEMA_VERSION, pending_migrations, postgres_migrations

try:
    import psycopg
    from psycopg import errors as pg_errors
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    raise ImportError(
        "the PostgreSQL ledger needs psycopg 3: pip install 'dpfusion-chains[postgres]'"
    ) from exc

T = TypeVar("T")
_IDENT = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")
_DEADLOCK_RETRIES = 8
_ENTRY_COLUMNS = "call_id, unit, alpha, rdp, reserved_rdp, epsilon, tokens, model, status, created_at, settled_at"


def _redact(url: str) -> str:
    """The URL without its password, for messages and reprs."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.netloc.rsplit("@", 1)[-1]
    user = parts.username or ""
    return urlunsplit(parts._replace(netloc=f"{user}:***@{host}"))


class PostgresLedger(Ledger):
    def __init__(self, url: str, timeout: float | None = None) -> None:
        self._raw_url = url
        parts = urlsplit(url)
        query = parse_qsl(parts.query, keep_blank_values=True)
        ours = {k: v for k, v in query if k in ("schema", "timeout")}
        libpq = [(k, v) for k, v in query if k not in ("schema", "timeout")]
        self.schema = ours.get("schema", "dpfusion")
        if not _IDENT.match(self.schema):
            raise ValueError(f"PostgreSQL ledger schema must be a lower-case identifier ([a-z_][a-z0-9_]*), got {self.schema!r}")
        try:
            self.timeout = float(ours.get("timeout", timeout if timeout is not None else DEFAULT_TIMEOUT_S))
        except ValueError:
            raise ValueError(f"ledger timeout must be a number of seconds, got {ours.get('timeout')!r}") from None
        if not any(k == "connect_timeout" for k, _ in libpq):
            libpq.append(("connect_timeout", "10"))
        self._conninfo = urlunsplit(parts._replace(scheme="postgresql", query=urlencode(libpq)))
        self.url = _redact(url)
        self._s = f'"{self.schema}"'
        self._pipelined = _has_pipeline()
        self._init_runtime()
        self._run(lambda conn, _: None)  # connect and check the schema now, not at the first call

    def _init_runtime(self) -> None:
        self._local = threading.local()
        self._lock = threading.Lock()
        self._open: list[psycopg.Connection] = []
        self._pid = os.getpid()

    def __getstate__(self) -> dict[str, object]:
        return {"url": self._raw_url, "timeout": self.timeout}

    def __setstate__(self, state: dict[str, object]) -> None:
        self.__init__(state["url"], state["timeout"])  # type: ignore[misc, arg-type]

    # -- connections -----------------------------------------------------------------------
    def _conn(self) -> psycopg.Connection:
        if self._pid != os.getpid():  # a forked child must not share the parent's socket
            self._init_runtime()
        conn = getattr(self._local, "conn", None)
        if conn is not None and not conn.closed:
            return conn
        try:
            conn = psycopg.connect(self._conninfo, autocommit=True)
        except psycopg.Error as exc:
            raise LedgerUnavailableError(
                f"cannot reach the PostgreSQL ledger at {self.url}: {str(exc).strip()}. Check that the server runs "
                "and accepts connections from here, and the host, port, database, user and password in the URL."
            ) from exc
        try:
            conn.execute(f"SET lock_timeout = {max(1, int(self.timeout * 1000))}")
            self._ensure_schema(conn)
        except BaseException as exc:
            conn.close()
            if isinstance(exc, psycopg.Error):
                raise self._wrap(exc) from exc
            raise
        self._local.conn = conn
        with self._lock:
            self._open.append(conn)
        return conn

    def close(self) -> None:
        with self._lock:
            conns, self._open = self._open, []
        for conn in conns:
            conn.close()
        self._local = threading.local()

    def _run(self, body: Callable[[psycopg.Connection, bool], T]) -> T:
        """Run one transaction body; retry deadlocks, and once after a lost connection.

        ``body`` gets ``reconnected=True`` on the retry after a lost connection: its first attempt
        may have committed without us hearing back.
        """
        reconnected = False
        for attempt in range(_DEADLOCK_RETRIES):
            conn = self._conn()
            try:
                return body(conn, reconnected)
            except (pg_errors.DeadlockDetected, pg_errors.SerializationFailure):
                time.sleep(random.uniform(0.0, 0.005 * (attempt + 1)))
            except pg_errors.LockNotAvailable as exc:
                raise LedgerLockedError(
                    f"PostgreSQL ledger {self.url} ({self.schema}): a lock was held by another session for more than "
                    f"{self.timeout:g} s; this operation was rolled back and charged nothing. Retry, or raise the wait "
                    "with '?timeout=SECONDS' in the URL."
                ) from exc
            except psycopg.OperationalError as exc:
                if not (conn.closed or conn.broken):
                    raise self._wrap(exc) from exc
                self._local.conn = None
                if reconnected:
                    raise LedgerUnavailableError(
                        f"PostgreSQL ledger {self.url}: the connection was lost twice ({str(exc).strip()}); the "
                        "operation is idempotent by call id, so retrying it later charges nothing twice."
                    ) from exc
                reconnected = True
            except psycopg.Error as exc:
                raise self._wrap(exc) from exc
        raise LedgerError(f"PostgreSQL ledger {self.url}: gave up after {_DEADLOCK_RETRIES} deadlocks in a row")

    def _wrap(self, exc: psycopg.Error) -> LedgerError:
        msg = str(exc).strip()
        if isinstance(exc, (pg_errors.UndefinedTable, pg_errors.UndefinedColumn, pg_errors.InvalidSchemaName)):
            return LedgerSchemaError(
                f"PostgreSQL ledger {self.url}: schema {self.schema!r} lacks the tables of version {SCHEMA_VERSION} "
                f"({msg}); they were dropped or edited by hand. Restore them or use another ?schema=."
            )
        if isinstance(exc, pg_errors.InsufficientPrivilege):
            return LedgerUnavailableError(
                f"PostgreSQL ledger {self.url}: permission denied ({msg}). The user needs USAGE and CREATE on schema "
                f"{self.schema!r} (or have a DBA create it) and read/write on its tables."
            )
        return LedgerError(f"PostgreSQL ledger {self.url}: {msg}")

    def _version(self, conn: psycopg.Connection) -> int | None:
        row = conn.execute("SELECT to_regclass(%s)", (f"{self._s}.schema_version",)).fetchone()
        if row is None or row[0] is None:
            others = conn.execute("SELECT count(*) FROM pg_tables WHERE schemaname = %s", (self.schema,)).fetchone()
            if others and others[0]:
                raise LedgerCorruptError(
                    f"PostgreSQL schema {self.schema!r} at {self.url} holds other tables and no schema_version: it is "
                    "not a dpfusion ledger. Choose another schema with '?schema=NAME'."
                )
            return None
        rows = conn.execute(f"SELECT version FROM {self._s}.schema_version").fetchall()
        if len(rows) != 1:
            raise LedgerSchemaError(
                f"PostgreSQL ledger {self.url}: {self.schema}.schema_version must hold one row (expected version "
                f"{SCHEMA_VERSION}), found {len(rows)}; restore it or use another ?schema=."
            )
        return int(rows[0][0])

    def _ensure_schema(self, conn: psycopg.Connection) -> None:
        if self._version(conn) == SCHEMA_VERSION:
            return
        with conn.transaction():
            # Serialise creation and migration across every process that opens this ledger.
            conn.execute("SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))", (f"dpfusion-schema:{self.schema}",))
            found = self._version(conn)
            steps = pending_migrations(found, f"{self.url} (schema {self.schema})")
            if found is None:
                exists = conn.execute("SELECT to_regnamespace(%s)", (self._s,)).fetchone()
                if exists is None or exists[0] is None:
                    conn.execute(f"CREATE SCHEMA {self._s}")
                conn.execute(f"CREATE TABLE {self._s}.schema_version (version integer NOT NULL)")
            migrations = postgres_migrations(self._s)
            for index in steps:
                for statement in migrations[index]:
                    conn.execute(statement)
            conn.execute(f"DELETE FROM {self._s}.schema_version")
            conn.execute(f"INSERT INTO {self._s}.schema_version (version) VALUES (%s)", (SCHEMA_VERSION,))

    def _states_in(self, conn: psycopg.Connection, units: list[str]) -> dict[str, UnitState]:
        sql = f"SELECT unit, alpha, delta, rdp FROM {self._s}.unit_totals WHERE unit = ANY(%s)"
        return {u: UnitState(u, rdp, a, d) for u, a, d, rdp in conn.execute(sql, (units,))}

    # -- Ledger ----------------------------------------------------------------------------
    def _batch(self, conn: psycopg.Connection) -> AbstractContextManager[object]:
        """Pipeline mode when libpq has it: queued statements travel in one round trip, and a
        transaction costs two round trips instead of one per statement (latency, not safety)."""
        return conn.pipeline() if self._pipelined else nullcontext()

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
        units = sorted(amounts)

        def body(conn: psycopg.Connection, reconnected: bool) -> ReserveOutcome:
            outcome: ReserveOutcome | None = None
            with self._batch(conn), conn.transaction():
                conn.execute("SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))", (f"dpfusion-call:{call_id}",))
                existing = conn.execute(
                    f"SELECT unit, reserved_rdp, status FROM {self._s}.ledger_entries WHERE call_id = %s", (call_id,)
                )
                locked = self._lock_states(conn, units)
                rows = existing.fetchall()  # first round trip: BEGIN, the call's lock, both reads
                if rows:
                    stored = {u: r for u, r, _ in rows}
                    # After a lost connection, rows equal to ours are our own first attempt, committed
                    # before the reply was lost: report them as created so the caller may settle.
                    own = reconnected and rows[0][2] == RESERVED and stored == dict(amounts)
                    return ReserveOutcome(own, stored, rows[0][2], {})
                states = {u: UnitState(u, rdp, a, d) for u, a, d, rdp in locked.fetchall()}
                missing = [u for u in units if u not in states]
                if missing:  # first charge of these units: create their rows, then lock them too
                    conn.execute(
                        f"INSERT INTO {self._s}.unit_totals (unit, alpha, delta, rdp) "
                        "SELECT u, %s, %s, 0 FROM unnest(%s::text[]) AS u ON CONFLICT (unit) DO NOTHING",
                        (alpha, delta, missing),
                    )
                    states.update({u: UnitState(u, rdp, a, d) for u, a, d, rdp in self._lock_states(conn, missing).fetchall()})
                refused = over_cap(states, amounts, caps, alpha)
                if refused:
                    outcome = ReserveOutcome(False, dict(amounts), "", refused)
                    raise psycopg.Rollback()  # also drops the zero rows created above
                values = [amounts[u] for u in units]
                eps = [epsilon_of(states[u].rdp + amounts[u], alpha, delta) for u in units]
                conn.execute(
                    f"UPDATE {self._s}.unit_totals AS t SET rdp = t.rdp + v.amount, delta = %s "
                    "FROM unnest(%s::text[], %s::float8[]) AS v(unit, amount) WHERE t.unit = v.unit",
                    (delta, units, values),
                )
                conn.execute(
                    f"INSERT INTO {self._s}.ledger_entries ({_ENTRY_COLUMNS}) "
                    "SELECT %s, v.unit, %s, v.amount, v.amount, v.eps, NULL, %s, %s, now(), NULL "
                    "FROM unnest(%s::text[], %s::float8[], %s::float8[]) AS v(unit, amount, eps)",
                    (call_id, alpha, model, RESERVED, units, values, eps),
                )
            return outcome or ReserveOutcome(True, dict(amounts), RESERVED, {})

        return self._run(body)

    def _lock_states(self, conn: psycopg.Connection, units: list[str]) -> psycopg.Cursor:
        # Sorted, so that calls over overlapping units take the row locks in one order.
        return conn.execute(
            f"SELECT unit, alpha, delta, rdp FROM {self._s}.unit_totals WHERE unit = ANY(%s) ORDER BY unit FOR UPDATE",
            (units,),
        )

    def settle(self, call_id: str, actual: Mapping[str, float], *, tokens: int | None, delta: float) -> SettleResult:
        def body(conn: psycopg.Connection, _: bool) -> SettleResult:
            with self._batch(conn), conn.transaction():
                # FOR UPDATE: a concurrent settle of the same call waits, then sees it settled.
                rows = conn.execute(
                    f"SELECT unit, reserved_rdp, status, alpha FROM {self._s}.ledger_entries "
                    "WHERE call_id = %s ORDER BY unit FOR UPDATE",
                    (call_id,),
                ).fetchall()
                stored = {u: (r, s) for u, r, s, _ in rows}
                plan = plan_settle(call_id, stored, actual)
                if isinstance(plan, str):
                    return plan
                alphas = {u: a for u, _, _, a in rows}
                units = sorted(plan)
                # One statement: lower the totals, then write each row's value and the ε of the new
                # total (epsilon_of: 0 for nothing spent, else max(0, rdp + conversion offset)).
                conn.execute(
                    f"WITH v AS (SELECT * FROM unnest(%s::text[], %s::float8[], %s::float8[], %s::float8[]) "
                    "AS v(unit, value, refund, offset_eps)), "
                    f"t AS (UPDATE {self._s}.unit_totals AS t SET rdp = GREATEST(0, t.rdp - v.refund), delta = %s "
                    "FROM v WHERE t.unit = v.unit RETURNING t.unit, t.rdp) "
                    f"UPDATE {self._s}.ledger_entries AS e SET rdp = v.value, tokens = %s, status = %s, "
                    "settled_at = now(), epsilon = CASE WHEN t.rdp <= 0 THEN 0 ELSE GREATEST(0, t.rdp + v.offset_eps) END "
                    "FROM v JOIN t ON t.unit = v.unit WHERE e.call_id = %s AND e.unit = v.unit",
                    (
                        units,
                        [plan[u] for u in units],
                        [stored[u][0] - plan[u] for u in units],
                        [conversion_offset(alphas[u], delta) for u in units],
                        delta,
                        tokens,
                        SETTLED,
                        call_id,
                    ),
                )
                return "settled"

        return self._run(body)

    def states(self, units: Iterable[str] | None = None) -> dict[str, UnitState]:
        if units is None:
            sql = f"SELECT unit, alpha, delta, rdp FROM {self._s}.unit_totals ORDER BY unit"
            return self._run(lambda conn, _: {u: UnitState(u, rdp, a, d) for u, a, d, rdp in conn.execute(sql)})
        wanted = list(units)
        return self._run(lambda conn, _: self._states_in(conn, wanted))

    def entries(self, unit: str | None = None) -> list[LedgerEntry]:
        sql = f"SELECT {_ENTRY_COLUMNS} FROM {self._s}.ledger_entries"
        if unit is not None:
            sql, params = sql + " WHERE unit = %s ORDER BY created_at, call_id, unit", (unit,)
        else:
            sql, params = sql + " ORDER BY created_at, call_id, unit", ()
        rows = self._run(lambda conn, _: conn.execute(sql, params).fetchall())
        return [
            LedgerEntry(c, u, a, r, rr, e, t, m, s, _utc(ca), _utc(sa) if sa is not None else None)
            for c, u, a, r, rr, e, t, m, s, ca, sa in rows
        ]

    def reset(self, unit: str) -> int:
        def body(conn: psycopg.Connection, _: bool) -> int:
            with conn.transaction():
                removed = conn.execute(f"DELETE FROM {self._s}.ledger_entries WHERE unit = %s", (unit,)).rowcount
                conn.execute(f"DELETE FROM {self._s}.unit_totals WHERE unit = %s", (unit,))
                return removed

        return self._run(body)


def _has_pipeline() -> bool:
    capabilities = getattr(psycopg, "capabilities", None)  # psycopg >= 3.2
    if capabilities is not None:
        return bool(capabilities.has_pipeline())
    return bool(psycopg.Pipeline.is_supported())


def _utc(value: datetime) -> datetime:
    return value.astimezone(timezone.utc)
