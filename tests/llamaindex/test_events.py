"""Events, the budget event handler and query scopes."""

from __future__ import annotations

import contextvars
import math

import pytest
from llama_index.core import get_response_synthesizer
from llama_index.core.schema import NodeWithScore, TextNode

from dpfusion_chains.callbacks.leak_guard import LeakGuard
from dpfusion_chains.callbacks.llama_index import (DPFusionCallEvent, DPFusionQueryEvent, PrivacyBudgetEventHandler,
                                                   current_scope, dispatcher, query_scope)
from dpfusion_chains.callbacks.store import PrivacyLimitWarning
from dpfusion_chains.core.accounting import rdp_to_epsilon
from dpfusion_chains.core.markers import mark
from dpfusion_chains.retrievers.llama_index import PrivateNodePostprocessor

CANARY = "Ottoline Brisbane-Kahale"


def _call(make_llm, unit="rec-1"):
    return make_llm().complete("Record: " + mark(f"{CANARY} was admitted.", unit=unit) + " When?")


def test_handler_records_each_call_once(make_llm, handler, collector):
    meta = _call(make_llm).additional_kwargs["dpfusion"]
    event = collector.calls[-1]
    dispatcher.event(event)  # a replayed event is not counted twice
    dispatcher.event(DPFusionCallEvent.from_metadata(meta))
    assert len(handler.calls) == 1 and handler.calls[0].call_id == meta["call_id"]
    assert handler.spent("rec-1") == pytest.approx(meta["epsilon"])
    _call(make_llm)
    rdp = math.fsum(r.unit_rdp["rec-1"] for r in handler.calls)
    assert handler.spent("rec-1") == pytest.approx(rdp_to_epsilon(rdp, 2.0, 1e-5))  # composed, not summed
    assert handler.spent("rec-1") < 2 * meta["epsilon"]
    assert handler.totals()["calls"] == 2 and handler.units() == ["rec-1"]


def test_events_carry_numbers_and_unit_ids_only(make_llm, handler, collector):
    with query_scope():
        _call(make_llm)
    fields = set(DPFusionCallEvent.model_fields) | set(DPFusionQueryEvent.model_fields)
    assert not {"text", "prompt", "messages", "content", "public_prompt"} & fields
    guard = LeakGuard([CANARY], mode="record", markers=True)
    guard.check("events", [e.model_dump() for e in collector.calls + collector.queries])
    guard.check("handler", [handler.queries, [vars(r) for r in handler.calls]])
    guard.assert_clean()
    assert len(collector.queries) == 1 and collector.queries[0].calls == 1


def test_handler_warns_when_a_unit_crosses_its_limit(make_llm):
    h = PrivacyBudgetEventHandler(limit=1.0).attach()
    try:
        with pytest.warns(PrivacyLimitWarning, match="rec-1"):
            _call(make_llm)
    finally:
        h.detach()


def test_nested_scopes_compose_into_the_outer_one(make_llm):
    with query_scope() as outer:
        _call(make_llm, "a")
        with query_scope() as inner:
            assert current_scope() is inner
            _call(make_llm, "b")
        assert current_scope() is outer
    assert current_scope() is None
    assert inner.summary["units"] == ["b"] and inner.summary["calls"] == 1
    assert outer.summary["units"] == ["a", "b"] and outer.summary["calls"] == 2 and outer.summary["closed"]


def test_postprocessor_outside_a_query_opens_a_scope_the_synthesizer_closes(kit, make_llm, collector):
    # What chat engines do: postprocess outside any span, then synthesize.
    nodes = [NodeWithScore(node=TextNode(text=kit.record_text(i, CANARY, repeat=2), id_=f"n{i}",
                                         metadata={"patient": f"p-{i}"}), score=1.0) for i in range(2)]
    marked = PrivateNodePostprocessor(unit_key="patient").postprocess_nodes(nodes)
    pending = current_scope()
    assert pending is not None and pending.units == {"p-0", "p-1"} and pending.owner is None
    response = get_response_synthesizer(llm=make_llm()).synthesize("When was the patient admitted?", marked)
    assert current_scope() is None and pending.closed
    report = response.metadata["dpfusion"]
    assert report["query_id"] == pending.id and set(report["units"]) == {"p-0", "p-1"}
    assert [c.query_id for c in collector.calls] == [pending.id] * report["calls"]


def test_handler_does_not_promise_what_the_dispatcher_cannot_do():
    with pytest.raises(ValueError, match="swallows"):
        PrivacyBudgetEventHandler(on_limit="raise")


def test_a_query_does_not_adopt_a_pending_scope_left_by_another_retrieval(kit, make_llm):
    def body():  # in a copy of the context, so that the pending scope does not outlive the test
        node = NodeWithScore(node=TextNode(text="Left over from a retrieval.", id_="s0"), score=1.0)
        PrivateNodePostprocessor(default_unit="stale").postprocess_nodes([node])
        stale = current_scope()
        index = kit.make_index({"rec-0": kit.record_text(0, CANARY, repeat=2)})
        engine = index.as_query_engine(llm=make_llm(), node_postprocessors=[PrivateNodePostprocessor()])
        report = engine.query("When was the patient admitted?").metadata["dpfusion"]
        assert report["query_id"] != stale.id and report["private_units"] == ["rec-0"]
        assert report["units"] == ["rec-0"] and report["calls"] == 1
        assert current_scope() is stale and stale.summary["calls"] == 0 and stale.owner is None

    contextvars.copy_context().run(body)
