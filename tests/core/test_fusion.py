"""The mechanism's math (DESIGN §3, §8): divergences, the λ search, the order-2α bound."""

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import dpfusion_chains.core.fusion as fusion_module
from dpfusion_chains.core.accounting import c_alpha
from dpfusion_chains.core.fusion import (fuse, mixture_logprobs, public_candidate_mask, renyi_divergence,
                                         search_lambda, search_limits, symmetric_renyi)


def logp(*probs: float) -> torch.Tensor:
    return torch.tensor(probs, dtype=torch.float64).log()


def test_renyi_known_value():
    p, q = logp(0.5, 0.5), logp(0.9, 0.1)
    alpha = 2.0
    expected = math.log(0.5**2 / 0.9 + 0.5**2 / 0.1) / (alpha - 1)
    assert renyi_divergence(p, q, alpha).item() == pytest.approx(expected)


def test_renyi_zero_and_infinite_support():
    assert renyi_divergence(logp(1.0, 0.0), logp(0.5, 0.5), 2.0).item() == pytest.approx(math.log(2))
    assert math.isinf(renyi_divergence(logp(0.5, 0.5), logp(1.0, 0.0), 2.0).item())
    assert renyi_divergence(logp(0.3, 0.7), logp(0.3, 0.7), 3.0).item() == pytest.approx(0.0, abs=1e-12)


def test_design_counterexample_passes_order_alpha_but_fails_order_2alpha():
    alpha, b = 1.5, 0.02
    p_pub, m, m2 = logp(8e-5, 1 - 8e-5), logp(2.468e-3, 1 - 2.468e-3), logp(4.950e-9, 1 - 4.950e-9)
    # all four order-α constraints hold (up to the 4-digit rounding of the published numbers) ...
    assert symmetric_renyi(m, p_pub, alpha).item() <= b * (1 + 1e-4)
    assert symmetric_renyi(m2, p_pub, alpha).item() <= b * (1 + 1e-4)
    # ... yet the neighbours are far apart at order α
    assert renyi_divergence(m, m2, alpha).item() == pytest.approx(2.02, abs=0.02)
    # the order-2α check rejects at least one of them
    assert max(symmetric_renyi(m, p_pub, 2 * alpha).item(), symmetric_renyi(m2, p_pub, 2 * alpha).item()) > b


def test_mixture_endpoints_are_exact():
    p, q = torch.log_softmax(torch.randn(2, 50, dtype=torch.float64), -1)
    assert torch.allclose(mixture_logprobs(torch.tensor(0.0, dtype=torch.float64), p, q), q)
    assert torch.allclose(mixture_logprobs(torch.tensor(1.0, dtype=torch.float64), p, q), p)


def test_fuse_is_the_uniform_average():
    mix = torch.log_softmax(torch.randn(3, 20, dtype=torch.float64), -1)
    assert torch.allclose(fuse(mix).exp(), mix.exp().mean(0))


def _logits(draw, vocab: int, scale: float) -> torch.Tensor:
    values = draw(st.lists(st.floats(-1, 1), min_size=vocab, max_size=vocab))
    return torch.tensor(values) * scale


@settings(max_examples=150, deadline=None)
@given(data=st.data(), vocab=st.sampled_from([2, 3, 17, 300, 2000]), alpha=st.sampled_from([1.25, 1.5, 2.0, 4.0, 8.0]),
       b=st.sampled_from([1e-5, 1e-3, 0.02, 0.3, 2.0]), temperature=st.floats(0.1, 2.0),
       scale=st.sampled_from([1.0, 10.0, 60.0]), half=st.booleans(), holes=st.integers(0, 3))
