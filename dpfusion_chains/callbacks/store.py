"""Framework-free record of the ε that DP-Fusion calls reported: per call and per privacy unit.

Callback handlers (LangChain's `PrivacyBudgetCallbackHandler`, the LlamaIndex event handler)
observe the `metadata()` dict every call publishes and feed it to a `SpendTracker`. The tracker
deduplicates by a key (the framework's run/event id), keeps totals, and warns or raises when a
unit crosses a limit. It only observes: the engine's budget reserves and settles the real
charge, so a handler is never the only record of spending (DESIGN §2).

Storage is pluggable: `SpendStore` is the interface (the default keeps records in memory);
a persistent store implements `add` and `records`.
"""

from __future__ import annotations

import logging
import math
import threading
import time
import warnings
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from dpfusion_chains.core.accounting import rdp_to_epsilon
from dpfusion_chains.core.errors import DPFusionError

logger = logging.getLogger(__name__)

OnLimit = Literal["warn", "raise", "ignore"]


class PrivacyLimitExceededError(DPFusionError):
    """A privacy unit's observed ε crossed the limit a handler was given."""


class PrivacyLimitWarning(UserWarning):
    """A privacy unit's observed ε crossed the limit a handler was given."""


@dataclass(frozen=True)
class CallRecord:
    """What one call reported: numbers and unit ids only, never text."""

    key: str
    call_id: str | None
    epsilon: float
    delta: float
    alpha: float
    rdp: float
    tokens: int
    unit_rdp: dict[str, float]
    accounting: str = "sound"
    cached: bool = False
    model: str = ""
    time: float = field(default_factory=time.time)

    @property
    def units(self) -> list[str]:
        return sorted(self.unit_rdp)

    @classmethod
    def from_metadata(cls, key: str, meta: Mapping[str, Any]) -> CallRecord:
        """From `GenerationResult.metadata()` (as published in framework metadata)."""
        unit_rdp = {str(u): float(r) for u, r in (meta.get("unit_rdp") or {}).items()}
        return cls(key=str(key), call_id=meta.get("call_id"), epsilon=float(meta.get("epsilon") or 0.0),
                   delta=float(meta.get("delta") or 0.0), alpha=float(meta.get("alpha") or 0.0),
                   rdp=float(meta.get("rdp") or 0.0), tokens=int(meta.get("tokens") or 0), unit_rdp=unit_rdp,
                   accounting=str(meta.get("accounting") or "sound"), cached=bool(meta.get("cached", False)),
                   model=str(meta.get("model") or ""))


class SpendStore(ABC):
    """Where a tracker keeps call records. `add` must be atomic and idempotent per key."""

    @abstractmethod
    def add(self, record: CallRecord) -> bool:
        """Store the record; False (and nothing stored) if its key, or its non-empty call id, was seen."""

    @abstractmethod
    def records(self) -> list[CallRecord]:
        """Every stored record, oldest first."""


class MemorySpendStore(SpendStore):
    """Thread-safe in-process store (the default)."""

    def __init__(self) -> None:
        self._records: list[CallRecord] = []
        self._keys: set[str] = set()
        self._call_ids: set[str] = set()
        self._lock = threading.Lock()

    def add(self, record: CallRecord) -> bool:
        with self._lock:
            if record.key in self._keys or (record.call_id and record.call_id in self._call_ids):
                return False
            self._keys.add(record.key)
            if record.call_id:
                self._call_ids.add(record.call_id)
            self._records.append(record)
            return True

    def records(self) -> list[CallRecord]:
        with self._lock:
            return list(self._records)


def unit_epsilon(records: list[CallRecord], unit: str, delta: float | None = None) -> float:
    """ε of one unit over the records: its RDP composed at one order and converted once (the
    calls' δ unless `delta` is given); if calls used different orders, the per-call ε are summed."""
    mine = [r for r in records if r.unit_rdp.get(unit, 0.0) > 0]
    if not mine:
        return 0.0
    delta = delta if delta is not None else max(r.delta for r in mine)
    method = "balle" if all(r.accounting == "sound" for r in mine) else "classic"
    alphas = {r.alpha for r in mine}
    if len(alphas) == 1:
        return rdp_to_epsilon(math.fsum(r.unit_rdp[unit] for r in mine), alphas.pop(), delta, method)
    return math.fsum(rdp_to_epsilon(r.unit_rdp[unit], r.alpha, r.delta, method) for r in mine)


