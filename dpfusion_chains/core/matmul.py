"""The engine's linear layers on the CPU: few-row products weight-major, or through oneDNN
with the weights packed.

A decode step multiplies a handful of rows (G+1 views per request) by every weight matrix.
`F.linear(x, W)` asks the BLAS for x·Wᵀ, and MKL's kernels for that layout re-read W for small
row counts: on this project's 2-core CPU the 49152×576 output layer took 26 ms for 2 rows and
60 ms for 16, against 13 ms for one row. The same product computed as (W·xᵀ)ᵀ, with W as the
tall left operand, took 11 ms and 26 ms (the 576×1536 MLP matrices gained 25–40 %).
`benchmarks/engine_bench.py` measures the whole step both ways.

oneDNN does better still with the weight packed once into its blocked layout (a copy made at
the first use, made again if the weight changes in place). How much depends on the CPU:
- On the 2-core CPU of earlier sessions (MKL's GEMM peak ~66 GFLOP/s there), SmolLM2's
  49152×576 output layer took 6.8 ms for 1 row, 7.1 for 2 and 17.8 for 16, against 12.8
  (stock), 9.3 and 31.2 ms weight-major; a whole decode step went from 95.8 to 91.6 ms for one
  request (2 rows) and from 228 to 218 ms for eight (16 rows). Packing the other layers too
  measured alike there (216.9 ms); its prefill products were not measured packed.
- On a 2-core AMD Zen 5 with AVX-512, packed products ran 2–3× faster than both other layouts
  at every row count: the 1536×576 MLP matrix, cold, 120 µs for 16 rows against 358
  weight-major and 468 stock, and 6.4 ms for a 1164-row prefill against 11.6 stock (~500
  against ~210 GFLOP/s: as if MKL ran its AVX2 kernels on this AMD CPU and oneDNN its AVX-512
  ones). With every layer packed a decode step of eight requests went from 68.9 to 49.9 ms and
  their prefill from 2.50 to 1.24 s; one request's step stayed at 22–23 ms.
The copies cost the packed weights' size once more in memory: ~540 MB for SmolLM2-135M in
float32 with every layer packed (113 MB for its output layer alone). `install`'s `pack`
setting says which layers are packed; "auto" packs them all while the copies take at most
PACK_MEMORY_SHARE of the machine's memory, else the output layer (by far the largest matrix of
a small model) alone.

bfloat16 weights are packed too where oneDNN computes bfloat16 on this CPU (AVX512-BF16 or AMX;
`packs_bfloat16`). On the Zen 5 (cold for 2 and 16 rows) the 1536×576 MLP matrix took 2.19 ms
for 1164 rows (~940 GFLOP/s) against 4.35 packed in float32 and 2.31 stock in bfloat16, 160 µs
for 16 rows against 222 and 189; the output layer 1.9 ms for 16 rows against 3.5 and 2.9. A
bfloat16 layer left unpacked keeps the stock kernel: weight-major was measured for float32 only.

Either way, where core.native_linear is available (by default with its AVX2 build), a float32
product of 1..24 rows (native_linear.MAX_ROWS) inside the engine goes to its compiled kernel
first, which streams the weight once and measured faster than both on an AVX2 Zen 3; prefill
keeps the products above.

`install` swaps the class of a model's plain float32 CPU `nn.Linear` modules for
`WeightMajorLinear`, or `PackedLinear` for the packed ones (bfloat16 ones to `PackedLinear`
where packed, else not at all); their forward is the stock one
except inside `active()` (the engine's own eager forwards, in this thread), with few rows (any
number for a packed layer) and not under torch.compile (inductor picks its own kernels).
Outside the engine the model computes exactly as before, so the user's other calls, and any
library sharing the model object, are unaffected.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import weakref
from collections.abc import Callable, Iterator
from typing import Any

import torch
from torch import nn

from dpfusion_chains.core import native_linear
from dpfusion_chains.core.models import SwitchSetting, resolve_flag

MAX_ROWS = 128  # weight-major: above this it measured like the stock kernel, which prefill keeps
PACK_ROWS_HINT = 16  # oneDNN blocks the packed weight for this many rows; 1..64 rows measured alike
PACK_MEMORY_SHARE = 0.25  # "auto" packs every layer while the copies take at most this share of memory
# A container's memory limit (cgroup v2, then v1): the machine's memory counts only where it is lower.
CGROUP_MEMORY_LIMITS = ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes")
WeightMajorSetting = SwitchSetting
PackSetting = SwitchSetting

logger = logging.getLogger(__name__)
_state = threading.local()
PackKey = tuple[tuple[int, int], ...]  # a packed copy's source tensors: (address, version counter) each
# packed layer → (pack_key of its weight, packed weight or None if oneDNN refused it). Kept
# off the module so that copying, pickling or moving the model never meets a oneDNN tensor.
_packed: weakref.WeakKeyDictionary[nn.Module, tuple[PackKey, torch.Tensor | None]] = weakref.WeakKeyDictionary()


@contextlib.contextmanager
def active() -> Iterator[None]:
    """Let installed layers compute weight-major in this thread for the duration. Whether their
    few-row products go to core.native_linear's kernel is decided here, once for the block (its
    environment setting and `disabled()` read at entry), not at each of a forward's ~200 calls."""
    before = getattr(_state, "on", False), getattr(_state, "native", None)
    _state.on, _state.native = True, native_linear.usable()
    try:
        yield
    finally:
        _state.on, _state.native = before


