"""The λ search replayed as a CUDA graph: one launch per decode step instead of dozens.

On a GPU the search's work is small (a dozen passes over [N, V] and a [2, N, M, k] grid) and
its cost is the host launching its kernels: several dozen of them, eager or compiled, each a
few to tens of µs on a slow host while the GPU waits. `GraphedSearch` captures the search once
per input shape (rows, vocabulary) in a torch.cuda.CUDAGraph and replays it: a step then
launches the copies of its inputs into the graph's buffers, the replay and the copies of the
two results out.

The replay runs the very kernels that were captured, in the same order, on the step's inputs:
the results are those of a direct call, bit for bit (tested on a GPU). The search is a pure
function with no host synchronisation off the CPU (fusion.search_lambda refines loose rows on a
CPU only), so it can be captured; a capture that fails anyway is reported once and the search
is then called directly (nothing to undo).
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from dpfusion_chains.core.fusion import SearchLimits
from dpfusion_chains.core.models import SwitchSetting, resolve_flag

logger = logging.getLogger(__name__)

SearchFn = Callable[..., tuple[torch.Tensor, torch.Tensor]]
MAX_GRAPHS = 16   # shapes kept (least recently used dropped); their intermediates share one memory pool
WARMUP_CALLS = 2  # direct calls on a side stream before a capture (lazy initialisation, compilation)


def wants_graph_search(setting: SwitchSetting, device: torch.device | str) -> bool:
    """Resolve the engine's `graph_search` setting: "auto" means on a CUDA GPU; True needs one."""
    on = resolve_flag("graph_search", setting, torch.device(device).type == "cuda")
    if on and torch.device(device).type != "cuda":
        raise ValueError(f"graph_search=True needs a CUDA device (CUDA graphs), got {device}; "
                         "use 'auto' or False")
    return on


@dataclass
class _Graph:
    graph: torch.cuda.CUDAGraph
    inputs: tuple[torch.Tensor, ...]          # the buffers the graph reads: copy a step's inputs here
    outputs: tuple[torch.Tensor, torch.Tensor]


class GraphedSearch:
    """`search` (fusion.search_lambda or a compiled one) replayed from a CUDA graph per shape.

    Calls without `limits` and `public_mass` (the decode step always passes both) or off a CUDA
    device go to `search` directly."""

    def __init__(self, search: SearchFn, max_graphs: int = MAX_GRAPHS) -> None:
        self.search = search
        self.max_graphs = max_graphs
        self._graphs: OrderedDict[tuple[Any, ...], _Graph] = OrderedDict()
        self.broken = False
        self.captures = 0  # statistics, for tests and benchmarks
        self._side: torch.cuda.Stream | None = None  # one stream for every capture: its warm-up memory is reused
        # One memory pool for every graph: the search's intermediates (~10 [N, V] buffers) are
        # then held about once, not once per shape. One graph's replay may overwrite another's
        # intermediates and results; that is safe because graphs of one search never run at once
        # and none reads what another left: the inputs sit outside the pool and are copied in
        # before each replay, the results are copied out right after it (same stream).
        self._pool: Any = None

    def __call__(self, logp_private: torch.Tensor, logp_public: torch.Tensor, bound: torch.Tensor | float,
                 order: torch.Tensor | float, public_mass: torch.Tensor | None = None,
                 limits: SearchLimits | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        if self.broken or limits is None or public_mass is None or logp_private.device.type != "cuda":
            return self.search(logp_private, logp_public, bound, order, public_mass=public_mass, limits=limits)
        inputs = (logp_private, logp_public, public_mass, limits.coef, limits.log_limit)
        key = tuple((tuple(t.shape), t.dtype, t.stride()) for t in inputs) + (logp_private.device,)
        entry = self._graphs.get(key)
        if entry is None:
            try:
                entry = self._capture(inputs, bound, order)
            except Exception as exc:  # noqa: BLE001 - capture fails in many ways; the direct call is always there
                self.broken = True
                self._graphs.clear()
                logger.warning("CUDA graph capture of the λ search failed (%s); searching directly",
                               type(exc).__name__)
                return self.search(logp_private, logp_public, bound, order, public_mass=public_mass, limits=limits)
            self._graphs[key] = entry
            if len(self._graphs) > self.max_graphs:
                self._graphs.popitem(last=False)
        else:
            self._graphs.move_to_end(key)
        for buffer, value in zip(entry.inputs, inputs):
            buffer.copy_(value)
        entry.graph.replay()
        # the next replay overwrites the graph's outputs; the step keeps λ and D↔ (per request)
        lam, div = entry.outputs
        return lam.clone(), div.clone()

    def _capture(self, inputs: tuple[torch.Tensor, ...], bound: Any, order: Any) -> _Graph:
        buffers = tuple(t.clone() for t in inputs)
        logp_private, logp_public, public_mass, coef, log_limit = buffers

        def run() -> tuple[torch.Tensor, torch.Tensor]:
            return self.search(logp_private, logp_public, bound, order, public_mass=public_mass,
                               limits=SearchLimits(coef, log_limit))

        # On a side stream, as capture requires: first direct calls (lazy initialisation and, for a
        # compiled search, its compilation must not happen inside the capture), then the capture.
        # capture_begin rather than torch.cuda.graph, whose entry synchronises the device and
        # empties the allocator's cache: a new batch shape would cost every later step fresh
        # cudaMallocs. thread_local: other threads' CUDA work is not an error meanwhile.
        device = logp_private.device
        if self._side is None or self._side.device != device:
            self._side, self._pool = torch.cuda.Stream(device=device), torch.cuda.graph_pool_handle()
        side = self._side
        side.wait_stream(torch.cuda.current_stream(device))
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.stream(side):
            for _ in range(WARMUP_CALLS):
                run()
            graph.capture_begin(pool=self._pool, capture_error_mode="thread_local")
            try:
                outputs = run()
            finally:
                graph.capture_end()
        torch.cuda.current_stream(device).wait_stream(side)
        self.captures += 1
        return _Graph(graph, buffers, outputs)


__all__ = ["GraphedSearch", "MAX_GRAPHS", "wants_graph_search"]
