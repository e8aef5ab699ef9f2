"""A decode step's attention as one compiled pass, where this machine can build it.

A batched decode step's attention (core.shared_prefix) is some twenty small torch ops per layer:
products of three query heads against one row's few hundred keys, a softmax, products with the
values, in one or two buckets of rows. Each op costs microseconds of dispatch, so on the
project's 2-core Zen 5 dev CPU the eight requests of benchmarks/batch_bench.py (16 rows, a
223-token opening) spent ~400 µs a layer there, 11.8 ms of a ~41 ms step, reading ~3 MB of keys
and values (~60 µs at the machine's read bandwidth). `native/decode_attention.c` computes the
same attention in one call: for each (row, key/value head), in parallel on torch's own OpenMP
threads, the scores against the opening (row 0's copy) and the row's own attended columns, one
softmax, the weighted values; float32 throughout, half-precision caches converted as read.
In that step it takes 141–171 µs a layer (~67 µs called again on the same step's tensors, its
caches warm), and the step 33.8–37.3 ms against 40.4–43.5 with torch's ops (medians of runs with
the two alternating in one process, the same sampled text). The (row, head) tasks are handed out one
at a time, as the rows' lengths differ: in a standalone run of those shapes with the long rows
first, handing them out in two halves took 246 µs a layer against 198. On a 2-core AMD Zen 3
(AVX2, no AVX-512; GEMM ~140–170 GFLOP/s), its 8-lane build took the same step from 119–170 to
101–118 ms (two such runs, 4 alternations each, the same text).

It is one of core.native_library's kernels (built for this CPU on first use; AVX-512F, 16 floats
a vector, or AVX2 with FMA and F16C, 8), used for float32, bfloat16 and float16 caches with a
head dim that is a multiple of its vector width (`lanes()`, at most 256), without autograd and
outside torch.compile. Anywhere else, or where the library is not loaded, `decode_attention`
answers None and the caller keeps torch's ops, which compute the same attention up to float
rounding (the exponential here is a polynomial, ~1 ulp).
Set DPFUSION_NATIVE_ATTENTION=0 to keep torch's ops everywhere.
"""

from __future__ import annotations

import ctypes
import os
from collections.abc import Callable

import torch

from dpfusion_chains.core import native_library

ENVIRONMENT = "DPFUSION_NATIVE_ATTENTION"  # "0": torch's ops everywhere
DTYPES = {torch.float32: 0, torch.bfloat16: 1, torch.float16: 2}  # the kernel's dtype codes
MAX_HEAD_DIM, MAX_GROUP = 256, 64  # the kernel's limits (native/decode_attention.c)

_switch = native_library.BlockSwitch()
disabled = _switch.disabled  # a block with the kernel unused (benchmarks and tests compare)
_pointer, _i64, _i32 = ctypes.c_void_p, ctypes.c_int64, ctypes.c_int
_ARGUMENTS = [_pointer, _pointer, _pointer, _i32, ctypes.c_float, *[_i64] * 8, _i32, _i32, _i32, _i32, _i64, _i64,
              _pointer, _i64, _pointer, _i64, _pointer]  # dpf_decode_attention's, in order


def available() -> bool:
    """Whether the compiled kernel is loaded (building it on the first call) and switched on."""
    return _usable() is not None


