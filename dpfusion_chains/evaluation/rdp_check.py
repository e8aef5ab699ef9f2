"""Checking the per-step RDP claim on real model distributions.

For two neighbouring contexts x, x′ (same public view: one record with a sensitive span
replaced), the mechanism's next-token distributions P_t, P′_t after the same prefix satisfy
D_α(P_t‖P′_t) ≤ ρ_step = ln((G−1)/G + e^{(α−1)c_α b}/G)/(α−1) (DESIGN §4). We compute both
distributions exactly over the whole vocabulary at every step — re-implementing the mixing
from the fusion primitives rather than calling the decode loop, so the check is independent of
it — and also estimate the sequence-level D_α(P‖P′) over T steps by Monte-Carlo
(1/(α−1)·log of the mean of (P(y)/P′(y))^{α−1} over sampled y), to compare with T·ρ_step.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch

from dpfusion_chains.core.accounting import per_step_rdp
from dpfusion_chains.core.fusion import fuse, mixture_logprobs, renyi_divergence, search_lambda
from dpfusion_chains.core.spans import build_views, normalize_messages, render_chat


@dataclass
class StepCheck:
    worst_ratio: float       # max over steps of D_α(P_t‖P′_t) / ρ_step (both directions)
    steps: int
    rho_step: float
    sequence_estimate: float  # Monte-Carlo D_α at sequence level (nan if not estimated)
    sequence_bound: float     # T · ρ_step


def _rows(engine: Any, messages: list[dict[str, Any]], detector: Any) -> list[list[int]]:
    views = build_views(engine.tokenizer, render_chat(engine.tokenizer, normalize_messages(messages), detector))
    return [views.public_ids] + views.group_ids


@torch.inference_mode()
def mechanism_logprobs(engine: Any, rows: list[list[int]], prefix: list[int], b: float, alpha: float,
                       temperature: float = 1.0) -> torch.Tensor:
    """log p_out of the DP-Fusion mechanism after `prefix`, recomputed from scratch (no cache)."""
    logps = []
    for row in rows:
        ids = torch.tensor([row + prefix], dtype=torch.long, device=engine.device)
        logits = engine.model(input_ids=ids).logits[0, -1].float() / temperature
        logps.append(torch.log_softmax(logits.double(), dim=-1))  # normalised in float64, not float32
    public, groups = logps[0], torch.stack(logps[1:])
    lam, _ = search_lambda(groups.float(), public.float().expand_as(groups), b, 2 * alpha)
    return fuse(mixture_logprobs(lam.double(), groups, public.expand_as(groups)))


def check_neighbours(engine: Any, messages_a: list[dict[str, Any]], messages_b: list[dict[str, Any]],
                     detector: Any, b: float, alpha: float, steps: int = 8, samples: int = 0,
                     seed: int = 0) -> StepCheck:
    rows_a, rows_b = _rows(engine, messages_a, detector), _rows(engine, messages_b, detector)
    if rows_a[0] != rows_b[0]:
        raise ValueError("the two contexts are not neighbours: their public views differ")
    groups = len(rows_a) - 1
    rho = per_step_rdp(alpha, b, groups)
    gen = torch.Generator().manual_seed(seed)
    prefix: list[int] = []
    worst = 0.0
    for _ in range(steps):
        lp_a = mechanism_logprobs(engine, rows_a, prefix, b, alpha)
        lp_b = mechanism_logprobs(engine, rows_b, prefix, b, alpha)
        d = max(renyi_divergence(lp_a, lp_b, alpha).item(), renyi_divergence(lp_b, lp_a, alpha).item())
        worst = max(worst, d / rho if rho > 0 else (0.0 if d <= 1e-12 else math.inf))
        prefix.append(int(torch.multinomial(lp_a.exp().float(), 1, generator=gen)))
    estimate = math.nan
    if samples:
        log_ratios = []
        for _ in range(samples):
            prefix, total = [], 0.0
            for _ in range(steps):
                lp_a = mechanism_logprobs(engine, rows_a, prefix, b, alpha)
                lp_b = mechanism_logprobs(engine, rows_b, prefix, b, alpha)
                token = int(torch.multinomial(lp_a.exp().float(), 1, generator=gen))
                total += float(lp_a[token] - lp_b[token])
                prefix.append(token)
            log_ratios.append((alpha - 1.0) * total)
        lr = torch.tensor(log_ratios, dtype=torch.float64)
        estimate = float((torch.logsumexp(lr, 0) - math.log(len(log_ratios))) / (alpha - 1.0))
    return StepCheck(worst, steps, rho, estimate, steps * rho)
