"""ChatDPFusion on the tiny engine: construction, per-call settings, metadata, streaming, batch, cache."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from typing import Any

import pytest
from langchain_core.caches import InMemoryCache
from langchain_core.messages import AIMessageChunk, HumanMessage, SystemMessage
from langchain_core.prompts import ChatPromptTemplate

from dpfusion_chains import PrivacyBudget, private
from dpfusion_chains.llms import ChatDPFusion

QUESTION = [SystemMessage("Answer briefly."), HumanMessage("What is in the record?")]


class CountingEngine:
    """Wraps an engine and counts how requests reach it (one decode loop per generate_batch)."""

    def __init__(self, engine: Any) -> None:
        self._engine = engine
        self.batches: list[int] = []
        self.singles = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self._engine, name)

    def generate(self, *args: Any, **kwargs: Any) -> Any:
        self.singles += 1
        return self._engine.generate(*args, **kwargs)

    def generate_batch(self, batch: Any, **kwargs: Any) -> Any:
        self.batches.append(len(batch))
        return self._engine.generate_batch(batch, **kwargs)


def test_llms_package_imports_no_framework() -> None:
    code = ("import sys, dpfusion_chains.llms, dpfusion_chains.retrievers, dpfusion_chains.callbacks; "
            "bad = [m for m in ('langchain_core', 'llama_index', 'torch') if m in sys.modules]; "
            "print(bad); sys.exit(1 if bad else 0)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr


def test_model_is_loaded_lazily() -> None:
    llm = ChatDPFusion(model="some/model-id", epsilon=4.0)
    assert llm._engine is None and llm.engine is None
    assert llm._get_ls_params()["ls_model_name"] == "some/model-id"
    assert llm._llm_type == "dpfusion-chat"
    assert llm._identifying_params["epsilon"] == 4.0


def test_invoke_reports_epsilon_and_usage(engine: Any) -> None:
    llm = ChatDPFusion(engine=engine, max_new_tokens=5, seed=0)
    msg = llm.invoke(QUESTION)
    meta = msg.response_metadata["dpfusion"]
    assert meta["tokens"] == 5 and meta["epsilon"] > 0 and meta["units"] == ["user"]
    assert msg.usage_metadata["output_tokens"] == 5
    assert msg.usage_metadata["total_tokens"] == msg.usage_metadata["input_tokens"] + 5
    assert msg.response_metadata["finish_reason"] == "length"


def test_per_call_overrides(engine: Any) -> None:
    llm = ChatDPFusion(engine=engine, max_new_tokens=4, seed=0, epsilon=6.0)
    assert llm.invoke(QUESTION).response_metadata["dpfusion"]["epsilon"] <= 6.0 + 1e-9
    assert llm.invoke(QUESTION, epsilon=2.0).response_metadata["dpfusion"]["epsilon"] <= 2.0 + 1e-9
    bound = llm.bind(epsilon=None, beta=0.0).invoke(QUESTION)  # None clears the field's epsilon
    assert bound.response_metadata["dpfusion"]["epsilon"] == 0.0
    assert llm.invoke(QUESTION, max_tokens=2).response_metadata["dpfusion"]["tokens"] == 2
    with pytest.raises(TypeError, match="unknown DP-Fusion call argument"):
        llm.invoke(QUESTION, epsilom=1.0)
    with pytest.raises(ValueError, match="serves one local model"):
        llm.invoke(QUESTION, model="gpt-4o")


def test_unknown_constructor_argument_is_refused(engine: Any) -> None:
    with pytest.raises(ValueError, match="epsiln"):
        ChatDPFusion(engine=engine, epsiln=1.0)


def test_stream_last_chunk_carries_metadata_once(engine: Any) -> None:
    llm = ChatDPFusion(engine=engine, max_new_tokens=5, seed=0)
    chunks = list(llm.stream(QUESTION))
    assert all(isinstance(c, AIMessageChunk) for c in chunks)
    with_meta = [c for c in chunks if "dpfusion" in c.response_metadata]
    assert len(with_meta) == 1 and with_meta[0] is chunks[-1]
    merged = chunks[0]
    for c in chunks[1:]:
        merged = merged + c
    assert merged.response_metadata["dpfusion"]["tokens"] == 5
    assert merged.usage_metadata["output_tokens"] == 5  # counted once, not per chunk
    assert merged.content == llm.invoke(QUESTION).content  # same seed, same text


def test_async_invoke_and_stream(engine: Any) -> None:
    llm = ChatDPFusion(engine=engine, max_new_tokens=4, seed=0)

    async def run() -> tuple[Any, list[Any]]:
        return await llm.ainvoke(QUESTION), [c async for c in llm.astream(QUESTION)]

    msg, chunks = asyncio.run(run())
    assert msg.response_metadata["dpfusion"]["tokens"] == 4
    assert "".join(c.content for c in chunks) == msg.content
    assert chunks[-1].response_metadata["dpfusion"]["tokens"] == 4


def test_batch_shares_one_decode_loop(engine: Any) -> None:
    counting = CountingEngine(engine)
    llm = ChatDPFusion(engine=counting, max_new_tokens=3, seed=0)
    out = llm.batch(["first question", "second question", "third question"])
    assert counting.batches == [3] and counting.singles == 0
    assert [m.response_metadata["dpfusion"]["tokens"] for m in out] == [3, 3, 3]
    # In a chain every item has its own callbacks/parent run; the decode loop is still shared.
    chain = ChatPromptTemplate.from_messages([("human", "Q: {q}")]) | llm
    chain.batch([{"q": "a"}, {"q": "b"}])
    asyncio.run(chain.abatch([{"q": "c"}, {"q": "d"}]))
    assert counting.batches == [3, 2, 2] and counting.singles == 0
    ids = {m.response_metadata["dpfusion"]["call_id"] for m in out}
    assert len(ids) == 3


def test_batch_results_match_inputs(sensitive_engine: Any) -> None:
    llm = ChatDPFusion(engine=sensitive_engine, max_new_tokens=6, seed=3, private_roles=())
    prompts = ["tell me about cats", "what is the capital of Peru", "tell me about cats"]
    batched, single = llm.batch(prompts), [llm.invoke(p) for p in prompts]
    assert [m.content for m in batched] == [m.content for m in single]
    # Each result is its own input's. Not told by the text: one seed's draws from this tiny model
    # agree for any prompt (core.sampling couples them, and its answers barely read the prompt).
    lengths = [m.response_metadata["dpfusion"]["prompt_tokens"] for m in batched]
    assert lengths == [m.response_metadata["dpfusion"]["prompt_tokens"] for m in single]
    assert lengths[0] == lengths[2] != lengths[1]  # the comparison can fail


def test_batch_error_is_the_items_own(engine: Any) -> None:
    llm = ChatDPFusion(engine=engine, max_new_tokens=3, seed=0)
    out = llm.batch(["fine", [("wizard", "hi")]], return_exceptions=True)
    assert out[0].response_metadata["dpfusion"]["tokens"] == 3
    assert isinstance(out[1], ValueError) and "wizard" in str(out[1])


def test_budget_is_charged_by_the_engine(engine: Any) -> None:
    budget = PrivacyBudget(epsilon=100.0, delta=1e-5, alpha=2.0, ledger="memory://")
    llm = ChatDPFusion(engine=engine, max_new_tokens=4, seed=0, budget=budget)
    msg = llm.invoke([{"role": "user", "content": ["Note: ", private("Ana Ruiz, 44", unit="rec-9")]}],
                     unit="alice")
    meta = msg.response_metadata["dpfusion"]
    assert set(meta["units"]) == {"rec-9", "alice"}
    assert budget.spent("rec-9") == pytest.approx(budget.spent("alice"))
    assert budget.spent("rec-9") > 0


def test_cache_is_off_by_default_and_a_hit_spends_nothing(engine: Any) -> None:
    assert ChatDPFusion(engine=engine).cache is False
    budget = PrivacyBudget(epsilon=100.0, delta=1e-5, alpha=2.0, ledger="memory://")
    llm = ChatDPFusion(engine=engine, max_new_tokens=3, seed=0, budget=budget, cache=InMemoryCache(), unit="bob")
    first = llm.invoke(QUESTION)
    spent = budget.spent("bob")
    second = llm.invoke(QUESTION)
    assert second.content == first.content
    assert budget.spent("bob") == spent
    meta = second.response_metadata["dpfusion"]
    assert meta["cached"] is True and meta["epsilon"] == 0.0 and meta["unit_rdp"] == {}
    assert meta["cached_call_id"] == first.response_metadata["dpfusion"]["call_id"]
    assert not first.response_metadata["dpfusion"].get("cached")


def test_abandoned_async_stream_releases_the_engine(engine: Any) -> None:
    llm = ChatDPFusion(engine=engine, max_new_tokens=6, seed=0)

    async def first_chunk() -> str:
        async for chunk in llm.astream(QUESTION):
            return str(chunk.content)
        return ""

    assert asyncio.run(first_chunk())
    assert llm.invoke(QUESTION, max_new_tokens=2).response_metadata["dpfusion"]["tokens"] == 2
