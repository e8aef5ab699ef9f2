"""LangChain callback handlers: ε accounting per call and per privacy unit, and a leak guard.

    handler = PrivacyBudgetCallbackHandler(limit=20.0)            # or budget=PrivacyBudget(...)
    chain.invoke(question, config={"callbacks": [handler]})
    handler.total_epsilon, handler.unit_epsilon("rec-7"), handler.totals()

The budget handler only observes what the chat model / LLM reported (``response_metadata`` or
``generation_info["dpfusion"]``); spending is enforced by the engine's `PrivacyBudget`.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any
from uuid import UUID

from dpfusion_chains._optional import require

require("langchain_core", "langchain", "the LangChain callback handlers")

from langchain_core.callbacks import BaseCallbackHandler
from langchain_core.outputs import ChatGeneration, LLMResult

from dpfusion_chains.callbacks.leak_guard import LeakGuard
from dpfusion_chains.callbacks.store import CallRecord, OnLimit, SpendStore, SpendTracker

__all__ = ["LeakGuardCallbackHandler", "PrivacyBudgetCallbackHandler", "SPEND_EVENT"]

logger = logging.getLogger(__name__)
SPEND_EVENT = "dpfusion_spend"


def dpfusion_metadata(generation: Any) -> dict[str, Any] | None:
    """The ``dpfusion`` metadata of a chat or text generation, if it has any."""
    if isinstance(generation, ChatGeneration):
        meta = generation.message.response_metadata.get("dpfusion")
        if isinstance(meta, dict):
            return meta
    info = getattr(generation, "generation_info", None) or {}
    meta = info.get("dpfusion")
    return meta if isinstance(meta, dict) else None


class PrivacyBudgetCallbackHandler(BaseCallbackHandler):
    """Records the ε of every DP-Fusion call it sees, per call and per privacy unit.

    Deduplicated by run id (and by the engine's call id): a replayed ``on_llm_end`` is counted
    once. ``limit`` (ε per unit) or ``budget`` (a PrivacyBudget, read only) sets the limit;
    ``on_limit`` "warn" warns once per unit, "raise" raises PrivacyLimitExceededError from the
    callback (LangChain re-raises it: the run fails). With ``emit_events`` a custom event
    ``dpfusion_spend`` (numbers and unit ids) is dispatched under the parent run, when there is one.
    """

    def __init__(self, *, budget: Any = None, limit: float | None = None, on_limit: OnLimit = "warn",
                 store: SpendStore | None = None, emit_events: bool = True) -> None:
        super().__init__()
        self.tracker = SpendTracker(store, budget=budget, limit=limit, on_limit=on_limit)
        self.emit_events = emit_events
        self.raise_error = on_limit == "raise"

    # -- LangChain events -------------------------------------------------------------------------
    def on_llm_end(self, response: LLMResult, *, run_id: UUID, parent_run_id: UUID | None = None,
                   **kwargs: Any) -> None:
        for i, generations in enumerate(response.generations):
            for j, generation in enumerate(generations):
                meta = dpfusion_metadata(generation)
                if meta is None:
                    continue
                record = self.tracker.observe(f"{run_id}:{i}:{j}", meta)
                if record is not None and self.emit_events and parent_run_id is not None:
                    self._emit(record, run_id)

    def _emit(self, record: CallRecord, run_id: UUID) -> None:
        from langchain_core.callbacks.manager import dispatch_custom_event

        data = {"run_id": str(run_id), "epsilon": record.epsilon, "delta": record.delta, "alpha": record.alpha,
                "tokens": record.tokens, "unit_rdp": dict(record.unit_rdp), "cached": record.cached}
        try:
            dispatch_custom_event(SPEND_EVENT, data)
        except RuntimeError as exc:  # no parent run in this context (e.g. an async run's worker thread)
            logger.debug("dpfusion spend event not dispatched: %s", exc)

    # -- reading ----------------------------------------------------------------------------------
    @property
    def records(self) -> list[CallRecord]:
        return self.tracker.records()

    @property
    def calls(self) -> int:
        return self.tracker.calls

    @property
    def total_epsilon(self) -> float:
        """Sum of the per-call ε observed."""
        return self.tracker.total_epsilon

    def unit_epsilon(self, unit: str) -> float:
        """ε of one privacy unit over the observed calls (RDP composed at one order)."""
        return self.tracker.unit_epsilon(unit)

    def units(self) -> list[str]:
        return self.tracker.units()

    def totals(self) -> dict[str, Any]:
        return self.tracker.totals()


_EVENTS: Sequence[str] = (
    "on_llm_start", "on_chat_model_start", "on_llm_new_token", "on_llm_end", "on_llm_error",
    "on_chain_start", "on_chain_end", "on_chain_error", "on_tool_start", "on_tool_end", "on_tool_error",
    "on_retriever_start", "on_retriever_end", "on_retriever_error", "on_agent_action", "on_agent_finish",
    "on_text", "on_retry", "on_custom_event",
)


class LeakGuardCallbackHandler(BaseCallbackHandler):
    """Fails when a registered canary (private text) appears in anything a callback receives.

    mode="raise" (default) raises CanaryLeakError from the callback — LangChain re-raises it, so
    the run fails; mode="record" keeps the leaks in ``leaks`` (call ``assert_clean()``). With
    ``markers=True`` text still carrying a private marker counts as a leak too. Attach it where
    you want the guarantee: on a ``ChatDPFusion(trace_public_only=True)`` the chat model's own
    events carry only public copies, while a retriever's events carry its (private) documents.
    """

    def __init__(self, canaries: Sequence[str] = (), *, mode: str = "raise", markers: bool = False) -> None:
        super().__init__()
        self.guard = LeakGuard(canaries, mode=mode, markers=markers)  # type: ignore[arg-type]
        self.raise_error = mode == "raise"

    @property
    def leaks(self) -> list[Any]:
        return self.guard.leaks

    @property
    def events(self) -> int:
        return self.guard.events

    def assert_clean(self) -> None:
        self.guard.assert_clean()

    def _check(self, event: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        self.guard.check(event, {"args": args, "kwargs": kwargs})


def _scanner(event: str) -> Any:
    def handler(self: LeakGuardCallbackHandler, *args: Any, **kwargs: Any) -> None:
        self._check(event, args, kwargs)

    handler.__name__ = event
    handler.__doc__ = f"Scan the {event} payload for canaries."
    return handler


# Every event LangChain can deliver is scanned the same way: define them from one list.
for _event in _EVENTS:
    setattr(LeakGuardCallbackHandler, _event, _scanner(_event))
