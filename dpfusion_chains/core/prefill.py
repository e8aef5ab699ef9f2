"""Prefill: the views of one or more requests into KV caches, no token computed twice.

The views of a request (rows[0] the public view, then one row per group) agree up to their
first private token. That shared prefix is the request's base; requests whose views open alike
(the same system prompt and background before each record) share one base, computed once. Each
view's own suffix is a piece of one packed forward (core.packing): the suffixes of every view of
every request prefilled together go through the model as one row after the base, each attending
to the base and to itself only. A view repeated exactly (the public view of requests that differ
only in their private records) is one piece. The rows are left where those forwards wrote them
until the decode batch assembles them, with its own, into one cache (shorter rows left-padded):
one copy of each row, and one fresh buffer, for however many requests join. Only each piece's
last-position logits are taken.

The public view is public from its first token to its last, so the engine's PrefixCache may
keep all of it: a later request whose public view opens alike (the same system prompt and
background, the next turn of a chat, the same question over another record) starts from the
stored keys and values, and one whose public view is exactly a stored one also takes its
stored next-token logits. Nothing of a group view beyond the shared prefix is ever stored.

Models without packed attention (core.packing.install) compute each suffix length as one
forward from a copy of the base; models whose cache cannot be assembled (sliding-window or
linear-attention layers, core.kvcache.supports_reserved_cache) prefill each request alone, its
rows whole and left-padded in one forward.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from dpfusion_chains.core import packing, prefill_attention
from dpfusion_chains.core.kvcache import ReservedCache, Segment, assemble, new_cache, supports_reserved_cache
from dpfusion_chains.core.matmul import active as weight_major_active
from dpfusion_chains.core.prefix_cache import PrefixCache, StoredPrefix, common_length
from dpfusion_chains.core.shared_prefix import SharedPrefix

PACK_TOKENS = 4096  # tokens of one packed forward at most (bounds its activations and its cache row)


@dataclass
class Prefilled:
    """A request's rows after prefill, ready to join a decode batch. Their keys and values stay
    where the prefill's forwards left them (`segments`) until the batch assembles every joining
    row into its own cache, one copy each; `cache` assembles them alone (tests, one request)."""

    mask: torch.Tensor        # [rows, width] bool, True = attend
    lead: list[int]           # per row: leading masked columns
    last_pos: torch.Tensor    # [rows, 1] position of each row's last token
    logits: torch.Tensor      # [rows, V] next-token logits
    segments: list[list[Segment]] | None = None  # per row, where its positions lie (core.kvcache.assemble)
    reserve: int = 0          # positions to keep free per row for the tokens to come
    own_cache: Any = None     # a model whose cache cannot be assembled: the request's own cache

    @property
    def cache(self) -> Any:
        if self.own_cache is None:
            self.own_cache = assemble(self.segments, self.reserve)  # type: ignore[arg-type]
        return self.own_cache


@dataclass
class _View:
    """Where one view's keys and values lie (positions of computed caches) and its logits."""

    segments: list[Segment]
    logits: torch.Tensor


def forward_last(model: Any, ids: torch.Tensor, mask: torch.Tensor | None, pos: torch.Tensor,
                 cache: Any, packed: packing.PackedPieces | None = None,
                 shared_prefix: SharedPrefix | None = None) -> tuple[torch.Tensor, Any]:
    """One eager forward: ([rows, V] logits of the last position, the cache); `packed` and
    `shared_prefix` for a model switched by core.packing.install."""
    extra: dict[str, Any] = {} if packed is None else {"packed": packed}
    if shared_prefix is not None:
        extra["shared_prefix"] = shared_prefix
    with weight_major_active():  # layers swapped by core.matmul.install compute few rows weight-major
        out = model(input_ids=ids, attention_mask=mask, position_ids=pos, past_key_values=cache,
                    use_cache=True, logits_to_keep=1, **extra)
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


def prefill_requests(model: Any, requests: list[tuple[list[list[int]], int]], pad_id: int, device: torch.device,
                     store: PrefixCache | None = None) -> list[Prefilled]:
    """Prefill requests given as (rows, reserve): rows[0] the public view, `reserve` positions
    per row kept for the tokens to come. `store` is read for, and given, public views only."""
    if not supports_reserved_cache(model):
        return [_padded(model, rows, reserve, pad_id, device) for rows, reserve in requests]
    views: list[list[_View | None]] = [[None] * len(rows) for rows, _ in requests]
    hits: list[StoredPrefix | None] = []
    groups: dict[tuple[int, ...], list[int]] = {}  # shared prefix → its requests
    for r, (rows, reserve) in enumerate(requests):
        hit = store.lookup(rows[0], reserve) if store is not None else None
        if hit is not None and hit.logits is not None:  # the public view was stored whole
            views[r][0] = _View([(hit.cache, 0, 0, hit.length)], hit.logits)
        hits.append(hit)
        shared = common_prefix_length(rows) if len(rows) > 1 else 0
        groups.setdefault(tuple(rows[0][:shared]), []).append(r)
    for prefix, members in groups.items():
        _prefill_group(model, list(prefix), [(r, requests[r][0], hits[r]) for r in members], views, device, store)
    out = []
    for (rows, reserve), row_views in zip(requests, views):
        width = max(len(row) for row in rows)
        lead = [width - len(row) for row in rows]
        mask = torch.arange(width, device=device)[None] >= torch.tensor(lead, device=device)[:, None]
        last_pos = torch.tensor([[len(row) - 1] for row in rows], device=device)
        out.append(Prefilled(mask, lead, last_pos, torch.stack([v.logits for v in row_views]),
                             segments=[v.segments for v in row_views], reserve=reserve))
    return out