class SpendTracker:
    """Totals of observed calls, with per-unit limits.

    limit: ε allowed per unit (overrides the budget's); budget: a `PrivacyBudget` whose per-unit
    limits and δ are used (read only). on_limit: "warn" (once per unit, when it crosses),
    "raise" (PrivacyLimitExceededError on every call that leaves a unit over) or "ignore".
    """

    def __init__(self, store: SpendStore | None = None, *, budget: Any = None, limit: float | None = None,
                 on_limit: OnLimit = "warn") -> None:
        if on_limit not in ("warn", "raise", "ignore"):
            raise ValueError(f"on_limit must be 'warn', 'raise' or 'ignore', got {on_limit!r}")
        if limit is not None and not (isinstance(limit, (int, float)) and limit >= 0):
            raise ValueError(f"limit must be an ε >= 0, got {limit!r}")
        self.store = store if store is not None else MemorySpendStore()
        self.budget = budget
        self.limit = limit
        self.on_limit = on_limit
        self._warned: set[str] = set()

    # -- observing ---------------------------------------------------------------------------
    def observe(self, key: str, meta: Mapping[str, Any]) -> CallRecord | None:
        """Record one call's metadata under `key`; None if that key/call was recorded before."""
        record = CallRecord.from_metadata(key, meta)
        if not self.store.add(record):
            logger.debug("dpfusion spend %s already recorded; ignored", key)
            return None
        self._check_limits(record)
        return record

    def _check_limits(self, record: CallRecord) -> None:
        if self.on_limit == "ignore":
            return
        over = {}
        for unit in record.units:
            limit = self.unit_limit(unit)
            if limit is not None and (spent := self.unit_epsilon(unit)) > limit:
                over[unit] = (spent, limit)
        if not over:
            return
        detail = ", ".join(f"{u!r}: ε={s:.4g} > {lim:.4g}" for u, (s, lim) in sorted(over.items()))
        if self.on_limit == "raise":
            raise PrivacyLimitExceededError(f"privacy limit exceeded for unit(s) {detail}")
        fresh = sorted(set(over) - self._warned)
        if fresh:
            self._warned.update(fresh)
            warnings.warn(f"privacy limit crossed for unit(s) {detail}", PrivacyLimitWarning, stacklevel=2)

    # -- reading -----------------------------------------------------------------------------
    def records(self) -> list[CallRecord]:
        return self.store.records()

    @property
    def calls(self) -> int:
        return len(self.records())

    @property
    def total_epsilon(self) -> float:
        """Sum of the per-call ε (sequential composition; an upper bound across calls)."""
        return math.fsum(r.epsilon for r in self.records())

    @property
    def total_tokens(self) -> int:
        return sum(r.tokens for r in self.records())

    def units(self) -> list[str]:
        return sorted({u for r in self.records() for u in r.unit_rdp})

    def unit_rdp(self, unit: str) -> dict[float, float]:
        """RDP of a unit per Rényi order."""
        out: dict[float, float] = {}
        for r in self.records():
            if unit in r.unit_rdp:
                out[r.alpha] = out.get(r.alpha, 0.0) + r.unit_rdp[unit]
        return out

    def unit_epsilon(self, unit: str) -> float:
        delta = getattr(self.budget, "delta", None)
        return unit_epsilon(self.records(), unit, delta)

    def unit_limit(self, unit: str) -> float | None:
        if self.limit is not None:
            return float(self.limit)
        if self.budget is not None:
            return float(self.budget.limit(unit))
        return None

    def totals(self) -> dict[str, Any]:
        """A summary: calls, tokens, summed ε and ε per unit."""
        records = self.records()
        return {"calls": len(records), "cached_calls": sum(r.cached for r in records),
                "tokens": sum(r.tokens for r in records), "epsilon": math.fsum(r.epsilon for r in records),
                "units": {u: self.unit_epsilon(u) for u in self.units()}}
