"""The ledger's SQL schema and its versions, for SQLite and PostgreSQL.

``schema_version`` holds one row. A fresh database gets every migration in order; a database
at version v < SCHEMA_VERSION gets migrations v+1…; a newer or unknown version is refused (an
older library must not write a ledger whose rules it does not know). To change the schema,
append a migration to both lists and bump SCHEMA_VERSION.
"""

from __future__ import annotations

from .errors import LedgerSchemaError

SCHEMA_VERSION: int = 1

# Tables: unit_totals holds each unit's running total — the row the reserve transaction locks —
# and ledger_entries one row per (call, unit). No column can hold prompt or output text.
SQLITE_MIGRATIONS: tuple[tuple[str, ...], ...] = (
    (
        "CREATE TABLE unit_totals ("
        " unit TEXT PRIMARY KEY,"
        " alpha REAL NOT NULL CHECK (alpha > 1),"
        " delta REAL NOT NULL CHECK (delta > 0 AND delta < 1),"
        " rdp REAL NOT NULL CHECK (rdp >= 0))",
        "CREATE TABLE ledger_entries ("
        " call_id TEXT NOT NULL,"
        " unit TEXT NOT NULL,"
        " alpha REAL NOT NULL,"
        " rdp REAL NOT NULL CHECK (rdp >= 0),"
        " reserved_rdp REAL NOT NULL CHECK (reserved_rdp >= 0),"
        " epsilon REAL NOT NULL,"
        " tokens INTEGER,"
        " model TEXT,"
        " status TEXT NOT NULL CHECK (status IN ('reserved', 'settled')),"
        " created_at REAL NOT NULL,"
        " settled_at REAL,"
        " PRIMARY KEY (call_id, unit))",
        "CREATE INDEX ledger_entries_unit ON ledger_entries (unit, created_at)",
    ),
)


def postgres_migrations(schema: str) -> tuple[tuple[str, ...], ...]:
    """The same tables in PostgreSQL, inside the given (already quoted) schema name."""
    return (
        (
            f"CREATE TABLE {schema}.unit_totals ("
            " unit text PRIMARY KEY,"
            " alpha double precision NOT NULL CHECK (alpha > 1),"
            " delta double precision NOT NULL CHECK (delta > 0 AND delta < 1),"
            " rdp double precision NOT NULL CHECK (rdp >= 0))",
            f"CREATE TABLE {schema}.ledger_entries ("
            " call_id text NOT NULL,"
            " unit text NOT NULL,"
            " alpha double precision NOT NULL,"
            " rdp double precision NOT NULL CHECK (rdp >= 0),"
            " reserved_rdp double precision NOT NULL CHECK (reserved_rdp >= 0),"
            " epsilon double precision NOT NULL,"
            " tokens integer,"
            " model text,"
            " status text NOT NULL CHECK (status IN ('reserved', 'settled')),"
            " created_at timestamptz NOT NULL,"
            " settled_at timestamptz,"
            " PRIMARY KEY (call_id, unit))",
            f"CREATE INDEX ledger_entries_unit ON {schema}.ledger_entries (unit, created_at)",
        ),
    )


assert len(SQLITE_MIGRATIONS) == SCHEMA_VERSION == len(postgres_migrations("s"))


def pending_migrations(found: int | None, where: str) -> range:
    """Indices of the migrations to apply to a database at version ``found`` (None: fresh)."""
    if found is None:
        return range(0, SCHEMA_VERSION)
    if found == SCHEMA_VERSION:
        return range(0)
    if 1 <= found < SCHEMA_VERSION:
        return range(found, SCHEMA_VERSION)
    newer = found > SCHEMA_VERSION
    raise LedgerSchemaError(
        f"ledger {where} has schema version {found}; this dpfusion-chains reads version {SCHEMA_VERSION}. "
        + (
            "It was written by a newer dpfusion-chains: upgrade the package (pip install -U dpfusion-chains)."
            if newer
            else "This version is unknown: the database was not written by dpfusion-chains or was edited by hand; "
            "restore it from a backup or point ledger= elsewhere."
        )
    )
