"""The model side of the server: one engine and one budget per replica, batches in, outcomes out.

The same `EngineWorker` runs inside a Ray replica (`deployment.py`) and in-process (`local.py`).
It never raises for a request's own failure: each call gets a `CallOutcome` with a result or an
HTTP-ready error, so a bad request cannot fail the requests batched with it.

Charging rules on top of the engine's reserve → generate → settle (DESIGN §5):
- `generate_batch` returns nothing until every call is done, so when it raises, no token of any
  of its calls was released: their fresh reservations are refunded, and the calls are run again
  without the one that failed, instead of charging everyone's worst case.
- A call id is only ever reused for a retry after its replica died. If the dead call's reservation
  is still open it was charged at the worst case, which covers any output of the retry: the retry
  runs under it and is not charged again. If the dead call had settled (it finished but its
  answer was lost) the retry is refused: its output could cost more than what was charged.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

from dpfusion_chains.budget.errors import BudgetExhaustedError, LedgerError
from dpfusion_chains.core.errors import DPFusionError
from dpfusion_chains.serve.auth import unscope_unit
from dpfusion_chains.serve.config import ServeConfig, build_engine, open_budget

logger = logging.getLogger("dpfusion_chains.serve")
T = TypeVar("T")


class ReplayRefusedError(DPFusionError, RuntimeError):
    """A retried call whose first attempt settled: rerunning it could cost more than was charged."""


@dataclass
class EngineCall:
    """One chat completion as the engine runs it; units are already namespaced by tenant."""

    call_id: str
    tenant: str
    messages: list[dict[str, Any]]
    settings: dict[str, Any]

    def item(self) -> dict[str, Any]:
        return {"messages": self.messages, "call_id": self.call_id, **self.settings}


@dataclass
class CallError:
    status: int
    type: str
    message: str


@dataclass
class CallOutcome:
    call_id: str
    result: Any = None  # GenerationResult
    charged: dict[str, float] = field(default_factory=dict)  # namespaced unit → RDP the ledger holds
    replayed: bool = False
    error: CallError | None = None


def classify(exc: BaseException, tenant: str) -> CallError:
    """An HTTP status and a message for a failed call. Library messages never hold private text;
    anything else is reported by type only."""
    if isinstance(exc, BudgetExhaustedError):
        own = BudgetExhaustedError({unscope_unit(tenant, u) for u in exc.units},
                                   {unscope_unit(tenant, u): v for u, v in exc.remaining.items()},
                                   {unscope_unit(tenant, u): v for u, v in exc.needed.items()},
                                   {unscope_unit(tenant, u): v for u, v in exc.limits.items()})
        return CallError(403, "budget_exhausted", str(own))
    if isinstance(exc, (LedgerError, ReplayRefusedError)):
        return CallError(503, "service_unavailable", str(exc).replace(f"{tenant}:", ""))
    if isinstance(exc, (ValueError, TypeError)):
        return CallError(400, "invalid_request_error", str(exc).replace(f"{tenant}:", ""))
    logger.error("call failed with %s", type(exc).__name__)
    return CallError(500, "internal_error", f"the model replica failed ({type(exc).__name__}); nothing was returned")


class _GuardedReservation:
    """A Reservation that, in batch mode, leaves a failed call's charge to the worker to decide."""

    def __init__(self, inner: Any, defer_on_error: bool) -> None:
        self.inner = inner
        self.defer_on_error = defer_on_error
        self.failed = False
        # A replay reaches here only with the dead attempt's reservation still open (settled ones
        # are refused in reserve): its worst-case charge covers this rerun (module docstring).
        self.covers_rerun = bool(inner.replayed and inner.settled is None)

    def __enter__(self) -> _GuardedReservation:
        self.inner.__enter__()
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        if exc_type is not None and self.defer_on_error:
            self.failed = True  # still charged in full in the ledger until the worker refunds it
            return
        self.inner.__exit__(exc_type, exc, tb)

    def settle(self, rdp: Any, tokens: int | None = None) -> None:
        self.inner.settle(rdp, tokens)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


class _GuardedBudget:
    """The replica's PrivacyBudget as one engine run sees it (see the module docstring)."""

    def __init__(self, budget: Any, *, batch: bool) -> None:
        self._budget = budget
        self._batch = batch
        self.reservations: dict[str, _GuardedReservation] = {}
        self.refused_call: str | None = None

    def __getattr__(self, name: str) -> Any:  # alpha, on_exhausted, fits, …
        return getattr(self._budget, name)

    def reserve(self, units: Any, rdp: Any = None, *, call_id: str | None = None, model: str | None = None,
                alpha: float | None = None) -> _GuardedReservation:
        try:
            inner = self._budget.reserve(units, rdp, call_id=call_id, model=model, alpha=alpha)
            if inner.replayed and inner.settled is not None:
                raise ReplayRefusedError(
                    "the replica running this request died after the call was charged and its answer was lost; "
                    "it was not rerun because the rerun could cost more than was charged. Send the request again.")
        except BaseException:
            self.refused_call = call_id
            raise
        guarded = _GuardedReservation(inner, defer_on_error=self._batch)
        self.reservations[inner.call_id] = guarded
        return guarded

    def refund_failed(self) -> set[str]:
        """Refund the fresh reservations of a batch that raised (no token was released); returns
        the call ids that now hold a ledger row and so need a new id to run again."""
        used: set[str] = set()
        for call_id, r in self.reservations.items():
            if r.inner.replayed:
                continue  # the first attempt's charge stays; a rerun may reuse the id
            used.add(call_id)
            if r.failed and not r.inner.done:
                try:
                    r.inner.release()
                except (LedgerError, ValueError) as exc:
                    logger.warning("call %s stays charged in full: %s", call_id, exc)
        return used


