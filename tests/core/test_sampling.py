"""core.sampling: the two-level exponential race draws each token with its probability, never a
token of probability 0, each row from its own generator, and keeps its token when the
distribution moves by float rounding (where an inverse CDF does not)."""

import pytest
import torch

import dpfusion_chains.core.sampling as sampling
from dpfusion_chains.core.sampling import RACE_BLOCK, sample_rows


def chi2(counts: torch.Tensor, probs: torch.Tensor) -> float:
    keep = probs > 0
    expected = probs.double()[keep] * counts.sum()
    return float(((counts.double()[keep] - expected) ** 2 / expected).sum())


def test_sampled_frequencies_follow_the_distribution_and_zero_tokens_never_come():
    probs = torch.tensor([0.5, 0.0, 0.3, 0.2, 0.0])
    gen = torch.Generator().manual_seed(0)
    n = 40_000
    counts = torch.bincount(sample_rows(probs.expand(n, -1), [gen] * n), minlength=5)
    assert counts[1] == 0 and counts[4] == 0
    assert chi2(counts, probs) < 13.8  # 2 degrees of freedom, p = 0.001


def test_frequencies_across_blocks_and_a_padded_last_block():
    """Mass in three blocks, the last one partial (a vocabulary that is no multiple of RACE_BLOCK):
    both levels of the race together draw each token with its probability."""
    vocab = 2 * RACE_BLOCK + 40
    probs = torch.zeros(vocab)
    probs[[3, 200, RACE_BLOCK + 7, 2 * RACE_BLOCK, vocab - 1]] = torch.tensor([0.3, 0.1, 0.25, 0.15, 0.2])
    gen = torch.Generator().manual_seed(1)
    n = 40_000
    counts = torch.bincount(sample_rows(probs.expand(n, -1), [gen] * n), minlength=vocab)
    assert counts[probs == 0].sum() == 0 and int(sample_rows(probs[None], [gen]).max()) < vocab
    assert chi2(counts, probs) < 18.5  # 4 degrees of freedom, p = 0.001


@pytest.mark.parametrize("u", [0.0, 1.0 - 2.0**-53])
def test_the_extreme_uniforms_land_on_positive_tokens(monkeypatch, u):
    """Every uniform 0 (every E = +inf, every ratio 0) or just below 1: still a token with mass."""
    monkeypatch.setattr(sampling.torch, "rand", lambda n, **k: torch.full((n,), u, dtype=torch.float64))
    probs = torch.zeros(1, 3 * RACE_BLOCK)
    probs[0, [RACE_BLOCK + 5, 2 * RACE_BLOCK + 9]] = torch.tensor([0.25, 0.75])
    assert sample_rows(probs, [None]).item() in (RACE_BLOCK + 5, 2 * RACE_BLOCK + 9)


def test_each_row_draws_from_its_own_generator():
    probs = torch.softmax(torch.randn(4, 1000, generator=torch.Generator().manual_seed(1)), dim=-1)
    together = sample_rows(probs, [torch.Generator().manual_seed(10 + i) for i in range(4)])
    alone = [sample_rows(probs[i:i + 1], [torch.Generator().manual_seed(10 + i)]).item() for i in range(4)]
    assert together.tolist() == alone


def inverse_cdf(probs: torch.Tensor, seed: int) -> int:
    """The sampler the race replaced: one uniform, searched in the cumulative sum."""
    u = torch.rand(1, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    cdf = probs.double().cumsum(dim=-1)
    return int(torch.searchsorted(cdf, u * cdf[-1], right=True))


def test_rounding_of_the_distribution_does_not_change_the_token():
    """A 49k-token distribution, and the same from logits moved by 1e-5 (two computations of one
    step that round differently): the race draws the same token for each of 2000 seeds, where the
    inverse CDF it replaced changed 17 of them."""
    vocab, seeds = 49_152, 2000
    logits = 4.0 * torch.randn(vocab, generator=torch.Generator().manual_seed(3))
    probs = torch.softmax(logits, dim=-1)
    moved = torch.softmax(logits + 1e-5 * torch.randn(vocab, generator=torch.Generator().manual_seed(4)), dim=-1)

    def race(p: torch.Tensor) -> list[int]:
        return [sample_rows(p[None], [torch.Generator().manual_seed(s)]).item() for s in range(seeds)]

    assert race(probs) == race(moved)
    changed = sum(inverse_cdf(probs, s) != inverse_cdf(moved, s) for s in range(seeds))
    assert changed > 0  # the moved logits are far enough apart to matter
