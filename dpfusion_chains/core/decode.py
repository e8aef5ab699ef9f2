"""The batched KV-cache decode loop: all views of all requests advance in one forward per token.

Rows of one request are contiguous: its public view first, then one row per group (the logical
order; the KV cache may hold them in another, below). Requests arriving together are prefilled
together (core.prefill, their suffixes packed into one forward) and merged into the running
batch, so a request can join at any step boundary. Each step takes the last position's logits
only, runs the λ search for every group row of every request at once, mixes in probability
space with one weighted row sum per request, samples one token per request with the request's
own generator and appends it to all of the request's rows. The only host synchronisation per
step is reading the sampled tokens for the stop check. Finished requests leave the batch. On a
CPU, where core.native_attention takes the model, every step's attention is one compiled call per
layer, reading the rows' shared opening once (core.shared_prefix); elsewhere an opening that
enough rows share is read once per step by torch's ops, for which the cache holds its rows
ordered by lead (core.row_placement), so that the columns after the opening are read in buckets
of rows of similar length. Such a step of a transformers Llama runs as its ops alone, without the
module machinery (core.lean_decode; the same logits, bit for bit). With a
CompiledForward (core.compiled), decode steps run as one compiled graph on a static copy of the
cache, which is handed back before requests join or leave. On a CUDA GPU every forward runs
without cuDNN's attention kernel (core.attention_kernels).
"""

from __future__ import annotations

from collections.abc import Iterator
from itertools import accumulate
from typing import Any

import torch

from dpfusion_chains.core import lean_decode, native_attention, packing, shared_prefix
from dpfusion_chains.core.attention_kernels import engine_kernels
from dpfusion_chains.core.compiled import CompiledForward, CompiledSearch, StaticBatch, static_capacity
from dpfusion_chains.core.decode_request import DecodeRequest
from dpfusion_chains.core.errors import PrivacyAuditError
from dpfusion_chains.core.fusion import public_candidate_mask, search_lambda
from dpfusion_chains.core.graphed_search import GraphedSearch
from dpfusion_chains.core.kvcache import ReservedCache, additive_mask, assemble, supports_reserved_cache
from dpfusion_chains.core.prefill import Prefilled, common_prefix_length, forward_last, prefill_requests
from dpfusion_chains.core.prefix_cache import PrefixCache
from dpfusion_chains.core.row_placement import RowPlacement, by_lead, compacted
from dpfusion_chains.core.sampling import sample_rows
from dpfusion_chains.core.shared_prefix import SharedPrefix
from dpfusion_chains.core.steps import StepPlan, audit_step, mix_rows, public_masses, public_rows


