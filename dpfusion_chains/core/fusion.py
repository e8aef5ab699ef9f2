"""DP-Fusion on tensors: log-space Rényi divergence, vectorised λ search, mixture, sampling.

Everything is in log space and float32 (or float64 for audits); no probability is ever
clamped — clamping at a floor under-estimates divergences and silently breaks the bound
(DESIGN §9). No Python loop over the vocabulary, no host synchronisation.
"""

from __future__ import annotations

import math

import torch

NEG_INF = float("-inf")
# λ search: exact on the top HEAD_TOKENS tokens, a convex (chord) bound on the rest; GRID_ROUNDS
# rounds of a GRID_POINTS-point search find λ to within (GRID_POINTS−1)^−GRID_ROUNDS ≈ 3e-5 from below.
HEAD_TOKENS = 256
GRID_POINTS = 32
GRID_ROUNDS = 3
# float32 log-sum-exp carries ~1e-6 relative error on D; the search enforces a slightly
# tighter bound so the float64 value of the chosen mixture still meets b (tested).
ABS_TOLERANCE = 1e-6
REL_TOLERANCE = 1e-4


def renyi_divergence(logp: torch.Tensor, logq: torch.Tensor, alpha: float | torch.Tensor) -> torch.Tensor:
    """D_α(P‖Q) = logsumexp(α·log P − (α−1)·log Q) / (α−1) over the last dim, for α > 1.

    Entries with P = 0 contribute nothing; P > 0 where Q = 0 gives +inf. `alpha` may be a
    tensor of one order per row.
    """
    if isinstance(alpha, torch.Tensor):
        a = alpha.unsqueeze(-1)  # one order per row
    else:
        if not alpha > 1:
            raise ValueError(f"renyi_divergence needs alpha > 1, got {alpha}")
        a = alpha
    terms = a * logp - (a - 1.0) * logq
    terms = torch.where(torch.isneginf(logp), torch.full_like(terms, NEG_INF), terms)
    return torch.logsumexp(terms, dim=-1) / (alpha - 1.0)


def symmetric_renyi(logp: torch.Tensor, logq: torch.Tensor, alpha: float | torch.Tensor) -> torch.Tensor:
    """D↔_α(P, Q) = max(D_α(P‖Q), D_α(Q‖P))."""
    return torch.maximum(renyi_divergence(logp, logq, alpha), renyi_divergence(logq, logp, alpha))


def mixture_logprobs(lam: torch.Tensor, logp_private: torch.Tensor, logp_public: torch.Tensor) -> torch.Tensor:
    """log m_λ = log(λ·p_g + (1−λ)·p_pub), λ of shape [...] broadcast over the vocabulary."""
    lam = lam.unsqueeze(-1)
    # log(0) = -inf is exact here: λ = 0 gives p_pub and λ = 1 gives p_g, with no clamping.
    return torch.logaddexp(torch.log(lam) + logp_private, torch.log1p(-lam) + logp_public)


def enforced_bound(bound: torch.Tensor) -> torch.Tensor:
    """The bound the float32 search checks against: b minus the float32 error margin. It is left
    negative for b below the margin, so that only λ = 0 (always admitted) remains: float32 rounds
    the divergence of a tiny λ to 0, which must not pass as ≤ b."""
    return bound * (1.0 - REL_TOLERANCE) - ABS_TOLERANCE


