"""DPFusionLLM (text completion) on the tiny engine."""

from __future__ import annotations

import asyncio
from typing import Any

from langchain_core.caches import InMemoryCache

from dpfusion_chains import PrivacyBudget
from dpfusion_chains.callbacks import PrivacyBudgetCallbackHandler
from dpfusion_chains.llms import DPFusionLLM
from dpfusion_chains.retrievers import mark_private

from .test_chat_model import CountingEngine


def test_invoke_generate_and_metadata(engine: Any) -> None:
    llm = DPFusionLLM(engine=engine, max_new_tokens=4, seed=0, system_prompt="Answer briefly.")
    assert isinstance(llm.invoke("hello"), str)
    result = llm.generate(["Record: " + mark_private("Jane Roe", unit="rec-1") + "\nWho?"])
    info = result.generations[0][0].generation_info
    assert info["dpfusion"]["units"] == ["rec-1", "user"] and info["dpfusion"]["tokens"] == 4
    assert info["usage"]["output_tokens"] == 4
    assert llm._llm_type == "dpfusion" and llm._get_ls_params()["ls_model_type"] == "llm"


def test_batch_is_one_decode_loop_and_handler_sees_every_prompt(engine: Any) -> None:
    counting = CountingEngine(engine)
    llm = DPFusionLLM(engine=counting, max_new_tokens=3, seed=0)
    handler = PrivacyBudgetCallbackHandler()
    out = llm.batch(["a", "b", "c"], config={"callbacks": [handler]})
    assert len(out) == 3 and counting.batches == [3]
    assert handler.calls == 3
    asyncio.run(llm.abatch(["d", "e"]))
    assert counting.batches == [3, 2]


def test_stream_only_last_chunk_has_metadata(engine: Any) -> None:
    llm = DPFusionLLM(engine=engine, max_new_tokens=4, seed=0)
    handler = PrivacyBudgetCallbackHandler()
    text = "".join(llm.stream("hello", config={"callbacks": [handler]}))
    assert text == llm.invoke("hello")
    assert handler.calls == 1 and handler.records[0].tokens == 4


def test_cache_hit_is_reported_and_spends_nothing(engine: Any) -> None:
    budget = PrivacyBudget(epsilon=1000.0, delta=1e-5, alpha=2.0, ledger="memory://")
    llm = DPFusionLLM(engine=engine, max_new_tokens=3, seed=0, budget=budget, cache=InMemoryCache())
    first = llm.generate(["same prompt"]).generations[0][0]
    spent = budget.spent("user")
    second = llm.generate(["same prompt"]).generations[0][0]
    assert second.text == first.text and budget.spent("user") == spent > 0
    assert second.generation_info["dpfusion"]["cached"] is True
    assert second.generation_info["dpfusion"]["epsilon"] == 0.0
    assert not first.generation_info["dpfusion"].get("cached")
    third = llm.generate(["same prompt"]).generations[0][0]  # the cache's own copy stays unmarked
    assert third.generation_info["dpfusion"]["cached_call_id"] == first.generation_info["dpfusion"]["call_id"]


def test_async_stream_matches_invoke(engine: Any) -> None:
    llm = DPFusionLLM(engine=engine, max_new_tokens=4, seed=0)
    handler = PrivacyBudgetCallbackHandler()

    async def run() -> str:
        return "".join([c async for c in llm.astream("hello", config={"callbacks": [handler]})])

    assert asyncio.run(run()) == llm.invoke("hello")
    assert handler.calls == 1 and handler.records[0].tokens == 4
