"""Prefill attention on a CPU as oneDNN products, one block of queries at a time.

torch's CPU SDPA (its flash kernel) ran prefill attention at ~110–145 GFLOP/s on the project's
2-core Zen 5 dev CPU, where oneDNN's AVX-512 products reach ~500 (core.matmul). At 3102 prompt
tokens attention took 57 % of a prefill (2.3 of 4.1 s, torch.profiler). `piece_attention`
computes the same attention, exactly up to float32 rounding, as plain products: for each
key/value head and each block of BLOCK queries, the scores against every key the block may see
(the head's query heads stacked as rows of one product), the causal triangle masked on the
block's own keys, a softmax, then the weighted values. Keys after a block's last query are never
scored. Standalone, in SmolLM2-135M's shape (9 query heads, 3 key/value heads of 64): 3102 causal
tokens took 42 against 68 ms a layer, a 145-token piece over a 223-token base 0.61–0.64 against
0.83–0.93 ms. In the engine (old and new code in alternating processes, one group, time to the
first token), a 3102-token prompt took 3.22 s against 3.97–4.02 s, a 1.6k-token one 1.41 against
1.61–1.64 s; eight ~370-token requests 2–4 % less.

Used by packed prefill (core.packing) for pieces of at least MIN_QUERIES tokens, on float32,
bfloat16 or float16 CPU tensors without autograd, outside torch.compile; everything else keeps
SDPA. Half-precision pieces are attended in float32 (each key head upcast, the output rounded
once), as SDPA's flash kernel keeps its scores: with the products in bfloat16 (scores rounded
before the softmax), a 300-token piece's output was off float64 attention by up to 0.050 against
0.0077 for SDPA and for this (tested). On the dev CPU, SDPA's bfloat16 kernel took 323 of a
910 ms prefill of eight requests (torch.profiler).
"""

from __future__ import annotations

import torch

from dpfusion_chains.core.matmul import onednn_available, onednn_linear

BLOCK = 256        # queries per product; 128–512 measured alike
MIN_QUERIES = 32   # shorter pieces keep SDPA, whose fixed cost is lower
DTYPES = (torch.float32, torch.bfloat16, torch.float16)  # computed in float32 either way


def takes(tokens: int, dtype: torch.dtype, device: torch.device) -> bool:
    """Whether a piece of `tokens` queries of this dtype on this device is computed here."""
    return (torch.device(device).type == "cpu" and dtype in DTYPES and tokens >= MIN_QUERIES
            and not torch.compiler.is_compiling() and onednn_available())


def applies(query: torch.Tensor) -> bool:
    """Whether `piece_attention` takes these queries ([1, heads, n, dim]): `takes`, and no autograd."""
    return takes(query.shape[2], query.dtype, query.device) and not (torch.is_grad_enabled() and query.requires_grad)


def piece_attention(query: torch.Tensor, keys: torch.Tensor, values: torch.Tensor, base: int, scale: float,
                    out: torch.Tensor, block: int = BLOCK) -> None:
    """Attention of one piece into `out` ([heads, n, dim]): query [1, heads, n, dim]; keys and
    values [1, kv_heads, base + n, dim], contiguous: `base` positions every query sees, then the
    piece's own, each query seeing its own causally. Query head j reads key/value head
    j // (heads / kv_heads), as transformers' repeat_kv lays them out. Computed in float32
    (`.float()` is no copy for float32 tensors)."""
    _, heads, n, dim = query.shape
    kv_heads = keys.shape[1]
    group = heads // kv_heads
    queries = query[0].float() * scale                                             # [heads, n, dim]
    size = min(block, n)
    future = torch.full((size, size), float("-inf"), device=query.device).triu_(1)
    for h in range(kv_heads):
        head_keys, head_values_t = keys[0, h].float(), values[0, h].float().t()    # [L, dim], [dim, L]
        heads_of = slice(h * group, (h + 1) * group)
        for start in range(0, n, block):
            end = min(start + block, n)
            rows, seen = end - start, base + end
            q = queries[heads_of, start:end].reshape(group * rows, dim)
            scores = onednn_linear(q, head_keys[:seen]).view(group, rows, seen)
            scores[:, :, base + start:].add_(future[:rows, :rows])                 # own keys: causally
            weights = torch.softmax(scores, dim=-1).view(group * rows, seen)
            mixed = onednn_linear(weights, head_values_t[:, :seen].contiguous())          # [group·rows, dim]
            out[heads_of, start:end] = mixed.view(group, rows, dim)


__all__ = ["BLOCK", "DTYPES", "MIN_QUERIES", "applies", "piece_attention", "takes"]
