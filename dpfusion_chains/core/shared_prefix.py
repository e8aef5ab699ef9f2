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

Rows of different lengths (a public view shorter than its private ones, requests of different
lengths) are left-padded to one width, so the columns after the opening also hold a shorter row's
padding and its own copy of the opening, masked. Reading them cost more than the opening: in the
eight requests' steps above (public views of ~30 own tokens, private ones of ~120–220), attention
took 420–460 µs per layer (13.4–14.1 ms of a ~42 ms step), 290 µs of it reading the columns after
the opening, of which 61 % were masked (1363 of 3520 row-positions attended at step 6). Those
columns are therefore read in one bucket of consecutive rows or two (`OwnBucket`), each from the
first column one of its rows needs, where the cut saves more than BUCKET_COST positions; the
decode loop keeps the cache's rows ordered by lead (core.row_placement), so long rows and short
ones lie together. One softmax per bucket still spans a row's opening and its own part. The eight
requests' decode step medians, one bucket or two alternating in one process (6 runs each, the
same sampled text): 42.3 → 40.1 ms. A second bucket's extra ops cost about what reading ~512–768
positions does (16 rows, a 223-token opening; one layer, cold caches).

Where core.native_attention's compiled kernel is available (Linux x86-64 with AVX-512F or AVX2,
a C compiler), it computes this attention in one call per layer instead, each row read from its own
first column (no buckets: the decode loop then leaves its rows unsorted) and the opening from row
0; `attention` falls back to the ops below for anything it does not take. The eight requests'
decode step medians, torch's ops or the kernel alternating in one process (4 runs each, the same
sampled text): 40.4–43.5 → 33.8–37.3 ms. Its one call per layer also beats SDPA's path (the
cache's mask sliced, transformers' SDPA call, its output made contiguous) where no thresholds are
met, so with the kernel `plan` plans every CPU decode step, however few rows and however short
the opening (none at all included). On the 2-core Zen 3 (AVX2), one request's two rows: the
attention call per layer 322 → 197 µs (medians over 2070 calls, inside the decode step); the
whole decode step 87.4 → 66.2 ms, eight requests 140.0 → 130.6 ms (medians of 5 runs, this and
the leaner kernel wrappers of core.native_linear and core.native_attention against the code
before, alternating in one process, the same sampled text).

Half-precision caches are attended in float32 (the parts read upcast, the output rounded once),
as SDPA's CPU kernels keep their scores: with scores and softmax in bfloat16, an output was off by
up to 0.033 against 0.008 for SDPA (16 rows, unit-scale values; tested). Upcasting cost the
same as handing those steps to SDPA: eight bfloat16 requests' steps ~42 ms either way, ~38.5 ms
rounding the scores.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from itertools import accumulate

import torch

from dpfusion_chains.core import native_attention
from dpfusion_chains.core.kvcache import additive_mask

MIN_ROWS = 4      # fewer rows read their openings with the rest of the row
MIN_TOKENS = 64   # a shorter opening is read with each row
MIN_SAVED = 512   # (rows − 1) × opening: positions no longer read per layer, at least
BUCKET_COST = 512  # positions a second bucket must save (its ops cost about as much as reading 512–768)


@dataclass(frozen=True)
class OwnBucket:
    """Rows [first, end) of a decode step, whose own tokens all lie at or after column `region`;
    `mask` ([rows, 1, 1, key length − region], additive) opens each row's own columns there."""

    first: int
    end: int
    region: int
    mask: torch.Tensor


