"""Decode attention over an opening every row shares: its keys and values read once for all rows.

The rows of a decode batch (G+1 views per request, several requests) often open with the same
tokens: the chat template and system prompt, instructions, public background, everything before
a request's first private token. Each row holds its own copy of those positions in the KV cache,
and a decode step's attention reads every copy. With `SharedPrefix`, one step's attention reads
row 0's copy once, as one product with every row's queries stacked, and each row's own columns
(after the opening) as before; one softmax spans both parts, so each row's attention is what it
would be over its whole row, up to float rounding. Row r's tokens start at its lead (left
padding), so its opening lies at columns [lead_r, lead_r + length) and its own tokens from
lead_r + length: the keys are read where they lie, nothing is copied.

The opening's keys and values are the same function of the same tokens at the same positions
in every row, so any row's copy serves all (up to the float rounding of the forward that
computed it), and nothing crosses from one request's private text to another row: every row
holds the opening, public views included.

Two reads instead of one cost a few small ops per layer, so `plan` uses it only where it saved
more. Decode step medians on the 2-core Zen 5 dev CPU (SmolLM2-135M, both ways alternating in one
process, the same sampled text): the eight requests of benchmarks/batch_bench.py (16 rows, a
223-token opening) 49.6 → 48.5 ms; the same requests after a ~400-token system prompt (a
608-token opening) 64.9 → 50.8 ms, four of them (8 rows) 43.9 → 36.9 ms, two (4 rows) 32.1 →
29.3 ms, and one request (2 rows) 26.5 → 27.4 ms: slower, hence MIN_ROWS. CPU only: GPU
attention kernels read keys at a different cost and were not measured.

Half-precision caches are attended in float32 (the parts read upcast, the output rounded once),
as SDPA's CPU kernels keep their scores: with scores and softmax in bfloat16, an output was off by
up to 0.033 against 0.008 for SDPA (16 rows, unit-scale values; tested). Upcasting cost the
same as handing those steps to SDPA: eight bfloat16 requests' steps ~42 ms either way, ~38.5 ms
rounding the scores.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from dpfusion_chains.core.kvcache import additive_mask

MIN_ROWS = 4      # fewer rows read their openings with the rest of the row
MIN_TOKENS = 64   # a shorter opening is read with each row
MIN_SAVED = 512   # (rows − 1) × opening: positions no longer read per layer, at least


@dataclass(frozen=True)
class SharedPrefix:
    """Where the shared opening lies for one decode step: `length` tokens from column `start` in
    row 0 (and from each row's lead in the others); every row's own tokens lie at or after column
    `region`, and `own_mask` ([rows, 1, 1, key length − region], additive) opens each row's own."""

    start: int
    length: int
    region: int
    own_mask: torch.Tensor

    @classmethod
    def plan(cls, leads: list[int], length: int, mask: torch.Tensor, dtype: torch.dtype) -> SharedPrefix | None:
        """For rows with these leads, sharing their first `length` tokens, with this [rows, key
        length] boolean mask (True = attend): a SharedPrefix where reading the opening once pays
        (a CPU, MIN_ROWS, MIN_TOKENS, MIN_SAVED), else None."""
        rows = len(leads)
        if mask.device.type != "cpu" or rows < MIN_ROWS or length < MIN_TOKENS or (rows - 1) * length < MIN_SAVED:
            return None
        region = min(leads) + length
        own_start = torch.tensor(leads, device=mask.device)[:, None] + length
        own = (torch.arange(region, mask.shape[1], device=mask.device)[None] >= own_start) & mask[:, region:]
        return cls(leads[0], length, region, additive_mask(own, _computed_in(dtype)))

    def attention(self, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, scale: float) -> torch.Tensor:
        """One decode step's attention: query [rows, heads, 1, dim], key and value [rows, kv_heads,
        columns, dim] (query head j reads key/value head j // (heads / kv_heads), as transformers'
        repeat_kv lays them out) -> [rows, heads, 1, dim], computed in float32 for half-precision
        inputs (`.to` copies nothing for float32 ones)."""
        rows, heads, _, dim = query.shape
        kv_heads, n = key.shape[1], self.length
        group = heads // kv_heads
        dtype = _computed_in(query.dtype)
        queries = query.reshape(rows, kv_heads, group, dim).to(dtype) * scale        # [R, kv, g, d]
        opening = slice(self.start, self.start + n)
        shared_keys, shared_values = key[0, :, opening].to(dtype), value[0, :, opening].to(dtype)  # [kv, n, d]
        own_keys, own_values = key[:, :, self.region:].to(dtype), value[:, :, self.region:].to(dtype)
        stacked = queries.transpose(0, 1).reshape(kv_heads, rows * group, dim)       # every row's queries
        shared = torch.bmm(stacked, shared_keys.transpose(1, 2))                     # [kv, R·g, n], row 0's keys
        own = torch.matmul(queries, own_keys.transpose(2, 3)).add_(self.own_mask)    # [R, kv, g, w]
        weights = torch.cat([shared.view(kv_heads, rows, group, n).transpose(0, 1), own], dim=-1).softmax(dim=-1)
        out = torch.bmm(weights[..., :n].transpose(0, 1).reshape(kv_heads, rows * group, n), shared_values)
        out = out.view(kv_heads, rows, group, dim).transpose(0, 1) + torch.matmul(weights[..., n:], own_values)
        return out.reshape(rows, heads, 1, dim).to(query.dtype)


def _computed_in(dtype: torch.dtype) -> torch.dtype:
    """The dtype attention is computed in: float32 for half-precision inputs, else their own."""
    return torch.float32 if dtype in (torch.bfloat16, torch.float16) else dtype


__all__ = ["MIN_ROWS", "MIN_SAVED", "MIN_TOKENS", "SharedPrefix"]
