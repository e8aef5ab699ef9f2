"""LlamaIndex accounting: query scopes, ε events and the budget event handler.

A *query scope* groups the LLM calls of one query (or chat turn) so that their ε can be
composed and so that the LLM knows which privacy units the query's retrieved nodes belong to
(see `dpfusion_chains.llms.llama_index` for why). Scopes open and close by themselves:

- a `BaseQueryEngine.query/aquery` or `BaseSynthesizer.synthesize/asynthesize` span opens one
  (a span handler on LlamaIndex's root dispatcher, installed once by `instrument()`);
- `PrivateNodePostprocessor` opens a *pending* scope when it runs outside any (chat engines call
  it outside a span), which the next synthesize span claims and closes (a query engine's query
  opens its own: it retrieves its own nodes). A retrieval that is never synthesized leaves its
  pending scope open in that context; wrap such code in `query_scope()`;
- `with query_scope():` opens one explicitly (manual pipelines).

On close the scope publishes its composed ε on the result's `metadata["dpfusion"]` (a live dict:
a streaming response's numbers grow as the stream is consumed) and dispatches a
`DPFusionQueryEvent`. Every call dispatches a `DPFusionCallEvent`. Events carry numbers and unit
ids only, never text. `PrivacyBudgetEventHandler` listens to both, deduplicated by call id.
"""

from __future__ import annotations

import inspect
import math
import threading
import uuid
from collections.abc import AsyncIterator, Iterable, Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar, Token
from typing import Any

from dpfusion_chains._optional import require

require("llama_index.core", "llamaindex", "the LlamaIndex event handlers")

from llama_index.core.instrumentation import get_dispatcher
from llama_index.core.instrumentation.event_handlers import BaseEventHandler
from llama_index.core.instrumentation.events import BaseEvent
from llama_index.core.instrumentation.span import SimpleSpan
from llama_index.core.instrumentation.span_handlers import BaseSpanHandler
from pydantic import Field, PrivateAttr

from dpfusion_chains.callbacks.llama_index_events import DPFusionCallEvent, DPFusionQueryEvent
from dpfusion_chains.callbacks.store import CallRecord, MemorySpendStore, OnLimit, SpendTracker, unit_epsilon

dispatcher = get_dispatcher(__name__)

_SCOPE: ContextVar[QueryScope | None] = ContextVar("dpfusion_llama_index_scope", default=None)
_SCOPE_METHODS = {"BaseQueryEngine": ("query", "aquery"), "BaseSynthesizer": ("synthesize", "asynthesize")}


class QueryScope:
    """The privacy units registered for one query and the calls it made. `summary` is a live dict
    of the composed cost: per unit, RDP summed over calls at one order and converted once."""

    def __init__(self, owner: str | None = None, parent: QueryScope | None = None) -> None:
        self.id = uuid.uuid4().hex
        self.owner = owner            # span id (or "explicit") that closes it; None: pending
        self.parent = parent
        self.units: set[str] = set()
        self.closed = False
        self.summary: dict[str, Any] = {}
        self._store = MemorySpendStore()
        self._with_private = 0
        self._fragment_calls = 0
        self._lock = threading.RLock()
        self._token: Token[QueryScope | None] | None = None
        self._refresh()

    def register(self, units: Iterable[str]) -> None:
        """Privacy units whose text was marked private for this query (by the postprocessor)."""
        with self._lock:
            self.units.update(units)
            self._refresh()

    def all_units(self) -> set[str]:
        """Units registered here or in an enclosing scope: whose text may be in this query's context."""
        with self._lock:
            own = set(self.units)
        return own | (self.parent.all_units() if self.parent is not None else set())

    def record(self, meta: Mapping[str, Any]) -> None:
        """Add one call's `metadata()` (deduplicated by call id); enclosing scopes get it too."""
        key = str(meta.get("call_id") or uuid.uuid4().hex)
        with self._lock:
            if self._store.add(CallRecord.from_metadata(key, meta)):
                self._with_private += int(meta.get("private_segments", 0) > 0)
                self._fragment_calls += int(meta.get("union_fragments", 0) > 0)
                self._refresh()
                late = self.closed
            else:
                late = False
        if late:
            self._emit()
        if self.parent is not None:
            self.parent.record(meta)

    def report(self) -> dict[str, Any]:
        """The composed cost now: numbers and unit ids only."""
        records = self._store.records()
        units = sorted({u for r in records for u in r.unit_rdp})
        alphas = sorted({r.alpha for r in records if r.unit_rdp})
        delta = max((r.delta for r in records), default=None)
        unit_eps = {u: unit_epsilon(records, u, delta) for u in units}
        unit_rdp = ({u: math.fsum(r.unit_rdp.get(u, 0.0) for r in records) for u in units}
                    if len(alphas) == 1 else {})
        accounting = "sound" if all(r.accounting == "sound" for r in records) else "paper"
        return {"query_id": self.id, "calls": len(records), "call_ids": [r.call_id or r.key for r in records],
                "tokens": sum(r.tokens for r in records), "units": units, "unit_rdp": unit_rdp,
                "unit_epsilon": unit_eps, "epsilon": max(unit_eps.values(), default=0.0), "delta": delta,
                "alpha": alphas[0] if len(alphas) == 1 else None, "accounting": accounting,
                "private_units": sorted(self.units), "calls_with_private": self._with_private,
                "fragment_calls": self._fragment_calls, "closed": self.closed}

    def close(self, result: Any = None) -> None:
        """Publish the cost on `result.metadata["dpfusion"]` (when it has metadata) and as an event."""
        with self._lock:
            if self.closed:
                return
            self.closed = True
            self._refresh()
            active = bool(self.units) or self.summary["calls"] > 0
        if active and result is not None and hasattr(result, "metadata"):
            if getattr(result, "metadata", None) is None:
                result.metadata = {}
            result.metadata["dpfusion"] = self.summary
        if active:
            self._emit()

    def _refresh(self) -> None:
        report = self.report()
        self.summary.clear()
        self.summary.update(report)

    def _emit(self) -> None:
        with self._lock:
            report = dict(self.summary)
        dispatcher.event(DPFusionQueryEvent(**report))

    def __repr__(self) -> str:
        return f"QueryScope({self.id[:8]}, units={len(self.units)}, calls={self.summary.get('calls')})"


