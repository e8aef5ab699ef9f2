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
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Literal

from langchain_core.caches import BaseCache
from langchain_core.callbacks import CallbackManagerForLLMRun
from langchain_core.language_models import BaseChatModel, BaseLLM, LanguageModelInput
from langchain_core.language_models.llms import get_llm_cache
from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage
from langchain_core.messages.ai import UsageMetadata
from langchain_core.outputs import (ChatGeneration, ChatGenerationChunk, ChatResult, Generation, GenerationChunk,
                                    LLMResult)
from langchain_core.prompt_values import ChatPromptValue, PromptValue
from langchain_core.runnables import RunnableConfig
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, model_validator

from dpfusion_chains.core.params import GenerationSettings, make_settings
from dpfusion_chains.core.result import GenerationResult
from dpfusion_chains.llms.langchain_messages import (normalize_roles, private_block, public_messages,
                                                     segments_to_blocks, to_engine_messages)

__all__ = ["ChatDPFusion", "DPFusionLLM", "private_block"]

SETTING_NAMES = frozenset(GenerationSettings.model_fields)
CALL_EXTRAS = ("detector", "budget", "unit")

_engines: dict[tuple[str | None, str | None], Any] = {}
_engines_lock = threading.Lock()


def _load_engine(model: str | None, device: str | None) -> Any:
    """One engine per (model, device) per process: several adapters share the loaded weights."""
    from dpfusion_chains.core.engine import DPFusionEngine

    key = (model, device)
    with _engines_lock:
        if key not in _engines:
            dev = device or "auto"
            _engines[key] = (DPFusionEngine.from_default(device=dev) if model is None
                             else DPFusionEngine.from_pretrained(model, device=dev))
        return _engines[key]


def _usage(result: GenerationResult) -> UsageMetadata:
    return UsageMetadata(input_tokens=result.prompt_tokens, output_tokens=result.tokens,
                         total_tokens=result.prompt_tokens + result.tokens)


def _cached_metadata(meta: dict[str, Any]) -> dict[str, Any]:
    """A cache hit re-releases an earlier output: post-processing, so no new ε."""
    if meta.get("cached"):
        return meta
    return {**meta, "cached": True, "cached_call_id": meta.get("call_id"), "call_id": None, "epsilon": 0.0,
            "epsilon_classic": 0.0, "rdp": 0.0, "unit_rdp": {}, "units": [], "tokens": 0, "empirical_epsilon": None}


# Unknown arguments are refused (a misspelt privacy setting must not be silently ignored); set on
# each concrete class too, because LangChain's bases (listed after the mixin) say extra="ignore".
_CONFIG = ConfigDict(populate_by_name=True, extra="forbid", arbitrary_types_allowed=True, protected_namespaces=())


