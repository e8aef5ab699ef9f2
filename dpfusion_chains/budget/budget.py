"""`PrivacyBudget`: a privacy filter in RDP per privacy unit (DESIGN §5), and its `Reservation`.

Before a call the budget reserves the worst case (max_new_tokens · ρ_step) for every unit the
call reads, atomically and all-or-nothing; after the call the reservation is settled to the actual
T · ρ_step. Charging the realised T is adaptive composition under a Rényi filter (Feldman & Zrnic
2021): T depends only on released tokens. Whatever is not settled stays charged in full — the
reserve row is committed before generation starts, so even a killed process cannot spend unseen.
"""

from __future__ import annotations

import logging
import math
import operator
import os
import uuid
from collections.abc import Iterable, Mapping
from typing import Literal

from dpfusion_chains.core.accounting import (
    DEFAULT_ORDERS,
    check_alpha,
    check_delta,
    conversion_offset,
    epsilon_to_rdp_cap,
)

from .errors import AlphaMismatchError, BudgetExhaustedError, LedgerError
from .ledger import (
    CAP_SLACK,
    SETTLED,
    Ledger,
    LedgerEntry,
    check_id,
    check_rdp,
    epsilon_of,
    open_ledger,
    over_cap,
)

log = logging.getLogger(__name__)

OnExhausted = Literal["raise", "redact", "drop"]
ON_EXHAUSTED: tuple[str, ...] = ("raise", "redact", "drop")
DEFAULT_ALPHA = 8.0  # at δ = 1e-5 the conversion costs 1.2 at α = 8 but 10.1 at α = 2


def _check_epsilon(value: object, what: str) -> float:
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value) or value < 0:
        raise ValueError(f"{what} must be a finite number >= 0 (an ε limit), got {value!r}; e.g. epsilon=10.0")
    return float(value)


def _check_tokens(value: object) -> int:
    try:
        tokens = operator.index(value)  # int, numpy and torch integers
    except TypeError:
        tokens = -1
    if isinstance(value, bool) or tokens < 0:
        raise ValueError(f"tokens must be an integer >= 0 (the number of sampled tokens T), got {value!r}")
    return tokens


class Reservation:
    """A reserved worst case; a context manager. Leaving it without `settle` charges it in full.

    ``replayed`` is True when the call id had been reserved before: this object then changes
    nothing (settle is a no-op), so a retried or replayed call can never lower or repeat a charge.
    """

    def __init__(self, budget: PrivacyBudget, call_id: str, amounts: Mapping[str, float], *, created: bool, status: str) -> None:
        self.budget = budget
        self.call_id = call_id
        self.reserved: dict[str, float] = dict(amounts)
        self.units: frozenset[str] = frozenset(amounts)
        self.replayed = not created
        self.settled: dict[str, float] | None = dict(amounts) if status == SETTLED else None
        self.tokens: int | None = None
        self._done = self.replayed or status == SETTLED or not amounts

    @property
    def done(self) -> bool:
        """True once settled, released or charged in full (or when there is nothing to settle)."""
        return self._done

    def settle(self, rdp: float | Mapping[str, float], tokens: int | None = None) -> None:
        """Charge the actual cost instead of the worst case: ``rdp`` for every unit, or per unit.

        Must not exceed what was reserved (ValueError). Settling again changes nothing.
        """
        if self.replayed:  # the first reservation of this call id keeps its charge
            log.debug("settle of replayed call %s ignored", self.call_id)
            return
        if isinstance(rdp, Mapping):
            extra = sorted(set(rdp) - self.units)
            missing = sorted(self.units - set(rdp))
            if extra or missing:
                raise ValueError(
                    f"settle for call {self.call_id!r} must give the RDP of exactly the reserved units "
                    f"{sorted(self.units)}; unknown {extra}, missing {missing}"
                )
            actual = {u: check_rdp(v, f"rdp for unit {u!r}") for u, v in rdp.items()}
        else:
            value = check_rdp(rdp)
            actual = {u: value for u in self.units}
        if tokens is not None:
            tokens = _check_tokens(tokens)
        for unit, value in actual.items():
            reserved = self.reserved[unit]
            if value > reserved + CAP_SLACK * max(reserved, 1.0):
                raise ValueError(
                    f"call {self.call_id!r} settles rdp={value:.6g} for unit {unit!r} but reserved only {reserved:.6g}: "
                    "a call may not cost more than its reserved worst case (reserve max_new_tokens · per-step RDP)."
                )
        if self._done:
            return
        result = self.budget.ledger.settle(self.call_id, actual, tokens=tokens, delta=self.budget.delta)
        if result == "missing":
            log.warning("call %s: its units were reset while it ran; nothing left to settle", self.call_id)
        self.settled, self.tokens, self._done = actual, tokens, True

    def release(self) -> None:
        """Refund the whole reservation: only for a call that released no token at all."""
        self.settle(0.0, tokens=0)

    def __enter__(self) -> Reservation:
        return self

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        if self._done:
            return
        # Not settled (the call failed or forgot): charge the worst case. The ledger already holds
        # it as reserved, so if this write fails the charge stands anyway; never mask the caller's error.
        try:
            self.settle(self.reserved)
        except (LedgerError, ValueError) as err:
            log.warning("call %s stays charged in full as reserved: %s", self.call_id, err)

    def __repr__(self) -> str:
        state = "replayed" if self.replayed else ("settled" if self._done else "reserved")
        return f"Reservation({self.call_id!r}, units={sorted(self.units)}, {state})"