class EngineWorker:
    """One engine and one budget, loaded once (per replica)."""

    def __init__(self, config: ServeConfig, engine: Any = None, budget: Any = None) -> None:
        if config.torch_threads:
            import torch

            torch.set_num_threads(config.torch_threads)
        self.config = config
        self.engine = engine if engine is not None else build_engine(config)
        self.budget = budget if budget is not None else open_budget(config)
        self._attempt = 0
        self._lock = threading.Lock()

    def info(self) -> dict[str, Any]:
        return {"model": str(self.engine.model_name), "context_window": int(self.engine.context_window)}

    # -- batches ---------------------------------------------------------------------------
    def run_batch(self, calls: list[EngineCall]) -> list[CallOutcome]:
        """All calls in one decode loop; a failing call is taken out and the rest run again."""
        outcomes: dict[int, CallOutcome] = {}
        pending = dict(enumerate(calls))
        while pending:
            guard = _GuardedBudget(self.budget, batch=True)
            order = sorted(pending)
            try:
                results = self.engine.generate_batch([pending[i].item() for i in order], budget=guard)
            except Exception as exc:  # noqa: BLE001 - each call gets its own outcome below
                used = guard.refund_failed()
                culprit = next((i for i in order if pending[i].call_id == guard.refused_call), None)
                pending = {i: self._renamed(c, used) for i, c in pending.items()}
                if culprit is None and len(order) > 1:  # unknown culprit: run each call alone
                    for i in order:
                        outcomes[i] = self.run_batch([pending[i]])[0]
                    break
                culprit = order[0] if culprit is None else culprit
                outcomes[culprit] = CallOutcome(pending[culprit].call_id, error=classify(exc, pending[culprit].tenant))
                del pending[culprit]
                continue
            for i, result in zip(order, results):
                outcomes[i] = self._success(pending[i], result, guard)
            break
        return [outcomes[i] for i in range(len(calls))]

    def _renamed(self, call: EngineCall, used: set[str]) -> EngineCall:
        if call.call_id not in used:
            return call
        with self._lock:
            self._attempt += 1
            n = self._attempt
        base = call.call_id.split("~", 1)[0]
        return EngineCall(f"{base}~{n}", call.tenant, call.messages, call.settings)

    @staticmethod
    def _success(call: EngineCall, result: Any, guard: _GuardedBudget) -> CallOutcome:
        reservation = guard.reservations.get(call.call_id)
        replayed = bool(reservation is not None and reservation.inner.replayed)
        charged: Mapping[str, float] = reservation.inner.reserved if replayed else result.unit_rdp
        return CallOutcome(call.call_id, result=result, charged=dict(charged), replayed=replayed)

    # -- streams ---------------------------------------------------------------------------
    def stream(self, call: EngineCall) -> Iterator[dict[str, Any]]:
        """Events {"text": …}, then {"outcome": CallOutcome}. A stream abandoned after its first token
        is charged in full (the engine's rule: tokens were released)."""
        guard = _GuardedBudget(self.budget, batch=False)
        chunks = self.engine.stream(call.messages, budget=guard, call_id=call.call_id, **call.settings)
        try:
            for chunk in chunks:
                if chunk.result is None:
                    if chunk.text:
                        yield {"text": chunk.text}
                else:
                    yield {"outcome": self._success(call, chunk.result, guard)}
        except Exception as exc:  # noqa: BLE001 - reported to the client as an error event
            yield {"outcome": CallOutcome(call.call_id, error=classify(exc, call.tenant))}
        finally:
            chunks.close()  # an abandoned stream closes the engine's now, which charges it in full


async def iterate_in_thread(make: Callable[[], Iterator[T]]) -> AsyncIterator[T]:
    """Drive a blocking iterator in a worker thread. When the consumer stops early, the iterator is
    closed in its thread after its current item (so the engine's stream is closed, and charged)."""
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[tuple[int, Any]] = asyncio.Queue()
    stop = threading.Event()

    def put(kind: int, value: Any) -> None:
        try:
            loop.call_soon_threadsafe(queue.put_nowait, (kind, value))
        except RuntimeError:  # the loop is gone: nobody is listening any more
            stop.set()

    def pump() -> None:
        iterator = make()
        try:
            for item in iterator:
                if stop.is_set():
                    break
                put(0, item)
            put(1, None)
        except BaseException as exc:  # noqa: BLE001 - re-raised in the consumer
            put(2, exc)
        finally:
            close = getattr(iterator, "close", None)
            if close is not None:
                close()

    worker = loop.run_in_executor(None, pump)
    try:
        while True:
            kind, value = await queue.get()
            if kind == 0:
                yield value
            elif kind == 1:
                break
            else:
                raise value
    finally:
        stop.set()
        if worker.done():
            worker.result()