def native_product(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor | None:
    """x · weightᵀ (+ bias) by core.native_linear's kernel where `active()` found it usable and it
    takes these tensors, else None. For layers that checked `engaged()` (so not under torch.compile)."""
    kernel = getattr(_state, "native", None)
    return None if kernel is None else native_linear.product(kernel, x, weight, bias)


def engaged() -> bool:
    """Whether installed layers compute their own way here: inside `active()` in this thread,
    and not while dynamo traces (checked first: fullgraph could not trace the thread-local)."""
    return not torch.compiler.is_compiling() and getattr(_state, "on", False)


class WeightMajorLinear(nn.Linear):
    """nn.Linear whose few-row products inside `active()` run as (W·xᵀ)ᵀ."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not engaged():
            return super().forward(x)
        native = native_product(x, self.weight, self.bias)
        if native is not None:
            return native
        rows = x.numel() // x.shape[-1] if x.shape[-1] else 0
        if not 2 <= rows <= MAX_ROWS or x.dtype != torch.float32 or self.weight.dtype != torch.float32:
            return super().forward(x)
        out = torch.mm(self.weight, x.reshape(rows, x.shape[-1]).t()).t()
        if self.bias is not None:
            out = out + self.bias
        # Callers view the output into heads: hand back the usual contiguous layout.
        return out.contiguous().view(*x.shape[:-1], self.out_features)


def wants_weight_major(setting: WeightMajorSetting, device: torch.device) -> bool:
    """Resolve the engine's `weight_major` setting: "auto" means on a CPU."""
    return resolve_flag("weight_major", setting, torch.device(device).type == "cpu")


class PackedLinear(WeightMajorLinear):
    """Inside `active()`, any number of rows goes through oneDNN with the weight packed once (see
    the module docstring); anything else as WeightMajorLinear."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not engaged():
            return nn.Linear.forward(self, x)
        weight = self.weight  # read once: a module attribute lookup costs as much as the checks below
        native = native_product(x, weight, self.bias)
        if native is not None:
            return native
        packed = None
        if x.numel() and x.dtype == weight.dtype \
                and not (torch.is_grad_enabled() and weight.requires_grad):  # the packed op has no gradient
            packed = self._packed_weight(weight)
        if packed is None:
            return super().forward(x)
        out = onednn_linear(x.reshape(-1, x.shape[-1]), packed, self.bias)
        return out.view(*x.shape[:-1], self.out_features)

    def _packed_weight(self, weight: torch.Tensor) -> torch.Tensor | None:
        """`weight` (this layer's) packed once, again when it changes (see `pack_key`); None
        where it cannot be packed."""
        key = pack_key((weight,))
        if key is None:
            return None
        cached = _packed.get(self)
        if cached is None or cached[0] != key:
            cached = _packed[self] = repack(key, lambda: pack_weight(weight.detach()),
                                            f"a {weight.shape[0]}×{weight.shape[1]} layer", "it stays weight-major")
        return cached[1]


def pack_key(tensors: tuple[torch.Tensor, ...]) -> PackKey | None:
    """What a packed copy of `tensors` is kept under: their addresses and version counters, which
    move when one is replaced or changed in place. None where no copy can be kept: a tensor moved
    off the CPU after `install`, or made under inference mode, which keeps no version counter to
    tell a change by."""
    for tensor in tensors:
        if tensor.is_inference() or tensor.device.type != "cpu":
            return None
    return tuple([(tensor.data_ptr(), tensor._version) for tensor in tensors])


def repack(key: PackKey, pack: Callable[[], Any], what: str, otherwise: str,
           log: logging.Logger = logger) -> tuple[PackKey, Any]:
    """(key, pack()), or (key, None) where this torch's oneDNN refuses it, logged to `log` as
    "oneDNN cannot pack <what> (<error type>); <otherwise>"."""
    try:
        return key, pack()
    except (RuntimeError, AttributeError) as exc:
        log.info("oneDNN cannot pack %s (%s); %s", what, type(exc).__name__, otherwise)
        return key, None


def install(model: Any, pack: PackSetting = "auto") -> int:
    """Swap the model's plain float32 CPU nn.Linear modules for WeightMajorLinear, or PackedLinear
    for those `pack` says (True: all; False: none; "auto": all while their copies take at most
    PACK_MEMORY_SHARE of the machine's memory, else the output layer alone); bfloat16 ones, where
    `packs_bfloat16`, for PackedLinear where packed. Same parameters, no copy until a packed
    layer's first product; returns how many were swapped."""
    dtypes = (torch.float32, torch.bfloat16) if packs_bfloat16() else (torch.float32,)
    layers = [m for m in model.modules() if type(m) is nn.Linear and getattr(m, "weight", None) is not None
              and m.weight.device.type == "cpu" and m.weight.dtype in dtypes]
    packed = _packed_layers(model, layers, pack) if onednn_available() else set()
    swapped = [m for m in layers if m in packed or m.weight.dtype == torch.float32]
    for layer in swapped:
        layer.__class__ = PackedLinear if layer in packed else WeightMajorLinear
    return len(swapped)


def _packed_layers(model: Any, layers: list[nn.Module], pack: PackSetting) -> set[nn.Module]:
    if pack != "auto":
        return set(layers) if resolve_flag("packed_weights", pack, False) else set()
    copies = sum(m.weight.numel() * m.weight.element_size() for m in layers)
    memory = _physical_memory()
    if memory is not None and copies <= PACK_MEMORY_SHARE * memory:
        return set(layers)
    return {_output_layer(model)} & set(layers)


def _physical_memory() -> int | None:
    """Bytes of memory this process may use: the machine's, or its container's limit where
    lower (cgroup v2 or v1); None where the OS does not say."""
    try:
        limits = [os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")]
    except (AttributeError, ValueError, OSError):  # no sysconf (Windows) or no such name
        return None
    for path in CGROUP_MEMORY_LIMITS:
        try:
            with open(path) as f:
                text = f.read().strip()
        except OSError:  # not in such a cgroup
            continue
        if text.isdigit():  # v2 writes "max" when unlimited
            limits.append(int(text))
    return min(limits)


def _output_layer(model: Any) -> Any:
    """The model's output layer as transformers models name it (None when it has none)."""
    get_output = getattr(model, "get_output_embeddings", None)  # transformers answers None for a model without a head
    return get_output() if callable(get_output) else None


def onednn_available() -> bool:
    """Whether this torch has oneDNN and its linear op (the packed products here, core.prefill_attention)."""
    return torch.backends.mkldnn.is_available() and hasattr(torch.ops.mkldnn, "_linear_pointwise")


def packs_bfloat16() -> bool:
    """Whether oneDNN computes bfloat16 products natively on this CPU (AVX512-BF16 or AMX)."""
    supported = getattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", None)
    return onednn_available() and supported is not None and bool(supported())


def onednn_linear(rows: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
    """rows · weightᵀ (+ bias) through oneDNN's linear op: [m, k] rows, weight [n, k] packed by
    `pack_weight` or plain and contiguous (a strided one falls to a very slow path)."""
    return torch.ops.mkldnn._linear_pointwise(rows, weight, bias, "none", [], "")


def pack_weight(weight: torch.Tensor) -> torch.Tensor:
    """`weight` ([out, in]) in oneDNN's blocked layout for products with few rows."""
    return torch.ops.mkldnn._reorder_linear_weight(weight, PACK_ROWS_HINT)


__all__ = ["MAX_ROWS", "PACK_MEMORY_SHARE", "PACK_ROWS_HINT", "PackKey", "PackSetting", "PackedLinear",
           "WeightMajorLinear", "WeightMajorSetting", "active", "engaged", "install", "native_product",
           "onednn_available", "onednn_linear", "pack_key", "packs_bfloat16", "pack_weight", "repack",
           "wants_weight_major"]
