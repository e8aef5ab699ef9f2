"""SQLite ledger (the default): one file, safe across threads and processes of one machine.

Every write is one ``BEGIN IMMEDIATE`` transaction: SQLite grants it to one connection at a time,
so the totals read inside it cannot change before the transaction's own update — the check and
the charge are atomic. WAL mode lets readers (`spent`, `dpfusion budget show`) run during writes;
``synchronous=FULL`` makes a committed reservation survive a power cut, not only a crash, since a
lost reservation would be unaccounted spending. Waiting for a busy writer is bounded by
``timeout`` (busy_timeout), after which `LedgerLockedError` says so.
"""

from __future__ import annotations

import os
import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

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
    utc,
)
from .schema import SCHEMA_VERSION, SQLITE_MIGRATIONS, pending_migrations

_ENTRY_COLUMNS = "call_id, unit, alpha, rdp, reserved_rdp, epsilon, tokens, model, status, created_at, settled_at"


class SQLiteLedger(Ledger):
    def __init__(self, path: str | os.PathLike[str], timeout: float = DEFAULT_TIMEOUT_S) -> None:
        self.path = Path(path).expanduser().absolute()
        self.timeout = float(timeout)
        self.url = f"sqlite:///{self.path}"
        self._init_runtime()
        self._conn()  # open now: a missing directory, a corrupt file or a wrong schema fails here

    def _init_runtime(self) -> None:
        self._local = threading.local()
        self._lock = threading.Lock()
        self._open: list[sqlite3.Connection] = []
        self._pid = os.getpid()

    # A ledger sent to another process (multiprocessing, Ray) reopens its file there.
    def __getstate__(self) -> dict[str, object]:
        return {"path": self.path, "timeout": self.timeout}

    def __setstate__(self, state: dict[str, object]) -> None:
        self.__init__(state["path"], state["timeout"])  # type: ignore[misc, arg-type]

    # -- connections -----------------------------------------------------------------------
    def _conn(self) -> sqlite3.Connection:
        if self._pid != os.getpid():  # forked: the parent's connections must not be used here
            self._init_runtime()
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            return conn
        try:
            # isolation_level=None: we issue BEGIN IMMEDIATE / COMMIT ourselves.
            conn = sqlite3.connect(str(self.path), timeout=self.timeout, isolation_level=None, check_same_thread=False)
        except sqlite3.Error as exc:
            raise self._wrap(exc) from exc
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=FULL")
            self._ensure_schema(conn)
        except BaseException as exc:
            conn.close()
            if isinstance(exc, sqlite3.Error):
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
            try:
                conn.close()
            except sqlite3.Error:
                pass
        self._local = threading.local()

    def _wrap(self, exc: sqlite3.Error) -> LedgerError:
        msg = str(exc)
        low = msg.lower()
        if isinstance(exc, sqlite3.OperationalError):
            if "locked" in low or "busy" in low:
                return LedgerLockedError(
                    f"SQLite ledger {self.path} stayed locked by another connection for more than {self.timeout:g} s "
                    f"({msg}); this operation was rolled back and charged nothing. Retry, raise the wait with "
                    "'sqlite:///path?timeout=SECONDS', or stop the process holding the lock."
                )
            if "unable to open" in low or "readonly" in low or "disk i/o" in low or "permission" in low:
                return LedgerUnavailableError(
                    f"cannot use SQLite ledger {self.path}: {msg}. Check that its directory exists and is writable "
                    "(the ledger needs the file and its -wal/-shm companions)."
                )
            if "no such table" in low or "no such column" in low:
                return LedgerSchemaError(
                    f"SQLite ledger {self.path} lacks the tables of schema version {SCHEMA_VERSION} ({msg}); it was "
                    "edited by hand. Restore it from a backup or point ledger= to a new file."
                )
            return LedgerError(f"SQLite ledger {self.path}: {msg}")
        if isinstance(exc, sqlite3.DatabaseError) and not isinstance(exc, sqlite3.IntegrityError):
            return LedgerCorruptError(
                f"{self.path} is not a readable dpfusion ledger ({msg}): the file is damaged or is not a SQLite "
                "database. Move it aside (keep it for audit) and point ledger= to a new file, or restore a backup."
            )
        return LedgerError(f"SQLite ledger {self.path}: {msg}")

    def _ensure_schema(self, conn: sqlite3.Connection) -> None:
        if self._version(conn) == SCHEMA_VERSION:
            return  # the common case needs no write lock
        conn.execute("BEGIN IMMEDIATE")
        try:
            found = self._version(conn)  # again under the lock: another process may have created it
            for index in pending_migrations(found, str(self.path)):
                if index == 0:
                    conn.execute("CREATE TABLE schema_version (version INTEGER NOT NULL)")
                for statement in SQLITE_MIGRATIONS[index]:
                    conn.execute(statement)
            conn.execute("DELETE FROM schema_version")
            conn.execute("INSERT INTO schema_version (version) VALUES (?)", (SCHEMA_VERSION,))
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise

    def _version(self, conn: sqlite3.Connection) -> int | None:
        tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        if "schema_version" not in tables:
            if tables:
                raise LedgerCorruptError(
                    f"{self.path} is a SQLite database but not a dpfusion ledger (it has tables {sorted(tables)[:5]} "
                    "and no schema_version); point ledger= to a file of its own."
                )
            return None
        rows = conn.execute("SELECT version FROM schema_version").fetchall()
        if len(rows) != 1 or not isinstance(rows[0][0], int):
            raise LedgerSchemaError(
                f"ledger {self.path}: schema_version must hold one integer (expected version {SCHEMA_VERSION}), "
                f"found {[r[0] for r in rows][:3]}; restore it from a backup or point ledger= to a new file."
            )
        return rows[0][0]

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        conn = self._conn()
        try:
            conn.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as exc:
            raise self._wrap(exc) from exc
        try:
            yield conn
            conn.execute("COMMIT")
        except BaseException as exc:
            if conn.in_transaction:
                try:
                    conn.execute("ROLLBACK")
                except sqlite3.Error:
                    pass  # the connection is unusable; SQLite rolls back on close
            if isinstance(exc, sqlite3.Error):
                raise self._wrap(exc) from exc
            raise

    def _read(self, sql: str, params: tuple[object, ...] = ()) -> list[tuple]:
        try:
            return self._conn().execute(sql, params).fetchall()
        except sqlite3.Error as exc:
            raise self._wrap(exc) from exc

    @staticmethod
    def _states_in(conn: sqlite3.Connection, units: Iterable[str]) -> dict[str, UnitState]:
        wanted = list(units)
        found: dict[str, UnitState] = {}
        for start in range(0, len(wanted), 500):  # stay far below SQLite's bound-parameter limit
            chunk = wanted[start : start + 500]
            marks = ",".join("?" * len(chunk))
            for unit, alpha, delta, rdp in conn.execute(
                f"SELECT unit, alpha, delta, rdp FROM unit_totals WHERE unit IN ({marks})", chunk
            ):
                found[unit] = UnitState(unit, rdp, alpha, delta)
        return found

    # -- Ledger ----------------------------------------------------------------------------
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
        with self._write() as conn:
            rows = conn.execute("SELECT unit, reserved_rdp, status FROM ledger_entries WHERE call_id = ?", (call_id,)).fetchall()
            if rows:
                return ReserveOutcome(False, {u: r for u, r, _ in rows}, rows[0][2], {})
            states = self._states_in(conn, amounts)
            refused = over_cap(states, amounts, caps, alpha)
            if refused:
                return ReserveOutcome(False, dict(amounts), "", refused)
            now = time.time()
            for unit in sorted(amounts):
                amount = amounts[unit]
                total = (states[unit].rdp if unit in states else 0.0) + amount
                conn.execute(
                    "INSERT INTO unit_totals (unit, alpha, delta, rdp) VALUES (?, ?, ?, ?) "
                    "ON CONFLICT (unit) DO UPDATE SET rdp = rdp + excluded.rdp, delta = excluded.delta",
                    (unit, alpha, delta, amount),
                )
                conn.execute(
                    f"INSERT INTO ledger_entries ({_ENTRY_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, NULL, ?, ?, ?, NULL)",
                    (call_id, unit, alpha, amount, amount, epsilon_of(total, alpha, delta), model, RESERVED, now),
                )
            return ReserveOutcome(True, dict(amounts), RESERVED, {})

    def settle(self, call_id: str, actual: Mapping[str, float], *, tokens: int | None, delta: float) -> SettleResult:
        with self._write() as conn:
            rows = conn.execute("SELECT unit, reserved_rdp, status FROM ledger_entries WHERE call_id = ?", (call_id,)).fetchall()
            stored = {u: (r, s) for u, r, s in rows}
            plan = plan_settle(call_id, stored, actual)
            if isinstance(plan, str):
                return plan
            states = self._states_in(conn, plan)
            now = time.time()
            for unit, value in plan.items():
                refund = stored[unit][0] - value
                state = states[unit]
                total = max(0.0, state.rdp - refund)
                conn.execute(
                    "UPDATE unit_totals SET rdp = MAX(0.0, rdp - ?), delta = ? WHERE unit = ?", (refund, delta, unit)
                )
                conn.execute(
                    "UPDATE ledger_entries SET rdp = ?, tokens = ?, status = ?, settled_at = ?, epsilon = ? "
                    "WHERE call_id = ? AND unit = ?",
                    (value, tokens, SETTLED, now, epsilon_of(total, state.alpha, delta), call_id, unit),
                )
            return "settled"

    def states(self, units: Iterable[str] | None = None) -> dict[str, UnitState]:
        if units is None:
            rows = self._read("SELECT unit, alpha, delta, rdp FROM unit_totals ORDER BY unit")
            return {u: UnitState(u, rdp, a, d) for u, a, d, rdp in rows}
        try:
            return self._states_in(self._conn(), units)
        except sqlite3.Error as exc:
            raise self._wrap(exc) from exc

    def entries(self, unit: str | None = None) -> list[LedgerEntry]:
        sql = f"SELECT {_ENTRY_COLUMNS} FROM ledger_entries"
        rows = self._read(sql + " WHERE unit = ? ORDER BY created_at, rowid", (unit,)) if unit is not None else self._read(
            sql + " ORDER BY created_at, rowid"
        )
        return [
            LedgerEntry(c, u, a, r, rr, e, t, m, s, utc(ca), utc(sa) if sa is not None else None)
            for c, u, a, r, rr, e, t, m, s, ca, sa in rows
        ]

    def reset(self, unit: str) -> int:
        with self._write() as conn:
            removed = conn.execute("DELETE FROM ledger_entries WHERE unit = ?", (unit,)).rowcount
            conn.execute("DELETE FROM unit_totals WHERE unit = ?", (unit,))
            return removed