class PrivacyBudget:
    """ε_max per privacy unit (document, user, tenant) at one (α, δ), kept in a ledger.

    ``ledger``: a URL (``sqlite:///budget.db``, ``postgresql://…``, ``memory://``), a path, a
    `Ledger`, or None for ``$DPFUSION_LEDGER`` / a SQLite file in the user data directory.
    ``per_unit``: ε_max overrides by unit id (0 blocks a unit). ``on_exhausted``: what the engine
    and adapters do with a unit that does not fit — "raise" (BudgetExhaustedError), "redact" (its
    text stays in public form, no charge) or "drop" (its text is removed); the budget only answers.
    """

    def __init__(
        self,
        epsilon: float,
        delta: float = 1e-5,
        alpha: float = DEFAULT_ALPHA,
        ledger: str | os.PathLike[str] | Ledger | None = None,
        *,
        per_unit: Mapping[str, float] | None = None,
        on_exhausted: OnExhausted = "raise",
        timeout: float | None = None,
    ) -> None:
        self.epsilon = _check_epsilon(epsilon, "epsilon")
        self.delta = check_delta(delta)
        self.alpha = check_alpha(alpha)
        if epsilon_to_rdp_cap(self.epsilon, self.alpha, self.delta) <= 0:
            raise ValueError(self._infeasible_message())
        if on_exhausted not in ON_EXHAUSTED:
            raise ValueError(f"on_exhausted must be one of {ON_EXHAUSTED}, got {on_exhausted!r}")
        self.on_exhausted: OnExhausted = on_exhausted
        if per_unit is not None and not isinstance(per_unit, Mapping):
            raise TypeError(f"per_unit must map unit ids to ε limits, got {type(per_unit).__name__}")
        self.per_unit: dict[str, float] = {
            check_id(u, "per_unit key"): _check_epsilon(e, f"per_unit[{u!r}]") for u, e in (per_unit or {}).items()
        }
        self.ledger: Ledger = open_ledger(ledger, timeout=timeout)

    def _infeasible_message(self) -> str:
        offset = conversion_offset(self.alpha, self.delta)
        # Suggest α = 8 (a good default at common δ) when it works, else the order leaving the most RDP.
        options = [(epsilon_to_rdp_cap(self.epsilon, a, self.delta), a) for a in DEFAULT_ORDERS]
        cap8 = epsilon_to_rdp_cap(self.epsilon, DEFAULT_ALPHA, self.delta)
        best_cap, best_alpha = (cap8, DEFAULT_ALPHA) if cap8 > 0 else max(options)
        hint = f"a larger alpha (alpha={best_alpha:g} leaves RDP {best_cap:.3g} to spend)" if best_cap > 0 else "a larger alpha"
        return (
            f"PrivacyBudget(epsilon={self.epsilon:g}, delta={self.delta:g}, alpha={self.alpha:g}) admits no release: "
            f"converting RDP to (ε, δ) at this alpha and delta alone costs ε={offset:.4g} >= {self.epsilon:g}. "
            f"Choose {hint}, a larger epsilon, or a larger delta."
        )

    # -- configuration -------------------------------------------------------------------
    def check_alpha(self, alpha: float) -> None:
        """Refuse a call accounted at another Rényi order: RDP composes only at one order."""
        if float(check_alpha(alpha)) != self.alpha:
            raise AlphaMismatchError(
                f"this call uses alpha={alpha:g} but the budget composes RDP at alpha={self.alpha:g}; run the call "
                f"with alpha={self.alpha:g} (or use a budget, and ledger, at alpha={alpha:g})."
            )

    def limit(self, unit: str) -> float:
        """ε_max of a unit."""
        return self.per_unit.get(unit, self.epsilon)

    def rdp_cap(self, unit: str) -> float:
        """The most RDP the unit may accumulate (≤ 0: the unit can never be released)."""
        return epsilon_to_rdp_cap(self.limit(unit), self.alpha, self.delta)

    def _amounts(self, units: str | Iterable[str] | Mapping[str, float], rdp: float | None) -> dict[str, float]:
        if isinstance(units, Mapping):
            if rdp is not None:
                raise ValueError("give the RDP either per unit in a dict, or as rdp= with a set of units, not both")
            return {check_id(u, "unit"): check_rdp(v, f"rdp for unit {u!r}") for u, v in units.items()}
        if rdp is None:
            raise ValueError("rdp= is required with a set of units (the worst-case RDP: max_new_tokens · per-step RDP)")
        value = check_rdp(rdp)
        if isinstance(units, str):  # one unit id, not its characters
            units = [units]
        return {check_id(u, "unit"): value for u in units}

    # -- charging -------------------------------------------------------------------------
    def reserve(
        self,
        units: str | Iterable[str] | Mapping[str, float],
        rdp: float | None = None,
        *,
        call_id: str | None = None,
        model: str | None = None,
        alpha: float | None = None,
    ) -> Reservation:
        """Reserve ``rdp`` (or a {unit: rdp} dict) for every unit, all or nothing.

        Raises BudgetExhaustedError naming the units that do not fit; nothing is charged then.
        A call id reserved before is not charged again (the returned reservation is ``replayed``).
        """
        if alpha is not None:
            self.check_alpha(alpha)
        amounts = self._amounts(units, rdp)
        call_id = check_id(call_id, "call_id") if call_id is not None else str(uuid.uuid4())
        if model is not None:
            check_id(model, "model")
        if not amounts:
            return Reservation(self, call_id, {}, created=True, status="")
        caps = {u: self.rdp_cap(u) for u in amounts}
        outcome = self.ledger.reserve(call_id, amounts, caps, alpha=self.alpha, delta=self.delta, model=model)
        if outcome.refused:
            raise self._exhausted(outcome.refused, amounts)
        if not outcome.created:
            short = sorted(u for u, v in amounts.items() if u not in outcome.amounts or v > outcome.amounts[u] * (1 + CAP_SLACK))
            if short:
                raise ValueError(
                    f"call id {call_id!r} was reserved before for {sorted(outcome.amounts)} and does not cover {short}: "
                    "a call id names one generation; give this call a new call_id."
                )
        return Reservation(self, call_id, outcome.amounts, created=outcome.created, status=outcome.status)

    def _exhausted(self, refused: Mapping[str, float], amounts: Mapping[str, float]) -> BudgetExhaustedError:
        remaining, needed = {}, {}
        for unit, total in refused.items():
            spent = epsilon_of(total, self.alpha, self.delta)
            remaining[unit] = max(0.0, self.limit(unit) - spent)
            needed[unit] = epsilon_of(total + amounts[unit], self.alpha, self.delta) - spent
        return BudgetExhaustedError(refused, remaining, needed, {u: self.limit(u) for u in refused})

    def fits(self, units: str | Iterable[str] | Mapping[str, float], rdp: float | None = None) -> set[str]:
        """Units that would NOT fit a reservation of this size now (read-only, advisory: another
        process may spend in between; `reserve` is the atomic check)."""
        amounts = self._amounts(units, rdp)
        states = self.ledger.states(amounts)
        foreign = {u for u, s in states.items() if s.alpha != self.alpha}
        caps = {u: self.rdp_cap(u) for u in amounts}
        ours = {u: v for u, v in amounts.items() if u not in foreign}
        return foreign | set(over_cap({u: s for u, s in states.items() if u not in foreign}, ours, caps, self.alpha))

    # -- reading ----------------------------------------------------------------------------
    def spent_rdp(self, unit: str) -> float:
        """Total RDP of the unit at the budget's α (settled + outstanding reservations)."""
        state = self.ledger.states([check_id(unit, "unit")]).get(unit)
        if state is None:
            return 0.0
        if state.alpha != self.alpha:
            raise AlphaMismatchError(
                f"unit {unit!r} is composed at alpha={state.alpha:g} in {self.ledger.url}, not at this budget's "
                f"alpha={self.alpha:g}; read it with a budget at alpha={state.alpha:g}."
            )
        return state.rdp

    def spent(self, unit: str) -> float:
        """ε the unit has spent (0.0 when nothing was charged)."""
        return epsilon_of(self.spent_rdp(unit), self.alpha, self.delta)

    def remaining(self, unit: str) -> float:
        """ε left for the unit: max(0, limit − spent)."""
        return max(0.0, self.limit(unit) - self.spent(unit))

    def units(self) -> list[str]:
        return self.ledger.units()

    def entries(self, unit: str | None = None) -> list[LedgerEntry]:
        return self.ledger.entries(None if unit is None else check_id(unit, "unit"))

    def reset(self, unit: str) -> int:
        """Forget a unit's spending (an administrative decision: its history is deleted)."""
        return self.ledger.reset(check_id(unit, "unit"))

    def close(self) -> None:
        self.ledger.close()

    def __enter__(self) -> PrivacyBudget:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return (
            f"PrivacyBudget(epsilon={self.epsilon:g}, delta={self.delta:g}, alpha={self.alpha:g}, "
            f"ledger={self.ledger.url!r}, per_unit={self.per_unit!r}, on_exhausted={self.on_exhausted!r})"
        )
