"""The machine's floor under a run: the time no implementation of the same forwards can beat.

A forward over `rows` sequences, row r taking n_r new tokens and ending at context c_r (its
positions 0 … c_r − 1 then in the cache), must at least

  compute  Σ_r [ 2·n_r·P_layers + 2·P_head + a·(n_r·c_r − n_r·(n_r − 1)/2) ]   FLOPs
  read     W + Σ_r c_r·k                                                       bytes

with P_layers the decoder's linear weights (every new token multiplies all of them), P_head the
output layer's (logits of the last position only), a = 4·L·H·d the attention FLOPs of one
(query, key) pair over all layers (q·kᵀ and p·v), the sum in brackets the causal pairs, W the
bytes of all weights (read once per forward) and k the bytes of one position's keys and values.
Its floor is max(FLOPs ÷ GEMM peak, bytes ÷ read bandwidth), both measured on this machine:
perfect overlap of compute and memory, no other work (norms, sampling, the λ search, Python),
so a floor is optimistic and only a bound.

The recorder counts a run's forwards from the model's own inputs, so a floor is the one of the
work the engine chose to do (prefix reuse included); what it skipped costs nothing here either.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch

from benchmarks.speed_common import timed
from dpfusion_chains.core import matmul


@dataclass(frozen=True)
class ModelCosts:
    """What one token costs the model: weights, attention FLOPs per pair, KV bytes per position."""

    layer_params: int          # Σ in·out of the linear layers every new token goes through
    head_params: int           # in·out of the output layer (last position only)
    weight_bytes: int          # all linear weights as stored
    pair_flops: int            # attention FLOPs per (query, key) pair, all layers: 4·L·H·d
    kv_bytes_per_position: int  # keys and values of one position, all layers

    @classmethod
    def of(cls, model: Any) -> ModelCosts:
        """Read off a Hugging Face decoder: its nn.Linear modules and its attention shape."""
        head = model.get_output_embeddings()
        linears = [m for m in model.modules() if isinstance(m, torch.nn.Linear) and m is not head]
        config = model.config
        layers, heads = config.num_hidden_layers, config.num_attention_heads
        head_dim = getattr(config, "head_dim", None) or config.hidden_size // heads
        kv_heads = getattr(config, "num_key_value_heads", None) or heads
        element = next(model.parameters()).element_size()
        layer_params = sum(m.weight.numel() for m in linears)
        head_params = head.weight.numel()
        return cls(layer_params=layer_params, head_params=head_params,
                   weight_bytes=(layer_params + head_params) * element,
                   pair_flops=4 * layers * heads * head_dim,
                   kv_bytes_per_position=2 * layers * kv_heads * head_dim * element)


@dataclass(frozen=True)
class Forward:
    """One model forward: per row, the new tokens and the context after them."""

    new: tuple[int, ...]
    context: tuple[int, ...]

    def flops(self, costs: ModelCosts) -> int:
        total = 0
        for n, c in zip(self.new, self.context):
            pairs = n * c - n * (n - 1) // 2  # token j of n sees c − n + j keys
            total += 2 * n * costs.layer_params + 2 * costs.head_params + costs.pair_flops * pairs
        return total

    def bytes(self, costs: ModelCosts) -> int:
        return costs.weight_bytes + sum(self.context) * costs.kv_bytes_per_position


@dataclass(frozen=True)
class Machine:
    """Measured peaks: dense matrix products (FLOP/s) and streaming reads (bytes/s)."""

    gemm_flops: float
    read_bytes: float

    def floor(self, forward: Forward, costs: ModelCosts) -> float:
        """Seconds under which `forward` cannot run here (compute and memory fully overlapped)."""
        return max(forward.flops(costs) / self.gemm_flops, forward.bytes(costs) / self.read_bytes)

    def floors(self, forwards: list[Forward], costs: ModelCosts) -> float:
        return sum(self.floor(f, costs) for f in forwards)

    @classmethod
    def measure(cls, model: Any, device: torch.device | str, repeats: int = 5) -> Machine:
        """Best of `repeats`: a 1024-row product with the model's largest decoder weight, in its
        dtype (the peak its prefill could reach: the stock kernel's, or the engine's oneDNN
        product on a packed copy where that is faster, core.matmul), and a sum over 256 MiB (a
        read stream)."""
        head = model.get_output_embeddings()
        weight = max((m.weight for m in model.modules() if isinstance(m, torch.nn.Linear) and m is not head),
                     key=lambda w: w.numel()).detach()
        x = torch.randn(1024, weight.shape[1], dtype=weight.dtype, device=device)
        w = torch.randn_like(weight, device=device)
        flops = 2 * x.shape[0] * w.numel()
        gemm = flops / _best(lambda: torch.nn.functional.linear(x, w), repeats)
        packed = torch.nn.Linear(w.shape[1], w.shape[0], bias=False, device=w.device, dtype=w.dtype)
        matmul.install(packed, pack=True)
        if type(packed) is matmul.PackedLinear:  # a float32 CPU layer, oneDNN present
            with torch.no_grad(), matmul.active():
                packed.weight.copy_(w)
                gemm = max(gemm, flops / _best(lambda: packed(x), repeats))
        stream = torch.ones(64 * 2**20, dtype=torch.float32, device=device)
        read = stream.numel() * stream.element_size() / _best(stream.sum, repeats)
        return cls(gemm_flops=gemm, read_bytes=read)


def _best(fn: Callable[[], Any], repeats: int) -> float:
    """Best wall time of `repeats` calls after a warm-up one (speed_common.timed syncs a GPU)."""
    fn()
    return min(timed(fn)[0] for _ in range(repeats))


def forward_of(kwargs: dict[str, Any]) -> Forward:
    """The Forward of one call, from the model's keyword inputs (input_ids, attention_mask,
    position_ids, past_key_values, packed). Left padding in a 2-D mask is not new work."""
    packed = kwargs.get("packed")
    if packed is not None:  # one row of pieces (core.packing): each its own tokens over its part of the base
        return Forward(new=packed.lengths, context=tuple(b + n for b, n in zip(packed.bases, packed.lengths)))
    ids = kwargs["input_ids"]
    rows, width = ids.shape
    mask, positions = kwargs.get("attention_mask"), kwargs.get("position_ids")
    if mask is not None and mask.dim() == 2:
        new = mask[:, -width:].sum(dim=1).tolist()
    else:
        new = [width] * rows
    if positions is not None:
        context = (positions[:, -1] + 1).tolist()
    else:
        cache = kwargs.get("past_key_values")
        past = cache.get_seq_length() if cache is not None else 0
        context = [past + width] * rows
    return Forward(new=tuple(int(n) for n in new), context=tuple(int(c) for c in context))


@contextmanager
def record_forwards(model: Any) -> Iterator[list[Forward]]:
    """Collect the Forward of every call of `model` while active (reads its inputs on the host,
    so record in a run that is not timed)."""
    seen: list[Forward] = []

    def hook(_module: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        if args:  # positional input_ids
            kwargs = {"input_ids": args[0], **kwargs}
        seen.append(forward_of(kwargs))

    handle = model.register_forward_pre_hook(hook, with_kwargs=True)
    try:
        yield seen
    finally:
        handle.remove()


__all__ = ["Forward", "Machine", "ModelCosts", "forward_of", "record_forwards"]
