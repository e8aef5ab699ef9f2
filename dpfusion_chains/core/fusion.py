"""DP-Fusion on tensors: log-space Rényi divergence, vectorised λ search, mixture (the sampling
of a token from it: core.sampling).

Everything is in log space and float32 (or float64 for audits); no probability is ever
clamped — clamping at a floor under-estimates divergences and silently breaks the bound
(DESIGN §9). No Python loop over the vocabulary, no host synchronisation.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from typing import NamedTuple

import torch

NEG_INF = float("-inf")
LOG2_E = 1.0 / math.log(2.0)
# λ search: exact on the HEAD_TOKENS tokens with the largest terms, a convex bound on the rest.
# A first grid, 0 and GRID_POINTS−1 geometric values in [LAMBDA_MIN, 1] (steps of ~31 %), finds an
# anchor A just above λ*; the rest is summed exactly there, and a second grid of GRID_POINTS
# uniform values in [0, A] finds λ to within A/63 from below (see search_lambda). The second grid
# also holds A/2, A/4, … A/2^HALVINGS, so that an anchor far above λ* still leaves λ within 2×.
HEAD_TOKENS = 128
GRID_POINTS = 64
HALVINGS = 12
LAMBDA_MIN = 2.0**-24
# A row whose λ falls under REFINE_BELOW of its anchor had a loose chord (a tail holding much of p_g's
# mass, strongly curved): on a CPU its tail is summed again at REFINE_KNOTS more points (_refined_bound).
REFINE_BELOW = 0.5
REFINE_KNOTS = 4
REFINE_POINTS = 16
REFINE_ROUNDS = 4
REFINE_UNTIL = 0.9  # refined rows go on while their λ is under this share of their top
# float32 sums carry ~1e-6 relative error on D; the search enforces a slightly tighter bound so
# that the float64 value of the chosen mixture still meets b (tested).
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


_grid_cache: dict[tuple[int, torch.dtype, torch.device], tuple[torch.Tensor, torch.Tensor]] = {}


def _grids(grid: int, dtype: torch.dtype, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """The search's two grids: the first one's points (0, then grid−1 geometric values in
    [LAMBDA_MIN, 1]) and the second one's fractions of the anchor (0, 1/(grid−1), …, 1 and the
    halvings), sorted. Built once per setting (a step would otherwise spend a dozen small ops on
    them), inline under torch.compile, which traces them as constants."""
    key = (grid, dtype, torch.device(device))
    compiling = torch.compiler.is_compiling()
    cached = None if compiling else _grid_cache.get(key)
    if cached is not None:
        return cached
    geometric = torch.logspace(math.log2(LAMBDA_MIN), 0.0, grid - 1, base=2.0, dtype=dtype, device=device)
    first = torch.cat([torch.zeros(1, dtype=dtype, device=device), geometric])
    halvings = torch.exp2(-torch.arange(1, HALVINGS + 1, dtype=dtype, device=device))
    fractions = torch.cat([torch.linspace(0.0, 1.0, grid, dtype=dtype, device=device), halvings]).sort().values
    if not compiling:
        _grid_cache[key] = (first, fractions)
    return first, fractions


class SearchLimits(NamedTuple):
    coef: torch.Tensor       # [2, N]: the powers a and 1 − a behind D(m‖q) and D(q‖m)
    log_limit: torch.Tensor  # [N]: log F ≤ this ⇔ D ≤ the enforced bound


def search_limits(bound: torch.Tensor | float, order: float | torch.Tensor, n: int,
                  dtype: torch.dtype = torch.float32, device: torch.device | str = "cpu") -> SearchLimits:
    """search_lambda's per-row constants for `n` rows of bounds and orders (scalars or [N])."""
    target = enforced_bound(torch.as_tensor(bound, dtype=dtype, device=device).expand(n))
    a = torch.as_tensor(order, dtype=dtype, device=device).expand(n)
    return SearchLimits(torch.stack([a, 1.0 - a]), (a - 1.0) * target)      # D ≤ target ⇔ log F ≤ (a−1)·target


@functools.cache
def _points_below(grid: int, share: float) -> int:
    """How many of the second grid's fractions (see _grids) lie under `share`: they come first."""
    uniform = sum(1 for i in range(grid) if i / (grid - 1) < share)
    return uniform + sum(1 for j in range(1, HALVINGS + 1) if 2.0**-j < share)


