"""Few-row linear layers on the CPU, computed weight-major.

A decode step multiplies a handful of rows (G+1 views per request) by every weight matrix.
`F.linear(x, W)` asks the BLAS for x·Wᵀ, and MKL's kernels for that layout re-read W for small
row counts: on this project's 2-core CPU the 49152×576 output layer took 26 ms for 2 rows and
60 ms for 16, against 13 ms for one row. The same product computed as (W·xᵀ)ᵀ, with W as the
tall left operand, took 11 ms and 26 ms (the 576×1536 MLP matrices gained 25–40 %).
`benchmarks/engine_bench.py` measures the whole step both ways.

`install` swaps the class of a model's plain float32 CPU `nn.Linear` modules for
`WeightMajorLinear`; its forward is the stock one except inside `active()` (the engine's own
eager forwards, in this thread), with 2..MAX_ROWS rows and not under torch.compile (inductor
picks its own kernels). Outside the engine the model computes exactly as before, so the user's
other calls, and any library sharing the model object, are unaffected.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from typing import Any, Literal

import torch
from torch import nn

from dpfusion_chains.core.models import resolve_flag

MAX_ROWS = 128  # above this the two layouts measured alike (prefill keeps the stock kernel)
WeightMajorSetting = bool | Literal["auto"]

_state = threading.local()


@contextlib.contextmanager
def active() -> Iterator[None]:
    """Let installed layers compute weight-major in this thread for the duration."""
    before = getattr(_state, "on", False)
    _state.on = True
    try:
        yield
    finally:
        _state.on = before


class WeightMajorLinear(nn.Linear):
    """nn.Linear whose few-row products inside `active()` run as (W·xᵀ)ᵀ."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # is_compiling first: dynamo must not trace the thread-local (fullgraph would fail)
        if torch.compiler.is_compiling() or not getattr(_state, "on", False):
            return super().forward(x)
        rows = x.numel() // x.shape[-1] if x.shape[-1] else 0
        if not 2 <= rows <= MAX_ROWS or x.dtype != self.weight.dtype:
            return super().forward(x)
        out = torch.mm(self.weight, x.reshape(rows, x.shape[-1]).t()).t()
        if self.bias is not None:
            out = out + self.bias
        # Callers view the output into heads: hand back the usual contiguous layout.
        return out.contiguous().view(*x.shape[:-1], self.out_features)


def wants_weight_major(setting: WeightMajorSetting, device: torch.device) -> bool:
    """Resolve the engine's `weight_major` setting: "auto" means on a CPU."""
    return resolve_flag("weight_major", setting, torch.device(device).type == "cpu")


def install(model: Any) -> int:
    """Swap the model's plain float32 CPU nn.Linear modules for WeightMajorLinear (same
    parameters, no copy); returns how many were swapped."""
    swapped = 0
    for module in model.modules():
        weight = getattr(module, "weight", None)
        if type(module) is nn.Linear and weight is not None and weight.device.type == "cpu" \
                and weight.dtype == torch.float32:
            module.__class__ = WeightMajorLinear
            swapped += 1
    return swapped


__all__ = ["MAX_ROWS", "WeightMajorLinear", "WeightMajorSetting", "active", "install", "wants_weight_major"]
