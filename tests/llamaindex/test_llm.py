"""DPFusionLlamaLLM on its own: metadata, every entry point, ε metadata, settings, budget."""

from __future__ import annotations

import asyncio

import pytest
from llama_index.core.base.llms.types import ChatMessage, MessageRole

from dpfusion_chains.budget import BudgetExhaustedError, PrivacyBudget
from dpfusion_chains.core.errors import DPFusionError, UnsupportedSamplingError
from dpfusion_chains.core.markers import mark
from dpfusion_chains.llms.llama_index import DPFusionCallError, DPFusionLlamaLLM

CANARY = "Quillon Vasquez-Ortega, MRN 993-17"


def _prompt() -> str:
    return "Record: " + mark(CANARY, unit="rec-7") + "\nWho is this record about?"


def _meta(response) -> dict:
    return response.additional_kwargs["dpfusion"]


def test_metadata_and_lazy_loading(make_llm, kit):
    llm = make_llm()
    meta = llm.metadata
    assert (meta.context_window, meta.num_output, meta.is_chat_model) == (kit.WINDOW, 6, True)
    assert meta.model_name == "tiny-random-llama"
    assert make_llm(context_window=None).metadata.context_window == 2048  # the model's own window
    lazy = DPFusionLlamaLLM(model="/nonexistent/model-dir")  # nothing is loaded at construction
    assert lazy._engine is None
    with pytest.raises(DPFusionError):
        lazy.metadata  # noqa: B018  (loading happens here, and fails clearly)


def test_complete_reports_epsilon_for_private_units(make_llm):
    out = make_llm().complete(_prompt())
    meta = _meta(out)
    assert meta["units"] == ["rec-7"] and meta["epsilon"] > 0 and meta["tokens"] == 6
    assert meta["private_segments"] == 1 and meta["query_id"] is None
    assert CANARY not in str(meta) and "\ue000" not in out.text


def test_public_prompt_costs_nothing(make_llm):
    meta = _meta(make_llm().complete("Say hello."))
    assert meta["epsilon"] == 0.0 and meta["units"] == [] and meta["private_segments"] == 0


def test_chat_and_streams_agree(make_llm):
    llm = make_llm()
    messages = [ChatMessage(role=MessageRole.SYSTEM, content="Answer briefly."),
                ChatMessage(role=MessageRole.USER, content=_prompt())]
    chat = llm.chat(messages)
    assert chat.message.role == MessageRole.ASSISTANT and _meta(chat)["units"] == ["rec-7"]
    pieces = list(llm.stream_chat(messages))
    assert pieces[-1].message.content == "".join(p.delta for p in pieces) == chat.message.content  # same seed
    assert _meta(pieces[-1])["epsilon"] == pytest.approx(_meta(chat)["epsilon"])
    completions = list(llm.stream_complete(_prompt()))
    assert completions[-1].text == "".join(c.delta for c in completions)
    assert _meta(completions[-1])["units"] == ["rec-7"]


def test_async_entry_points(make_llm):
    llm = make_llm()
    messages = [ChatMessage(role=MessageRole.USER, content=_prompt())]

    async def run():
        chat = await llm.achat(messages)
        done = await llm.acomplete(_prompt())
        streamed = [r async for r in await llm.astream_chat(messages)]
        streamed_c = [r async for r in await llm.astream_complete(_prompt())]
        return chat, done, streamed, streamed_c

    chat, done, streamed, streamed_c = asyncio.run(run())
    assert chat.message.content == done.text == streamed[-1].message.content == streamed_c[-1].text
    for r in (chat, done, streamed[-1], streamed_c[-1]):
        assert _meta(r)["units"] == ["rec-7"] and _meta(r)["epsilon"] > 0


def test_settings_per_call_and_validated_at_construction(make_llm, tiny):
    llm = make_llm()
    assert _meta(llm.complete(_prompt(), epsilon=4.0))["epsilon"] <= 4.0 + 1e-9
    assert _meta(llm.complete(_prompt(), beta=0.0))["epsilon"] == 0.0
    assert _meta(make_llm(epsilon=3.0).complete(_prompt(), max_new_tokens=3))["tokens"] == 3
    with pytest.raises(ValueError, match="temperature"):
        DPFusionLlamaLLM(engine=tiny, temperature=0.0)
    with pytest.raises(DPFusionCallError) as err:
        llm.complete(_prompt(), do_sample=False)
    assert isinstance(err.value.cause, UnsupportedSamplingError)
    with pytest.raises(DPFusionCallError) as err:
        llm.complete(_prompt(), temprature=0.5)
    assert isinstance(err.value.cause, TypeError) and "temprature" in str(err.value)


def test_user_unit_makes_user_text_private(make_llm):
    meta = _meta(make_llm(user_unit="user-42").complete("My name is Quillon Vasquez-Ortega."))
    assert meta["units"] == ["user-42"] and meta["epsilon"] > 0


def test_budget_is_reserved_and_settled(make_llm):
    budget = PrivacyBudget(epsilon=40.0, ledger="memory://")
    llm = make_llm(budget=budget)
    meta = _meta(llm.complete(_prompt()))
    assert budget.spent("rec-7") == pytest.approx(meta["epsilon"])
    tight = PrivacyBudget(epsilon=40.0, ledger="memory://", per_unit={"rec-7": 0.0})
    with pytest.raises(BudgetExhaustedError):  # a RuntimeError: LlamaIndex passes it through
        make_llm(budget=tight).complete(_prompt())


def test_generated_marker_characters_never_leave_the_llm(make_llm, monkeypatch):
    llm = make_llm()
    real = llm.engine.generate

    def noisy(*args, **kwargs):
        result = real(*args, **kwargs)
        result.text = "\ue000x\ue001y\ue002" + result.text
        return result

    monkeypatch.setattr(llm.engine, "generate", noisy)
    text = llm.complete("Say hello.").text
    assert text.startswith("xy") and not any(c in text for c in "\ue000\ue001\ue002")