def current_scope() -> QueryScope | None:
    """The query scope of this context, if any (a closed one while its response streams)."""
    return _SCOPE.get()


def _open_scope() -> QueryScope | None:
    scope = _SCOPE.get()
    return scope if scope is not None and not scope.closed else None


def pending_scope() -> QueryScope:
    """The open scope, or a new pending one that the next synthesize span claims and closes
    (the postprocessor runs outside any span in chat engines)."""
    scope = _open_scope()
    if scope is None:
        scope = QueryScope(owner=None)
        scope._token = _SCOPE.set(scope)
    return scope


@contextmanager
def query_scope() -> Iterator[QueryScope]:
    """Group manual LLM calls (and the nodes a PrivateNodePostprocessor marks) into one query.
    Nested inside another scope, its calls also count in the enclosing one."""
    instrument()
    scope = QueryScope(owner="explicit", parent=_open_scope())
    token = _SCOPE.set(scope)
    try:
        yield scope
    finally:
        scope.close()
        _reset(token)


def _reset(token: Token[QueryScope | None] | None) -> None:
    if token is None:
        return
    try:
        _SCOPE.reset(token)
    except ValueError:  # reset from another context (a callback thread): just clear ours
        _SCOPE.set(None)


class _ScopeSpanHandler(BaseSpanHandler[SimpleSpan]):
    """Opens a scope on query/synthesize spans and closes it, with the span's result, on exit."""

    _owned: dict[str, QueryScope] = PrivateAttr(default_factory=dict)
    _owned_lock: threading.Lock = PrivateAttr(default_factory=threading.Lock)

    @classmethod
    def class_name(cls) -> str:
        return "DPFusionScopeSpanHandler"

    def span_enter(self, id_: str, bound_args: Any, instance: Any = None, parent_id: str | None = None,
                   tags: dict[str, Any] | None = None, **kwargs: Any) -> None:
        kind = _scope_kind(id_, instance)
        if kind is None:
            return
        scope = _open_scope()
        if scope is not None and scope.owner is not None:
            return                     # nested in a scope someone else closes
        if scope is not None and kind == "BaseSynthesizer":
            scope.owner = id_          # claim the postprocessor's pending scope (chat engines)
        else:  # a query retrieves its own nodes: a pending scope left by an earlier retrieval is not its own
            scope = QueryScope(owner=id_)
            scope._token = _SCOPE.set(scope)
        with self._owned_lock:
            self._owned[id_] = scope

    def span_exit(self, id_: str, bound_args: Any, instance: Any = None, result: Any = None, **kwargs: Any) -> None:
        self._finish(id_, result)

    def span_drop(self, id_: str, bound_args: Any, instance: Any = None, err: BaseException | None = None,
                  **kwargs: Any) -> None:
        self._finish(id_, None)

    def _finish(self, id_: str, result: Any) -> None:
        with self._owned_lock:
            scope = self._owned.pop(id_, None)
        if scope is not None:
            _rescope_stream(result, scope)
            scope.close(result)
            _reset(scope._token)

    def new_span(self, *args: Any, **kwargs: Any) -> SimpleSpan | None:
        return None

    def prepare_to_exit_span(self, *args: Any, **kwargs: Any) -> SimpleSpan | None:
        return None

    def prepare_to_drop_span(self, *args: Any, **kwargs: Any) -> SimpleSpan | None:
        return None


