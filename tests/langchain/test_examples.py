"""The LangChain examples' chains on the tiny engine, with a deterministic fake embedding (fast).
`make example-langchain-rag` / `make example-langchain-agent` run them on SmolLM2 with MiniLM."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest
from langchain_core.embeddings import DeterministicFakeEmbedding

from dpfusion_chains import PrivacyBudget
from dpfusion_chains.callbacks import LeakGuardCallbackHandler, PrivacyBudgetCallbackHandler
from dpfusion_chains.data import load_records
from dpfusion_chains.llms import ChatDPFusion

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "examples"))

import langchain_agent  # noqa: E402
import langchain_rag  # noqa: E402

RECORDS = load_records()[:6]


@pytest.fixture(scope="module")
def retriever() -> Any:
    return langchain_rag.build_retriever(DeterministicFakeEmbedding(size=32), langchain_rag.record_documents(RECORDS))


def test_rag_example_chain(engine: Any, retriever: Any) -> None:
    budget = PrivacyBudget(epsilon=100.0, delta=1e-5, alpha=8.0, ledger="memory://")
    guard = LeakGuardCallbackHandler([r["text"][:40] for r in RECORDS], mode="record")
    llm = ChatDPFusion(engine=engine, epsilon=4.0, max_new_tokens=3, seed=0, budget=budget, trace_public_only=True,
                       callbacks=[guard])
    handler = PrivacyBudgetCallbackHandler(budget=budget)
    questions = langchain_rag.demo_questions(2)
    answers = langchain_rag.run(llm, retriever, questions, handler)
    assert len(answers) == 2 and handler.calls == 2
    for msg in answers:
        meta = msg.response_metadata["dpfusion"]
        assert len([u for u in meta["units"] if u.startswith("rec-")]) == 2  # k=2 records charged
        assert 0 < meta["epsilon"] <= 4.0 + 1e-9
    guard.assert_clean()
    assert len(questions[0]) == 3 and questions[0][1].startswith("rec-")


def test_agent_example_routes_and_charges_records(engine: Any, retriever: Any) -> None:
    budget = PrivacyBudget(epsilon=8.0, delta=1e-5, alpha=8.0, ledger="memory://", on_exhausted="redact")
    llm = ChatDPFusion(engine=engine, epsilon=4.0, max_new_tokens=3, seed=0, budget=budget)
    tools = langchain_agent.make_tools(retriever, {r["id"]: r for r in RECORDS})
    agent = langchain_agent.build_agent(llm, tools, user="alice")
    assert langchain_agent.plan("What is in rec-002?").tool_calls[0]["name"] == "lookup_record"
    assert langchain_agent.plan("any diagnosis?").tool_calls[0]["name"] == "search_records"
    metas = [agent.invoke("What is in rec-002?").response_metadata["dpfusion"] for _ in range(3)]
    assert set(metas[0]["units"]) == {"rec-002", "alice"}
    # The record's budget runs out: later answers see it redacted and spend nothing on it.
    assert "rec-002" in metas[-1]["redacted_units"]
    assert budget.spent("rec-002") <= 8.0
    searched = agent.invoke("anything about a payment?").response_metadata["dpfusion"]
    assert any(u.startswith("rec-") for u in searched["units"] + searched["redacted_units"])
