"""The batched KV-cache decode loop: all views of all requests advance in one forward per token.

Rows of one request are contiguous: its public view first, then one row per group. Each
step takes the last position's logits only, runs the λ search for every group row of every
request at once, mixes, samples one token per request and appends that token to all of the
request's rows. The only host synchronisation per step is reading the sampled tokens for the
stop check. Finished requests leave the batch.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

import torch

from dpfusion_chains.core.errors import PrivacyAuditError
from dpfusion_chains.core.fusion import (fuse, mixture_logprobs, public_candidate_mask, sample_token, search_lambda,
                                         symmetric_renyi)


@dataclass
class DecodeRequest:
    """One request's views and decoding rules. `rows[0]` is the public view; rows 1.. are groups
    and are mixed only when `bound > 0` (otherwise the caller passes the public row alone)."""

    rows: list[list[int]]
    bound: float
    order: float
    max_new_tokens: int
    temperature: float = 1.0
    top_k: int | None = None
    top_p: float | None = None
    stop: tuple[str, ...] = ()
    eos_ids: frozenset[int] = frozenset()
    generator: torch.Generator | None = None
    audit: bool = False               # re-check every step's bound in float64 (white-box audit)
    # filled by the loop
    audit_margin: float | None = None  # worst b − D↔ over steps and groups (audit mode)
    generated: list[int] = field(default_factory=list)
    text: str = ""
    finish_reason: str = "length"
    step_lambdas: list[torch.Tensor] = field(default_factory=list)
    step_divergences: list[torch.Tensor] = field(default_factory=list)

    @property
    def n_groups(self) -> int:
        return len(self.rows) - 1


@dataclass
class _Batch:
    """Device-side state of the rows still decoding."""

    active: list[int]                 # request indices, in row order
    row_counts: list[int]
    mask: torch.Tensor                # [B, past+cur] attention mask
    last_pos: torch.Tensor            # [B, 1] position of each row's last token
    cache: object


def common_prefix_length(rows: list[list[int]]) -> int:
    """Tokens shared by every row, leaving at least one token per row for the batched pass."""
    limit = min(len(r) for r in rows) - 1
    n = 0
    while n < limit and all(r[n] == rows[0][n] for r in rows[1:]):
        n += 1
    return n


def _left_pad(rows: list[list[int]], pad_id: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, r in enumerate(rows):
        ids[i, width - len(r):] = torch.tensor(r, dtype=torch.long)
        mask[i, width - len(r):] = 1
    return ids.to(device), mask.to(device)


def _forward(model, ids: torch.Tensor, mask: torch.Tensor, pos: torch.Tensor, cache: object | None):
    out = model(input_ids=ids, attention_mask=mask, position_ids=pos, past_key_values=cache,
                use_cache=True, logits_to_keep=1)
    return out.logits[:, -1, :], out.past_key_values


def prefill(model, requests: list[DecodeRequest], pad_id: int, device: torch.device) -> tuple[torch.Tensor, _Batch]:
    """First forward. A single request computes its shared prefix once and expands the cache;
    several requests are left-padded together. Padding sits between the shared prefix and each
    row's own tokens and is masked; positions count real tokens only."""
    rows = [r for req in requests for r in req.rows]
    shared = common_prefix_length(rows) if len(requests) == 1 and len(rows) > 1 else 0
    cache = None
    prefix_mask = torch.ones((len(rows), shared), dtype=torch.long, device=device)
    if shared:
        prefix = torch.tensor([rows[0][:shared]], dtype=torch.long, device=device)
        _, cache = _forward(model, prefix, torch.ones_like(prefix), torch.arange(shared, device=device)[None], None)
        cache.batch_repeat_interleave(len(rows))
    ids, suffix_mask = _left_pad([r[shared:] for r in rows], pad_id, device)
    pos = (shared + suffix_mask.cumsum(dim=1) - 1).clamp_min(0)
    mask = torch.cat([prefix_mask, suffix_mask], dim=1)
    logits, cache = _forward(model, ids, mask, pos, cache)
    batch = _Batch(list(range(len(requests))), [len(r.rows) for r in requests], mask, pos[:, -1:], cache)
    return logits, batch


def fused_step(logits: torch.Tensor, requests: list[DecodeRequest], batch: _Batch) -> torch.Tensor:
    """Sample one token per active request from its DP-Fusion mixture; returns [n_active] token ids."""
    device = logits.device
    reqs = [requests[i] for i in batch.active]
    temps = torch.tensor([r.temperature for r, n in zip(reqs, batch.row_counts) for _ in range(n)], device=device)
    logp = torch.log_softmax(logits.float() / temps[:, None], dim=-1)
    starts = [0]
    for n in batch.row_counts:
        starts.append(starts[-1] + n)
    # Candidate sets (top-k/top-p) come from the public row alone and apply to all the request's rows.
    for r, s, e in zip(reqs, starts, starts[1:]):
        if r.top_k is not None or r.top_p is not None:
            keep = public_candidate_mask(logp[s], r.top_k, r.top_p)
            logp[s:e] = torch.log_softmax(logp[s:e].masked_fill(~keep, float("-inf")), dim=-1)
    mixing = [(r, s, e) for r, s, e in zip(reqs, starts, starts[1:]) if e - s > 1]
    log_mix = None
    if mixing:
        group_rows = torch.tensor([i for _, s, e in mixing for i in range(s + 1, e)], device=device)
        public_rows = torch.tensor([s for _, s, e in mixing for _ in range(s + 1, e)], device=device)
        bounds = torch.tensor([r.bound for r, s, e in mixing for _ in range(s + 1, e)], device=device)
        orders = torch.tensor([r.order for r, s, e in mixing for _ in range(s + 1, e)], device=device)
        lam, div = search_lambda(logp[group_rows], logp[public_rows], bounds, orders)
        log_mix = mixture_logprobs(lam, logp[group_rows], logp[public_rows])
        if any(r.audit for r, _, _ in mixing):
            _audit(lam, logp[group_rows], logp[public_rows], bounds, orders, mixing)
    tokens = []
    offset = 0
    for r, s, e in zip(reqs, starts, starts[1:]):
        if e - s > 1:
            g = e - s - 1
            r.step_lambdas.append(lam[offset:offset + g])
            r.step_divergences.append(div[offset:offset + g])
            log_out = fuse(log_mix[offset:offset + g])
            offset += g
        else:
            log_out = logp[s]
        tokens.append(sample_token(log_out, r.generator))
    return torch.cat(tokens)


