"""Optional compiled decode step: transformers' StaticCache and one torch.compile graph.

The eager step (`decode._forward` on a ReservedCache) is the reference. The compiled step runs
the same model forward on a StaticCache: keys and values live in fixed [rows, heads, capacity,
dim] buffers written in place at a position held in a tensor, and the 4-D attention mask
[rows, 1, 1, capacity] is built outside the graph (slots not yet written are masked). Every
step of a batch therefore has the same shapes and runs the same graph. When requests join or
leave, the batch thaws back to its ReservedCache (no copy: the ReservedCache takes the static
buffers), edits it, and freezes again at the next step; capacities are rounded up so that
batches of similar size share graphs.

Whether it pays is measured by `benchmarks/compile_bench.py`, eager and compiled side by side.
On a CPU, inductor compiles the module with frozen weights and autotuned GEMMs (see
CompiledForward). On this project's 2-core CPU (SmolLM2-135M, float32, 2026-11-25) that made the
compiled engine 1.08–1.15x the eager one's tokens/s (1.83–2.10x plain `model.generate`, eager
1.69–1.83x); the price is a compile of about a minute at the first step (61–69 s with an empty
inductor cache), another for each new number of rows or capacity (these graphs are static), and
a process peak of 3.4 GB (the frozen, packed weights sit beside the eager ones). Batches of more
than CPU_MAX_ROWS rows decode eagerly (faster for them). An earlier trial of the plain
compiled step had it ten times slower while other processes competed for the cores. So on CPU it
stays opt-in (`compile=True`), worth it for long-running servers with stable batch sizes. On a
CUDA GPU a small model's step is dominated by kernel launches, which one graph removes, so
`compile="auto"` compiles on CUDA only (measured on an H100: README, Speed). A graph that fails
to build is reported once and the engine stays eager.

Same seed, same tokens as the eager step, up to float rounding: inductor's GEMMs and reductions
sum in another order, and the sampler (core.sampling) changes its token only where two candidates
tie to within that rounding. With SmolLM2 (float32 CPU, 2026-11-25), 30 of 30 answers of 32
tokens were the same; the inverse CDF sampled before parted in 1 of 6, at a point 3.6e-8 from the
edge of a token's interval (both paths passed the float64 audit there).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable
from typing import Any

import torch
from transformers.cache_utils import StaticCache

from dpfusion_chains.core.fusion import SearchLimits, search_lambda
from dpfusion_chains.core.kvcache import ReservedCache, additive_mask
from dpfusion_chains.core.models import SWITCH_FLAGS, SwitchSetting, resolve_flag

logger = logging.getLogger(__name__)

CompileSetting = SwitchSetting
COMPILE_FLAGS: dict[str, CompileSetting] = SWITCH_FLAGS  # `--compile auto|on|off` (serve, benchmarks)
CAPACITY_STEP = 256  # static capacities are multiples of this (fewer distinct graph shapes)
CPU_MAX_ROWS = 8     # the CPU-tuned graph runs batches of at most this many rows (see CompiledForward)
# What dynamo raises for a fullgraph function that would need one graph more than its
# recompile limit allows (torch 2.13; the name differs in some older releases).
RECOMPILE_LIMIT_ERRORS = frozenset({"FailOnRecompileLimitHit", "RecompileLimitExceeded", "CacheLimitExceeded"})


def wants_compile(setting: CompileSetting, device: torch.device) -> bool:
    """Resolve the engine's `compile` setting for `device`: "auto" means on a CUDA GPU."""
    return resolve_flag("compile", setting, torch.device(device).type == "cuda")


