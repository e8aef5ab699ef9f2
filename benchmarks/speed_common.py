"""Shared pieces of the speed benchmarks: the engine, prompts, timers, memory, result files."""

from __future__ import annotations

import argparse
import contextlib
import json
import resource
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch

from benchmarks.goals import RESULTS, result_name
from dpfusion_chains.core import shared_prefix
from dpfusion_chains.core.compiled import COMPILE_FLAGS
from dpfusion_chains.core.matmul import PackedLinear, WeightMajorLinear
from dpfusion_chains.core.models import SWITCH_FLAGS
from dpfusion_chains.core.params import DTYPE_HELP, DTYPE_NAMES
from dpfusion_chains.core.prefix_cache import DEFAULT_TOKENS as PREFIX_CACHE_TOKENS


class StageTimers:
    """Time spent in the λ search + mixing, in prefills (DecodeBatch.prefill and the merge into
    the batch, DecodeBatch.join) and in requests leaving (DecodeBatch.remove), while active; the
    scheduler's worker thread included. On a GPU (`device`, the engine's) the λ search and mixing are timed with CUDA
    events around their kernels (a host clock would time only their launches, and a sync would
    slow the step it measures); the other stages, once per request, end with a sync."""

    def __init__(self, device: torch.device | str = "cpu") -> None:
        import dpfusion_chains.core.decode as decode_module

        self.module = decode_module
        self.on_gpu = torch.device(device).type == "cuda"
        self.reset()
        batch = decode_module.DecodeBatch
        self.saved = (decode_module.search_lambda, decode_module.mix_rows, batch.prefill, batch.join, batch.remove,
                      decode_module.CompiledSearch.__call__, decode_module.public_masses,
                      decode_module.GraphedSearch.__call__)

    def _wrap(self, fn: Any, slot: str) -> Any:
        def timed(*args: Any, **kwargs: Any) -> Any:
            start = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                if self.on_gpu:
                    sync()  # the stage's kernels, not only their launches
                self._host[slot] += time.perf_counter() - start
        return timed

    def _wrap_kernels(self, fn: Any) -> Any:
        def timed(*args: Any, **kwargs: Any) -> Any:
            # A graphed search calls the search it replays while it captures: that call is timed
            # by the outer one (once), and no event may be recorded into a graph being captured.
            if self._depth or torch.cuda.is_current_stream_capturing():
                return fn(*args, **kwargs)
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            self._depth += 1
            try:
                return fn(*args, **kwargs)
            finally:
                self._depth -= 1
                end.record()
                self._events.append((start, end))
        return timed

    @property
    def mixing(self) -> float:
        if self._events:
            torch.cuda.synchronize()
        return self._host["mixing"] + sum(s.elapsed_time(e) for s, e in self._events) / 1e3

    @property
    def prefill(self) -> float:
        return self._host["prefill"]

    @property
    def leaving(self) -> float:
        return self._host["leaving"]

    def __enter__(self) -> StageTimers:
        search, mix, prefill, join, remove, compiled_search, masses, graphed_search = self.saved
        wrap_mixing = self._wrap_kernels if self.on_gpu else (lambda fn: self._wrap(fn, "mixing"))
        self.module.search_lambda = wrap_mixing(search)
        self.module.CompiledSearch.__call__ = wrap_mixing(compiled_search)  # the λ search when compiled
        self.module.GraphedSearch.__call__ = wrap_mixing(graphed_search)    # and when replayed from graphs
        self.module.mix_rows = wrap_mixing(mix)
        self.module.public_masses = wrap_mixing(masses)  # the search's input, summed outside it
        self.module.DecodeBatch.prefill = self._wrap(prefill, "prefill")
        self.module.DecodeBatch.join = self._wrap(join, "prefill")
        self.module.DecodeBatch.remove = self._wrap(remove, "leaving")
        return self

    def __exit__(self, *exc: Any) -> None:
        batch = self.module.DecodeBatch
        (self.module.search_lambda, self.module.mix_rows, batch.prefill, batch.join, batch.remove,
         self.module.CompiledSearch.__call__, self.module.public_masses,
         self.module.GraphedSearch.__call__) = self.saved

    def reset(self) -> None:
        self._host = {"mixing": 0.0, "prefill": 0.0, "leaving": 0.0}
        self._events: list[tuple[Any, Any]] = []
        self._depth = 0


