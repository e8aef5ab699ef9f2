"""What the decode-attention tests (tests/speed/test_shared_prefix.py, test_native_attention.py)
share: rows holding one opening from their lead (`rows_with_opening`), SDPA over each whole row
as the reference (`sdpa_over_rows`), shared_prefix's thresholds for one test (`thresholds`) and
a record of whether the compiled kernel answered each call (`kernel_answers`). Importable through pytest's `pythonpath` setting (pyproject.toml)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from dpfusion_chains.core import native_attention, shared_prefix
from dpfusion_chains.core.kvcache import additive_mask


def rows_with_opening(leads, opening, width, kv_heads=3, dim=16, seed=0):
    """Keys and values [rows, kv_heads, width, dim] whose rows hold one opening from their lead,
    and the [rows, width] mask; padding is NaN, so a read of it shows in a result."""
    torch.manual_seed(seed)
    rows = len(leads)
    keys, values = torch.randn(rows, kv_heads, width, dim), torch.randn(rows, kv_heads, width, dim)
    shared_keys, shared_values = torch.randn(kv_heads, opening, dim), torch.randn(kv_heads, opening, dim)
    for r, lead in enumerate(leads):
        keys[r, :, lead:lead + opening], values[r, :, lead:lead + opening] = shared_keys, shared_values
        keys[r, :, :lead], values[r, :, :lead] = float("nan"), float("nan")  # padding is never read into a result
    mask = torch.arange(width)[None] >= torch.tensor(leads)[:, None]
    return keys, values, mask


def sdpa_over_rows(query, keys, values, mask, scale):
    """SDPA over each whole row (its padding zeroed and masked), key/value heads repeated for
    grouped query heads, the mask in the query's dtype."""
    group = query.shape[1] // keys.shape[1]
    return F.scaled_dot_product_attention(query, keys.nan_to_num().repeat_interleave(group, dim=1),
                                          values.nan_to_num().repeat_interleave(group, dim=1),
                                          attn_mask=additive_mask(mask, query.dtype), scale=scale)


def thresholds(monkeypatch, rows: int, tokens: int, saved: int) -> None:
    """shared_prefix's MIN_ROWS, MIN_TOKENS and MIN_SAVED for one test."""
    monkeypatch.setattr(shared_prefix, "MIN_ROWS", rows)
    monkeypatch.setattr(shared_prefix, "MIN_TOKENS", tokens)
    monkeypatch.setattr(shared_prefix, "MIN_SAVED", saved)


def kernel_answers(monkeypatch) -> list[bool]:
    """For one test, whether native_attention.decode_attention answered each call (False: it
    declined, and torch's ops computed it), in order."""
    answers: list[bool] = []
    original = native_attention.decode_attention

    def recorded(*args, **kwargs):
        out = original(*args, **kwargs)
        answers.append(out is not None)
        return out

    monkeypatch.setattr(native_attention, "decode_attention", recorded)
    return answers