def test_chosen_lambda_meets_the_order_2alpha_bound(data, vocab, alpha, b, temperature, scale, half, holes):
    pub = _logits(data.draw, vocab, scale)
    priv = pub + _logits(data.draw, vocab, scale)
    if half:  # fp16 model outputs, upcast as the engine does
        pub, priv = pub.half().float(), priv.half().float()
    for i in range(min(holes, vocab - 1)):  # -inf entries (masked / overflowed logits)
        (priv if i % 2 else pub)[i] = float("-inf")
    lp_pub = torch.log_softmax(pub / temperature, -1)[None]
    lp_priv = torch.log_softmax(priv / temperature, -1)[None]
    lam, _ = search_lambda(lp_priv, lp_pub, b, 2 * alpha)
    assert 0.0 <= lam.item() <= 1.0
    m64 = mixture_logprobs(lam.double(), lp_priv.double(), lp_pub.double())
    assert symmetric_renyi(m64, lp_pub.double(), 2 * alpha).item() <= b


@settings(max_examples=150, deadline=None)
@given(data=st.data(), vocab=st.sampled_from([2, 3, 5, 40]), alpha=st.sampled_from([1.5, 2.0, 3.0, 6.0]),
       b=st.sampled_from([1e-3, 0.02, 0.2, 1.0]), scale=st.sampled_from([1.0, 8.0, 30.0]))
def test_neighbouring_mixtures_are_within_c_alpha_b(data, vocab, alpha, b, scale):
    lp_pub = torch.log_softmax(_logits(data.draw, vocab, scale), -1).double()
    lp_a = torch.log_softmax(_logits(data.draw, vocab, scale), -1).double()
    lp_b = torch.log_softmax(_logits(data.draw, vocab, scale), -1).double()
    lam, _ = search_lambda(torch.stack([lp_a, lp_b]), lp_pub.expand(2, -1), b, 2 * alpha)
    m = mixture_logprobs(lam, torch.stack([lp_a, lp_b]), lp_pub.expand(2, -1))
    assert renyi_divergence(m[0], m[1], alpha).item() <= c_alpha(alpha) * b * (1 + 1e-9) + 1e-12


@pytest.mark.parametrize("alpha,b", [(1.5, 0.02), (2.0, 0.05), (4.0, 0.5)])
def test_adversarial_neighbours_stay_within_c_alpha_b(alpha, b):
    """Hill-climb on two private distributions to maximise D_α(m‖m′) among mixtures that pass the
    order-2α check; the worst ratio found must stay below c_α."""
    gen = torch.Generator().manual_seed(0)
    best = 0.0
    for restart in range(12):
        x = torch.randn(3, 4, generator=gen, dtype=torch.float64) * 6
        score = -1.0
        for _ in range(150):
            cand = x + torch.randn(3, 4, generator=gen, dtype=torch.float64) * 2.0
            lp = torch.log_softmax(cand, -1)
            lam, _ = search_lambda(lp[1:], lp[:1].expand(2, -1), b, 2 * alpha)
            m = mixture_logprobs(lam, lp[1:], lp[:1].expand(2, -1))
            value = renyi_divergence(m[0], m[1], alpha).item()
            if value > score:
                x, score = cand, value
        best = max(best, score)
    assert 0 < best <= c_alpha(alpha) * b


def _bisected_lambda(lp_priv: torch.Tensor, lp_pub: torch.Tensor, b: float, order: float) -> float:
    """λ* by a float64 bisection over the whole vocabulary (the reference the search approaches)."""
    lp_priv, lp_pub = lp_priv.double(), lp_pub.double()

    def feasible(lam: float) -> bool:
        m = mixture_logprobs(torch.tensor([lam], dtype=torch.float64), lp_priv, lp_pub)
        return symmetric_renyi(m, lp_pub, order).item() <= b

    if feasible(1.0):
        return 1.0
    lo, hi = 0.0, 1.0
    for _ in range(50):
        lo, hi = ((lo + hi) / 2, hi) if feasible((lo + hi) / 2) else (lo, (lo + hi) / 2)
    return lo


