"""condense_plus_context chat engine: every turn's answer is generated with its context private."""

from __future__ import annotations

import pytest

from dpfusion_chains.callbacks.leak_guard import LeakGuard
from dpfusion_chains.callbacks.llama_index import current_scope
from dpfusion_chains.core.accounting import rdp_to_epsilon
from dpfusion_chains.retrievers.llama_index import PrivateNodePostprocessor

UNITS = {"rec-0", "rec-1", "rec-2"}


def _engine(kit, make_llm, tag, **kw):
    cans = kit.canaries(tag)
    index = kit.make_index({f"rec-{i}": kit.record_text(i, c, repeat=6) for i, c in enumerate(cans)})
    chat = index.as_chat_engine(chat_mode="condense_plus_context", llm=make_llm(**kw), similarity_top_k=3,
                                node_postprocessors=[PrivateNodePostprocessor()])
    return cans, chat


def test_condense_plus_context_turns(kit, make_llm, collector, handler):
    cans, chat = _engine(kit, make_llm, "CHAT")
    first = chat.chat("When was the patient admitted?")
    second = chat.chat("And what record number was that?")
    assert current_scope() is None
    turns = handler.queries
    assert len(turns) == 2  # one scope per turn's answer
    for turn in turns:
        calls = collector.calls_of(turn["query_id"])
        assert len(calls) == turn["calls"] >= 1 and turn["calls_with_private"] == turn["calls"]
        assert set(turn["private_units"]) == UNITS and set(turn["units"]) <= UNITS
        for call in calls:
            assert call.private_segments >= 1 and call.epsilon > 0
        for unit in turn["units"]:
            rdp = sum(c.unit_rdp.get(unit, 0.0) for c in calls)
            assert turn["unit_epsilon"][unit] == pytest.approx(rdp_to_epsilon(rdp, 2.0, 1e-5))
    # The second turn condensed history + question into a standalone question first: that call saw
    # only public text (the user's messages and an earlier DP answer) and cost nothing.
    outside = [c for c in collector.calls if c.query_id is None]
    assert len(outside) == 1 and outside[0].private_segments == 0 and outside[0].epsilon == 0.0
    guard = LeakGuard(cans, mode="record", markers=True)
    guard.check("answers", [first.response, second.response, [m.content for m in chat.chat_history]])
    guard.check("events", [e.model_dump() for e in collector.calls + collector.queries])
    guard.check("handler", handler.queries)
    guard.assert_clean()


def test_streaming_chat_turn(kit, make_llm, collector, handler):
    cans, chat = _engine(kit, make_llm, "SCHT")
    streamed = chat.stream_chat("When was the patient admitted?")
    text = "".join(streamed.response_gen)
    turn = handler.queries[-1]
    calls = collector.calls_of(turn["query_id"])
    assert calls and all(c.private_segments >= 1 for c in calls) and turn["calls"] == len(calls)
    assert not any(c in text for c in cans)


def test_user_messages_private_with_user_unit(kit, make_llm, collector):
    cans, chat = _engine(kit, make_llm, "USER", user_unit="user-1")
    chat.chat("I am Ottoline. When was the patient admitted?")
    chat.chat("And my record?")
    condense = [c for c in collector.calls if c.query_id is None]
    assert len(condense) == 1 and condense[0].units == ["user-1"]  # the history is the user's
    answers = [c for c in collector.calls if c.query_id is not None]
    assert all("user-1" in c.units for c in answers)
