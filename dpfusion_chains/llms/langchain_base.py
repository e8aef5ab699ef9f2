"""Shared fields and helpers of the LangChain adapters (ChatDPFusion, DPFusionLLM): engine loading,
privacy settings as fields, per-call overrides, LangSmith parameters. No mechanism logic."""

from __future__ import annotations

import asyncio
import contextvars
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any, Literal, TypeVar

from dpfusion_chains._optional import require

require("langchain_core", "langchain", "the LangChain adapters")

from langchain_core.caches import BaseCache
from langchain_core.language_models.llms import get_llm_cache
from langchain_core.messages.ai import UsageMetadata
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, model_validator

from dpfusion_chains.core.params import DTypeName, GenerationSettings, make_settings
from dpfusion_chains.core.result import GenerationResult
from dpfusion_chains.llms.langchain_messages import normalize_roles

SETTING_NAMES = frozenset(GenerationSettings.model_fields)
CALL_EXTRAS = ("detector", "budget", "unit")

_engines: dict[tuple[str | None, str | None, str], Any] = {}
_engines_lock = threading.Lock()


def load_engine(model: str | None, device: str | None, dtype: DTypeName = "auto") -> Any:
    """One engine per (model, device, dtype) per process: several adapters share the loaded weights."""
    from dpfusion_chains.core.engine import DPFusionEngine

    key = (model, device, dtype)
    with _engines_lock:
        if key not in _engines:
            dev = device or "auto"
            _engines[key] = (DPFusionEngine.from_default(device=dev, dtype=dtype) if model is None
                             else DPFusionEngine.from_pretrained(model, device=dev, dtype=dtype))
        return _engines[key]


T = TypeVar("T")


async def iterate_in_thread(make: Callable[[], Iterator[T]]) -> AsyncIterator[T]:
    """Run a sync generator start to finish in ONE worker thread, handing items to the event loop.

    LangChain's default `_astream` resumes the sync `_stream` in a fresh executor call per chunk,
    i.e. possibly on another thread each time; the engine's decode loop keeps thread-local state
    (torch's inference mode, the engine lock) across steps, so it must stay on one thread.
    Leaving early stops the generator after the current step (the engine then charges in full).
    """
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[tuple[bool, Any]] = asyncio.Queue()
    stop = threading.Event()

    def work() -> None:
        iterator = make()
        try:
            for item in iterator:
                loop.call_soon_threadsafe(queue.put_nowait, (False, item))
                if stop.is_set():
                    break
        except BaseException as exc:  # noqa: BLE001 - re-raised in the consumer
            loop.call_soon_threadsafe(queue.put_nowait, (True, exc))
            return
        finally:
            getattr(iterator, "close", lambda: None)()
        loop.call_soon_threadsafe(queue.put_nowait, (True, None))

    worker = loop.run_in_executor(None, contextvars.copy_context().run, work)
    try:
        while True:
            done, value = await queue.get()
            if done:
                if value is not None:
                    raise value
                return
            yield value
    finally:
        stop.set()
        await asyncio.shield(worker)


def usage(result: GenerationResult) -> UsageMetadata:
    return UsageMetadata(input_tokens=result.prompt_tokens, output_tokens=result.tokens,
                         total_tokens=result.prompt_tokens + result.tokens)


def cached_metadata(meta: dict[str, Any]) -> dict[str, Any]:
    """A cache hit re-releases an earlier output: post-processing, so no new ε."""
    if meta.get("cached"):
        return meta
    return {**meta, "cached": True, "cached_call_id": meta.get("call_id"), "call_id": None, "epsilon": 0.0,
            "epsilon_classic": 0.0, "rdp": 0.0, "unit_rdp": {}, "units": [], "tokens": 0, "empirical_epsilon": None}


# Unknown arguments are refused (a misspelt privacy setting must not be silently ignored); set on
# each concrete class too, because LangChain's bases (listed after the mixin) say extra="ignore".
CONFIG = ConfigDict(populate_by_name=True, extra="forbid", arbitrary_types_allowed=True, protected_namespaces=())


class DPFusionParams(BaseModel):
    """Fields and helpers shared by ChatDPFusion and DPFusionLLM."""

    model_config = CONFIG

    engine: Any = Field(default=None, exclude=True, repr=False)
    """A DPFusionEngine; when None, `model` (a Hugging Face id or path) or the embedded default is loaded on first use."""
    model: str | None = None
    device: str | None = None
    dtype: DTypeName = "auto"
    """Weights of a model loaded here ("auto": float32 on a CPU; "bfloat16" is faster on CPUs with AVX512-BF16 or AMX)."""
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
    def _check_settings(self) -> DPFusionParams:
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
            self._engine = load_engine(self.model, self.device, self.dtype)
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