def _log_ratio(logp_private: torch.Tensor, logp_public: torch.Tensor) -> torch.Tensor:
    """log(p_g/q): tokens absent from both (NaN) contribute nothing, so 0; p_g = 0 stays −inf; and
    p_g > 0 where q = 0 (+inf) makes D(m‖q) infinite for every λ > 0: that token's terms read
    NaN (0·∞) at every λ > 0, in the head or in the tail, so only λ = 0 passes (tested)."""
    return (logp_private - logp_public).nan_to_num_(nan=0.0, posinf=math.inf, neginf=NEG_INF)


def _largest_log_terms(log_ratio: torch.Tensor, logp_public: torch.Tensor, order: torch.Tensor) -> torch.Tensor:
    """[N, V]: the larger log term at λ = 1, max over c ∈ {a, 1 − a} of log(q·r^c), which ranks
    the head. As a > 1 that is a·log r where r > 1 and (1 − a)·log r elsewhere, i.e.
    log q + ½·log r + (a − ½)·|log r|: built in one [N, V] buffer (no [2, N, V] one), which the
    search then reuses as scratch. Where the term is +inf (p_g = 0 < q) or NaN (q = 0 < p_g) this
    reads NaN, which topk ranks above every number, as it would +inf (tested)."""
    return log_ratio.mul(order[:, None] - 0.5).abs_().add_(log_ratio, alpha=0.5).add_(logp_public)


def _log2(logp: torch.Tensor) -> torch.Tensor:
    """log2 of the probabilities whose natural logs are `logp`; a repeated row (stride 0, as
    core.steps.public_rows gives on a CPU) is scaled once and repeated again.

    The search's terms are summed as exp2 of base-2 logs: torch's CPU exp (like expm1, log and
    log1p), which ATen hands to MKL's vector maths where MKL is built in, ran ~4× slower than
    the exp2 that torch vectorises itself on the AMD dev CPU (0.32 against 0.08 ns an element).
    Both are accurate to about an ulp; the base-2 argument carries one more rounding, of the
    same size as those already in the natural-log argument (|log term|·2^−24 relative)."""
    if logp.dim() == 2 and logp.shape[0] > 1 and logp.stride(0) == 0:
        return (logp[:1] * LOG2_E).expand_as(logp)
    return logp * LOG2_E


def _excess_ratio_(log_ratio: torch.Tensor, via_exp2: bool | None = None) -> torch.Tensor:
    """x = r − 1 = p_g/q − 1 from log r, in place. By default through exp2 on a CPU (see _log2: 0.18
    against 0.37 ns an element for torch's expm1 on the dev CPU) and through expm1 elsewhere (one
    kernel launch instead of three on a GPU); `via_exp2` chooses. Through exp2 x errs by at most
    (|x| + 2·(1 + |log r|)·r)·2^−24 (the float32 log2(e), the product, exp2's ulp, the subtraction),
    against about (|x| + |log r|·r)·2^−24 through expm1, log r being rounded by |log r|·2^−24
    already. The r-part weighs λ·r/(1 + λ·x) ≤ 1 in a term q·(1 + λ·x)^c: c·(2 + |log r|)·2^−24
    relative at most beyond expm1's, the size of the roundings the search's margins absorb. r = 0
    gives −1, r = +inf gives +inf (tested)."""
    if via_exp2 is None:
        via_exp2 = log_ratio.device.type == "cpu"
    if not via_exp2:
        return log_ratio.expm1_()
    return log_ratio.mul_(LOG2_E).exp2_().sub_(1.0)


def _tail_sums(log2_public: torch.Tensor, coef2: torch.Tensor, log_m: torch.Tensor, head: torch.Tensor,
               out: torch.Tensor | None = None, one_pass: bool | None = None) -> torch.Tensor:
    """The tail at one λ per row, exactly ([2, N]): Σ off the head of q·(m/q)^c for c = a, 1 − a, with
    log2_public = log2 q (_log2), coef2 = c·log2(e) ([2, N], as the head's sums take them) and
    log_m = log(m/q) = log(1 + λ·x) ([N, V]); `out` ([N, V]) is used as scratch. By default one power
    at a time on a CPU: an [N, V] buffer still in cache is cheaper than a fresh [2, N, V] one (in a
    decode step, after the forward has streamed the weights through the caches); elsewhere both at
    once, in half the kernel launches. `one_pass` chooses."""
    if one_pass is None:
        one_pass = log_m.device.type != "cpu"
    if one_pass:
        n, k = head.shape
        terms = torch.addcmul(log2_public, coef2[:, :, None], log_m)             # [2, N, V]: log2(q·(m/q)^c)
        return terms.exp2_().scatter_(-1, head.expand(2, n, k), 0.0).sum(dim=-1)
    scratch = torch.empty_like(log_m) if out is None else out
    sums = [torch.addcmul(log2_public, c[:, None], log_m, out=scratch).exp2_().scatter_(-1, head, 0.0).sum(dim=-1)
            for c in coef2]                                                       # log2(q·(m/q)^c), then the terms
    return torch.stack(sums)