def _audit(lam: torch.Tensor, logp_groups: torch.Tensor, logp_public: torch.Tensor, bounds: torch.Tensor,
           orders: torch.Tensor, mixing: list[tuple[DecodeRequest, int, int]]) -> None:
    """White-box audit: recompute D↔_order(m_λ, p_pub) of the chosen mixtures in float64 and fail
    before the token is sampled if any exceeds its bound. Costs a host sync per step (audit only)."""
    m64 = mixture_logprobs(lam.double(), logp_groups.double(), logp_public.double())
    margins = (bounds.double() - symmetric_renyi(m64, logp_public.double(), orders.double())).tolist()
    offset = 0
    for r, s, e in mixing:
        own = margins[offset:offset + e - s - 1]
        offset += e - s - 1
        if not r.audit:
            continue
        worst = min(own)
        r.audit_margin = worst if r.audit_margin is None else min(r.audit_margin, worst)
        if worst < 0:
            raise PrivacyAuditError(f"audit: a chosen mixture exceeds the per-step bound by {-worst:.3g} "
                                    f"at step {len(r.generated) + 1}; no token was sampled")


def _advance(model, batch: _Batch, tokens: torch.Tensor) -> torch.Tensor:
    counts = torch.tensor(batch.row_counts, device=tokens.device)
    ids = torch.repeat_interleave(tokens, counts)[:, None]
    batch.mask = torch.cat([batch.mask, torch.ones_like(batch.last_pos)], dim=1)
    batch.last_pos = batch.last_pos + 1
    logits, batch.cache = _forward(model, ids, batch.mask, batch.last_pos, batch.cache)
    return logits


def _drop_finished(batch: _Batch, finished: set[int]) -> None:
    keep_rows: list[int] = []
    row = 0
    for req, n in zip(batch.active, batch.row_counts):
        if req not in finished:
            keep_rows.extend(range(row, row + n))
        row += n
    index = torch.tensor(keep_rows, device=batch.mask.device)
    batch.cache.batch_select_indices(index)
    batch.mask, batch.last_pos = batch.mask[index], batch.last_pos[index]
    kept = [(r, n) for r, n in zip(batch.active, batch.row_counts) if r not in finished]
    batch.active, batch.row_counts = [r for r, _ in kept], [n for _, n in kept]


def _check_stop(req: DecodeRequest, tokenizer) -> bool:
    token = req.generated[-1]
    if token in req.eos_ids:
        req.finish_reason = "stop"
        req.text = tokenizer.decode(req.generated[:-1], skip_special_tokens=True)
        return True
    req.text = tokenizer.decode(req.generated, skip_special_tokens=True)
    for s in req.stop:
        at = req.text.find(s)
        if at >= 0:
            req.text, req.finish_reason = req.text[:at], "stop"
            return True
    if len(req.generated) >= req.max_new_tokens:
        req.finish_reason = "length"
        return True
    return False


def decode(model, tokenizer, requests: list[DecodeRequest], device: torch.device) -> Iterator[tuple[int, str]]:
    """Run all requests to completion, yielding (request index, new text) as text becomes final."""
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    emitted = [0] * len(requests)
    hold = [max((len(s) for s in r.stop), default=1) - 1 for r in requests]
    with torch.inference_mode():
        logits, batch = prefill(model, requests, pad_id, device)
        while True:
            tokens = fused_step(logits, requests, batch)
            token_list = tokens.tolist()  # the one host sync per step: needed for the stop check
            finished: set[int] = set()
            for req_idx, token in zip(batch.active, token_list):
                req = requests[req_idx]
                req.generated.append(token)
                done = _check_stop(req, tokenizer)
                # Hold back an incomplete UTF-8 character and a possible stop-string prefix.
                safe = len(req.text) if done else max(emitted[req_idx], len(req.text.rstrip("\ufffd")) - hold[req_idx])
                if safe > emitted[req_idx]:
                    yield req_idx, req.text[emitted[req_idx]:safe]
                    emitted[req_idx] = safe
                if done:
                    finished.add(req_idx)
            if finished:
                if len(finished) == len(batch.active):
                    return
                keep = torch.tensor([i for i, r in enumerate(batch.active) if r not in finished], device=tokens.device)
                tokens = tokens[keep]
                _drop_finished(batch, finished)
            logits = _advance(model, batch, tokens)