@pytest.mark.parametrize("vocab,noise,b", [(5000, 0.5, 0.02), (5000, 1.0, 0.02), (5000, 2.0, 0.1), (20000, 2.0, 0.02)])
def test_head_and_tail_search_is_conservative_and_close_to_exact(vocab, noise, b):
    """Private views that differ from the public one across the whole vocabulary: a chord of the
    tail over [0, 1] admitted 0–14 % of λ* in the last three cases; the anchored one ≥ 95 %."""
    gen = torch.Generator().manual_seed(1)
    base = torch.randn(1, vocab, generator=gen) * 3
    lp = torch.log_softmax(torch.cat([base, base + torch.randn(1, vocab, generator=gen) * noise]), -1)
    exact = _bisected_lambda(lp[1:], lp[:1], b, 4.0)
    lam, div = search_lambda(lp[1:], lp[:1], b, 4.0)
    assert 0.95 * exact <= lam.item() <= exact
    whole_head, _ = search_lambda(lp[1:], lp[:1], b, 4.0, head_tokens=vocab)  # every token summed exactly
    assert 0.98 * exact <= whole_head.item() <= exact
    assert 0 < div.item() <= b


def _unsure_public_sure_private(seed: int, vocab: int = 5000) -> tuple[torch.Tensor, torch.Tensor]:
    """A flat public view and a confident private one (the redacted prompt leaves the model unsure)."""
    gen = torch.Generator().manual_seed(seed)
    base = torch.randn(vocab, generator=gen)
    public = torch.log_softmax(base * 0.6, -1)
    private = torch.log_softmax((0.8 * base + 0.2 * torch.randn(vocab, generator=gen)) * 3.5, -1)
    return private[None], public[None]


@pytest.mark.parametrize("seed", [0, 3])
def test_a_loose_chord_is_refined_toward_lambda_star(monkeypatch, seed):
    """The tail holds most of p_g's mass and curves strongly: one chord over [0, A] admitted only
    λ = 0; summing the tail at more knots, a few rounds, comes within 5 % of λ*."""
    lp, lq = _unsure_public_sure_private(seed)
    exact = _bisected_lambda(lp, lq, 0.28, 4.0)
    lam, div = search_lambda(lp, lq, 0.28, 4.0)
    assert 0.95 * exact <= lam.item() <= exact
    d64 = symmetric_renyi(mixture_logprobs(lam.double(), lp.double(), lq.double()), lq.double(), 4.0).item()
    assert d64 <= 0.28 and d64 <= div.item() * (1 + 1e-5)
    monkeypatch.setattr(fusion_module, "REFINE_BELOW", 0.0)  # no refinement
    assert search_lambda(lp, lq, 0.28, 4.0)[0].item() == 0.0


@settings(max_examples=120, deadline=None)
@given(data=st.data(), vocab=st.sampled_from([2, 17, 300, 2000]), alpha=st.sampled_from([1.25, 2.0, 4.0]),
       b=st.sampled_from([1e-5, 1e-3, 0.05, 0.5]), scale=st.sampled_from([1.0, 10.0, 60.0]), holes=st.integers(0, 3))
def test_refined_rows_keep_the_order_2alpha_bound_and_never_lose_lambda(data, vocab, alpha, b, scale, holes):
    """Every row refined (REFINE_BELOW above 1), whatever its λ: each λ stays within its bound
    (float64) and at least the λ of the single chord."""
    from unittest import mock

    pub = _logits(data.draw, vocab, scale)
    priv = pub + _logits(data.draw, vocab, scale)
    for i in range(min(holes, vocab - 1)):
        (priv if i % 2 else pub)[i] = float("-inf")
    lp = torch.log_softmax(torch.stack([priv, pub * 0.3]), -1)
    lq = torch.log_softmax(pub, -1).expand(2, -1)
    with mock.patch.object(fusion_module, "REFINE_BELOW", 0.0):
        single, _ = search_lambda(lp, lq, b, 2 * alpha)
    with mock.patch.object(fusion_module, "REFINE_BELOW", 1.5):
        lam, div = search_lambda(lp, lq, b, 2 * alpha, head_tokens=16)
        refined_small_head, _ = search_lambda(lp, lq, b, 2 * alpha)
    for chosen in (lam, refined_small_head):
        m64 = mixture_logprobs(chosen.double(), lp.double(), lq.double())
        assert (symmetric_renyi(m64, lq.double(), 2 * alpha) <= b).all()
    assert (refined_small_head >= single).all()