class _DPFusionParams(BaseModel):
    """Fields and helpers shared by ChatDPFusion and DPFusionLLM."""

    model_config = _CONFIG

    engine: Any = Field(default=None, exclude=True, repr=False)
    """A DPFusionEngine; when None, `model` (a Hugging Face id or path) or the embedded default is loaded on first use."""
    model: str | None = None
    device: str | None = None
    # Privacy and decoding settings; None leaves the engine's default (see GenerationSettings).
    epsilon: float | None = None
    alpha: float | None = None
    beta: float | None = None
    delta: float | None = None
    accounting: Literal["sound", "paper"] | None = None
    max_new_tokens: int | None = Field(default=None, alias="max_tokens")
    temperature: float | None = None
    top_k: int | None = None
    top_p: float | None = None
    do_sample: bool | None = None
    seed: int | None = None
    stop: list[str] | None = None
    groups: Literal["unit", "single", "entity_type"] | None = None
    placeholder: Literal["typed", "token"] | None = None
    detector: Any = None
    budget: Any = Field(default=None, exclude=True, repr=False)
    """A PrivacyBudget: the engine reserves and settles every call's ε in it."""
    private_roles: tuple[str, ...] = ("human", "tool")
    """Messages of these roles are private as a whole (system messages are public by default)."""
    unit: str = "user"
    """Privacy unit charged for text private by role (override per call: ``invoke(..., unit=user_id)``)."""
    cache: BaseCache | bool | None = Field(default=False, exclude=True)
    """LangChain's LLM cache is off: a cache would store private prompts. A hit, if enabled, spends no ε."""
    # LangChain's standard chat-model parameters, accepted so that code written for hosted models runs;
    # a local model has no API key, network timeout or retries.
    api_key: Any = Field(default=None, exclude=True, repr=False)
    timeout: float | None = None
    max_retries: int | None = None

    _engine: Any = PrivateAttr(default=None)

    @model_validator(mode="before")
    @classmethod
    def _one_length_name(cls, data: Any) -> Any:
        if isinstance(data, dict) and "max_tokens" in data and "max_new_tokens" in data:
            raise ValueError("give max_tokens or max_new_tokens (the same setting), not both")
        return data

    @model_validator(mode="after")
    def _check_settings(self) -> _DPFusionParams:
        make_settings(**self._field_settings())  # fail at construction: greedy, epsilon+beta, bad ranges
        self.private_roles = normalize_roles(self.private_roles)
        if not isinstance(self.unit, str) or not self.unit:
            raise ValueError("unit must be a non-empty privacy unit id")
        return self

    def get_engine(self) -> Any:
        """The engine (loading the model now if it was not given)."""
        if self.engine is not None:
            return self.engine
        if self._engine is None:
            self._engine = _load_engine(self.model, self.device)
        return self._engine

    @property
    def model_label(self) -> str:
        if self.engine is not None:
            return str(self.engine.model_name)
        if self.model is not None:
            return self.model
        from dpfusion_chains.core.models import DEFAULT_MODEL_NAME
        return DEFAULT_MODEL_NAME

    def _field_settings(self) -> dict[str, Any]:
        values = {k: getattr(self, k) for k in SETTING_NAMES}
        return {k: v for k, v in values.items() if v is not None}

    def _call_settings(self, stop: list[str] | None, kwargs: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
        """(generation settings, engine call extras) for one call: fields overridden by call kwargs;
        a kwarg set to None clears the field (e.g. ``invoke(..., epsilon=None, beta=0.0)``)."""
        kw = dict(kwargs)
        kw.pop("stream", None)  # LangChain's streaming switch, not a generation setting
        if "max_tokens" in kw:
            if "max_new_tokens" in kw:
                raise TypeError("give max_tokens or max_new_tokens, not both")
            kw["max_new_tokens"] = kw.pop("max_tokens")
        model = kw.pop("model", None)
        if model is not None and model not in (self.model, self.model_label):
            raise ValueError(f"this {type(self).__name__} serves one local model ({self.model_label}); create another "
                             f"instance for {model!r}")
        extras = {"detector": self.detector, "budget": self.budget, "unit": self.unit}
        extras.update({k: kw.pop(k) for k in CALL_EXTRAS if k in kw})
        unknown = sorted(set(kw) - SETTING_NAMES)
        if unknown:
            raise TypeError(f"unknown DP-Fusion call argument(s) {unknown}; known: "
                            f"{sorted(SETTING_NAMES | set(CALL_EXTRAS) | {'max_tokens', 'model'})}")
        settings = self._field_settings()
        for k, v in kw.items():
            if v is None:
                settings.pop(k, None)
            else:
                settings[k] = v
        if stop is not None:
            settings["stop"] = stop
        make_settings(**settings)  # clear errors before any model work
        return settings, extras

    def _params(self) -> dict[str, Any]:
        return {"model_name": self.model_label, **self._field_settings(), "detector": str(self.detector),
                "private_roles": list(self.private_roles), "unit": self.unit}

    def _ls_overrides(self, kwargs: dict[str, Any]) -> dict[str, Any]:
        out: dict[str, Any] = {"ls_provider": "dpfusion"}
        model = kwargs.get("model")
        out["ls_model_name"] = model if isinstance(model, str) else self.model_label
        max_new = kwargs.get("max_new_tokens", kwargs.get("max_tokens", self.max_new_tokens))
        if isinstance(max_new, int):
            out["ls_max_tokens"] = max_new
        temperature = kwargs.get("temperature", self.temperature)
        if isinstance(temperature, (int, float)):
            out["ls_temperature"] = float(temperature)
        return out

    def _cache_off(self) -> bool:
        return self.cache is False or (self.cache is None and get_llm_cache() is None)


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


class ChatDPFusion(_DPFusionParams, BaseChatModel):
    """A LangChain chat model that generates with DP-Fusion on a local model.

    Private text: `private_block`/`private(...)` content, text marked by `PrivateRetriever` or
    `mark_private`, and every message of a role in `private_roles`. Each call reports ε in
    ``response_metadata["dpfusion"]`` and tokens in ``usage_metadata``.
    """

    model_config = _CONFIG

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
        message = AIMessage(content=result.text, response_metadata=self._metadata(result), usage_metadata=_usage(result))
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
                content="", response_metadata=self._metadata(chunk.result), usage_metadata=_usage(chunk.result),
                chunk_position="last"))

    def _metadata(self, result: GenerationResult) -> dict[str, Any]:
        return {"dpfusion": result.metadata(), "model_name": result.model or self.model_label,
                "finish_reason": result.finish_reason, "model_provider": "dpfusion"}

    def _convert_cached_generations(self, cache_val: list[Generation]) -> list[ChatGeneration]:
        out = []
        for gen in super()._convert_cached_generations(cache_val):
            meta = dict(gen.message.response_metadata)
            if isinstance(meta.get("dpfusion"), dict):
                meta["dpfusion"] = _cached_metadata(meta["dpfusion"])
            out.append(ChatGeneration(message=gen.message.model_copy(update={"response_metadata": meta}),
                                      generation_info=gen.generation_info))
        return out


_FRESH: contextvars.ContextVar[set[str] | None] = contextvars.ContextVar("dpfusion_fresh_calls", default=None)


class DPFusionLLM(_DPFusionParams, BaseLLM):
    """A LangChain text-completion LLM over DP-Fusion: each prompt is sent as one user message
    (after an optional `system_prompt`), with ε in ``generation_info["dpfusion"]``. Prompts in a
    batch share one decode loop. Text marked private inside a prompt is recognised; the whole
    prompt is private when "human" is in `private_roles` (the default)."""

    model_config = _CONFIG

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

    def _info(self, result: GenerationResult) -> dict[str, Any]:
        return {"dpfusion": result.metadata(), "finish_reason": result.finish_reason,
                "usage": dict(_usage(result))}

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
            return g.model_copy(update={"generation_info": {**(g.generation_info or {}), "dpfusion": _cached_metadata(meta)}})

        result.generations = [[mark(g) for g in gens] for gens in result.generations]
        return result
