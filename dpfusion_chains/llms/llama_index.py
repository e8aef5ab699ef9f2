"""DPFusionLlamaLLM: DP-Fusion behind LlamaIndex's LLM interface.

    Settings.llm = DPFusionLlamaLLM()                      # embedded SmolLM2, loaded on first use
    engine = index.as_query_engine(node_postprocessors=[PrivateNodePostprocessor()])
    response = engine.query("When was she admitted?")
    response.metadata["dpfusion"]["epsilon"]               # the query's ε, composed over its calls

How private text stays attributed (fail closed, DESIGN §2)
----------------------------------------------------------
`PrivateNodePostprocessor` wraps each retrieved node's LLM view in an in-band marker (unit id +
keyed digest) and registers the node units in the current *query scope*
(`dpfusion_chains.callbacks.llama_index`). Synthesizers then repack, split and truncate the node
text to fit the window (`compact`, `refine`, `tree_summarize`, `simple_summarize`), so a call may
see a marker cut in two, or a middle piece of a long node with no marker character at all.
Every call the synthesizer makes goes through `predict`/`stream`/`structured_predict` (and their
async variants) with the template and its variables *separately*. Before the template is
formatted, the values of the private variables (`private_variables`, default `context_str` and
`context_msg`) are re-attributed by `privatize_context`: complete markers stay (altered text →
MarkerError), whitespace between them is layout, and every other character is private to the
union of the query's units, each unit charged for it. So a split marker never yields private
text without the mechanism, whichever way the synthesizer cut it; outside a query scope a split
marker raises MarkerError. `existing_answer` (refine) and `query_str` are not private variables:
an earlier answer is DP output, and post-processing it costs nothing. After formatting, every
marker of a private variable the template uses must reach the prompt intact: a function mapping
that rewrote, escaped or stripped the private text raises (stripped markers would otherwise look
public). (simple_summarize passes its context as a list, whose repr would escape the markers:
it is joined first.) Then `chat` parses the formatted messages strictly and calls
the engine, which reserves/settles the budget; the composed ε of every call in the scope lands
on `Response.metadata["dpfusion"]` and in `DPFusionCallEvent`/`DPFusionQueryEvent`.

What the guarantee covers there: when a synthesizer splits text, how many calls it makes and where
it cuts depend on the lengths of the private texts, so (as with placeholder="token") neighbouring
contexts are those of the same length structure. Modes that fit every node into one call
(compact or simple_summarize with a large enough window) keep the typed-placeholder guarantee.

Errors: a DP-Fusion error that is a ValueError/TypeError (MarkerError, ContextTooLongError, …) is
raised as `DPFusionCallError` (a RuntimeError, the original chained as `__cause__`): LlamaIndex's
refine loop swallows ValueErrors and would turn a refusal into a silent "Empty Response".

LlamaIndex's own events and legacy callbacks (LLMChatStartEvent, retrieval events, templating
payloads) carry prompts and retrieved nodes as they do for any LLM; keep those handlers local.
`user_unit` makes every user-role message private to that unit (chat history, queries).
"""

from __future__ import annotations

import asyncio
import itertools
import threading
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, Literal

from dpfusion_chains._optional import require

require("llama_index.core", "llamaindex", "DPFusionLlamaLLM (LlamaIndex)")

from llama_index.core.base.llms.types import (ChatMessage, ChatResponse, ChatResponseAsyncGen, ChatResponseGen,
                                              CompletionResponse, CompletionResponseAsyncGen, CompletionResponseGen,
                                              LLMMetadata, MessageRole, TextBlock)
from llama_index.core.bridge.pydantic import Field, PrivateAttr
from llama_index.core.llms.callbacks import llm_chat_callback, llm_completion_callback
from llama_index.core.llms.custom import CustomLLM
from llama_index.core.prompts import BasePromptTemplate

from dpfusion_chains.callbacks.llama_index import (DPFusionCallEvent, QueryScope, current_scope, dispatcher,
                                                   instrument)
from dpfusion_chains.core.engine import DPFusionEngine
from dpfusion_chains.core.markers import parse_marked
from dpfusion_chains.core.params import DTypeName, GenerationSettings, make_settings
from dpfusion_chains.core.result import GenerationResult
from dpfusion_chains.core.spans import PrivateSegment
from dpfusion_chains.llms.llama_index_calls import (DPFusionCallError, async_iter, check_rendered, clean_output,
                                                    fail_closed, inference_steps, private_value)
from dpfusion_chains.retrievers.llama_index import UNION_GROUP

_LLM_SETTINGS = ("epsilon", "alpha", "beta", "delta", "accounting", "max_new_tokens", "temperature", "top_k",
                 "top_p", "seed", "stop", "groups", "placeholder")