class DecodeBatch:
    """Device-side state of the rows still decoding: KV cache, attention mask, positions, the
    logits waiting to be sampled, and the index plan of the fused step. The cache, mask, leads
    and positions are in the cache's row order (`placement`, core.row_placement); the logits
    and everything the fused step reads are in logical order (each request's rows together)."""

    def __init__(self, model: Any, tokenizer: Any, device: torch.device, pad_id: int | None = None,
                 compiled: CompiledForward | None = None, prefixes: PrefixCache | None = None,
                 search: GraphedSearch | None = None) -> None:
        self.model, self.tokenizer, self.device = model, tokenizer, device
        self.compiled = compiled                      # optional compiled step (core.compiled)
        # the λ search replayed from CUDA graphs (core.graphed_search); else the compiled or eager one
        self.search = search if search is not None else compiled.search if compiled is not None else None
        self.prefixes = prefixes                      # optional store of public-view KV (core.prefix_cache)
        self.static: StaticBatch | None = None        # the cache frozen for it; None while eager
        if pad_id is None:
            pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
        self.pad_id = pad_id
        self.requests: list[DecodeRequest] = []
        self.cache: Any = None
        self.mask: torch.Tensor | None = None        # [B, past] bool, True = attend
        self.lead: list[int] = []                     # per row: leading masked columns (host copy)
        self.placement: RowPlacement | None = None    # the cache's rows, when not in logical order
        self.padded = False                           # any masked column at all (host copy)
        self.opening = 0                              # tokens every row starts with (core.shared_prefix)
        self.last_pos: torch.Tensor | None = None     # [B, 1] position of each row's last token
        self.logits: torch.Tensor | None = None       # [B, V] next-token logits, not yet sampled
        self.plan: StepPlan | None = None
        self.mergeable = supports_reserved_cache(model)  # more than one request needs an assembled cache

    def __len__(self) -> int:
        return len(self.requests)

    @property
    def rows(self) -> int:
        return sum(len(r.rows) for r in self.requests)

    # -- joining ----------------------------------------------------------------------------
    def add(self, requests: list[DecodeRequest]) -> None:
        """Prefill `requests` and merge them into the batch; their logits wait for the next step."""
        self.join(list(zip(requests, self.prefill(requests))))

    def prefill(self, requests: list[DecodeRequest]) -> list[Prefilled]:
        """`requests`' rows prefilled together (the batch is not touched): ready to `join`."""
        with engine_kernels(self.device):
            return prefill_requests(self.model, [(r.rows, r.max_new_tokens + 1) for r in requests], self.pad_id,
                                    self.device, self.prefixes)

    def join(self, joining: list[tuple[DecodeRequest, Prefilled]]) -> None:
        """Merge prefilled requests into the batch: the running rows and every joining row
        assembled into one new cache, in one copy each."""
        if not joining:
            return
        self._thaw()
        prefilled = [p for _, p in joining]
        if any(p.segments is None for p in prefilled):  # a model whose cache cannot be assembled
            if self.requests or len(prefilled) > 1:
                raise RuntimeError("this model's cache cannot take new requests mid-loop")
            only = prefilled[0]
            self.cache, self.mask, self.lead, self.placement = only.own_cache, only.mask, only.lead, None
            self.last_pos, self.logits = only.last_pos, only.logits
        else:
            self._assemble(prefilled)
        requests = [req for req, _ in joining]
        self.requests.extend(requests)
        self._find_opening()
        # padding exists when views differ in length or the merge padded a side (host-side facts)
        self.padded = self.padded or any(self.lead) or any(len({len(r) for r in req.rows}) > 1 for req in requests)
        self.plan = None

    def _assemble(self, joining: list[Prefilled]) -> None:
        """Our rows, then the joining requests' rows, into one cache (core.kvcache.assemble),
        shorter rows left-padded and masked; every cache keeps its positions, rotary phases
        being in the keys already. The cache takes its rows by lead where core.shared_prefix may
        read them in buckets, else in logical order."""
        rows = [segments for p in joining for segments in p.segments]
        logical = list(range(len(rows)))                  # of each row in `rows`
        reserve = max(p.reserve for p in joining)
        if self.requests:  # our rows first (in the cache's order), each whole (its padding included)
            ours = self.rows
            rows = [[(self.cache, r, 0, self.cache.length)] for r in range(ours)] + rows
            logical = list(self.placement.logical if self.placement else range(ours)) + [ours + i for i in logical]
            reserve = max(reserve, self.cache.layers[0].reserve)
        parts: list[DecodeBatch | Prefilled] = ([self] if self.requests else []) + joining
        width = max(p.mask.shape[1] for p in parts)
        lead = [x + width - p.mask.shape[1] for p in parts for x in p.lead]
        order = by_lead(lead) if self._bucketed(len(rows)) else sorted(range(len(rows)), key=logical.__getitem__)
        index = torch.tensor(order, device=self.device)
        # one assignment: every part (self among them) is read before any attribute is replaced
        self.cache, self.mask, self.lead, self.last_pos, self.logits, self.placement = (
            assemble([rows[i] for i in order], reserve),
            torch.cat([torch.nn.functional.pad(p.mask, (width - p.mask.shape[1], 0)) for p in parts])[index],
            [lead[i] for i in order],
            torch.cat([p.last_pos for p in parts])[index],
            torch.cat([p.logits for p in parts]),          # in logical order, as self.logits always is
            RowPlacement.of([logical[i] for i in order], self.device))

    def _bucketed(self, rows: int) -> bool:
        """Whether decode steps of this many rows may read them in buckets (core.shared_prefix):
        not where the compiled kernel computes the attention, reading each row from its own start."""
        return (self.device.type == "cpu" and rows >= shared_prefix.MIN_ROWS and packing.supports(self.model)
                and not native_attention.takes_model(self.model))

    # -- leaving ----------------------------------------------------------------------------
    def remove(self, gone: set[int]) -> list[int]:
        """Drop the requests at positions `gone` (indices into self.requests). Returns the old
        positions of those that stay, in their new order: a request from the end of the batch
        takes the rows of a leaving one of its size, so only its rows are copied (in place)
        rather than every row after the gap. A cache whose rows are ordered by lead
        (core.row_placement) is compacted alike, row by row."""
        if not gone:
            return list(range(len(self.requests)))
        self._thaw()
        sizes = [len(r.rows) for r in self.requests]
        order = compaction_order(sizes, gone)
        starts = list(accumulate(sizes, initial=0))
        keep_rows = [row for i in order for row in range(starts[i], starts[i] + sizes[i])]
        self.requests = [self.requests[i] for i in order]
        self.plan = None
        if not self.requests:
            self.cache = self.mask = self.last_pos = self.logits = self.placement = None
            self.lead, self.padded, self.opening = [], False, 0
            return order
        if self.logits is not None:
            self.logits = self.logits[torch.tensor(keep_rows, device=self.device)]
        # the cache's rows that stay, in their new places (core.row_placement), and their logical rows
        physical, logical = compacted(self.placement, keep_rows) if self.placement else (keep_rows, None)
        index = torch.tensor(physical, device=self.device)
        if hasattr(self.cache, "move_rows"):
            self.cache.move_rows([(new, old) for new, old in enumerate(physical) if new != old], len(physical))
        else:
            self.cache.batch_select_indices(index)
        self.mask, self.last_pos = self.mask[index], self.last_pos[index]
        self.lead = [self.lead[p] for p in physical]
        self.placement = RowPlacement.of(logical, self.device) if logical is not None else None
        self._find_opening()
        cut = min(self.lead)
        if cut and hasattr(self.cache, "drop_front"):  # columns every remaining row masks
            self.cache.drop_front(cut)
            self.mask = self.mask[:, cut:]
            self.lead = [x - cut for x in self.lead]
        return order

    # -- one token --------------------------------------------------------------------------
    def step(self) -> list[tuple[int, str, bool, Exception | None]]:
        """Sample one token for every request, then run the forward for the next one.
        Returns (request position, new final text, done, error) per request; finished and failed
        requests are removed before the forward."""
        if self.plan is None:
            self.plan = StepPlan.build(self.requests, self.device)
        tokens, failed = fused_step(self.logits, self.requests, self.plan, self.search)
        token_list = tokens.tolist()  # the one host sync per step: needed for the stop check
        events: list[tuple[int, str, bool, Exception | None]] = []
        gone: set[int] = set()
        for i, (req, token) in enumerate(zip(self.requests, token_list)):
            if i in failed:
                events.append((i, "", True, failed[i]))
                gone.add(i)
                continue
            delta, done = req.accept(token, self.tokenizer)
            events.append((i, delta, done, None))
            if done:
                gone.add(i)
        self.logits = None
        if gone:
            if len(gone) == len(self.requests):
                self.remove(gone)
                return events
            order = self.remove(gone)
            tokens = tokens[torch.tensor(order, device=tokens.device)]
            self.plan = StepPlan.build(self.requests, self.device)
        self._advance(tokens)
        return events

    def _advance(self, tokens: torch.Tensor) -> None:
        ids = tokens[self.plan.row_request]                       # every row's token, logical order
        if self.placement is not None:
            ids = ids[self.placement.to_physical]
        with engine_kernels(self.device):
            self._forward(ids[:, None])
        if self.placement is not None:
            self.logits = self.logits[self.placement.to_logical]

    def _forward(self, ids: torch.Tensor) -> None:
        """One forward of every row's next token (`ids` in the cache's row order); the logits,
        in that order too, into self.logits."""
        self.last_pos = self.last_pos + 1
        if self._freeze():
            logits = self.compiled(ids, self.static.next_mask(), self.last_pos, self.static)
            if logits is not None:
                self.static.advanced()
                self.logits = logits
                return
            self._thaw()  # no graph for this shape (or none at all): the step runs eagerly
        self.mask = torch.cat([self.mask, self.mask.new_ones((self.mask.shape[0], 1))], dim=1)
        ours = isinstance(self.cache, ReservedCache)
        # Every row's copy of a long shared opening read once (core.shared_prefix), where it pays;
        # with the compiled attention, every step's attention is one call per layer.
        shared = None
        if ours and packing.supports(self.model):
            compiled = self.device.type == "cpu" and native_attention.takes_model(self.model)
            if self.opening or compiled:
                shared = SharedPrefix.plan(self.lead, self.opening, self.mask, self.model.dtype, compiled)
        lean = lean_decode.for_model(self.model) if shared is not None else None
        if lean is not None:  # the same ops without transformers' module machinery (core.lean_decode)
            self.logits = lean.forward(ids, self.last_pos, self.cache, shared)
            return
        mask = None  # without padding no mask is needed at all
        if self.padded and ours:
            # a 4-D mask goes to every layer as is (no host check of whether it is all ones),
            # additive (kvcache.additive_mask), made once per step
            mask = additive_mask(self.mask, self.model.dtype)
        elif self.padded:
            # transformers' own cache (a model with sliding-window layers, whose caches keep only
            # the window): the 2-D mask, from which transformers builds each layer type's mask
            mask = self.mask.long()
        self.logits, self.cache = forward_last(self.model, ids, mask, self.last_pos, self.cache, shared_prefix=shared)

    def _find_opening(self) -> None:
        """The tokens every row starts with; row r holds them at columns [lead_r, lead_r + opening)."""
        rows = [row for req in self.requests for row in req.rows]
        self.opening = common_prefix_length(rows) if len(rows) > 1 else 0

    # -- compiled steps ---------------------------------------------------------------------
    def _freeze(self) -> bool:
        """Whether this step runs compiled; freezes the cache (again) when needed."""
        if self.compiled is None or not CompiledForward.supports(self.cache):
            return False
        if self.static is not None and self.static.full:
            self._thaw()
        if self.static is None:
            # rows change only through add/remove, which thaw first: a refused shape has nothing frozen
            room = max(r.max_new_tokens - len(r.generated) for r in self.requests) + 1
            if not self.compiled.accepts(self.rows, static_capacity(self.cache.length, room)):
                return False
            self.static = StaticBatch(self.model, self.cache, self.mask, room)
        return True

    def _thaw(self) -> None:
        """Back to the eager cache (before requests join or leave, or when the graph failed)."""
        if self.static is not None:
            self.mask = self.static.thaw(self.cache)
            self.static = None


