"""LangChain drop-ins: `ChatDPFusion` (chat model) and `DPFusionLLM` (text-completion LLM).

Thin adapters over `DPFusionEngine`: they turn LangChain messages into marked engine messages
(see `langchain_messages`), pass the privacy settings and the budget through, and return the
engine's result in LangChain's types with ε in ``response_metadata["dpfusion"]`` (chat) or
``generation_info["dpfusion"]`` (LLM). No mechanism logic lives here.

    llm = ChatDPFusion(epsilon=8.0, max_new_tokens=64)         # embedded SmolLM2, loaded on first use
    chain = prompt | llm                                        # retriever docs marked by PrivateRetriever
    msg = chain.invoke({...}); msg.response_metadata["dpfusion"]["epsilon"]

Leak guard (``trace_public_only=True``): `_convert_input` (the one place invoke, ainvoke, stream,
astream and batch turn their input into messages) and `generate`/`agenerate` (for callers that
pass messages directly) replace the messages with public copies *before* LangChain fires
``on_chat_model_start``; `_generate`/`_stream` resolve them back to the originals. A LangChain cache
keyed by those copies never hits, which is the safe outcome (the key cannot confuse two private
contexts with the same public form).
"""

from __future__ import annotations

import contextvars
import threading
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from typing import Any

from dpfusion_chains._optional import require

require("langchain_core", "langchain", "ChatDPFusion (LangChain)")

from langchain_core.callbacks import AsyncCallbackManagerForLLMRun, CallbackManagerForLLMRun
from langchain_core.language_models import BaseChatModel, LanguageModelInput
from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult, Generation, LLMResult
from langchain_core.prompt_values import ChatPromptValue, PromptValue
from langchain_core.runnables import RunnableConfig

from dpfusion_chains.core.result import GenerationResult
from dpfusion_chains.llms.langchain_base import CONFIG, DPFusionParams, cached_metadata, iterate_in_thread, usage
from dpfusion_chains.llms.langchain_llm import DPFusionLLM
from dpfusion_chains.llms.langchain_messages import (private_block, public_messages, segments_to_blocks,
                                                     to_engine_messages)

__all__ = ["ChatDPFusion", "DPFusionLLM", "private_block"]


@dataclass
class _BatchPlan:
    """The inputs of one `batch` call, generated together (one decode loop) by whichever item's
    `_generate` runs first; each item then takes its own result by message equality."""

    owner: Any
    lists: list[list[BaseMessage]]
    stop: list[str] | None
    kwargs: dict[str, Any]
    lock: threading.Lock = field(default_factory=threading.Lock)
    results: list[GenerationResult] | None = None
    failed: bool = False
    claimed: set[int] = field(default_factory=set)

    def take(self, model: ChatDPFusion, messages: list[BaseMessage], stop: list[str] | None,
             kwargs: dict[str, Any]) -> GenerationResult | None:
        if model is not self.owner or stop != self.stop or kwargs != self.kwargs:
            return None
        with self.lock:
            index = next((i for i, m in enumerate(self.lists) if i not in self.claimed and m == messages), None)
            if index is None:
                return None
            self.claimed.add(index)
            if self.results is None and not self.failed:
                try:
                    self.results = model._run_batch(self.lists, stop, kwargs)
                except Exception:  # noqa: BLE001 - each item retries alone and raises its own error
                    self.failed = True
            return None if self.failed or self.results is None else self.results[index]


_PLAN: contextvars.ContextVar[_BatchPlan | None] = contextvars.ContextVar("dpfusion_batch_plan", default=None)


