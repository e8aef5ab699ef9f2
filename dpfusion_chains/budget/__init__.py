"""Privacy budget: per-unit ε limits enforced as a Rényi-DP filter over a ledger (DESIGN §5).

    budget = PrivacyBudget(epsilon=10.0, delta=1e-5, alpha=8.0, ledger="sqlite:///budget.db")
    with budget.reserve({"rec-7"}, rdp=0.5, call_id="c-1") as r:   # BudgetExhaustedError if it can't fit
        r.settle(rdp=0.3, tokens=12)                              # leaving without settle: charged in full
    budget.spent("rec-7"), budget.remaining("rec-7")

Ledgers: ``memory://`` (tests), SQLite (default; one machine, many processes), PostgreSQL (many
machines; ``pip install 'dpfusion-chains[postgres]'``). They share the `Ledger` interface.
"""

from .budget import ON_EXHAUSTED, OnExhausted, PrivacyBudget, Reservation
from .errors import (
    AlphaMismatchError,
    BudgetExhaustedError,
    DPFusionError,
    LedgerCorruptError,
    LedgerError,
    LedgerLockedError,
    LedgerSchemaError,
    LedgerUnavailableError,
)
from .ledger import Ledger, LedgerEntry, UnitState, default_ledger_path, open_ledger
from .memory import MemoryLedger
from .schema import SCHEMA_VERSION

__all__ = [
    "ON_EXHAUSTED",
    "SCHEMA_VERSION",
    "AlphaMismatchError",
    "BudgetExhaustedError",
    "DPFusionError",
    "Ledger",
    "LedgerCorruptError",
    "LedgerEntry",
    "LedgerError",
    "LedgerLockedError",
    "LedgerSchemaError",
    "LedgerUnavailableError",
    "MemoryLedger",
    "OnExhausted",
    "PrivacyBudget",
    "Reservation",
    "UnitState",
    "default_ledger_path",
    "open_ledger",
]