_ROLES = {"system": "system", "developer": "system", "user": "user", "assistant": "assistant",
          "chatbot": "assistant", "model": "assistant", "tool": "tool", "function": "tool"}


class DPFusionLlamaLLM(CustomLLM):
    """DP-Fusion generation as a LlamaIndex chat LLM, with ε per call in `additional_kwargs["dpfusion"]`.

    Build it from `engine=` (a DPFusionEngine), `model=` (any Hugging Face id/path) or nothing (the
    embedded SmolLM2); the model loads on first use. Privacy and decoding settings are fields and
    can be overridden per call (`llm.complete(prompt, epsilon=4.0, seed=1)`): give `epsilon` (b
    calibrated for max_new_tokens) or `alpha`/`beta`; `budget` is a PrivacyBudget the engine
    reserves and settles for every unit.
    """

    model: str | None = Field(default=None, description="Hugging Face id or path; None: embedded SmolLM2.")
    device: str = Field(default="auto", description="Device for a model loaded here.")
    dtype: DTypeName = Field(default="auto", description="Weights of a model loaded here (auto: float32 on a CPU).")
    epsilon: float | None = None
    alpha: float | None = None
    beta: float | None = None
    delta: float = 1e-5
    accounting: Literal["sound", "paper"] = "sound"
    max_new_tokens: int = 64
    temperature: float = 1.0
    top_k: int | None = None
    top_p: float | None = None
    seed: int | None = None
    stop: list[str] = Field(default_factory=list)
    groups: Literal["unit", "single", "entity_type"] = "unit"
    placeholder: Literal["typed", "token"] = "typed"
    detector: Any = Field(default=None, description="Detector name or object; None: the engine's.")
    context_window: int | None = Field(default=None, description="What LlamaIndex packs prompts to; "
                                       "None: the model's window.")
    private_variables: tuple[str, ...] = ("context_str", "context_msg")
    user_unit: str | None = Field(default=None, description="Privacy unit of user-role messages (None: public).")
    budget: Any = Field(default=None, exclude=True)

    _engine: DPFusionEngine | None = PrivateAttr(default=None)
    _engine_lock: threading.Lock = PrivateAttr(default_factory=threading.Lock)

    def __init__(self, engine: DPFusionEngine | None = None, **data: Any) -> None:
        # LlamaIndex models ignore unknown fields; a misspelt privacy setting must not pass silently.
        fields = type(self).model_fields
        unknown = sorted(set(data) - set(fields) - {f.alias for f in fields.values() if f.alias} - {"class_name"})
        if unknown:
            raise TypeError(f"unknown argument(s) {unknown} for {type(self).__name__}; privacy and decoding settings "
                            f"are {sorted(_LLM_SETTINGS)}, plus model, device, detector, budget, user_unit, …")
        super().__init__(**data)
        self._engine = engine
        make_settings(**self._settings())  # invalid settings fail here, not at the first query
        if self.user_unit == "":  # "" would silently mean "user messages are public"
            raise ValueError("user_unit must be a non-empty privacy unit id (e.g. the user's id), or None to keep "
                             "user messages public")
        instrument()

    @classmethod
    def class_name(cls) -> str:
        return "DPFusionLlamaLLM"

    # -- model ---------------------------------------------------------------------------
    @property
    def engine(self) -> DPFusionEngine:
        if self._engine is None:
            with self._engine_lock:
                if self._engine is None:
                    self._engine = (DPFusionEngine.from_pretrained(self.model, device=self.device, dtype=self.dtype)
                                    if self.model else DPFusionEngine.from_default(device=self.device, dtype=self.dtype))
        return self._engine

    @property
    def metadata(self) -> LLMMetadata:
        engine = self.engine
        return LLMMetadata(context_window=self.context_window or engine.context_window,
                           num_output=self.max_new_tokens, is_chat_model=True, is_function_calling_model=False,
                           model_name=engine.model_name)

    @property
    def tokenizer_fn(self) -> Any:
        """The model's tokenizer as LlamaIndex wants it (`Settings.tokenizer = llm.tokenizer_fn`), so
        that prompts are packed by the model's own token count."""
        tokenizer = self.engine.tokenizer
        return lambda text: tokenizer(text, add_special_tokens=False)["input_ids"]

    # -- LlamaIndex entry points -----------------------------------------------------------
    @llm_chat_callback()
    def chat(self, messages: Sequence[ChatMessage], **kwargs: Any) -> ChatResponse:
        return self._chat(messages, kwargs)

    @llm_chat_callback()
    def stream_chat(self, messages: Sequence[ChatMessage], **kwargs: Any) -> ChatResponseGen:
        return self._chat_stream(messages, kwargs)

    @llm_completion_callback()
    def complete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> CompletionResponse:
        return _as_completion(self._chat(self._prompt_messages(prompt), kwargs))

    @llm_completion_callback()
    def stream_complete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> CompletionResponseGen:
        return (_as_completion(r) for r in self._chat_stream(self._prompt_messages(prompt), kwargs))

    @llm_chat_callback()
    async def achat(self, messages: Sequence[ChatMessage], **kwargs: Any) -> ChatResponse:
        return await asyncio.to_thread(self._chat, messages, kwargs)

    @llm_chat_callback()
    async def astream_chat(self, messages: Sequence[ChatMessage], **kwargs: Any) -> ChatResponseAsyncGen:
        return async_iter(await asyncio.to_thread(self._chat_stream, messages, kwargs))

    @llm_completion_callback()
    async def acomplete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> CompletionResponse:
        return _as_completion(await asyncio.to_thread(self._chat, self._prompt_messages(prompt), kwargs))

    @llm_completion_callback()
    async def astream_complete(self, prompt: str, formatted: bool = False,
                               **kwargs: Any) -> CompletionResponseAsyncGen:
        gen = await asyncio.to_thread(self._chat_stream, self._prompt_messages(prompt), kwargs)
        return async_iter(_as_completion(r) for r in gen)

    # Every synthesizer call passes the template and its variables here: re-attribute the private
    # variables first (see the module doc), then let LlamaIndex format and call chat().
    def predict(self, prompt: BasePromptTemplate, **prompt_args: Any) -> str:
        prompt, prompt_args = self._privatize(prompt, prompt_args)
        return super().predict(prompt, **prompt_args)

    def stream(self, prompt: BasePromptTemplate, **prompt_args: Any) -> Any:
        prompt, prompt_args = self._privatize(prompt, prompt_args)
        return super().stream(prompt, **prompt_args)

    async def apredict(self, prompt: BasePromptTemplate, **prompt_args: Any) -> str:
        prompt, prompt_args = self._privatize(prompt, prompt_args)
        return await super().apredict(prompt, **prompt_args)

    async def astream(self, prompt: BasePromptTemplate, **prompt_args: Any) -> Any:
        prompt, prompt_args = self._privatize(prompt, prompt_args)
        return await super().astream(prompt, **prompt_args)

    def structured_predict(self, output_cls: Any, prompt: Any, llm_kwargs: dict[str, Any] | None = None,
                           **prompt_args: Any) -> Any:
        prompt, prompt_args = self._privatize(prompt, prompt_args)
        return super().structured_predict(output_cls, prompt, llm_kwargs, **prompt_args)

    async def astructured_predict(self, output_cls: Any, prompt: Any, llm_kwargs: dict[str, Any] | None = None,
                                  **prompt_args: Any) -> Any:
        prompt, prompt_args = self._privatize(prompt, prompt_args)
        return await super().astructured_predict(output_cls, prompt, llm_kwargs, **prompt_args)

    def stream_structured_predict(self, output_cls: Any, prompt: Any, llm_kwargs: dict[str, Any] | None = None,
                                  **prompt_args: Any) -> Any:
        prompt, prompt_args = self._privatize(prompt, prompt_args)
        return super().stream_structured_predict(output_cls, prompt, llm_kwargs, **prompt_args)

    async def astream_structured_predict(self, output_cls: Any, prompt: Any,
                                         llm_kwargs: dict[str, Any] | None = None, **prompt_args: Any) -> Any:
        prompt, prompt_args = self._privatize(prompt, prompt_args)
        return await super().astream_structured_predict(output_cls, prompt, llm_kwargs, **prompt_args)

    # -- internals ---------------------------------------------------------------------------
    def _privatize(self, prompt: Any, prompt_args: dict[str, Any]) -> tuple[Any, dict[str, Any]]:
        scope = current_scope()
        units = scope.all_units() if scope is not None else set()
        args, held = dict(prompt_args), {}
        with fail_closed():
            for name in self.private_variables:
                if args.get(name) is not None:
                    args[name] = private_value(args[name], units)
                elif getattr(prompt, "kwargs", {}).get(name) is not None:  # partially formatted in
                    held[name] = private_value(prompt.kwargs[name], units)
        return (prompt.partial_format(**held) if held else prompt), args

    def _get_messages(self, prompt: BasePromptTemplate, **prompt_args: Any) -> list[ChatMessage]:
        messages = super()._get_messages(prompt, **prompt_args)
        with fail_closed():
            check_rendered(prompt.select(llm=self) if hasattr(prompt, "select") else prompt, prompt_args,
                           "".join(m.content or "" for m in messages), self.private_variables)
        return messages

    def _settings(self, overrides: Mapping[str, Any] | None = None) -> dict[str, Any]:
        base = {k: getattr(self, k) for k in _LLM_SETTINGS}
        base["stop"] = tuple(self.stop)
        base = {k: v for k, v in base.items() if v is not None}
        if overrides:  # a per-call epsilon replaces a configured beta and vice versa
            if "epsilon" in overrides:
                base.pop("beta", None)
            if "beta" in overrides:
                base.pop("epsilon", None)
            base.update(overrides)
        return base

    def _call_args(self, kwargs: Mapping[str, Any]) -> dict[str, Any]:
        kwargs = dict(kwargs)
        overrides = {k: kwargs.pop(k) for k in list(kwargs) if k in GenerationSettings.model_fields}
        call = {k: kwargs.pop(k, getattr(self, k)) for k in ("detector", "budget")}
        call["call_id"] = kwargs.pop("call_id", None)
        if kwargs:
            raise TypeError(f"unknown argument(s) {sorted(kwargs)} for DPFusionLlamaLLM; per-call settings are "
                            f"{sorted(GenerationSettings.model_fields)}, detector, budget, call_id")
        return {**call, **self._settings(overrides)}

    def _engine_messages(self, messages: Sequence[ChatMessage]) -> tuple[list[dict[str, Any]], dict[str, int]]:
        out: list[dict[str, Any]] = []
        segments = fragments = 0
        for m in messages:
            role = _ROLES.get(getattr(m.role, "value", str(m.role)))
            if role is None:
                raise ValueError(f"unsupported message role {m.role!r}")
            if any(not isinstance(b, TextBlock) for b in m.blocks):
                raise TypeError("DPFusionLlamaLLM handles text messages only (found a non-text content block)")
            parts = parse_marked(m.content or "")  # strict: a marker a template cut or altered raises
            if role == "user" and self.user_unit:
                parts = [p if isinstance(p, PrivateSegment) else PrivateSegment(p, unit=self.user_unit)
                         for p in parts]
            segments += sum(isinstance(p, PrivateSegment) for p in parts)
            fragments += sum(isinstance(p, PrivateSegment) and p.group == UNION_GROUP for p in parts)
            out.append({"role": role, "content": parts})
        return out, {"private_segments": segments, "union_fragments": fragments}

    def _prompt_messages(self, prompt: str) -> list[ChatMessage]:
        system = [ChatMessage(role=MessageRole.SYSTEM, content=self.system_prompt)] if self.system_prompt else []
        return [*system, ChatMessage(role=MessageRole.USER, content=prompt)]

    def _chat(self, messages: Sequence[ChatMessage], kwargs: Mapping[str, Any]) -> ChatResponse:
        scope = current_scope()
        with fail_closed():
            msgs, info = self._engine_messages(messages)
            result = self.engine.generate(msgs, **self._call_args(kwargs))
        meta = self._record(result, info, scope)
        return ChatResponse(message=ChatMessage(role=MessageRole.ASSISTANT, content=clean_output(result.text)),
                            additional_kwargs={"dpfusion": meta})

    def _chat_stream(self, messages: Sequence[ChatMessage], kwargs: Mapping[str, Any]) -> Iterator[ChatResponse]:
        scope = current_scope()
        with fail_closed():
            msgs, info = self._engine_messages(messages)
            chunks = inference_steps(self.engine.stream(msgs, **self._call_args(kwargs)))
            first = next(chunks)  # prepare now (length check, budget reservation) inside the caller's span

        def gen() -> Iterator[ChatResponse]:
            text = ""
            for chunk in itertools.chain([first], chunks):
                delta = clean_output(chunk.text)
                text += delta
                extra = {"dpfusion": self._record(chunk.result, info, scope)} if chunk.result is not None else {}
                if delta or extra:
                    yield ChatResponse(message=ChatMessage(role=MessageRole.ASSISTANT, content=text), delta=delta,
                                       additional_kwargs=extra)
        return gen()

    def _record(self, result: GenerationResult, info: Mapping[str, int], scope: QueryScope | None) -> dict[str, Any]:
        meta = {**result.metadata(), **info, "query_id": scope.id if scope is not None else None}
        if scope is not None:
            scope.record(meta)
        dispatcher.event(DPFusionCallEvent.from_metadata(meta))
        return meta


def _as_completion(r: ChatResponse) -> CompletionResponse:
    return CompletionResponse(text=r.message.content or "", delta=r.delta, additional_kwargs=r.additional_kwargs)


__all__ = ["DPFusionCallError", "DPFusionLlamaLLM"]