def add_engine_flags(parser: argparse.ArgumentParser) -> None:
    """The engine's speed settings, so each one's share of a result can be measured."""
    parser.add_argument("--prefix-cache-tokens", type=int, default=PREFIX_CACHE_TOKENS,
                        help="public-view KV store (0: off); emptied before every timed run")
    parser.add_argument("--weight-major", choices=list(SWITCH_FLAGS), default="auto",
                        help="few-row products as (W·xᵀ)ᵀ (auto: on a CPU)")
    parser.add_argument("--packed-weights", choices=list(SWITCH_FLAGS), default="auto",
                        help="with weight-major: products through oneDNN on packed weight copies (on: every "
                             "layer, off: none, auto: every layer if the copies fit a quarter of memory, else "
                             "the output layer)")
    parser.add_argument("--packed-prefill", choices=["on", "off"], default="on",
                        help="suffixes of views and of requests prefilled together in one forward")
    parser.add_argument("--compile", choices=list(COMPILE_FLAGS), default="auto",
                        help="compiled decode steps (auto: on a CUDA GPU); graphs are built in the warm-up")
    parser.add_argument("--keep-freed-memory", choices=list(SWITCH_FLAGS), default="auto",
                        help="glibc keeps freed memory for the next request (auto: on a CPU; process-wide, so "
                             "compare separate runs)")
    parser.add_argument("--graph-search", choices=list(SWITCH_FLAGS), default="auto",
                        help="the λ search replayed from CUDA graphs (auto: on a CUDA GPU)")
    parser.add_argument("--dtype", choices=DTYPE_NAMES, default="auto", help=DTYPE_HELP)


def engine_flags(args: argparse.Namespace) -> dict[str, Any]:
    """load_engine keyword arguments from add_engine_flags' options."""
    return {"prefix_cache_tokens": args.prefix_cache_tokens,
            "weight_major": SWITCH_FLAGS[args.weight_major], "packed_weights": SWITCH_FLAGS[args.packed_weights],
            "packed_prefill": args.packed_prefill == "on",
            "compile": COMPILE_FLAGS[args.compile], "keep_freed_memory": SWITCH_FLAGS[args.keep_freed_memory],
            "graph_search": SWITCH_FLAGS[args.graph_search], "dtype": args.dtype}


def flags_suffix(args: argparse.Namespace) -> str:
    """A result-file suffix naming the engine settings that differ from the defaults."""
    parts = [] if args.prefix_cache_tokens == PREFIX_CACHE_TOKENS else [f"prefix{args.prefix_cache_tokens}"]
    parts += [] if args.weight_major == "auto" else [f"weightmajor-{args.weight_major}"]
    parts += [] if args.packed_weights == "auto" else [f"packedweights-{args.packed_weights}"]
    parts += [] if args.packed_prefill == "on" else ["unpacked"]
    parts += [] if args.compile == "auto" else [f"compile-{args.compile}"]
    parts += [] if args.keep_freed_memory == "auto" else [f"keepfreed-{args.keep_freed_memory}"]
    parts += [] if args.graph_search == "auto" else [f"graphsearch-{args.graph_search}"]
    parts += [] if args.dtype == "auto" else [args.dtype]
    return "".join("_" + p for p in parts)


def packed_body_layers(engine: Any) -> list[Any]:
    """The engine's packed layers other than its output layer (empty unless every layer is packed)."""
    output = engine.model.get_output_embeddings()
    return [m for m in engine.model.modules() if isinstance(m, PackedLinear) and m is not output]


@contextlib.contextmanager
def output_layer_packed_only(engine: Any) -> Iterator[None]:
    """For the duration, the engine's packed layers other than its output layer compute
    weight-major: the engine before `packed_weights` packed every layer, to measure it side by side."""
    layers = [(layer, type(layer)) for layer in packed_body_layers(engine)]
    for layer, _ in layers:
        layer.__class__ = WeightMajorLinear
    try:
        yield
    finally:
        for layer, kind in layers:
            layer.__class__ = kind


@contextlib.contextmanager
def opening_read_per_row() -> Iterator[None]:
    """For the duration, decode steps read every row's copy of a shared opening
    (core.shared_prefix off): the engine before it read them once, to measure it side by side."""
    saved = shared_prefix.MIN_SAVED
    shared_prefix.MIN_SAVED = 2**62
    try:
        yield
    finally:
        shared_prefix.MIN_SAVED = saved