def static_capacity(length: int, room: int) -> int:
    """Positions a StaticBatch allocates: the cache's length plus room, rounded up."""
    return -(-(length + room) // CAPACITY_STEP) * CAPACITY_STEP


class StaticBatch:
    """A batch's KV cache frozen into a StaticCache, with its [rows, capacity] mask."""

    def __init__(self, model: Any, cache: ReservedCache, mask: torch.Tensor, room: int) -> None:
        length = cache.length
        capacity = static_capacity(length, room)
        self.cache = StaticCache(config=model.config, max_cache_len=capacity)
        for static, reserved in zip(self.cache.layers, cache.layers):
            static.lazy_initialization(reserved.keys, reserved.values)
            for tensor in (static.keys, static.values, static.cumulative_length):
                # transformers marks these as static addresses (for CUDA graphs, unused here);
                # with frozen weights inductor would fold such tensors into the graph as
                # constants, so the next batch's cache would be ignored. Plain inputs, then.
                if hasattr(tensor, "_dynamo_static_input_type"):
                    del tensor._dynamo_static_input_type
            static.keys[:, :, :length] = reserved.keys
            static.values[:, :, :length] = reserved.values
            static.cumulative_length.fill_(length)
        opened = mask.new_zeros((mask.shape[0], capacity))
        opened[:, :length] = mask
        self.additive = additive_mask(opened, model.dtype)  # what the graph reads (kvcache.additive_mask)
        self.length, self.capacity = length, capacity

    @property
    def mask(self) -> torch.Tensor:
        """[rows, capacity] boolean, True = attend: the additive mask's open slots."""
        return self.additive[:, 0, 0] == 0

    def next_mask(self) -> torch.Tensor:
        """Open the slot the next token is written to; the 4-D mask of that step."""
        self.additive[:, 0, 0, self.length] = 0.0
        return self.additive

    def advanced(self) -> None:
        self.length += 1

    @property
    def full(self) -> bool:
        return self.length >= self.capacity

    def thaw(self, cache: ReservedCache) -> torch.Tensor:
        """Hand the buffers back to `cache` (which then continues eagerly); returns the 2-D mask."""
        cache.adopt([(layer.keys, layer.values) for layer in self.cache.layers], self.length)
        return self.mask[:, :self.length]


class CompiledSearch:
    """`fusion.search_lambda` compiled once, for any number of rows (dynamic shapes).

    Eager, the search launches several dozen small kernels per step. On a GPU their launches
    cost more host time than they run: with the forward compiled, the λ search and mixing took
    14.5 % of an H100 step of SmolLM2-135M (engine_bench). Compiled, they fuse into a few
    kernels: side by side on the H100 (SmolLM2's shape, random bf16 weights, compiled forward,
    32 tokens, 3 rounds), a step took 13.3–17.2 ms against 19.2–24.3 ms with the eager search,
    and the λ search + mixing 8 % of it against 13.5–32 %.

    The result is the same function up to float32 rounding, which the enforced bound's margin
    covers as it covers the eager search's (fusion.enforced_bound); the white-box audit
    re-checks the chosen λ in float64 either way. If the graph cannot be built or run, the call
    is answered eagerly and later calls stay eager (the search is pure: nothing to undo). The
    engine replays it from CUDA graphs by default (core.graphed_search), which removes the
    launches its fused kernels still cost."""

    def __init__(self, backend: str | Callable[..., Any] = "inductor") -> None:
        self._fn = torch.compile(search_lambda, fullgraph=True, dynamic=True, backend=backend)
        self.broken = False

    def __call__(self, logp_private: torch.Tensor, logp_public: torch.Tensor, bound: torch.Tensor,
                 order: torch.Tensor, public_mass: torch.Tensor | None = None,
                 limits: SearchLimits | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        if not self.broken:
            try:
                return self._fn(logp_private, logp_public, bound, order, public_mass=public_mass, limits=limits)
            except Exception as exc:  # noqa: BLE001 - compilers fail in many ways; eager is always there
                self.broken = True
                logger.warning("torch.compile of the λ search failed (%s); searching eagerly", type(exc).__name__)
        return search_lambda(logp_private, logp_public, bound, order, public_mass=public_mass, limits=limits)


class CompiledForward:
    """`model.forward` compiled once (fullgraph) for one-token steps on a StaticCache.

    With inductor on a CPU the whole module is compiled with frozen weights and GEMM autotuning
    (`cpu_tuned`): inductor then packs each weight once and generates its own small-batch GEMM
    kernels, which read the weights far faster than the BLAS call of an eager step with a few
    rows. Freezing needs the weights as module attributes (hence the module, not its bound
    forward) and is switched on only around this graph's own calls; the eager model keeps its
    parameters (the frozen copy costs memory: see the module docstring)."""

    def __init__(self, model: Any, backend: str = "inductor", dynamic: bool | None = None,
                 mode: str | None = None) -> None:
        self.model = model
        device = next(model.parameters()).device
        self.cpu_tuned = backend == "inductor" and mode is None and device.type == "cpu"
        if self.cpu_tuned:
            # static shapes: in a trial, this mode's dynamic-batch graph returned the rows of the
            # batch it was first built for after the batch had shrunk
            self._fn = torch.compile(model, fullgraph=True, backend=backend, dynamic=False, mode="max-autotune")
        else:
            self._fn = torch.compile(model.forward, fullgraph=True, backend=backend, dynamic=dynamic, mode=mode)
        self.broken = False   # set when the graph failed to build: the engine stays eager
        self._ran = False
        # (rows, capacity) shapes refused a graph of their own by dynamo's recompile limit
        # (8 graphs per module by default): batches of those shapes decode eagerly.
        self.eager_shapes: set[tuple[int, int]] = set()
        # Batches with more rows decode eagerly. On the 2-core CPU, steps of 4 rows ran 1.86x
        # faster compiled, 8 rows about even (1.06x), 16 rows slower (0.67x): with many rows
        # the BLAS kernels are efficient again and the static capacity adds attention work.
        self.max_rows: int | None = CPU_MAX_ROWS if self.cpu_tuned else None
        # Off the CPU the λ search is compiled too (see CompiledSearch); on a CPU its eager
        # kernels are a few per cent of a step and a second compile would not pay.
        self.search: CompiledSearch | None = None if self.cpu_tuned else CompiledSearch(backend)

    def _settings(self) -> contextlib.AbstractContextManager[Any]:
        if not self.cpu_tuned:
            return contextlib.nullcontext()
        import torch._inductor.config as inductor_config

        # read when a graph is built (first call, and recompiles for a new batch shape)
        return inductor_config.patch(freezing=True)

    @staticmethod
    def supports(cache: Any) -> bool:
        return isinstance(cache, ReservedCache)

    def accepts(self, rows: int, capacity: int) -> bool:
        """Whether a batch of this shape may run compiled."""
        return not self.broken and (self.max_rows is None or rows <= self.max_rows) \
            and (rows, capacity) not in self.eager_shapes

    def __call__(self, ids: torch.Tensor, mask: torch.Tensor, positions: torch.Tensor,
                 static: StaticBatch) -> torch.Tensor | None:
        """[rows, vocab] logits of the last position, or None when no graph could be built: at the
        first call (the compiler fails) or for a new shape past dynamo's recompile limit. The
        caller then runs the eager step."""
        try:
            with self._settings():
                out = self._fn(input_ids=ids, attention_mask=mask, position_ids=positions,
                               past_key_values=static.cache, use_cache=True, logits_to_keep=1)
        except Exception as exc:  # noqa: BLE001 - compilers fail in many ways; eager is always there
            if self._ran and type(exc).__name__ in RECOMPILE_LIMIT_ERRORS:
                # raised before anything ran: the step can still be taken eagerly
                self.eager_shapes.add((ids.shape[0], static.capacity))
                logger.warning("torch.compile's recompile limit is reached: batches of %d rows (capacity %d) "
                               "decode eagerly", ids.shape[0], static.capacity)
                return None
            if self._ran:
                raise
            self.broken = True
            logger.warning("torch.compile of the decode step failed (%s: %s); decoding eagerly",
                           type(exc).__name__, str(exc).splitlines()[0][:200] if str(exc) else "")
            return None
        self._ran = True
        return out.logits[:, -1, :]
