"""A linear layer's product for a few rows as one compiled pass that reads the weight once.

A decode step multiplies a handful of rows (G+1 views per request) by every weight matrix of the
model, which lies in memory, not in cache: the step streams the whole model, and how fast depends
on how well the product streams. `native/few_row_linear.c` hands each OpenMP thread a contiguous
run of the weight's rows, four at a time, and multiplies them with the input rows three at a
time, twelve dot products in registers, so the weight is read from memory once and the rows
from cache.

On a 2-core AMD Zen 3 (AVX2, no AVX-512; GEMM ~92–147 GFLOP/s and reads ~17–20 GB/s when
measured), SmolLM2-135M's 30 layers of products (the 960×576 fused query/key/value, 576×576,
3072×576 fused gate/up and 576×1536 matrices, the weights cold) took, in ms, medians of 10 runs,
the three ways alternating in one process (`/tmp` script; 24 rows and up: two such runs):

    rows               1     2     4     8    16      24       32       48       64
    this kernel       27    27    29    37    41   65–67   82–99   110–139  167–190
    oneDNN packed     39    41    46    64    59   77–90   94–99   133–143  161–179
    weight-major      45    39    41    82    63  101–111 110–114  131–148  167–184

so it is used for 1..MAX_ROWS rows. On the Zen 5 (AVX-512) of earlier sessions oneDNN's packed
products ran 2–3× faster than weight-major; this kernel was not measured there, so by default
("auto") it is used only where its 8-lane AVX2 build is loaded. DPFUSION_NATIVE_LINEAR=1 uses it
with either build, =0 never. Inside the engine that setting and `disabled()` are read once per
forward (core.matmul.active hands its layers `usable()`'s answer), not at each of its ~200
products: a declined call then costs no environment read, and a taken one ~12 µs of Python
around the kernel instead of ~38 (`timeit`, a 2-row product of a tiny weight, the Zen 3).

Only float32 rows and weights on the CPU, without autograd and outside torch.compile; anything
else answers None and the caller keeps its own product, which computes the same up to float
rounding (sums in another order).
"""

from __future__ import annotations

import ctypes
import logging
import os
from collections.abc import Callable

import torch

from dpfusion_chains.core import native_library

ENVIRONMENT = "DPFUSION_NATIVE_LINEAR"  # "auto" (default): with the AVX2 build; "1": either build; "0": never
SETTINGS = ("auto", "1", "true", "on", "0", "false", "off")
MAX_ROWS = 24  # above this oneDNN's packed products measured alike (32, 48 rows) or faster (64)

logger = logging.getLogger(__name__)
_warned: set[str] = set()  # unknown settings already logged
_switch = native_library.BlockSwitch()
disabled = _switch.disabled  # a block with the kernel unused (benchmarks and tests compare)
_pointer, _i64 = ctypes.c_void_p, ctypes.c_int64
_ARGUMENTS = [_pointer, _i64, _i64, _i64, _pointer, _i64, _pointer, _pointer]  # dpf_few_row_linear's, in order
_FLOAT = torch.float32


def available() -> bool:
    """Whether `few_row_linear` computes products here (the library loaded, switched on, and by
    default its AVX2 build)."""
    return usable() is not None


def usable() -> Callable[..., int] | None:
    """The compiled product where it is available, else None: for callers that decide once for a
    block of products (core.matmul.active decides per forward) and then call `product`."""
    setting = os.environ.get(ENVIRONMENT, "auto").strip().lower()
    if setting not in SETTINGS and setting not in _warned:
        _warned.add(setting)
        logger.warning("%s=%r is not one of %s; taken as auto", ENVIRONMENT, setting, ", ".join(SETTINGS))
    if _switch.off or setting in ("0", "false", "off"):
        return None
    kernel = _kernel()
    if kernel is None or not (setting in ("1", "true", "on") or native_library.lanes() == 8):
        return None
    return kernel


def few_row_linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor | None:
    """x · weightᵀ (+ bias) -> [..., out], or None where the kernel does not apply: x [..., in]
    with 1..MAX_ROWS rows, weight [out, in] contiguous, all float32 on the CPU; `in` a multiple of
    the kernel's vector width; not under torch.compile."""
    if torch.compiler.is_compiling():
        return None
    kernel = usable()
    return None if kernel is None else product(kernel, x, weight, bias)


def product(kernel: Callable[..., int], x: torch.Tensor, weight: torch.Tensor,
            bias: torch.Tensor | None = None) -> torch.Tensor | None:
    """`few_row_linear` through `kernel` (what `usable()` answered), for callers that know they
    are not under torch.compile. Every layer of every decode step comes here, so the checks are
    the cheap forms (`is_cpu`, one shape read; `x` read in place where contiguous): ~1 µs each
    adds up to a millisecond a step."""
    shape = x.shape
    features = shape[-1] if shape else 0
    rows = x.numel() // features if features else 0
    if (not 1 <= rows <= MAX_ROWS or x.dtype != _FLOAT or weight.dtype != _FLOAT or not x.is_cpu
            or not weight.is_cpu or weight.dim() != 2 or weight.shape[1] != features or not weight.is_contiguous()):
        return None
    out_features = weight.shape[0]
    if bias is not None and (bias.dtype != _FLOAT or bias.shape != (out_features,) or not bias.is_contiguous()
                             or not bias.is_cpu):
        return None
    if torch.is_grad_enabled() and (x.requires_grad or weight.requires_grad
                                    or bias is not None and bias.requires_grad):
        return None
    if x.is_contiguous():
        rows_at, row_stride = x.data_ptr(), features
    else:
        flat = x.reshape(rows, features)
        if flat.stride(1) != 1:
            flat = flat.contiguous()
        rows_at, row_stride = flat.data_ptr(), flat.stride(0)
    out = x.new_empty((*shape[:-1], out_features))
    if kernel(rows_at, rows, row_stride, features, weight.data_ptr(), out_features,
              None if bias is None else bias.data_ptr(), out.data_ptr()):
        return None  # `in` no multiple of the vector width: the caller's product
    return out


def _kernel() -> Callable[..., int] | None:
    return native_library.function("dpf_few_row_linear", _ARGUMENTS)


__all__ = ["ENVIRONMENT", "MAX_ROWS", "available", "disabled", "few_row_linear", "product", "usable"]