def _prefill_group(model: Any, prefix: list[int], members: list[tuple[int, list[list[int]], StoredPrefix | None]],
                   views: list[list[_View | None]], device: torch.device, store: PrefixCache | None) -> None:
    """Fill `views` for requests sharing `prefix`: one base row (the longest stored prefix among
    their public views, else computed), then every distinct suffix over it."""
    best = max((hit for _, _, hit in members if hit is not None), key=lambda h: h.length, default=None)
    if best is not None:
        owner = next(rows for _, rows, hit in members if hit is best)
        base, base_tokens = best.cache, owner[0][:best.length]
    else:
        base, base_tokens = new_cache(model), []
    if len(base_tokens) < len(prefix):  # a stored prefix shorter than the shared one: compute the rest
        start = len(base_tokens)
        ids = torch.tensor([prefix[start:]], dtype=torch.long, device=device)
        # As one packed piece over what is stored where core.prefill_attention computes it (a CPU)
        n = len(prefix) - start
        whole = packing.PackedPieces.of(start, [(start, n)]) \
            if packing.supports(model) and prefill_attention.takes(n, model.dtype, device) else None
        _, base = forward_last(model, ids, None, torch.arange(start, len(prefix), device=device)[None], base, whole)
        base_tokens = prefix
    rows_of = {r: rows for r, rows, _ in members}
    pieces: dict[tuple[int, tuple[int, ...]], list[tuple[int, int]]] = {}  # (base seen, suffix) → views
    for r, rows in rows_of.items():
        for i, row in enumerate(rows):
            if views[r][i] is None:
                seen = min(common_length(base_tokens, row), len(row) - 1)  # ≥ len(prefix): the prefix is the base's
                pieces.setdefault((seen, tuple(row[seen:])), []).append((r, i))
    keys = list(pieces)
    packed = packing.supports(model)
    chunks = _chunks([len(suffix) for _, suffix in keys]) if packed else [list(range(len(keys)))]
    for n, chunk in enumerate(chunks):
        computed = _compute(model, base if n == len(chunks) - 1 else base.copy(), len(base_tokens),
                            [keys[j] for j in chunk], device, packed)
        for j, view in zip(chunk, computed):
            for r, i in pieces[keys[j]]:
                views[r][i] = view
            public = next((r for r, i in pieces[keys[j]] if i == 0), None)
            if store is not None and public is not None:
                store.store(rows_of[public][0], assemble([view.segments]), row=0, logits=view.logits)


def _compute(model: Any, base: ReservedCache, base_length: int, pieces: list[tuple[int, tuple[int, ...]]],
             device: torch.device, packed: bool) -> list[_View]:
    """Each piece (base positions it sees, its tokens) over `base`: one packed forward, or, for
    models without packed attention, one forward per suffix shape from copies of the base."""
    if packed:
        spec = packing.PackedPieces.of(base_length, [(seen, len(suffix)) for seen, suffix in pieces])
        ids = torch.tensor([[t for _, suffix in pieces for t in suffix]], dtype=torch.long, device=device)
        pos = torch.tensor([[seen + k for seen, suffix in pieces for k in range(len(suffix))]], device=device)
        last = torch.tensor([s + n - 1 for s, n in zip(spec.starts, spec.lengths)], device=device)
        with weight_major_active():
            out = model(input_ids=ids, position_ids=pos, past_key_values=base, use_cache=True, logits_to_keep=last,
                        packed=spec)
        cache = out.past_key_values
        return [_View([(cache, 0, 0, seen), (cache, 0, base_length + s, base_length + s + n)], out.logits[0, j])
                for j, ((seen, _), s, n) in enumerate(zip(pieces, spec.starts, spec.lengths))]
    views: list[_View | None] = [None] * len(pieces)
    shapes: dict[tuple[int, int], list[int]] = {}
    for j, (seen, suffix) in enumerate(pieces):
        shapes.setdefault((seen, len(suffix)), []).append(j)
    for (seen, n), members in shapes.items():
        ids = torch.tensor([pieces[j][1] for j in members], dtype=torch.long, device=device)
        pos = torch.arange(seen, seen + n, device=device)[None].expand(len(members), -1)
        logits, cache = forward_last(model, ids, None, pos, base.copy(length=seen, repeats=len(members)))
        for k, j in enumerate(members):
            views[j] = _View([(cache, k, 0, seen + n)], logits[k])
    return views  # type: ignore[return-value]  # every piece has one shape


def _chunks(lengths: list[int]) -> list[list[int]]:
    """Indices of pieces in packed forwards of at most PACK_TOKENS tokens (a longer piece alone)."""
    chunks: list[list[int]] = []
    total = 0
    for j, n in enumerate(lengths):
        if not chunks or total + n > PACK_TOKENS:
            chunks.append([])
            total = 0
        chunks[-1].append(j)
        total += n
    return chunks


def _padded(model: Any, rows: list[list[int]], reserve: int, pad_id: int, device: torch.device) -> Prefilled:
    """One request for a model whose cache cannot be assembled: its rows whole, left-padded, in
    one forward. Its sliding-window layers measure their window in cache columns, so each row must
    lie in consecutive columns: a shared prefix computed once would leave padding between it and
    the rest of a shorter row, inside that row's window."""
    ids, mask = left_pad(rows, pad_id, device)
    pos = (mask.long().cumsum(dim=1) - 1).clamp_min(0)
    lead = [ids.shape[1] - len(r) for r in rows]
    logits, cache = forward_last(model, ids, mask.long(), pos, None)
    return Prefilled(mask, lead, pos[:, -1:], logits, own_cache=cache)


__all__ = ["PACK_TOKENS", "Prefilled", "common_prefix_length", "forward_last", "left_pad", "prefill_requests"]
