"""PrivacyBudgetCallbackHandler, the framework-free spend store and the leak guard."""

from __future__ import annotations

import uuid
import warnings
from typing import Any

import pytest
from langchain_core.callbacks import BaseCallbackHandler
from langchain_core.documents import Document
from langchain_core.messages import AIMessage
from langchain_core.outputs import ChatGeneration, Generation, LLMResult
from langchain_core.prompts import ChatPromptTemplate

from dpfusion_chains import PrivacyBudget
from dpfusion_chains.callbacks import (CanaryLeakError, LeakGuard, LeakGuardCallbackHandler, MemorySpendStore,
                                       PrivacyBudgetCallbackHandler, PrivacyLimitExceededError, SpendTracker)
from dpfusion_chains.callbacks.store import CallRecord, PrivacyLimitWarning
from dpfusion_chains.core.accounting import rdp_to_epsilon
from dpfusion_chains.core.markers import mark
from dpfusion_chains.llms import ChatDPFusion

from .conftest import CANARIES


def meta(rdp: float, units: tuple[str, ...] = ("u",), alpha: float = 2.0, call_id: str | None = None) -> dict[str, Any]:
    return {"epsilon": rdp_to_epsilon(rdp, alpha, 1e-5), "delta": 1e-5, "alpha": alpha, "rdp": rdp, "tokens": 3,
            "unit_rdp": {u: rdp for u in units}, "accounting": "sound", "call_id": call_id or uuid.uuid4().hex}


def chat_result(m: dict[str, Any]) -> LLMResult:
    return LLMResult(generations=[[ChatGeneration(message=AIMessage("x", response_metadata={"dpfusion": m}))]])


def test_dedup_by_run_id_and_call_id() -> None:
    handler = PrivacyBudgetCallbackHandler()
    run = uuid.uuid4()
    first = meta(0.5)
    handler.on_llm_end(chat_result(first), run_id=run)
    handler.on_llm_end(chat_result(first), run_id=run)               # replayed callback
    handler.on_llm_end(chat_result(first), run_id=uuid.uuid4())      # same call seen under another run
    handler.on_llm_end(chat_result(meta(0.25)), run_id=uuid.uuid4())
    assert handler.calls == 2
    assert handler.total_epsilon == pytest.approx(first["epsilon"] + rdp_to_epsilon(0.25, 2.0, 1e-5))
    assert handler.unit_epsilon("u") == pytest.approx(rdp_to_epsilon(0.75, 2.0, 1e-5))  # RDP composed once


def test_text_llm_generation_info_is_read() -> None:
    handler = PrivacyBudgetCallbackHandler()
    result = LLMResult(generations=[[Generation(text="x", generation_info={"dpfusion": meta(0.5, ("d",))})]])
    handler.on_llm_end(result, run_id=uuid.uuid4())
    assert handler.units() == ["d"]
    handler.on_llm_end(LLMResult(generations=[[Generation(text="no dp here")]]), run_id=uuid.uuid4())
    assert handler.calls == 1


def test_units_at_different_orders_are_summed_in_epsilon() -> None:
    tracker = SpendTracker()
    tracker.observe("a", meta(0.5, alpha=2.0))
    tracker.observe("b", meta(0.5, alpha=4.0))
    expected = rdp_to_epsilon(0.5, 2.0, 1e-5) + rdp_to_epsilon(0.5, 4.0, 1e-5)
    assert tracker.unit_epsilon("u") == pytest.approx(expected)
    assert tracker.unit_rdp("u") == {2.0: 0.5, 4.0: 0.5}


def test_limit_warns_once_when_crossed() -> None:
    limit = rdp_to_epsilon(1.0, 2.0, 1e-5)
    handler = PrivacyBudgetCallbackHandler(limit=limit)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for _ in range(4):
            handler.on_llm_end(chat_result(meta(0.4)), run_id=uuid.uuid4())
    crossed = [w for w in caught if issubclass(w.category, PrivacyLimitWarning)]
    assert len(crossed) == 1 and "'u'" in str(crossed[0].message)