def compaction_order(sizes: list[int], gone: set[int]) -> list[int]:
    """The requests that stay (positions into `sizes`, their row counts), in the order that moves
    fewest rows: each leaving request's place goes to the last staying request after it with the
    same row count, the others keep their relative order. No request moves to a later row."""
    slot = {i: i for i in range(len(sizes)) if i not in gone}   # request → position it sorts by
    tail = sorted(slot, reverse=True)
    for g in sorted(gone):
        mover = next((i for i in tail if i > g and sizes[i] == sizes[g]), None)  # tail: not moved yet
        if mover is None:
            continue
        slot[mover] = g
        tail.remove(mover)
    return sorted(slot, key=slot.__getitem__)


def fused_step(logits: torch.Tensor, requests: list[DecodeRequest], plan: StepPlan,
               search: CompiledSearch | GraphedSearch | None = None) -> tuple[torch.Tensor, dict[int, Exception]]:
    """Sample one token per request from its DP-Fusion mixture: ([R] token ids, failures by position).
    A request whose chosen mixture fails the audit gets no token (fail closed). `search`: the
    compiled (core.compiled) or graphed (core.graphed_search) λ search, else the eager one."""
    scaled = logits.float() if plan.temperatures is None else logits.float() / plan.temperatures
    logp = torch.log_softmax(scaled, dim=-1)
    # Candidate sets (top-k/top-p) come from the public row alone and apply to all the request's rows.
    for s, e, top_k, top_p in plan.candidates:
        keep = public_candidate_mask(logp[s], top_k, top_p)
        logp[s:e] = torch.log_softmax(logp[s:e].masked_fill(~keep, float("-inf")), dim=-1)
    probs = logp.exp()
    lam = None
    failed: dict[int, Exception] = {}
    if plan.n_group_rows:
        lp_groups = logp.index_select(0, plan.group_rows)
        lp_public = public_rows(logp, plan)
        lam, div = (search or search_lambda)(lp_groups, lp_public, plan.bounds, plan.orders,
                                             public_mass=public_masses(probs, plan), limits=plan.limits)
        if plan.audited:
            failed = audit_step(lam, lp_groups, lp_public, plan, requests)
        for i, s, e in plan.group_slices:
            requests[i].step_lambdas.append(lam[s:e])
            requests[i].step_divergences.append(div[s:e])
    mixed = mix_rows(probs, lam, plan)
    if not failed:
        return sample_rows(mixed, [r.generator for r in requests]), failed
    # a failed mixture is never sampled: its request leaves without a token (0 is a placeholder)
    keep = [i for i in range(len(requests)) if i not in failed]
    tokens = torch.zeros(len(requests), dtype=torch.long, device=mixed.device)
    if keep:
        tokens[keep] = sample_rows(mixed[keep], [requests[i].generator for i in keep])
    return tokens, failed