def _feasible_prefix(worst: torch.Tensor, log_limit: torch.Tensor) -> torch.Tensor:
    """[R, M] log-bounds on a grid -> [R, 1]: the last index of the grid's feasible prefix (0,
    λ = 0, always)."""
    ok = worst <= log_limit[:, None]
    ok[:, 0] = True
    return ok.to(torch.int32).cumprod(dim=-1).sum(dim=-1, keepdim=True) - 1


def _refined_bound(rows: tuple[torch.Tensor, ...], top: torch.Tensor, rejected: torch.Tensor,
                   tail_q: torch.Tensor, tail_top: torch.Tensor, head_sums: Callable[[torch.Tensor], torch.Tensor]
                   ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """A finer grid and a tighter bound on it over [0, top], for rows whose λ fell far under
    `top` (A, or a knot of an earlier round): (points [R, M'], log-bounds [R, M'], the tail at the
    knots [2, R, J + 3]). The tail is summed exactly at more knots, `rejected` (the first point the
    last bound ruled out) and REFINE_KNOTS geometric points between it and top; at 0 and top it is
    known (tail_q, tail_top). The tail is convex in λ, so on each span between knots it lies below
    that span's chord: every bound holds. Each span gets REFINE_POINTS points, the knots among them
    (every REFINE_POINTS-th, from 0)."""
    logp_private, logp_public, log2_public, coef2, head = rows
    n = head.shape[0]
    steps = torch.arange(1, REFINE_KNOTS + 1, dtype=top.dtype, device=top.device) / (REFINE_KNOTS + 1)
    knots = torch.cat([torch.zeros_like(top), rejected, rejected * (top / rejected) ** steps, top], dim=-1)
    x = _excess_ratio_(_log_ratio(logp_private, logp_public))
    inner = [_tail_sums(log2_public, coef2, torch.log1p(x * knots[:, j:j + 1]), head)  # rejected and the
             for j in range(1, REFINE_KNOTS + 2)]                                 # inner knots
    sums = [tail_q.expand(2, n), *inner, tail_top]
    values = torch.stack(sums, dim=-1)                                             # [2, R, J + 3]
    share = torch.arange(1, REFINE_POINTS + 1, dtype=top.dtype, device=top.device) / REFINE_POINTS
    spans = knots.shape[-1] - 1
    lo, width = knots[:, :-1, None], (knots[:, 1:] - knots[:, :-1])[:, :, None]    # [R, spans, 1]
    points = torch.cat([knots[:, :1], (lo + share * width).reshape(n, spans * REFINE_POINTS)], dim=-1)
    v_lo, v_step = values[:, :, :-1, None], (values[:, :, 1:] - values[:, :, :-1])[:, :, :, None]
    chords = torch.cat([values[:, :, :1], (v_lo + share * v_step).reshape(2, n, spans * REFINE_POINTS)], dim=-1)
    return points, (head_sums(points) + chords).log_().amax(dim=0), values


def search_lambda(
    logp_private: torch.Tensor,
    logp_public: torch.Tensor,
    bound: torch.Tensor | float,
    order: float | torch.Tensor,
    head_tokens: int = HEAD_TOKENS,
    grid: int = GRID_POINTS,
    *,
    public_mass: torch.Tensor | None = None,
    limits: SearchLimits | None = None,
    exact_divergence: bool = False,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Largest λ ∈ [0, 1] with D↔_order(m_λ, p_pub) ≤ bound, for every row at once.

    logp_private, logp_public: [N, V] log-probabilities; bound and order: scalars or [N].
    public_mass: [N] Σ_v exp(logp_public[v]) of each row, if the caller has it (the decode
    step has, from the probabilities it samples from); else the search sums it. limits:
    search_limits(bound, order, N) made once by a caller that searches with them every step.
    Returns (λ [N], D↔ [N]). By default D↔ is the certified upper bound the search checked at the
    chosen λ (≥ the exact value up to float32 rounding, ≤ bound, 0 at λ = 0) and costs nothing extra;
    `exact_divergence=True` recomputes it exactly over the whole vocabulary.

    Why it is sound and close to exact:
    * Write x = p_g/p_pub − 1; then m/q = 1 + λx and the sums behind both directions are
      F_c(λ) = Σ_i q_i·(1 + λx_i)^c with c = a (for D(m‖q)) or c = 1−a (for D(q‖m)). Every
      term is convex in λ (c(c−1) > 0), so F_c is convex with its minimum F_c(0) = 1: the
      feasible set is an interval [0, λ*] and λ = 0 is always feasible.
    * The `head_tokens` tokens with the largest terms at λ = 1 are summed exactly at every
      grid point. For the rest (the tail), tangents at 0 give a lower bound of F, from which
      the first grid takes an anchor A: the first geometric point that this lower bound rules
      out (1 if none), an estimate of λ* from above. The tail is then summed exactly at A and
      at 0 (one pass over the vocabulary; at 0 as the row's public mass less the head's),
      and on [0, A] each tail term lies below its chord:
      tail_c(λ) ≤ (1 − λ/A)·tail_c(0) + (λ/A)·tail_c(A). The second grid looks in [0, A] only
      and admits a λ only where head + chord ≤ the limit, so every λ it admits is feasible,
      whatever A is (a poor anchor makes λ smaller, never unsafe). The tail masses behind the
      tangents come from 1 − the head's masses: they only steer A.
    * A chord over [0, A] instead of [0, 1] is what makes λ close to λ*. Over the 32 steps of a
      four-group request to SmolLM2-135M, the chord over [0, 1] (256 head tokens) left λ at
      39 % of λ* on average (a float64 bisection over the whole vocabulary), this search at
      99 % (never under 95 %), and in less time. Over 432 rows (24 steps of 11 benchmark prompts,
      one to four groups) it was at 98.1 % on average, never under 83 %.
    * A row whose λ falls under REFINE_BELOW of A had a loose chord: its tail held most of p_g's
      mass and curved strongly (a confident private view against an unsure public one). On a CPU
      such rows are refined (_refined_bound): the tail is summed exactly at more knots between the
      first point the chord ruled out and A, and on each span between knots its chord bounds it;
      the first knot found infeasible becomes the next round's A. On engine_bench's four-group
      prompt (8 seeds × 32 steps, 1024 rows), 13 rows gained, from 0.2–62 % of λ* to
      97–100 %, and the search took ~4 % longer on average. Under torch.compile (off the CPU) the
      graph cannot branch on the data: no refinement there.
    * Overflow reads as +inf and NaN (0·∞) fails every comparison: both can only reject a λ.
    * The vocabulary is read in about a dozen vectorised passes; the grids work on [2, N, M, k].
    """
    n, vocab = logp_private.shape
    device, dtype = logp_private.device, logp_private.dtype
    coef, log_limit = limits if limits is not None else search_limits(bound, order, n, dtype, device)
    log_ratio = _log_ratio(logp_private, logp_public)
    k = min(head_tokens, vocab)
    scratch = _largest_log_terms(log_ratio, logp_public, coef[0])                  # [N, V], reused below
    head = torch.topk(scratch, k, dim=-1, sorted=False).indices                     # [N, k]
    q_head = torch.gather(logp_public, -1, head)                                   # log q on the head
    ratio_head = torch.gather(log_ratio, -1, head)
    x_head = torch.expm1(ratio_head)                                               # x ≥ −1, may be +inf
    q2_head, coef2 = q_head * LOG2_E, coef * LOG2_E                                # base 2 for exp2 (_log2)

    def head_sums(lam: torch.Tensor, rows: torch.Tensor | None = None) -> torch.Tensor:  # λ [N, M] -> [2, N, M]
        x, q2, c2 = (x_head, q2_head, coef2) if rows is None else (x_head[rows], q2_head[rows], coef2[:, rows])
        log_mq = torch.log1p(lam[:, :, None] * x[:, None, :])                      # [N, M, k]
        return torch.addcmul(q2[None, :, None, :], c2[:, :, None, None], log_mq[None]).exp2_().sum(dim=-1)

    # First grid: the anchor, the first point where the lower bound head + tangents exceeds the limit.
    first, fractions = _grids(grid, dtype, device)
    points = first.expand(n, grid)
    head_masses = torch.stack([q_head, q_head + ratio_head]).double().exp_().sum(dim=-1)      # [2, N]: q, p_g
    if public_mass is None:
        public_mass = logp_public.exp().sum(dim=-1)
    tail_q = (public_mass.double() - head_masses[0]).clamp_min_(0.0).to(dtype)  # Σ q off the head: the tail at 0
    tail_masses = (1.0 - head_masses).clamp_min_(0.0).to(dtype)
    tangents = tail_masses[0, :, None] + points * (coef * (tail_masses[1] - tail_masses[0]))[:, :, None]  # [2, N, M]
    ruled_out = (head_sums(points) + tangents).log_().amax(dim=0) > log_limit[:, None]
    ruled_out[:, -1] = True                                                        # none: the anchor is 1
    first_out = ruled_out.to(torch.int32).argmax(dim=-1, keepdim=True).clamp_min_(1)   # argmax: the first
    anchor = torch.gather(points, -1, first_out)                                   # [N, 1], in [LAMBDA_MIN, 1]
    # The tail at the anchor, exactly: q·(1 + A·x)^a and q·(1 + A·x)^(1−a) (log_ratio is spent).
    log_m = _excess_ratio_(log_ratio).mul_(anchor).log1p_()                        # log(1 + A·x)
    log2_public = _log2(logp_public)
    tails = _tail_sums(log2_public, coef2, log_m, head, out=scratch)               # [2, N]
    # Second grid: fractions of A, head exact + the tail's chord over [0, A].
    points = anchor * fractions
    chords = tail_q[:, None] + fractions * (tails[:, :, None] - tail_q[:, None])   # [2, N, M]
    worst = (head_sums(points) + chords).log_().amax(dim=0)                        # [N, M]
    last = _feasible_prefix(worst, log_limit)                                      # [N, 1]
    lam = torch.gather(points, -1, last).squeeze(-1)
    checked = torch.gather(worst, -1, last).squeeze(-1)                            # log F's bound at λ
    # Rows whose λ fell far under the point known infeasible above it (A at first) had a loose
    # chord: their tail is summed at more knots, a few rounds. A host check, free on a CPU only
    # (and no graph break under torch.compile, which skips it).
    if device.type == "cpu" and not torch.compiler.is_compiling() \
            and int(last.min()) < (below := _points_below(grid, REFINE_BELOW)):   # λ < REFINE_BELOW·A
        loose = (last[:, 0] < below).nonzero().squeeze(-1)
        top, tail_top = anchor.clone(), tails.clone()                              # [N, 1], [2, N]
        rejected = torch.gather(points, -1, (last + 1).clamp_max_(points.shape[-1] - 1))
        for _ in range(REFINE_ROUNDS):
            if not loose.numel():
                break
            rows = (logp_private[loose], logp_public[loose], log2_public[loose], coef2[:, loose], head[loose])
            points_r, worst_r, at_knots = _refined_bound(rows, top[loose], rejected[loose], tail_q[loose],
                                                         tail_top[:, loose], lambda at: head_sums(at, loose))
            last_r = _feasible_prefix(worst_r, log_limit[loose])
            lam_r = torch.gather(points_r, -1, last_r).squeeze(-1)
            better = lam_r > lam[loose]                                            # each λ keeps its own bound
            lam[loose] = torch.where(better, lam_r, lam[loose])
            checked[loose] = torch.where(better, torch.gather(worst_r, -1, last_r).squeeze(-1), checked[loose])
            # Knots are summed exactly: the first infeasible one bounds λ* from above next round.
            knots_out = worst_r[:, ::REFINE_POINTS] > log_limit[loose, None]
            first_out = knots_out.to(torch.int32).argmax(dim=-1, keepdim=True)     # none out: 0, and the row stops
            top[loose] = torch.gather(points_r[:, ::REFINE_POINTS], -1, first_out)
            tail_top[:, loose] = torch.gather(at_knots, -1, first_out.expand(2, -1, -1)).squeeze(-1)
            rejected[loose] = torch.gather(points_r, -1, (last_r + 1).clamp_max_(points_r.shape[-1] - 1))
            loose = loose[lam[loose] < REFINE_UNTIL * top[loose, 0]]                # still short of their top
    if exact_divergence:
        div = symmetric_renyi(mixture_logprobs(lam, logp_private, logp_public), logp_public, order)
    else:
        div = (checked / (coef[0] - 1.0)).masked_fill(lam == 0, 0.0)
    return lam, div


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