def test_a_poor_anchor_gives_a_smaller_lambda_never_an_unsafe_one():
    """The anchor comes from approximate tail masses; whatever it is, λ stays feasible. A head of
    one token leaves nearly everything to the tail and its tangents."""
    gen = torch.Generator().manual_seed(3)
    base = torch.randn(1, 3000, generator=gen) * 4
    lp = torch.log_softmax(torch.cat([base, base + torch.randn(3, 3000, generator=gen) * 1.5]), -1)
    for head in (1, 2, 16):
        lam, _ = search_lambda(lp[1:], lp[:1].expand(3, -1), 0.05, 3.0, head_tokens=head)
        m = mixture_logprobs(lam.double(), lp[1:].double(), lp[:1].double().expand(3, -1))
        assert (symmetric_renyi(m, lp[:1].double().expand(3, -1), 3.0) <= 0.05).all()
        assert (lam > 0).all()


def test_public_zero_where_private_positive_forces_lambda_zero():
    lp_pub = logp(0.5, 0.5, 0.0).float()[None]
    lp_priv = logp(0.4, 0.4, 0.2).float()[None]
    lam, _ = search_lambda(lp_priv, lp_pub, 10.0, 4.0)
    assert lam.item() == 0.0


@pytest.mark.parametrize("head_tokens", [1, 128])
def test_a_token_the_public_view_cannot_draw_forces_lambda_zero_from_the_head_or_the_tail(head_tokens):
    """p_g > 0 where q = 0 makes its terms NaN at every λ > 0, whether the token is summed in the
    head or in the tail; the row beside it is searched as if alone."""
    gen = torch.Generator().manual_seed(4)
    logits = torch.randn(3, 5000, generator=gen) * 3
    logits[1] = logits[0] + torch.randn(5000, generator=gen) * 0.2
    logits[0, 17] = float("-inf")                       # q = 0 where every private row has mass
    lp = torch.log_softmax(logits, -1)
    lam, div = search_lambda(lp[1:], lp[:1].expand(2, -1), 0.5, 4.0, head_tokens=head_tokens)
    assert lam.tolist() == [0.0, 0.0] and div.tolist() == [0.0, 0.0]
    pub = lp[0].clone()
    pub[17] = lp[1, 17] - 7.0                           # the same view, the token drawable, 1/1100 as likely
    pub = torch.log_softmax(pub, -1)
    lam, _ = search_lambda(torch.stack([lp[1], lp[1]]), torch.stack([lp[0], pub]), 0.5, 4.0, head_tokens=head_tokens)
    alone, _ = search_lambda(lp[1:2], pub[None], 0.5, 4.0, head_tokens=head_tokens)
    assert lam[0] == 0.0 and lam[1] == alone[0] > 0.0


def test_the_head_is_ranked_by_the_larger_log_term_at_lambda_one():
    """One [N, V] expression ranks as max(log q + a·log r, log q + (1 − a)·log r) does, the infinite
    terms (p_g = 0 < q: +inf; q = 0 < p_g: NaN) first, as topk puts NaN."""
    gen = torch.Generator().manual_seed(6)
    logits = torch.randn(3, 4000, generator=gen) * 4
    logits[1:, :5] = float("-inf")                      # p_g = 0 < q
    logits[0, 5:9] = float("-inf")                      # q = 0 < p_g
    logits[:, 9:12] = float("-inf")                     # absent from both
    lp = torch.log_softmax(logits, -1)
    lp_pub, order = lp[:1].expand(2, -1), torch.tensor([2.5, 8.0])
    log_ratio = fusion_module._log_ratio(lp[1:], lp_pub)
    got = fusion_module._largest_log_terms(log_ratio.clone(), lp_pub, order)
    a = order[:, None]
    want = torch.maximum(lp_pub + a * log_ratio, lp_pub + (1 - a) * log_ratio)
    finite = want.isfinite()
    assert torch.equal(finite, got.isfinite()) and torch.allclose(got[finite], want[finite], rtol=0, atol=1e-4)
    assert got[:, :9].isnan().all() and (got[:, 9:12] == float("-inf")).all()
    assert torch.topk(got, 40).indices[:, :9].sort().values.tolist() == [list(range(9))] * 2


