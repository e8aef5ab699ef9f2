"""In-process ledger (``memory://``): for tests and notebooks. Thread-safe; lost at exit and not
shared between processes (a pickled copy is a separate ledger)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable, Mapping
from dataclasses import replace

from .ledger import (
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


class MemoryLedger(Ledger):
    def __init__(self) -> None:
        self.url = "memory://"
        self._lock = threading.Lock()
        self._states: dict[str, UnitState] = {}
        # (call_id, unit) → row; dicts keep insertion order, which is the time order.
        self._rows: dict[tuple[str, str], LedgerEntry] = {}
        self._calls: dict[str, list[str]] = {}

    def __getstate__(self) -> dict[str, object]:
        state = self.__dict__.copy()
        del state["_lock"]
        return state

    def __setstate__(self, state: dict[str, object]) -> None:
        self.__dict__.update(state)
        self._lock = threading.Lock()

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
        with self._lock:
            existing = self._calls.get(call_id)
            if existing:
                rows = [self._rows[(call_id, u)] for u in existing]
                return ReserveOutcome(False, {r.unit: r.reserved_rdp for r in rows}, rows[0].status, {})
            refused = over_cap(self._states, amounts, caps, alpha)
            if refused:
                return ReserveOutcome(False, dict(amounts), "", refused)
            now = utc(time.time())
            for unit in sorted(amounts):
                amount = amounts[unit]
                total = (self._states[unit].rdp if unit in self._states else 0.0) + amount
                self._states[unit] = UnitState(unit, total, alpha, delta)
                self._rows[(call_id, unit)] = LedgerEntry(
                    call_id, unit, alpha, amount, amount, epsilon_of(total, alpha, delta), None, model, RESERVED, now, None
                )
            self._calls[call_id] = sorted(amounts)
            return ReserveOutcome(True, dict(amounts), RESERVED, {})

    def settle(self, call_id: str, actual: Mapping[str, float], *, tokens: int | None, delta: float) -> SettleResult:
        with self._lock:
            stored = {u: (self._rows[(call_id, u)].reserved_rdp, self._rows[(call_id, u)].status) for u in self._calls.get(call_id, [])}
            plan = plan_settle(call_id, stored, actual)
            if isinstance(plan, str):
                return plan
            now = utc(time.time())
            for unit, value in plan.items():
                row = self._rows[(call_id, unit)]
                state = self._states[unit]
                total = max(0.0, state.rdp - (row.reserved_rdp - value))
                self._states[unit] = replace(state, rdp=total, delta=delta)
                self._rows[(call_id, unit)] = replace(
                    row, rdp=value, tokens=tokens, status=SETTLED, settled_at=now, epsilon=epsilon_of(total, state.alpha, delta)
                )
            return "settled"

    def states(self, units: Iterable[str] | None = None) -> dict[str, UnitState]:
        with self._lock:
            if units is None:
                return dict(self._states)
            return {u: self._states[u] for u in units if u in self._states}

    def entries(self, unit: str | None = None) -> list[LedgerEntry]:
        with self._lock:
            return [r for r in self._rows.values() if unit is None or r.unit == unit]

    def reset(self, unit: str) -> int:
        with self._lock:
            keys = [k for k in self._rows if k[1] == unit]
            for call_id, _ in keys:
                del self._rows[(call_id, unit)]
                remaining = [u for u in self._calls[call_id] if u != unit]
                if remaining:
                    self._calls[call_id] = remaining
                else:
                    del self._calls[call_id]
            self._states.pop(unit, None)
            return len(keys)
