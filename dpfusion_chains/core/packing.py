"""Packed prefill: the suffixes of many views, of one request or of many, in one forward.

Past their shared prefix, the views of a request each have their own suffix (the private text
in one, its placeholder in another), and requests arriving together each bring theirs. One
forward per suffix multiplies ~100–200 tokens by every weight matrix: products too small for
the BLAS to reach its peak, and every small op's fixed cost paid again per forward. Padding
the suffixes into a batch would compute the padding. Packing puts them end to end in one row
after a base row (the prefix they start with, in the KV cache), so the products see all the
tokens at once, while attention runs per piece: piece j's queries see the first `bases[j]`
base positions and its own keys, causally, and never another piece's. Nothing else in a
decoder mixes positions, so each piece computes what it would alone, up to float rounding.

Measured with SmolLM2-135M on a 2-core CPU, 7 suffixes of 113–214 tokens over a 223-token
base: 5.8 s one forward each, 4.7 s packed (see benchmarks/batch_bench.py for the effect on
requests batched together).

On a CPU a piece of at least prefill_attention.MIN_QUERIES tokens is attended through oneDNN
products (core.prefill_attention), else through SDPA with the piece's mask; the engine also sends
a shared opening long enough for those products through here, as one piece.

`install` gives the model an attention implementation that is transformers' SDPA function
unless the forward is called with `packed=PackedPieces(...)` (or, for a decode step, with
`shared_prefix=`, core.shared_prefix), so every other call (the user's own calls, torch.compile
graphs) computes exactly as before.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from dpfusion_chains.core import prefill_attention
from dpfusion_chains.core.shared_prefix import SharedPrefix

ATTENTION = "dpfusion_sdpa"  # the implementation name models get from `install`
_registered = False
_UNSUPPORTED = ("position_bias", "softcap", "sliding_window", "s_aux")  # attention arguments of some models


@dataclass(frozen=True)
class PackedPieces:
    """Where each piece lies in a packed forward (host ints): piece j is the `lengths[j]` tokens
    from `starts[j]` of the packed input, attending to the first `bases[j]` of the `base_length`
    positions already in the cache."""

    base_length: int
    bases: tuple[int, ...]
    starts: tuple[int, ...]
    lengths: tuple[int, ...]

    @classmethod
    def of(cls, base_length: int, pieces: list[tuple[int, int]]) -> PackedPieces:
        """From (base positions seen, token count) per piece, in packed order."""
        starts, at = [], 0
        for _, n in pieces:
            starts.append(at)
            at += n
        return cls(base_length, tuple(b for b, _ in pieces), tuple(starts), tuple(n for _, n in pieces))

    @property
    def tokens(self) -> int:
        return sum(self.lengths)


def _gqa_in_kernel(device: torch.device) -> bool:
    """Whether SDPA repeats the KV heads itself: on a CPU; elsewhere a mask would send
    enable_gqa to the slow math kernel, so the heads are repeated before."""
    return device.type == "cpu"


def _piece_mask(base: int, n: int, device: torch.device) -> torch.Tensor:
    """[n, base + n] bool: every base position, then the piece's own keys causally."""
    cols = torch.arange(base + n, device=device)
    return (cols[None] < base) | (cols[None] - base <= torch.arange(n, device=device)[:, None])


def packed_sdpa(module: torch.nn.Module, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                attention_mask: torch.Tensor | None, dropout: float = 0.0, scaling: float | None = None,
                packed: PackedPieces | None = None, shared_prefix: SharedPrefix | None = None,
                **kwargs: Any) -> tuple[torch.Tensor, None]:
    """transformers' SDPA attention, per-piece attention when `packed` is given, or a decode
    step's attention reading a shared opening once when `shared_prefix` is (core.shared_prefix;
    it then stands for `attention_mask`)."""
    from transformers.integrations.sdpa_attention import repeat_kv, sdpa_attention_forward

    if packed is None:
        if shared_prefix is not None and query.shape[2] == 1 and not dropout \
                and not any(kwargs.get(name) is not None for name in _UNSUPPORTED):
            scale = scaling if scaling is not None else query.shape[-1] ** -0.5  # SDPA's default
            return shared_prefix.attention(query, key, value, scale).transpose(1, 2).contiguous(), None
        return sdpa_attention_forward(module, query, key, value, attention_mask, dropout=dropout, scaling=scaling,
                                      **kwargs)
    if query.shape[0] != 1 or key.shape[2] != packed.base_length + packed.tokens:
        raise ValueError(f"a packed forward takes one row over a cache of {packed.base_length} positions "
                         f"and {packed.tokens} tokens; got queries {tuple(query.shape)}, keys {tuple(key.shape)}")
    unsupported = [name for name in _UNSUPPORTED if kwargs.get(name) is not None]
    if unsupported:  # computing without them would be silently wrong
        raise ValueError(f"this model's attention takes {', '.join(unsupported)}, which packed prefill does not "
                         "apply; create the engine with packed_prefill=False")
    groups = getattr(module, "num_key_value_groups", 1)
    gqa_in_kernel = groups > 1 and _gqa_in_kernel(query.device)
    if groups > 1 and not gqa_in_kernel:
        key, value = repeat_kv(key, groups), repeat_kv(value, groups)
    out = torch.empty_like(query)
    own = packed.base_length
    scale = scaling if scaling is not None else query.shape[-1] ** -0.5  # SDPA's default
    for base, start, n in zip(packed.bases, packed.starts, packed.lengths):
        keys = torch.cat([key[:, :, :base], key[:, :, own + start:own + start + n]], dim=2)
        values = torch.cat([value[:, :, :base], value[:, :, own + start:own + start + n]], dim=2)
        queries = query[:, :, start:start + n]
        if not dropout and prefill_attention.applies(queries):  # a CPU: oneDNN products
            prefill_attention.piece_attention(queries, keys, values, base, scale, out[0, :, start:start + n])
            continue
        out[:, :, start:start + n] = F.scaled_dot_product_attention(
            queries, keys, values, attn_mask=_piece_mask(base, n, query.device),
            dropout_p=dropout, scale=scaling, enable_gqa=gqa_in_kernel)
    return out.transpose(1, 2).contiguous(), None


def install(model: Any) -> bool:
    """Switch a model on transformers' SDPA attention to `packed_sdpa` (the same function for
    every unpacked call); returns whether the model can run packed forwards."""
    global _registered
    config = getattr(model, "config", None)
    if supports(model):
        return True
    if getattr(config, "_attn_implementation", None) != "sdpa" or not hasattr(model, "set_attn_implementation"):
        return False
    from transformers import AttentionInterface, AttentionMaskInterface
    from transformers.masking_utils import sdpa_mask

    if not _registered:
        AttentionInterface.register(ATTENTION, packed_sdpa)
        AttentionMaskInterface.register(ATTENTION, sdpa_mask)  # unpacked calls get SDPA's masks
        _registered = True
    try:
        model.set_attn_implementation(ATTENTION)
    except (ValueError, ImportError):  # a model class that cannot switch: it keeps SDPA, unpacked
        return False
    return supports(model)


def uninstall(model: Any) -> None:
    """Give a model switched by `install` transformers' SDPA back."""
    if supports(model):
        model.set_attn_implementation("sdpa")


def supports(model: Any) -> bool:
    """Whether `model` runs packed forwards (see `install`)."""
    return getattr(getattr(model, "config", None), "_attn_implementation", None) == ATTENTION


__all__ = ["ATTENTION", "PackedPieces", "install", "packed_sdpa", "supports", "uninstall"]