def test_base_2_sums_equal_the_natural_ones():
    """The tail is summed as exp2 of base-2 logs (_log2: a repeated row stays one row)."""
    gen = torch.Generator().manual_seed(7)
    lp = torch.log_softmax(torch.randn(3, 3000, generator=gen) * 3, -1)
    lp_pub = lp[:1].expand(2, -1)
    log2_pub = fusion_module._log2(lp_pub)
    assert log2_pub.stride(0) == 0 and torch.allclose(log2_pub, lp_pub / math.log(2.0))
    coef = torch.tensor([[4.0, 2.5], [-3.0, -1.5]])
    log_m = torch.log1p(0.3 * torch.expm1(lp[1:] - lp_pub))
    head = torch.topk(lp[1:], 50).indices
    terms = (lp_pub.double()[None] + coef.double()[:, :, None] * log_m.double()[None]).exp()
    want = terms.scatter(-1, head.expand(2, -1, -1), 0.0).sum(-1)
    for one_pass in (None, True, False):  # a CPU's default (one power at a time), and a GPU's
        got = fusion_module._tail_sums(log2_pub, coef / math.log(2.0), log_m, head, one_pass=one_pass)
        assert torch.allclose(got.double(), want, rtol=2e-6, atol=0)


def test_the_excess_ratio_through_exp2_is_within_its_stated_error():
    """x = r − 1 from log r errs by at most (|x| + 2·(1 + |log r|)·r)·2^−24; r = 0 and r = +inf
    stay exact."""
    log_r = torch.cat([torch.linspace(-30, 30, 20001), torch.tensor([0.0, 1e-7, -1e-7, float("-inf"), float("inf")])])
    got = fusion_module._excess_ratio_(log_r.clone()).double()
    want = torch.expm1(log_r.double())
    finite = log_r.isfinite()
    allowed = (want.abs() + 2 * (1 + log_r.double().abs()) * log_r.double().exp()) * 2.0**-24
    assert ((got - want).abs()[finite] <= allowed[finite]).all()
    assert got[-2].item() == -1.0 and got[-1].item() == float("inf")
    assert torch.equal(fusion_module._excess_ratio_(log_r.clone(), via_exp2=True).double(), got)
    assert torch.equal(fusion_module._excess_ratio_(log_r.clone(), via_exp2=False), torch.expm1(log_r))  # off a CPU


def test_the_callers_public_mass_and_limits_give_the_search_its_own_answer():
    gen = torch.Generator().manual_seed(5)
    lp = torch.log_softmax(torch.randn(4, 3000, generator=gen) * 3, -1)
    bounds, orders = torch.tensor([0.01, 0.05, 0.3]), torch.tensor([2.5, 4.0, 8.0])
    own = search_lambda(lp[1:], lp[:1].expand(3, -1), bounds, orders)
    given = search_lambda(lp[1:], lp[:1].expand(3, -1), bounds, orders, public_mass=lp[:1].exp().sum(-1).expand(3),
                          limits=search_limits(bounds, orders, 3))
    assert torch.equal(own[0], given[0]) and torch.equal(own[1], given[1]) and (own[0] > 0).all()


def test_bound_zero_gives_public_distribution():
    lp = torch.log_softmax(torch.randn(2, 100), -1)
    lam, div = search_lambda(lp[1:], lp[:1], 0.0, 4.0)
    assert lam.item() == 0.0 and abs(div.item()) < 1e-5


def test_identical_distributions_mix_fully():
    lp = torch.log_softmax(torch.randn(1, 100), -1)
    lam, _ = search_lambda(lp, lp, 0.01, 4.0)
    assert lam.item() == 1.0


def test_candidate_set_comes_from_public_alone():
    lp_pub = torch.log_softmax(torch.tensor([3.0, 2.0, 1.0, 0.0, -1.0]), -1)
    assert public_candidate_mask(lp_pub, 2, None).tolist() == [True, True, False, False, False]
    mask = public_candidate_mask(lp_pub, None, 0.7)
    assert mask[0] and mask[1] and not mask[4]
    assert public_candidate_mask(lp_pub, None, 1e-9).tolist() == [True, False, False, False, False]