def cold(engine: Any) -> None:
    """Empty the engine's public-view store, so a timed run reuses only views it computed
    itself (across its own requests), never those of the warm-up or an earlier run."""
    if engine.prefixes is not None:
        engine.prefixes.clear()


def load_engine(device: str = "auto", **kwargs: Any) -> Any:
    """The embedded SmolLM2 engine with EOS ignored, so every run samples exactly the requested
    number of tokens (both sides of every comparison)."""
    from dpfusion_chains.core.engine import DPFusionEngine

    class NoEosEngine(DPFusionEngine):
        def _eos_ids(self) -> frozenset[int]:
            return frozenset()

    return NoEosEngine.from_default(device=device, **kwargs)


def record_prompt(groups: int, record_offset: int = 0, min_chars: int = 1600) -> list[dict[str, Any]]:
    """A question over `groups` private records (one privacy unit each), padded with public
    background text to about min_chars/4 tokens."""
    from dpfusion_chains.core.spans import private
    from dpfusion_chains.data import load_records

    records = load_records()
    content: list[Any] = []
    for i in range(groups):
        rec = records[(record_offset + i) % (len(records) - 1)]
        content += [f"Record {i + 1}:\n", private(rec["text"], unit=rec["id"]), "\n\n"]
    while sum(len(c if isinstance(c, str) else c.text) for c in content) < min_chars:
        content.insert(0, "Background: " + records[-1]["text"] + "\n\n")
    content.append("Question: summarise the records in two sentences.")
    return [{"role": "system", "content": "Answer using only the records."}, {"role": "user", "content": content}]


def plain_ids(engine: Any, messages: list[dict[str, Any]]) -> torch.Tensor:
    """What a plain, non-private call would feed the model: the chat with every private segment
    in clear text, rendered by the model's template."""
    from dpfusion_chains.core.spans import PrivateSegment

    def text(content: Any) -> str:
        if isinstance(content, str):
            return content
        return "".join(c.text if isinstance(c, PrivateSegment) else c for c in content)

    clear = [{"role": m["role"], "content": text(m["content"])} for m in messages]
    ids = engine.tokenizer.apply_chat_template(clear, add_generation_prompt=True, tokenize=True)
    if not isinstance(ids, list):  # newer tokenizers return a BatchEncoding
        ids = ids["input_ids"]
    return torch.tensor([ids], device=engine.device)


def run_plain(engine: Any, input_ids: torch.Tensor, tokens: int, seed: int) -> None:
    """`model.generate`, sampling exactly `tokens` tokens (no top-k/top-p, like DP-Fusion's default)."""
    torch.manual_seed(seed)
    with torch.inference_mode():
        out = engine.model.generate(input_ids, attention_mask=torch.ones_like(input_ids), do_sample=True,
                                    max_new_tokens=tokens, min_new_tokens=tokens, top_k=0, top_p=1.0,
                                    pad_token_id=engine.tokenizer.pad_token_id)
    assert out.shape[1] - input_ids.shape[1] == tokens


def timed(fn: Callable[[], Any], *engines: Any) -> tuple[float, Any]:
    """(wall seconds, result) of one call, the given engines' prefix stores emptied first (cold)."""
    for engine in engines:
        cold(engine)
    sync()
    start = time.perf_counter()
    out = fn()
    sync()
    return time.perf_counter() - start, out


def request_prompts(n: int) -> list[list[dict[str, Any]]]:
    """`n` one-record questions (a different record each, ~370 prompt tokens): the concurrent
    requests of the batching benchmarks."""
    return [record_prompt(1, record_offset=i, min_chars=800) for i in range(n)]


def sync() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def peak_memory_mb(device: torch.device | str) -> dict[str, float]:
    """Peak resident memory of this process, and the GPU's peak allocation when on a GPU."""
    out = {"peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0}
    if torch.device(device).type == "cuda":
        out["peak_gpu_mb"] = torch.cuda.max_memory_allocated() / 2**20
    return out


def load_average() -> str:
    try:
        return Path("/proc/loadavg").read_text().split(" ", 3)[:3].__str__()
    except OSError:
        return "n/a"


def save(name: str, report: dict[str, Any]) -> Path:
    """benchmarks/results/NAME.json; results from a GPU are NAME_cuda.json, beside the CPU's."""
    RESULTS.mkdir(exist_ok=True)
    device = torch.device(report.get("device", "cpu")).type
    path = RESULTS / result_name(name, device, ".json")
    path.write_text(json.dumps(report, indent=2))
    return path