class ChatDPFusion(DPFusionParams, BaseChatModel):
    """A LangChain chat model that generates with DP-Fusion on a local model.

    Private text: `private_block`/`private(...)` content, text marked by `PrivateRetriever` or
    `mark_private`, and every message of a role in `private_roles`. Each call reports ε in
    ``response_metadata["dpfusion"]`` and tokens in ``usage_metadata``.
    """

    model_config = CONFIG

    streaming: bool = False
    trace_public_only: bool = False
    """Callbacks and tracers see public copies of the messages (private pieces as placeholders)."""

    @property
    def _llm_type(self) -> str:
        return "dpfusion-chat"

    @property
    def _identifying_params(self) -> dict[str, Any]:
        return {**self._params(), "trace_public_only": self.trace_public_only}

    def _get_ls_params(self, stop: list[str] | None = None, **kwargs: Any) -> Any:
        params = super()._get_ls_params(stop=stop, **kwargs)
        params.update(self._ls_overrides(kwargs))  # type: ignore[typeddict-item]
        return params

    # -- input: private segments to blocks, public copies for tracing ---------------------------
    def _convert_input(self, model_input: LanguageModelInput) -> PromptValue:
        value = super()._convert_input(segments_to_blocks(model_input))
        if not self.trace_public_only:
            return value
        return ChatPromptValue(messages=public_messages(value.to_messages(), private_roles=self.private_roles))

    def _public(self, messages: list[list[BaseMessage]]) -> list[list[BaseMessage]]:
        if not self.trace_public_only:
            return messages
        return [public_messages(m, private_roles=self.private_roles) for m in messages]

    def generate(self, messages: list[list[BaseMessage]], *args: Any, **kwargs: Any) -> LLMResult:
        return super().generate(self._public(messages), *args, **kwargs)

    async def agenerate(self, messages: list[list[BaseMessage]], *args: Any, **kwargs: Any) -> LLMResult:
        return await super().agenerate(self._public(messages), *args, **kwargs)

    # -- batch: one decode loop for all inputs ---------------------------------------------------
    def _plan(self, inputs: list[LanguageModelInput], kwargs: dict[str, Any]) -> tuple[list[PromptValue], _BatchPlan] | None:
        if len(inputs) < 2 or not self._cache_off() or self.streaming:
            return None
        try:
            prompts = [self._convert_input(x) for x in inputs]
        except Exception:  # noqa: BLE001 - let each input fail on its own in the plain path
            return None
        kw = dict(kwargs)
        stop = kw.pop("stop", None)
        return prompts, _BatchPlan(self, [p.to_messages() for p in prompts], stop, kw)

    def batch(self, inputs: list[LanguageModelInput], config: RunnableConfig | list[RunnableConfig] | None = None,
              *, return_exceptions: bool = False, **kwargs: Any) -> list[Any]:
        planned = self._plan(inputs, kwargs)
        if planned is None:
            return super().batch(inputs, config, return_exceptions=return_exceptions, **kwargs)
        token = _PLAN.set(planned[1])
        try:  # items keep their own configs and callbacks; the first one to run generates all
            return super().batch(planned[0], config, return_exceptions=return_exceptions, **kwargs)  # type: ignore[arg-type]
        finally:
            _PLAN.reset(token)

    async def abatch(self, inputs: list[LanguageModelInput], config: RunnableConfig | list[RunnableConfig] | None = None,
                     *, return_exceptions: bool = False, **kwargs: Any) -> list[Any]:
        planned = self._plan(inputs, kwargs)
        if planned is None:
            return await super().abatch(inputs, config, return_exceptions=return_exceptions, **kwargs)
        token = _PLAN.set(planned[1])
        try:
            return await super().abatch(planned[0], config, return_exceptions=return_exceptions, **kwargs)  # type: ignore[arg-type]
        finally:
            _PLAN.reset(token)

    def _run_batch(self, lists: list[list[BaseMessage]], stop: list[str] | None,
                   kwargs: dict[str, Any]) -> list[GenerationResult]:
        settings, extras = self._call_settings(stop, kwargs)
        unit = extras.pop("unit")
        items = [to_engine_messages(m, private_roles=self.private_roles, unit=unit) for m in lists]
        return self.get_engine().generate_batch(items, **extras, **settings)

    # -- generation --------------------------------------------------------------------------------
    def _generate(self, messages: list[BaseMessage], stop: list[str] | None = None,
                  run_manager: CallbackManagerForLLMRun | None = None, **kwargs: Any) -> ChatResult:
        plan = _PLAN.get()
        result = plan.take(self, messages, stop, kwargs) if plan is not None else None
        if result is None:
            settings, extras = self._call_settings(stop, kwargs)
            unit = extras.pop("unit")
            engine_messages = to_engine_messages(messages, private_roles=self.private_roles, unit=unit)
            result = self.get_engine().generate(engine_messages, **extras, **settings)
        message = AIMessage(content=result.text, response_metadata=self._metadata(result), usage_metadata=usage(result))
        return ChatResult(generations=[ChatGeneration(message=message)])

    def _stream(self, messages: list[BaseMessage], stop: list[str] | None = None,
                run_manager: CallbackManagerForLLMRun | None = None, **kwargs: Any) -> Iterator[ChatGenerationChunk]:
        settings, extras = self._call_settings(stop, kwargs)
        unit = extras.pop("unit")
        engine_messages = to_engine_messages(messages, private_roles=self.private_roles, unit=unit)
        for chunk in self.get_engine().stream(engine_messages, **extras, **settings):
            if chunk.result is None:
                if chunk.text:
                    yield ChatGenerationChunk(message=AIMessageChunk(content=chunk.text))
                continue
            # Only the last chunk carries ε and usage, so merging chunks counts them once.
            yield ChatGenerationChunk(message=AIMessageChunk(
                content="", response_metadata=self._metadata(chunk.result), usage_metadata=usage(chunk.result),
                chunk_position="last"))

    async def _astream(self, messages: list[BaseMessage], stop: list[str] | None = None,
                       run_manager: AsyncCallbackManagerForLLMRun | None = None,
                       **kwargs: Any) -> AsyncIterator[ChatGenerationChunk]:
        async for chunk in iterate_in_thread(lambda: self._stream(messages, stop=stop, **kwargs)):
            yield chunk

    def _metadata(self, result: GenerationResult) -> dict[str, Any]:
        return {"dpfusion": result.metadata(), "model_name": result.model or self.model_label,
                "finish_reason": result.finish_reason, "model_provider": "dpfusion"}

    def _convert_cached_generations(self, cache_val: list[Generation]) -> list[ChatGeneration]:
        out = []
        for gen in super()._convert_cached_generations(cache_val):
            meta = dict(gen.message.response_metadata)
            if isinstance(meta.get("dpfusion"), dict):
                meta["dpfusion"] = cached_metadata(meta["dpfusion"])
            out.append(ChatGeneration(message=gen.message.model_copy(update={"response_metadata": meta}),
                                      generation_info=gen.generation_info))
        return out