@dataclass(frozen=True, eq=False)
class SharedPrefix:
    """Where the shared opening lies for one decode step: `length` tokens from column `start` in
    row 0 (and from each row's lead in the others); `mask` ([rows, key length] bool, True =
    attend) says which of a row's own columns it attends; `buckets` (one or two, covering the
    rows in order), where each row's own tokens lie for torch's ops."""

    start: int
    length: int
    leads: tuple[int, ...]
    mask: torch.Tensor
    dtype: torch.dtype

    @classmethod
    def plan(cls, leads: list[int], length: int, mask: torch.Tensor, dtype: torch.dtype,
             compiled: bool = False) -> SharedPrefix | None:
        """For rows with these leads, sharing their first `length` tokens, with this [rows, key
        length] boolean mask (True = attend): a SharedPrefix where reading the opening once pays
        (a CPU, MIN_ROWS, MIN_TOKENS, MIN_SAVED), else None. With `compiled` (core.native_attention
        takes the model) on a CPU, always: its one call per layer beats SDPA's path at any row
        count and opening (`length` 0 included), see the module docstring."""
        rows = len(leads)
        if mask.device.type != "cpu" or not rows:
            return None
        if not compiled and (rows < MIN_ROWS or length < MIN_TOKENS or (rows - 1) * length < MIN_SAVED):
            return None
        return cls(leads[0], length, tuple(leads), mask, dtype)

    @cached_property
    def first(self) -> torch.Tensor:
        """Each row's first own column (int64 [rows])."""
        return torch.tensor(self.leads, dtype=torch.int64, device=self.mask.device) + self.length

    @cached_property
    def buckets(self) -> tuple[OwnBucket, ...]:
        """The rows' own columns for torch's ops: one bucket, or two where the cut saves more
        than BUCKET_COST positions (computed at the first layer that needs them)."""
        leads, length, mask = list(self.leads), self.length, self.mask
        columns = torch.arange(mask.shape[1], device=mask.device)[None]

        def bucket(first: int, end: int) -> OwnBucket:
            region = min(leads[first:end]) + length
            own = (columns[:, region:] >= self.first[first:end, None]) & mask[first:end, region:]
            return OwnBucket(first, end, region, additive_mask(own, _computed_in(self.dtype)))

        split = bucket_split(leads, mask.shape[1] - length)
        spans = [(0, len(leads))] if split is None else [(0, split), (split, len(leads))]
        return tuple(bucket(first, end) for first, end in spans)

    def attention(self, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, scale: float) -> torch.Tensor:
        """One decode step's attention: query [rows, heads, 1, dim], key and value [rows, kv_heads,
        columns, dim] (query head j reads key/value head j // (heads / kv_heads), as transformers'
        repeat_kv lays them out) -> [rows, heads, 1, dim], computed in float32 for half-precision
        inputs (`.to` copies nothing for float32 ones)."""
        native = native_attention.decode_attention(query, key, value, scale, self.start, self.length, self.first,
                                                   self.mask)
        if native is not None:
            return native
        rows, heads, _, dim = query.shape
        kv_heads, n = key.shape[1], self.length
        group = heads // kv_heads
        dtype = _computed_in(query.dtype)
        queries = query.reshape(rows, kv_heads, group, dim).to(dtype) * scale        # [R, kv, g, d]
        opening = slice(self.start, self.start + n)
        shared_keys, shared_values = key[0, :, opening].to(dtype), value[0, :, opening].to(dtype)  # [kv, n, d]
        stacked = queries.transpose(0, 1).reshape(kv_heads, rows * group, dim)       # every row's queries
        shared = torch.bmm(stacked, shared_keys.transpose(1, 2)).view(kv_heads, rows, group, n).transpose(0, 1)
        shared_weights, own_outputs = [], []
        for b in self.buckets:   # [R_b, kv, g, ·] each: one softmax over the opening and the row's own part
            own_keys, own_values = key[b.first:b.end, :, b.region:], value[b.first:b.end, :, b.region:]
            own = torch.matmul(queries[b.first:b.end], own_keys.to(dtype).transpose(2, 3)).add_(b.mask)
            weights = torch.cat([shared[b.first:b.end], own], dim=-1).softmax(dim=-1)
            shared_weights.append(weights[..., :n])
            own_outputs.append(torch.matmul(weights[..., n:], own_values.to(dtype)))
        weights = shared_weights[0] if len(self.buckets) == 1 else torch.cat(shared_weights)
        out = torch.bmm(weights.transpose(0, 1).reshape(kv_heads, rows * group, n), shared_values)
        own_out = own_outputs[0] if len(self.buckets) == 1 else torch.cat(own_outputs)
        out = out.view(kv_heads, rows, group, dim).transpose(0, 1) + own_out
        return out.reshape(rows, heads, 1, dim).to(query.dtype)


def bucket_split(leads: list[int], own_width: int) -> int | None:
    """Where to cut rows with these leads (in their order) into two buckets, each read from its
    first needed column, when `own_width` columns follow the opening: the cut that reads fewest
    positions, if it saves more than BUCKET_COST of them; else None (one bucket)."""
    rows = len(leads)
    before = list(accumulate(leads, min))                # before[k - 1]: least lead of rows [0, k)
    after = list(accumulate(reversed(leads), min))[::-1]  # after[k]: least lead of rows [k, rows)
    best, split = rows * (own_width - before[-1]) - BUCKET_COST, None
    for k in range(1, rows):
        read = k * (own_width - before[k - 1]) + (rows - k) * (own_width - after[k])
        if read < best:
            best, split = read, k
    return split


def _computed_in(dtype: torch.dtype) -> torch.dtype:
    """The dtype attention is computed in: float32 for half-precision inputs, else their own."""
    return torch.float32 if dtype in (torch.bfloat16, torch.float16) else dtype


__all__ = ["BUCKET_COST", "MIN_ROWS", "MIN_SAVED", "MIN_TOKENS", "OwnBucket", "SharedPrefix", "bucket_split"]