def prefill(model: Any, requests: list[DecodeRequest], pad_id: int, device: torch.device) -> tuple[torch.Tensor, DecodeBatch]:
    """First forward of `requests` (prefilled together, then merged): ([B, V] logits, batch)."""
    batch = DecodeBatch(model, None, device, pad_id)
    batch.add(requests)
    return batch.logits, batch


def decode(model: Any, tokenizer: Any, requests: list[DecodeRequest], device: torch.device,
           compiled: CompiledForward | None = None) -> Iterator[tuple[int, str]]:
    """Run all requests to completion in the calling thread, yielding (request index, new text)
    as text becomes final. Raises the first failure (e.g. PrivacyAuditError)."""
    index = {id(r): i for i, r in enumerate(requests)}
    # Inference mode is entered per step, never held across a yield: the consumer may resume
    # this generator on another thread, where the mode would not be set.
    batch = DecodeBatch(model, tokenizer, device, compiled=compiled)
    with torch.inference_mode():
        batch.add(requests)
    while batch.requests:
        current = list(batch.requests)
        with torch.inference_mode():
            events = batch.step()
        for pos, text, _, error in events:
            if error is not None:
                raise error
            if text:
                yield index[id(current[pos])], text


__all__ = ["DecodeBatch", "DecodeRequest", "PrivacyAuditError", "compaction_order", "decode", "fused_step",
           "prefill"]