def test_limit_raise_fails_the_run(engine: Any) -> None:
    handler = PrivacyBudgetCallbackHandler(limit=1.0, on_limit="raise")
    llm = ChatDPFusion(engine=engine, max_new_tokens=2, seed=0)
    with pytest.raises(PrivacyLimitExceededError, match="'user'"):
        llm.invoke("hello", config={"callbacks": [handler]})
    assert handler.calls == 1  # the spend is still recorded


def test_budget_limits_are_read_not_spent() -> None:
    budget = PrivacyBudget(epsilon=11.0, delta=1e-5, alpha=2.0, ledger="memory://", per_unit={"vip": 10.5})
    tracker = SpendTracker(budget=budget, on_limit="raise")
    tracker.observe("a", meta(0.1, ("u",)))
    with pytest.raises(PrivacyLimitExceededError, match="vip"):
        tracker.observe("b", meta(0.5, ("vip",)))
    assert budget.spent("u") == 0.0 and budget.spent("vip") == 0.0


def test_pluggable_store() -> None:
    class ListStore(MemorySpendStore):
        def __init__(self) -> None:
            super().__init__()
            self.added: list[CallRecord] = []

        def add(self, record: CallRecord) -> bool:
            ok = super().add(record)
            if ok:
                self.added.append(record)
            return ok

    store = ListStore()
    handler = PrivacyBudgetCallbackHandler(store=store)
    handler.on_llm_end(chat_result(meta(0.5, ("a", "b"))), run_id=uuid.uuid4())
    assert [r.units for r in store.added] == [["a", "b"]]
    assert handler.totals()["units"].keys() == {"a", "b"}


class EventCollector(BaseCallbackHandler):
    def __init__(self) -> None:
        self.events: list[tuple[str, dict[str, Any]]] = []

    def on_custom_event(self, name: str, data: Any, **kwargs: Any) -> None:
        self.events.append((name, data))


def test_custom_event_only_under_a_parent_run(engine: Any) -> None:
    handler, collector = PrivacyBudgetCallbackHandler(), EventCollector()
    llm = ChatDPFusion(engine=engine, max_new_tokens=2, seed=0)
    llm.invoke("hello", config={"callbacks": [handler, collector]})  # no parent run: no event, no error
    assert collector.events == [] and handler.calls == 1
    chain = ChatPromptTemplate.from_messages([("human", "{q}")]) | llm
    chain.invoke({"q": "hello"}, config={"callbacks": [handler, collector]})
    assert [name for name, _ in collector.events] == ["dpfusion_spend"]
    assert collector.events[0][1]["epsilon"] == pytest.approx(handler.records[-1].epsilon)


def test_find_canaries_everywhere() -> None:
    guard = LeakGuard(CANARIES, mode="record", markers=True)
    try:
        try:
            raise KeyError(f"lookup {CANARIES[1]}")
        except KeyError as inner:
            raise RuntimeError("wrapped") from inner
    except RuntimeError as exc:
        error = exc
    payload = {"docs": [Document(page_content=f"a {CANARIES[0]} b")], "error": error,
               "nested": ({"k": [f"x{CANARIES[0]}"]},), "marked": mark("anything", unit="u"), "clean": "nothing"}
    leaks = guard.check("on_test", payload)
    assert {(leak.canary, leak.path.split("[")[1].split("]")[0]) for leak in leaks} == {
        (0, "'docs'"), (1, "'error'"), (0, "'nested'"), (-1, "'marked'")}
    assert all(c not in str(leak) for leak in leaks for c in CANARIES)
    with pytest.raises(CanaryLeakError):
        guard.assert_clean()


def test_leak_guard_handler_raises_in_raise_mode(engine: Any) -> None:
    guard = LeakGuardCallbackHandler([CANARIES[0]])
    llm = ChatDPFusion(engine=engine, max_new_tokens=2, seed=0, callbacks=[guard])
    with pytest.raises(CanaryLeakError):
        llm.invoke(f"my name is {CANARIES[0]}")
    public = ChatDPFusion(engine=engine, max_new_tokens=2, seed=0, callbacks=[guard], trace_public_only=True)
    public.invoke(f"my name is {CANARIES[0]}")  # user messages are private by role: traced as [PRIVATE]
    with pytest.raises(ValueError, match="canary"):
        LeakGuard([])
