"""Prefill: one request's views into one KV cache, no token computed twice.

The views of a request (rows[0] the public view, then one row per group) agree up to their
first private token. That shared prefix is computed once, then each distinct suffix length is
one forward with no padding (a redacted view is often much shorter than the private one, and
padding it would compute the difference for nothing); the parts are merged with the shorter
rows left-padded. Only the last position's logits are taken.

The public view is public from its first token to its last, so the engine's PrefixCache may
keep all of it: a later request whose public view opens alike (the same system prompt and
background, the next turn of a chat, the same question over another record) starts from the
stored keys and values, and one whose public view is exactly a stored one also takes its
stored next-token logits. Nothing of a group view beyond the shared prefix is ever stored.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from dpfusion_chains.core.kvcache import ReservedCache, new_cache
from dpfusion_chains.core.matmul import active as weight_major_active
from dpfusion_chains.core.prefix_cache import PrefixCache, StoredPrefix


@dataclass
class Prefilled:
    """A request's rows after prefill, ready to join a decode batch."""

    cache: Any
    mask: torch.Tensor        # [rows, width] bool, True = attend
    lead: list[int]           # per row: leading masked columns
    last_pos: torch.Tensor    # [rows, 1] position of each row's last token
    logits: torch.Tensor      # [rows, V] next-token logits


def forward_last(model: Any, ids: torch.Tensor, mask: torch.Tensor | None, pos: torch.Tensor,
                 cache: Any) -> tuple[torch.Tensor, Any]:
    """One eager forward: ([rows, V] logits of the last position, the cache)."""
    with weight_major_active():  # layers swapped by core.matmul.install compute few rows weight-major
        out = model(input_ids=ids, attention_mask=mask, position_ids=pos, past_key_values=cache,
                    use_cache=True, logits_to_keep=1)
    return out.logits[:, -1, :], out.past_key_values


def common_prefix_length(rows: list[list[int]]) -> int:
    """Tokens shared by every row, leaving at least one token per row for the batched pass."""
    limit = min(len(r) for r in rows) - 1
    n = 0
    while n < limit and all(r[n] == rows[0][n] for r in rows[1:]):
        n += 1
    return n


def left_pad(rows: list[list[int]], pad_id: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.bool)
    for i, r in enumerate(rows):
        ids[i, width - len(r):] = torch.tensor(r, dtype=torch.long)
        mask[i, width - len(r):] = True
    return ids.to(device), mask.to(device)


def prefill_request(model: Any, rows: list[list[int]], reserve: int, pad_id: int, device: torch.device,
                    store: PrefixCache | None = None) -> Prefilled:
    """Prefill one request's rows (rows[0] public), reserving `reserve` positions per row for the
    tokens to come; `store` is read for, and given, the public view only."""
    shared = common_prefix_length(rows) if len(rows) > 1 else 0
    hit = store.lookup(rows[0], reserve) if store is not None else None
    # A stored public view longer than the shared prefix: the public row continues from it alone.
    public = hit if hit is not None and hit.length > shared else None
    if hit is not None and public is None:
        base = hit.cache
    elif public is not None and shared:
        base = public.cache.copy(length=shared)
    else:
        base = new_cache(model, reserve)
    start = base.length if isinstance(base, ReservedCache) else 0
    if start < shared:
        prefix = torch.tensor([rows[0][start:shared]], dtype=torch.long, device=device)
        _, base = forward_last(model, prefix, None, torch.arange(start, shared, device=device)[None], base)
    if public is None and (not isinstance(base, ReservedCache) or len({len(r) for r in rows}) == 1):
        return _padded(model, rows, shared, base, pad_id, device, store)
    return _unpadded(model, rows, shared, base, device, store, public)


def _unpadded(model: Any, rows: list[list[int]], shared: int, base: ReservedCache, device: torch.device,
              store: PrefixCache | None, public: StoredPrefix | None) -> Prefilled:
    """Each suffix length as one forward from the shared prefix (the public row from its stored
    start when `public` is given), then the parts merged."""
    parts: list[tuple[list[int], ReservedCache, torch.Tensor]] = []   # (rows, cache, logits)
    if public is not None:
        cache, logits = public.cache, public.logits
        if logits is None:
            ids = torch.tensor([rows[0][public.length:]], dtype=torch.long, device=device)
            logits, cache = forward_last(model, ids, None, torch.arange(public.length, len(rows[0]),
                                                                        device=device)[None], cache)
            _keep_public(store, rows[0], cache, 0, logits[0])
        parts.append(([0], cache, logits))
    by_length: dict[int, list[int]] = {}
    for i in range(1 if public is not None else 0, len(rows)):
        by_length.setdefault(len(rows[i]), []).append(i)
    for n, (length, members) in enumerate(by_length.items()):
        if n < len(by_length) - 1:  # the prefix is still needed: expand a copy of it
            part = base.copy(repeats=len(members))
        else:
            part = base
            if len(members) > 1:
                part.batch_repeat_interleave(len(members))
        ids = torch.tensor([rows[i][shared:] for i in members], dtype=torch.long, device=device)
        pos = torch.arange(shared, length, device=device)[None].expand(len(members), -1)
        logits, part = forward_last(model, ids, None, pos, part)
        if members[0] == 0:
            _keep_public(store, rows[0], part, 0, logits[0])
        parts.append((members, part, logits))
    merged = parts[0][1]
    merged.merge(*(part for _, part, _ in parts[1:]))
    order = [i for members, _, _ in parts for i in members]
    back = torch.tensor(sorted(range(len(order)), key=order.__getitem__), device=device)
    merged.batch_select_indices(back)
    width = max(len(r) for r in rows)
    lead = [width - len(r) for r in rows]
    mask = torch.arange(width, device=device)[None] >= torch.tensor(lead, device=device)[:, None]
    last_pos = torch.tensor([[len(r) - 1] for r in rows], device=device)
    logits = torch.cat([lg.reshape(len(members), -1) for members, _, lg in parts])[back]
    return Prefilled(merged, mask, lead, last_pos, logits)


def _padded(model: Any, rows: list[list[int]], shared: int, cache: Any, pad_id: int, device: torch.device,
            store: PrefixCache | None) -> Prefilled:
    """The suffixes as one left-padded forward: for equal lengths (no padding at all), and for
    models whose cache cannot merge (padding between prefix and suffix, masked)."""
    if shared:
        cache.batch_repeat_interleave(len(rows))
    prefix_mask = torch.ones((len(rows), shared), dtype=torch.bool, device=device)
    ids, suffix_mask = left_pad([r[shared:] for r in rows], pad_id, device)
    pos = (shared + suffix_mask.long().cumsum(dim=1) - 1).clamp_min(0)
    mask = torch.cat([prefix_mask, suffix_mask], dim=1)
    width = ids.shape[1]
    lead = [0 if shared else width - len(r) for r in rows]
    logits, cache = forward_last(model, ids, mask.long(), pos, cache)
    if len({len(r) for r in rows}) == 1:  # no padding: row 0 holds exactly the public view
        _keep_public(store, rows[0], cache, 0, logits[0])
    return Prefilled(cache, mask, lead, pos[:, -1:], logits)


def _keep_public(store: PrefixCache | None, public_view: list[int], cache: Any, row: int,
                 logits: torch.Tensor) -> None:
    """Offer the public view's keys and values (row `row` of `cache`) and its next-token logits
    to the store."""
    if store is not None and isinstance(cache, ReservedCache):
        store.store(public_view, cache, row=row, logits=logits)


__all__ = ["Prefilled", "common_prefix_length", "forward_last", "left_pad", "prefill_request"]
