"""Errors of the privacy budget. Each message says what happened and what to change.

Input mistakes (a bad alpha, an unknown ledger URL, settling more than was reserved) are
``ValueError``s; a spent budget and storage problems are the library's ``DPFusionError`` and
``RuntimeError``, so a caller can tell "fix your arguments" from "the ledger refused or is
unavailable".
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from dpfusion_chains.core.errors import DPFusionError

__all__ = [
    "AlphaMismatchError",
    "BudgetExhaustedError",
    "DPFusionError",
    "LedgerCorruptError",
    "LedgerError",
    "LedgerLockedError",
    "LedgerSchemaError",
    "LedgerUnavailableError",
]


class BudgetExhaustedError(DPFusionError, RuntimeError):
    """A reservation would take one or more privacy units past their ε limit.

    ``units`` holds the units that do not fit, ``remaining`` their ε left, ``needed`` the ε
    (worst case) the refused call would have added to each.
    """

    def __init__(
        self,
        units: Iterable[str],
        remaining: Mapping[str, float] | None = None,
        needed: Mapping[str, float] | None = None,
        limits: Mapping[str, float] | None = None,
    ) -> None:
        self.units: frozenset[str] = frozenset(units)
        self.remaining: dict[str, float] = dict(remaining or {})
        self.needed: dict[str, float] = dict(needed or {})
        self.limits: dict[str, float] = dict(limits or {})
        super().__init__(self._message())

    def _message(self) -> str:
        parts = []
        for unit in sorted(self.units):
            detail = []
            if unit in self.remaining:
                detail.append(f"ε left {self.remaining[unit]:.4g}")
            if unit in self.limits:
                detail.append(f"limit {self.limits[unit]:.4g}")
            if unit in self.needed:
                detail.append(f"this call needs up to ε {self.needed[unit]:.4g} more")
            parts.append(f"{unit!r} ({', '.join(detail)})" if detail else repr(unit))
        return (
            f"privacy budget exhausted for {len(parts)} unit(s): {'; '.join(parts)}. Nothing was charged. "
            "To go on: lower max_new_tokens or the per-step bound (a smaller worst case), use "
            "on_exhausted='redact' or 'drop' to answer without these units' text, raise the unit's limit "
            "(per_unit={...}) if your policy allows it, or reset the unit after review "
            "(`dpfusion budget reset --unit U --yes`)."
        )

    def __reduce__(self):  # keep the fields when the error crosses a process boundary
        return (type(self), (self.units, self.remaining, self.needed, self.limits))


class AlphaMismatchError(DPFusionError, ValueError):
    """A call or a ledger unit composes RDP at another order than the budget."""


class LedgerError(DPFusionError, RuntimeError):
    """The ledger's storage cannot be used; nothing was charged by the failed operation."""


class LedgerUnavailableError(LedgerError):
    """The ledger cannot be opened or reached (missing directory, server down, bad credentials)."""


class LedgerLockedError(LedgerError):
    """Another process held the ledger's lock for longer than the timeout."""


class LedgerCorruptError(LedgerError):
    """The file or database is not a readable dpfusion ledger."""


class LedgerSchemaError(LedgerError):
    """The ledger was written with a schema version this library does not read."""
