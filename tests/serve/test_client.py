"""RemoteEngine: the engine interface over the endpoint, and the adapters pointed at it."""

from __future__ import annotations

import math

import pytest

from dpfusion_chains.budget import BudgetExhaustedError
from dpfusion_chains.core.spans import private
from dpfusion_chains.serve.client import RemoteEngine, RemoteError, RemoteRequestError, wire_messages
from dpfusion_chains.testing import FixedDetector


def _messages(secret: str, unit: str = "rec-7"):
    return [{"role": "system", "content": "Answer from the record."},
            {"role": "user", "content": ["Record: ", private(secret, unit=unit), "\nWhen?"]}]


@pytest.fixture
def remote(server, h):
    client, budget, _ = server
    return RemoteEngine(api_key=h.ACME_KEY, client=client), budget


def test_wire_format_marks_private_parts():
    wire = wire_messages([{"role": "user", "content": ["a ", private("b", unit="u", group="g", detector="regex")]},
                          {"role": "user", "content": "c", "private": True, "unit": "v"}])
    assert wire[0]["content"] == [{"type": "text", "text": "a "},
                                  {"type": "text", "text": "b", "private": {"unit": "u", "group": "g", "detector": "regex"}}]
    assert wire[1]["content"] == [{"type": "text", "text": "c", "private": {"unit": "v"}}]


def test_generate_returns_a_result_with_the_servers_epsilon(remote, h):
    engine, budget = remote
    result = engine.generate(_messages(h.SECRET), epsilon=3.0, max_new_tokens=4, seed=3)
    assert result.units == ["rec-7"] and 0 < result.epsilon <= 3.0 + 1e-9 and 1 <= result.tokens <= 4
    assert math.isclose(budget.spent_rdp("acme:rec-7"), result.unit_rdp["rec-7"], rel_tol=1e-12)
    assert result.call_id.startswith("srv-") and result.model == "tiny-random-llama"
    assert engine.model_name == "tiny-random-llama" and engine.context_window == 2048
    assert math.isclose(engine.budget_info("rec-7")["epsilon_spent"], result.epsilon, rel_tol=1e-9)


def test_stream_yields_text_then_the_result(remote, h):
    engine, _ = remote
    chunks = list(engine.stream(_messages(h.SECRET), epsilon=3.0, max_new_tokens=5))
    assert chunks[-1].result is not None and all(c.result is None for c in chunks[:-1])
    assert "".join(c.text for c in chunks[:-1]) == chunks[-1].result.text
    assert chunks[-1].result.epsilon > 0


def test_generate_batch_sends_concurrent_requests(remote, h):
    engine, budget = remote
    items = [_messages(h.SECRET, unit=f"u{i}") for i in range(3)]
    results = engine.generate_batch(items, epsilon=3.0, max_new_tokens=3)
    assert [r.units for r in results] == [["u0"], ["u1"], ["u2"]]
    assert sorted(budget.units()) == ["acme:u0", "acme:u1", "acme:u2"]


def test_errors_map_to_the_librarys_types(make_server, h):
    client, budget, _ = make_server(budget_epsilon=4.0)
    engine = RemoteEngine(api_key=h.ACME_KEY, client=client)
    with pytest.raises(TypeError, match="own ledger"):
        engine.generate(_messages(h.SECRET), budget=budget)
    with pytest.raises(TypeError, match="detector"):
        engine.generate(_messages(h.SECRET), detector=FixedDetector({"Jane": "PERSON"}))
    with pytest.raises(ValueError, match="temperature must be > 0"):
        engine.generate(_messages(h.SECRET), temperature=0.0)  # refused locally, before any request
    with pytest.raises(RemoteRequestError, match="cannot be met"):
        engine.generate(_messages(h.SECRET), epsilon=0.5)
    engine.generate(_messages(h.SECRET), epsilon=3.0)
    with pytest.raises(BudgetExhaustedError, match="rec-7"):
        engine.generate(_messages(h.SECRET), epsilon=3.0)
    with pytest.raises(RemoteError) as info:
        RemoteEngine(api_key="wrong-key-0123456789", client=client).generate(_messages(h.SECRET))
    assert info.value.status == 401
    assert len(budget.entries()) == 1


def test_langchain_chat_model_runs_against_the_endpoint(remote, h):
    pytest.importorskip("langchain_core")
    from langchain_core.messages import HumanMessage, SystemMessage

    from dpfusion_chains.llms import ChatDPFusion

    engine, budget = remote
    llm = ChatDPFusion(engine=engine, unit="rec-7", epsilon=3.0, max_new_tokens=4)
    message = llm.invoke([SystemMessage("Answer briefly."), HumanMessage(h.SECRET)])
    meta = message.response_metadata["dpfusion"]
    assert meta["units"] == ["rec-7"] and meta["epsilon"] > 0
    assert math.isclose(budget.spent("acme:rec-7"), meta["epsilon"], rel_tol=1e-9)
