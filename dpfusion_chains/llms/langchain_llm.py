"""DPFusionLLM: LangChain's text-completion interface over DP-Fusion (see `ChatDPFusion` for chat)."""

from __future__ import annotations

import contextvars
from collections.abc import AsyncIterator, Iterator
from typing import Any

from dpfusion_chains._optional import require

require("langchain_core", "langchain", "DPFusionLLM (LangChain)")

from langchain_core.callbacks import AsyncCallbackManagerForLLMRun, CallbackManagerForLLMRun
from langchain_core.language_models import BaseLLM
from langchain_core.outputs import Generation, GenerationChunk, LLMResult

from dpfusion_chains.core.result import GenerationResult
from dpfusion_chains.llms.langchain_base import CONFIG, DPFusionParams, cached_metadata, iterate_in_thread, usage
from dpfusion_chains.llms.langchain_messages import to_engine_messages

__all__ = ["DPFusionLLM"]


_FRESH: contextvars.ContextVar[set[str] | None] = contextvars.ContextVar("dpfusion_fresh_calls", default=None)


class DPFusionLLM(DPFusionParams, BaseLLM):
    """A LangChain text-completion LLM over DP-Fusion: each prompt is sent as one user message
    (after an optional `system_prompt`), with ε in ``generation_info["dpfusion"]``. Prompts in a
    batch share one decode loop. Text marked private inside a prompt is recognised; the whole
    prompt is private when "human" is in `private_roles` (the default). Callbacks' ``on_llm_start``
    receives the prompt string as given: for public-only tracing use ChatDPFusion(trace_public_only=True)."""

    model_config = CONFIG

    system_prompt: str | None = None

    @property
    def _llm_type(self) -> str:
        return "dpfusion"

    @property
    def _identifying_params(self) -> dict[str, Any]:
        return {**self._params(), "system_prompt_chars": len(self.system_prompt or "")}

    def _get_ls_params(self, stop: list[str] | None = None, **kwargs: Any) -> Any:
        params = super()._get_ls_params(stop=stop, **kwargs)
        params.update(self._ls_overrides(kwargs))  # type: ignore[typeddict-item]
        return params

    def _messages(self, prompt: str, unit: str) -> list[dict[str, Any]]:
        from langchain_core.messages import HumanMessage, SystemMessage

        lc = ([SystemMessage(self.system_prompt)] if self.system_prompt else []) + [HumanMessage(prompt)]
        return to_engine_messages(lc, private_roles=self.private_roles, unit=unit)

    def _generate(self, prompts: list[str], stop: list[str] | None = None,
                  run_manager: CallbackManagerForLLMRun | None = None, **kwargs: Any) -> LLMResult:
        settings, extras = self._call_settings(stop, kwargs)
        unit = extras.pop("unit")
        items = [self._messages(p, unit) for p in prompts]
        engine = self.get_engine()
        results = (engine.generate_batch(items, **extras, **settings) if len(items) > 1
                   else [engine.generate(items[0], **extras, **settings)])
        fresh = _FRESH.get()
        if fresh is not None:
            fresh.update(r.call_id for r in results if r.call_id)
        return LLMResult(generations=[[Generation(text=r.text, generation_info=self._info(r))] for r in results],
                         llm_output={"model_name": self.model_label})

    def _stream(self, prompt: str, stop: list[str] | None = None,
                run_manager: CallbackManagerForLLMRun | None = None, **kwargs: Any) -> Iterator[GenerationChunk]:
        settings, extras = self._call_settings(stop, kwargs)
        unit = extras.pop("unit")
        for chunk in self.get_engine().stream(self._messages(prompt, unit), **extras, **settings):
            if chunk.result is None:
                if chunk.text:
                    piece = GenerationChunk(text=chunk.text)
                    if run_manager:
                        run_manager.on_llm_new_token(chunk.text, chunk=piece)
                    yield piece
                continue
            yield GenerationChunk(text="", generation_info=self._info(chunk.result))

    async def _astream(self, prompt: str, stop: list[str] | None = None,
                       run_manager: AsyncCallbackManagerForLLMRun | None = None,
                       **kwargs: Any) -> AsyncIterator[GenerationChunk]:
        sync_manager = run_manager.get_sync() if run_manager else None
        async for chunk in iterate_in_thread(lambda: self._stream(prompt, stop=stop, run_manager=sync_manager,
                                                                  **kwargs)):
            yield chunk

    def _info(self, result: GenerationResult) -> dict[str, Any]:
        return {"dpfusion": result.metadata(), "finish_reason": result.finish_reason,
                "usage": dict(usage(result))}

    def generate(self, prompts: list[str], *args: Any, **kwargs: Any) -> LLMResult:
        token = _FRESH.set(set())
        try:
            return self._mark_cache_hits(super().generate(prompts, *args, **kwargs), _FRESH.get() or set())
        finally:
            _FRESH.reset(token)

    async def agenerate(self, prompts: list[str], *args: Any, **kwargs: Any) -> LLMResult:
        token = _FRESH.set(set())
        try:
            return self._mark_cache_hits(await super().agenerate(prompts, *args, **kwargs), _FRESH.get() or set())
        finally:
            _FRESH.reset(token)

    @staticmethod
    def _mark_cache_hits(result: LLMResult, fresh: set[str]) -> LLMResult:
        """Generations not produced by this call came from LangChain's cache: report them as cached
        (on copies: the cache's own objects stay as they were stored)."""
        def mark(g: Generation) -> Generation:
            meta = (g.generation_info or {}).get("dpfusion")
            if not isinstance(meta, dict) or meta.get("call_id") in fresh:
                return g
            return g.model_copy(update={"generation_info": {**(g.generation_info or {}), "dpfusion": cached_metadata(meta)}})

        result.generations = [[mark(g) for g in gens] for gens in result.generations]
        return result