def search_lambda(
    logp_private: torch.Tensor,
    logp_public: torch.Tensor,
    bound: torch.Tensor | float,
    order: float | torch.Tensor,
    head_tokens: int = HEAD_TOKENS,
    grid: int = GRID_POINTS,
    rounds: int = GRID_ROUNDS,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Largest λ ∈ [0, 1] with D↔_order(m_λ, p_pub) ≤ bound, for every row at once.

    logp_private, logp_public: [N, V] log-probabilities; bound and order: scalars or [N].
    Returns (λ [N], exact D↔ of the chosen mixture [N]).

    Why it is sound and fast:
    * Write r = p_g/p_pub; then m/q = 1 + λ(r−1) and the sums behind both directions are
      F(λ) = Σ_i q_i·(1 + λ(r_i−1))^c with c = a (for D(m‖q)) or c = 1−a (for D(q‖m)).
      Every term is convex in λ, so F is convex with its minimum F(0) = 1 at λ = 0: the
      feasible set is an interval [0, λ*] and λ = 0 is always feasible.
    * The top `head_tokens` tokens (by their contribution at λ = 0 and λ = 1) are summed
      exactly; each remaining term lies below its chord, so the tail is bounded by
      (1−λ)·Q_tail + λ·S_tail with both constants computed once. The bound is ≥ F, so any
      λ it admits is feasible (it may be slightly smaller than the exact λ*).
    * λ is found by `rounds` rounds of a `grid`-point search (a vectorised generalisation of
      bisection with a fixed step count), keeping the largest feasible grid point.
    """
    n, vocab = logp_private.shape
    device, dtype = logp_private.device, logp_private.dtype
    target = enforced_bound(torch.as_tensor(bound, dtype=dtype, device=device).expand(n))
    a = torch.as_tensor(order, dtype=dtype, device=device).expand(n)
    public_zero = torch.isneginf(logp_public)
    # p_g > 0 where p_pub = 0 makes D(m‖p_pub) infinite for every λ > 0: only λ = 0 is feasible.
    blocked = (public_zero & ~torch.isneginf(logp_private)).any(dim=-1)
    log_ratio = (logp_private - logp_public).masked_fill(public_zero, 0.0)        # log r (−inf where p_g = 0)
    coef = torch.stack([a, 1.0 - a])[:, :, None]                                   # [2, N, 1]
    at_one = _nan_to_inf(logp_public + coef * log_ratio)                           # log terms of F at λ = 1
    k = min(head_tokens, vocab)
    score = torch.maximum(torch.maximum(at_one[0], at_one[1]), logp_public)
    head = torch.topk(score, k, dim=-1).indices                                    # [N, k]
    if k < vocab:
        in_tail = torch.ones_like(logp_public, dtype=torch.bool).scatter(-1, head, False)
        neg = float("-inf")
        log_q_tail = torch.logsumexp(logp_public.masked_fill(~in_tail, neg), dim=-1)             # [N]
        log_s_tail = torch.logsumexp(at_one.masked_fill(~in_tail, neg), dim=-1)                 # [2, N]
    else:
        log_q_tail = torch.full((n,), float("-inf"), dtype=dtype, device=device)
        log_s_tail = torch.full((2, n), float("-inf"), dtype=dtype, device=device)
    q_head = torch.gather(logp_public, -1, head)                                   # [N, k]
    r_m1_head = torch.expm1(torch.gather(log_ratio, -1, head))                     # r − 1 ≥ −1, may be +inf

    def feasible(lam: torch.Tensor) -> torch.Tensor:                               # lam [N, M] -> [N, M]
        log_mq = torch.log1p(lam[:, :, None] * r_m1_head[:, None, :])              # [N, M, k]
        terms = _nan_to_inf(q_head[None, :, None, :] + coef[:, :, :, None] * log_mq[None])
        tail_q = torch.log1p(-lam)[None] + log_q_tail[None, :, None]               # [1, N, M]
        tail_s = torch.where(lam > 0, torch.log(lam), float("-inf"))[None] + log_s_tail[:, :, None]
        tail = torch.stack([tail_q.expand_as(tail_s), _nan_to_inf(tail_s)], dim=-1)  # [2, N, M, 2]
        log_f = torch.logsumexp(torch.cat([terms, tail], dim=-1), dim=-1)          # [2, N, M]
        div = (log_f / (a - 1.0)[None, :, None]).amax(dim=0)
        return (div <= target[:, None]) & ~blocked[:, None]

    lo = torch.zeros(n, dtype=dtype, device=device)
    hi = torch.ones_like(lo)
    steps = torch.linspace(0.0, 1.0, grid, dtype=dtype, device=device)
    for _ in range(rounds):
        points = lo[:, None] + (hi - lo)[:, None] * steps                          # points[:, 0] = lo (feasible)
        ok = feasible(points)
        ok[:, 0] = True
        last = ok.to(torch.int32).cumprod(dim=-1).sum(dim=-1) - 1                  # largest feasible prefix index
        new_lo = torch.gather(points, -1, last[:, None]).squeeze(-1)
        new_hi = torch.gather(points, -1, (last + 1).clamp_max(grid - 1)[:, None]).squeeze(-1)
        hi = torch.where(last == grid - 1, hi, new_hi)
        lo = new_lo
    lam = torch.where(blocked, torch.zeros_like(lo), lo)
    div = symmetric_renyi(mixture_logprobs(lam, logp_private, logp_public), logp_public, order)
    return lam, div


def _nan_to_inf(x: torch.Tensor) -> torch.Tensor:
    # NaN arises only from inf − inf (0·∞ ratios); counting it as +inf is the conservative reading.
    return torch.where(torch.isnan(x), torch.full_like(x, float("inf")), x)


def public_candidate_mask(logp_public: torch.Tensor, top_k: int | None, top_p: float | None) -> torch.Tensor:
    """Top-k / top-p candidate set computed from the public distribution alone ([..., V] -> bool)."""
    keep = torch.ones_like(logp_public, dtype=torch.bool)
    if top_k is not None and top_k < logp_public.shape[-1]:
        kth = torch.topk(logp_public, top_k, dim=-1).values[..., -1:]
        keep &= logp_public >= kth
    if top_p is not None and top_p < 1.0:
        sorted_lp, order = torch.sort(logp_public, dim=-1, descending=True)
        cum = torch.cumsum(sorted_lp.exp(), dim=-1)
        # keep the smallest prefix whose mass reaches top_p (the first token always stays)
        sorted_keep = (cum - sorted_lp.exp()) < top_p
        keep &= torch.zeros_like(keep).scatter(-1, order, sorted_keep)
    return keep


def fuse(log_mixtures: torch.Tensor) -> torch.Tensor:
    """log p_out = log((1/G)·Σ_g m_g) for mixtures stacked on dim 0 ([G, V] -> [V])."""
    return torch.logsumexp(log_mixtures, dim=0) - math.log(log_mixtures.shape[0])


def sample_token(logp: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    """One token id from a log-distribution [V] (returns a 1-element tensor, no host sync)."""
    return torch.multinomial(torch.softmax(logp, dim=-1), 1, generator=generator)
