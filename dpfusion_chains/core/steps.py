"""Index plan of the fused decode step and the float64 audit of a step's chosen mixtures.

The plan turns the batch's composition (which rows belong to which request, which rows are
groups, each request's bound, order and temperature) into device tensors once; it is rebuilt
only when requests join or leave, so a step builds no tensor from Python lists.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

from dpfusion_chains.core.errors import PrivacyAuditError
from dpfusion_chains.core.fusion import SearchLimits, mixture_logprobs, search_limits, symmetric_renyi

if TYPE_CHECKING:
    from dpfusion_chains.core.decode_request import DecodeRequest


@dataclass
class StepPlan:
    row_request: torch.Tensor             # [B] request position of every row
    public_weights: torch.Tensor          # [B] 1 on every public row, 0 on group rows
    temperatures: torch.Tensor | None     # [B, 1], None when every temperature is 1
    group_rows: torch.Tensor              # [N] rows mixed with a public row
    group_public_rows: torch.Tensor       # [N] the public row of each group row's request
    one_public_row: int | None            # that row, when every group row has the same (one request mixes; CPU)
    inverse_groups: torch.Tensor          # [N] 1/G of each group row's request
    bounds: torch.Tensor                  # [N]
    orders: torch.Tensor                  # [N]
    limits: SearchLimits                  # the λ search's constants for those bounds and orders
    group_slices: list[tuple[int, int, int]]   # (request position, start, end) into the [N] results
    candidates: list[tuple[int, int, int | None, float | None]]  # (first row, end row, top_k, top_p)
    audited: bool
    n_requests: int
    rows_each: int | None                 # every request's row count, when they all have the same

    @property
    def n_group_rows(self) -> int:
        return len(self.group_slices) and self.group_slices[-1][2]

    @classmethod
    def build(cls, requests: list[DecodeRequest], device: torch.device) -> StepPlan:
        row_request: list[int] = []
        public: list[float] = []
        temps: list[float] = []
        groups: list[int] = []
        group_public: list[int] = []
        inverse: list[float] = []
        bounds: list[float] = []
        orders: list[float] = []
        slices: list[tuple[int, int, int]] = []
        candidates: list[tuple[int, int, int | None, float | None]] = []
        row = 0
        sizes = {len(req.rows) for req in requests}
        for i, req in enumerate(requests):
            n = len(req.rows)
            row_request += [i] * n
            public += [1.0] + [0.0] * (n - 1)
            temps += [req.temperature] * n
            if req.top_k is not None or req.top_p is not None:
                candidates.append((row, row + n, req.top_k, req.top_p))
            if n > 1:
                slices.append((i, len(groups), len(groups) + n - 1))
                groups += range(row + 1, row + n)
                group_public += [row] * (n - 1)
                inverse += [1.0 / (n - 1)] * (n - 1)
                bounds += [req.bound] * (n - 1)
                orders += [req.order] * (n - 1)
            row += n

        def tensor(values: list, dtype: torch.dtype) -> torch.Tensor:
            return torch.tensor(values, dtype=dtype, device=device)

        f32, i64 = torch.float32, torch.long
        bounds_t, orders_t = tensor(bounds, f32), tensor(orders, f32)
        return cls(row_request=tensor(row_request, i64), public_weights=tensor(public, f32),
                   temperatures=None if all(t == 1.0 for t in temps) else tensor(temps, f32)[:, None],
                   group_rows=tensor(groups, i64), group_public_rows=tensor(group_public, i64),
                   one_public_row=group_public[0] if len(set(group_public)) == 1 and device.type == "cpu" else None,
                   inverse_groups=tensor(inverse, f32), bounds=bounds_t, orders=orders_t,
                   limits=search_limits(bounds_t, orders_t, len(bounds), f32, device),
                   group_slices=slices, candidates=candidates, audited=any(r.audit for r in requests),
                   n_requests=len(requests), rows_each=sizes.pop() if len(sizes) == 1 else None)


def audit_step(lam: torch.Tensor, logp_groups: torch.Tensor, logp_public: torch.Tensor, plan: StepPlan,
               requests: list[DecodeRequest]) -> dict[int, Exception]:
    """White-box audit: recompute D↔_order(m_λ, p_pub) of the chosen mixtures in float64; a request
    whose mixture exceeds its bound fails before its token is sampled. Costs a host sync per step
    (audit only). Returns the failures by request position.

    The float32 log-probabilities are renormalised in float64 first: float32 log_softmax leaves
    Σp a few 1e-6 away from 1 (SmolLM2's vocabulary), which read as a divergence of that size
    even at λ = 0, where m is p_pub itself, and failed requests with bounds under ~3e-6."""
    lp_groups64 = torch.log_softmax(logp_groups.double(), dim=-1)
    lp_public64 = torch.log_softmax(logp_public.double(), dim=-1)
    m64 = mixture_logprobs(lam.double(), lp_groups64, lp_public64)
    margins = (plan.bounds.double() - symmetric_renyi(m64, lp_public64, plan.orders.double())).tolist()
    failed: dict[int, Exception] = {}
    for i, s, e in plan.group_slices:
        req = requests[i]
        if not req.audit:
            continue
        worst = min(margins[s:e])
        req.audit_margin = worst if req.audit_margin is None else min(req.audit_margin, worst)
        if worst < 0:
            failed[i] = PrivacyAuditError(f"audit: a chosen mixture exceeds the per-step bound by {-worst:.3g} "
                                          f"at step {len(req.generated) + 1}; no token was sampled")
    return failed


def mix_rows(probs: torch.Tensor, lam: torch.Tensor | None, plan: StepPlan) -> torch.Tensor:
    """[B, V] row probabilities -> [R, V] output distribution of every request (unnormalised
    only by float rounding): p_out = (1/G)·Σ_g (λ_g·p_g + (1−λ_g)·p_pub), i.e. group rows weigh
    λ_g/G and the public row 1 − Σ_g λ_g/G; a request without groups gets its public row.
    Rows are added in the same order whatever else is in the batch, so a request's distribution
    does not depend on its batch companions (on the CPU; CUDA's index_add_ order may vary). When
    every request has as many rows, a sum over [R, rows, V] adds them: like index_add_ it adds each
    request's rows from 0 in row order (bit for bit the same, tested), in one op instead of two.

    `probs` is overwritten (each row scaled by its weight): a decode step has no use for it
    afterwards, and a fresh [B, V] buffer cost ~30 µs of a four-group step on the dev CPU."""
    weights = plan.public_weights
    if lam is not None:
        share = lam * plan.inverse_groups
        weights = weights.index_copy(0, plan.group_rows, share).index_add_(0, plan.group_public_rows, -share)
    weighted = probs.mul_(weights[:, None])
    if plan.rows_each is not None:
        return weighted.view(plan.n_requests, plan.rows_each, -1).sum(dim=1)
    mixed = torch.zeros((plan.n_requests, probs.shape[-1]), dtype=probs.dtype, device=probs.device)
    return mixed.index_add_(0, plan.row_request, weighted)


def public_rows(rows: torch.Tensor, plan: StepPlan) -> torch.Tensor:
    """[B, V] -> [N, V]: each group row's public row. With one request mixing on a CPU, a view of
    its row repeated (no copy; the λ search's passes then read one row from the cache, not N).
    Elsewhere copies, so that the compiled search (core.compiled, off the CPU) always gets them."""
    if plan.one_public_row is not None:
        return rows[plan.one_public_row].expand(plan.n_group_rows, -1)
    return rows.index_select(0, plan.group_public_rows)


def public_masses(probs: torch.Tensor, plan: StepPlan) -> torch.Tensor:
    """Σp of every group row's public row ([N]): the λ search's tail at λ = 0 from the probabilities
    the step samples from, instead of another pass over exp(log q) in the search. (A float64 sum
    cost 7× as much: 58 against 8 µs for 5 rows; float32's rounding is the search's as before.)"""
    if plan.one_public_row is not None:
        return probs[plan.one_public_row].sum(dim=-1, keepdim=True).expand(plan.n_group_rows)
    return probs.sum(dim=-1).index_select(0, plan.group_public_rows)