def takes_model(model: torch.nn.Module) -> bool:
    """Whether `decode_attention` computes this model's decode attention on a CPU (its dtype,
    head dim and grouping), the kernel being available."""
    config = getattr(model, "config", None)
    heads = getattr(config, "num_attention_heads", None)
    if not heads or getattr(model, "dtype", None) not in DTYPES:
        return False
    kv_heads = getattr(config, "num_key_value_heads", None) or heads
    dim = getattr(config, "head_dim", None) or getattr(config, "hidden_size", 0) // heads
    width = lanes()
    return (width > 0 and dim % width == 0 and width <= dim <= MAX_HEAD_DIM and heads % kv_heads == 0
            and heads // kv_heads <= MAX_GROUP)


def lanes() -> int:
    """Floats per vector of the kernel built here (16 with AVX-512F, 8 with AVX2), which a head
    dim must be a multiple of; 0 where the kernel is not available."""
    return native_library.lanes() if available() else 0


def decode_attention(query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, scale: float, shared_start: int,
                     shared_length: int, first: torch.Tensor, mask: torch.Tensor) -> torch.Tensor | None:
    """One decode step's attention, or None where the kernel does not apply (the caller computes
    it with torch's ops). query [rows, heads, 1, dim]; key and value [rows, kv_heads, columns,
    dim] (query head j reads key/value head j // (heads / kv_heads)); row r attends to row 0's
    columns [shared_start, shared_start + shared_length), then to its own columns from first[r]
    (int64 [rows]) where `mask` ([rows, ≥ columns] bool) is True -> [rows, heads, 1, dim]."""
    rows, heads, steps, dim = query.shape
    columns = key.shape[2]
    # every layer of every decode step comes here: the cheap forms of each check (`is_cpu`, not
    # `.device.type`), as ~1 µs each adds up to a millisecond a step
    if (steps != 1 or key.dtype not in DTYPES or not query.dtype == key.dtype == value.dtype
            or not (query.is_cpu and key.is_cpu and value.is_cpu and first.is_cpu and mask.is_cpu)
            or value.shape != key.shape or key.shape[0] != rows
            or query.stride(3) != 1 or key.stride(3) != 1 or value.stride(3) != 1
            or mask.dtype != torch.bool or not mask.is_contiguous() or mask.shape[0] != rows or mask.shape[1] < columns
            or first.dtype != torch.int64 or not first.is_contiguous() or first.shape != (rows,)
            or not 0 <= shared_start <= shared_start + shared_length <= columns
            or torch.is_grad_enabled() and (query.requires_grad or key.requires_grad or value.requires_grad)
            or torch.compiler.is_compiling()):
        return None
    kernel = _usable()
    if kernel is None:
        return None
    out = torch.empty((rows, heads, 1, dim), dtype=torch.float32)
    key_strides, value_strides, query_strides = key.stride(), value.stride(), query.stride()
    status = kernel(
        query.data_ptr(), key.data_ptr(), value.data_ptr(), DTYPES[key.dtype], scale, query_strides[0],
        query_strides[1], key_strides[0], key_strides[1], key_strides[2], value_strides[0], value_strides[1],
        value_strides[2], rows, heads, key.shape[1], dim, shared_start, shared_length, first.data_ptr(), columns,
        mask.data_ptr(), mask.stride(0), out.data_ptr())
    if status == 1:
        return None  # a shape the kernel does not take (head dim, grouping): torch's ops
    if status:
        raise MemoryError("native decode attention could not allocate its score buffer")
    return out if query.dtype == torch.float32 else out.to(query.dtype)


def unavailable_reason() -> str | None:
    """Why the kernel is not used here (None when `available()`), for logs and test reports."""
    if _switch.off:
        return "switched off for this block (native_attention.disabled)"
    if os.environ.get(ENVIRONMENT, "1") == "0":
        return f"switched off ({ENVIRONMENT}=0)"
    return native_library.reason()


def _usable() -> Callable[..., int] | None:
    """The kernel where it is switched on and loaded, else None."""
    return None if _switch.off or os.environ.get(ENVIRONMENT, "1") == "0" else _kernel()


def _kernel() -> Callable[..., int] | None:
    return native_library.function("dpf_decode_attention", _ARGUMENTS)


__all__ = ["DTYPES", "ENVIRONMENT", "MAX_GROUP", "MAX_HEAD_DIM", "available", "decode_attention", "disabled", "lanes",
           "takes_model", "unavailable_reason"]