def _rescope_stream(result: Any, scope: QueryScope) -> None:
    """A streaming response makes its last LLM call lazily, after the span returned: run each step
    of its generator inside the scope, so that call is attributed and counted like the others."""
    gen = getattr(result, "response_gen", None)
    if inspect.isgenerator(gen):
        result.response_gen = _scoped(gen, scope)
    elif inspect.isasyncgen(gen):
        result.response_gen = _ascoped(gen, scope)


def _scoped(gen: Iterator[Any], scope: QueryScope) -> Iterator[Any]:
    while True:
        token = _SCOPE.set(scope)
        try:
            item = next(gen)
        except StopIteration:
            return
        finally:
            _reset(token)
        yield item


async def _ascoped(gen: AsyncIterator[Any], scope: QueryScope) -> AsyncIterator[Any]:
    while True:
        token = _SCOPE.set(scope)
        try:
            item = await gen.__anext__()
        except StopAsyncIteration:
            return
        finally:
            _reset(token)
        yield item


def _scope_kind(id_: str, instance: Any) -> str | None:
    """"BaseQueryEngine" or "BaseSynthesizer" for spans that open a scope, else None."""
    if instance is None:
        return None
    method = id_.split("-", 1)[0].rsplit(".", 1)[-1]
    bases = {c.__name__ for c in type(instance).__mro__}
    return next((base for base, methods in _SCOPE_METHODS.items() if base in bases and method in methods), None)


_INSTALL_LOCK = threading.Lock()


def instrument() -> None:
    """Install the scope span handler on LlamaIndex's root dispatcher (once per process)."""
    root = get_dispatcher()
    with _INSTALL_LOCK:
        if not any(isinstance(h, _ScopeSpanHandler) for h in root.span_handlers):
            root.add_span_handler(_ScopeSpanHandler())


class PrivacyBudgetEventHandler(BaseEventHandler):
    """Observes DP-Fusion events: ε per call, per query and per privacy unit, deduplicated by call
    id. It only observes (the engine's budget is the record of spending); `limit`/`budget` make it
    warn when a unit's observed ε crosses its limit (on_limit="warn"). It cannot refuse a call:
    LlamaIndex's dispatcher swallows handler errors, so enforce limits with a PrivacyBudget.

        handler = PrivacyBudgetEventHandler().attach()      # on the root dispatcher
        ...; handler.spent("rec-7"), handler.queries[-1]["epsilon"], handler.totals()
    """

    limit: float | None = None
    on_limit: OnLimit = "warn"
    budget: Any = Field(default=None, exclude=True)
    _tracker: SpendTracker = PrivateAttr()
    _queries: dict[str, dict[str, Any]] = PrivateAttr(default_factory=dict)
    _lock: threading.Lock = PrivateAttr(default_factory=threading.Lock)

    def __init__(self, **data: Any) -> None:
        super().__init__(**data)
        if self.on_limit == "raise":
            raise ValueError("on_limit='raise' cannot work here: LlamaIndex's dispatcher swallows errors raised by "
                             "event handlers; pass a PrivacyBudget to DPFusionLlamaLLM(budget=...) to refuse calls")
        self._tracker = SpendTracker(budget=self.budget, limit=self.limit, on_limit=self.on_limit)
        instrument()

    @classmethod
    def class_name(cls) -> str:
        return "PrivacyBudgetEventHandler"

    def attach(self, target: Any = None) -> PrivacyBudgetEventHandler:
        """Add this handler to a dispatcher (default: the root one, which sees every event)."""
        target = target if target is not None else get_dispatcher()
        if self not in target.event_handlers:
            target.add_event_handler(self)
        return self

    def detach(self, target: Any = None) -> None:
        target = target if target is not None else get_dispatcher()
        target.event_handlers = [h for h in target.event_handlers if h is not self]

    def handle(self, event: BaseEvent, **kwargs: Any) -> None:
        if isinstance(event, DPFusionCallEvent):
            self._tracker.observe(event.call_id, event.model_dump())
        elif isinstance(event, DPFusionQueryEvent):
            with self._lock:  # the latest report of a query wins (streamed calls finish late)
                self._queries[event.query_id] = event.model_dump(exclude={"timestamp", "id_", "span_id", "tags",
                                                                          "class_name"})

    # -- reading -------------------------------------------------------------------------
    @property
    def calls(self) -> list[CallRecord]:
        return self._tracker.records()

    @property
    def queries(self) -> list[dict[str, Any]]:
        """One report per query, in the order queries first reported."""
        with self._lock:
            return [dict(q) for q in self._queries.values()]

    def query(self, query_id: str) -> dict[str, Any]:
        with self._lock:
            return dict(self._queries[query_id])

    def spent(self, unit: str) -> float:
        """ε observed for a unit over all recorded calls (RDP composed at one order)."""
        return self._tracker.unit_epsilon(unit)

    def units(self) -> list[str]:
        return self._tracker.units()

    def totals(self) -> dict[str, Any]:
        return {**self._tracker.totals(), "queries": len(self._queries)}
