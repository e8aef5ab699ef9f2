"""The evaluations' own correctness: the attack bound, the exact per-step RDP check, smoke runs."""

import math

import pytest

from dpfusion_chains.data import load_records
from dpfusion_chains.evaluation.candidate_attack import build_trials, run_attack, success_bound, wilson_interval
from dpfusion_chains.evaluation.common import private_record, substitute
from dpfusion_chains.evaluation.rdp_check import check_neighbours
from dpfusion_chains.evaluation.utility import answer_matches, paraphrase_perplexity, qa_accuracy


@pytest.fixture(scope="module")
def engine():
    from dpfusion_chains.testing import tiny_engine

    return tiny_engine(seed=3)


@pytest.mark.parametrize("m", [2, 5, 10])
def test_bound_at_zero_epsilon_is_chance(m):
    assert success_bound(0.0, 0.0, m) == pytest.approx(1 / m)


def test_bound_is_attained_by_randomized_response():
    # m-ary randomized response is ε-DP and its "guess the output" attacker wins with
    # e^ε/(m−1+e^ε): the bound is tight at δ = 0.
    for eps in (0.1, 1.0, 3.0):
        for m in (2, 4, 8):
            rr = math.exp(eps) / (m - 1 + math.exp(eps))
            assert success_bound(eps, 0.0, m) == pytest.approx(rr)


def test_bound_monotone_and_capped():
    values = [success_bound(e, 1e-5, 5) for e in (0, 0.5, 1, 2, 4, 8, 16)]
    assert values == sorted(values) and values[-1] <= 1.0
    assert success_bound(math.inf, 1e-5, 5) == 1.0
    with pytest.raises(ValueError):
        success_bound(1.0, 0.0, 1)


@pytest.mark.parametrize(("k", "n", "low", "high"), [  # Newcombe (1998), Table I, method 3
    (81, 263, 0.2553, 0.3662), (15, 148, 0.0624, 0.1605), (0, 20, 0.0, 0.1611), (1, 29, 0.0061, 0.1718)])
def test_wilson_interval_matches_published_values(k, n, low, high):
    got = wilson_interval(k, n)
    assert got == pytest.approx((low, high), abs=5e-5)


def test_wilson_interval_refuses_impossible_counts():
    with pytest.raises(ValueError, match="successes"):
        wilson_interval(3, 2)


def test_substitute_shifts_later_spans():
    text = "Ann met Bob in Rome."
    spans = [{"start": 0, "end": 3, "type": "PERSON"}, {"start": 8, "end": 11, "type": "PERSON"},
             {"start": 15, "end": 19, "type": "LOCATION"}]
    new, new_spans = substitute(text, spans, 0, "Bartholomew")
    assert new == "Bartholomew met Bob in Rome."
    assert [new[s["start"]:s["end"]] for s in new_spans] == ["Bartholomew", "Bob", "Rome"]


def test_answer_matching_is_word_aligned():
    assert answer_matches("She was treated with Amoxicillin.", "amoxicillin")
    assert not answer_matches("amoxicillinate", "amoxicillin")
    assert not answer_matches("anything", "")


@pytest.mark.parametrize("b,alpha", [(0.02, 2.0), (0.3, 4.0), (2.0, 1.5)])
def test_exact_per_step_divergence_between_neighbours_within_rho(engine, b, alpha):
    rec = next(r for r in load_records("health"))
    idx = next(i for i, s in enumerate(rec["spans"]) if s["type"] == "PERSON")
    other_text, other_spans = substitute(rec["text"], rec["spans"], idx, "Zebulon Quartermaine-Oyelaran")

    def msgs(text, spans):
        return [{"role": "user", "content": ["Record: ", private_record(text, spans, "r"), "\nSummarise."]}]

    check = check_neighbours(engine, msgs(rec["text"], rec["spans"]), msgs(other_text, other_spans), None,
                             b=b, alpha=alpha, steps=3, samples=4)
    assert 0 < check.worst_ratio <= 1.0 + 1e-6
    assert check.sequence_estimate <= check.sequence_bound * (1 + 1e-6)


def test_attack_and_utility_smoke(engine):
    records = load_records()[:4]
    trials = build_trials(records, m=3, seed=0)
    assert trials and all(len(t["candidates"]) == 3 for t in trials)
    out = run_attack(engine, trials, {"beta": 0.0, "max_new_tokens": 4}, "redaction")
    assert out.trials == len(trials) and out.epsilon == 0.0 and out.bound == pytest.approx(1 / 3)
    ceiling = run_attack(engine, trials, {"max_new_tokens": 4}, "no privacy", public=True)
    assert math.isinf(ceiling.epsilon) and ceiling.bound == 1.0
    acc, eps = qa_accuracy(engine, records, {"epsilon": 40.0, "max_new_tokens": 4})
    assert 0.0 <= acc <= 1.0 and 0 < eps <= 40.0
    ppl, eps = paraphrase_perplexity(engine, records[:2], {"beta": 0.0, "max_new_tokens": 4})
    assert ppl > 1.0 and eps == 0.0
