"""The engine as a privacy filter client: reserve the worst case, settle the actual cost (DESIGN §5)."""

import pytest

from dpfusion_chains.budget import BudgetExhaustedError, PrivacyBudget
from dpfusion_chains.core import accounting as acc
from dpfusion_chains.core.spans import private

ALPHA, BETA = 8.0, 0.005
STEP = acc.per_step_rdp(ALPHA, ALPHA * BETA)


def two_records(a="Ann Smith, born 1970", b="Bob Stone, born 1980"):
    return [{"role": "user", "content": ["A: ", private(a, unit="A"), "\nB: ", private(b, unit="B"), "\nSummarise."]}]


def budget_with(spent_a: float = 0.0, limit: float = 20.0, policy: str = "raise") -> PrivacyBudget:
    budget = PrivacyBudget(epsilon=limit, delta=1e-5, alpha=ALPHA, ledger="memory://", on_exhausted=policy)
    if spent_a:
        with budget.reserve({"A": spent_a}, call_id="earlier") as r:
            r.settle(rdp=spent_a)
    return budget


def test_generate_reserves_then_settles_actual_cost(engine):
    budget = budget_with()
    r = engine.generate(two_records(), beta=BETA, max_new_tokens=8, seed=0, budget=budget)
    assert r.alpha == ALPHA and set(r.units) == {"A", "B"}
    for unit in ("A", "B"):
        assert budget.spent_rdp(unit) == pytest.approx(r.unit_rdp[unit])
        assert r.unit_rdp[unit] == pytest.approx(r.tokens * acc.per_step_rdp(ALPHA, ALPHA * BETA, groups=2))
    assert budget.spent("A") == pytest.approx(acc.rdp_to_epsilon(r.unit_rdp["A"], ALPHA, 1e-5))


def test_call_alpha_must_match_budget(engine):
    with pytest.raises(ValueError, match="alpha"):
        engine.generate(two_records(), alpha=2.0, beta=BETA, budget=budget_with())


def test_exhausted_raise_happens_before_any_token(engine, monkeypatch):
    budget = budget_with(spent_a=acc.epsilon_to_rdp_cap(20.0, ALPHA, 1e-5) - 1e-4)
    import dpfusion_chains.core.engine as engine_module

    def no_decoding(*args, **kwargs):
        raise AssertionError("decoding started although the budget was exhausted")

    monkeypatch.setattr(engine_module.DecodeScheduler, "submit", no_decoding)
    monkeypatch.setattr(engine_module.DecodeScheduler, "run", no_decoding)
    with pytest.raises(BudgetExhaustedError) as err:
        engine.generate(two_records(), beta=BETA, max_new_tokens=8, budget=budget)
    assert "A" in err.value.units
    assert budget.spent_rdp("B") == 0.0


def test_redact_equals_the_unit_in_public_form(engine):
    cap = acc.epsilon_to_rdp_cap(20.0, ALPHA, 1e-5)
    budget = budget_with(spent_a=cap - 1e-4, policy="redact")
    r = engine.generate(two_records(), beta=BETA, max_new_tokens=8, seed=7, budget=budget)
    assert r.redacted_units == ["A"] and r.units == ["B"]
    assert budget.spent_rdp("A") == pytest.approx(cap - 1e-4)   # no charge for the redacted unit
    public_a = [{"role": "user", "content": ["A: [PRIVATE]\nB: ", private("Bob Stone, born 1980", unit="B"), "\nSummarise."]}]
    ref = engine.generate(public_a, alpha=ALPHA, beta=BETA, max_new_tokens=8, seed=7)
    assert r.token_ids == ref.token_ids
    assert r.unit_rdp["B"] == pytest.approx(ref.unit_rdp["B"])


def test_drop_removes_the_unit_text(engine):
    budget = budget_with(spent_a=acc.epsilon_to_rdp_cap(20.0, ALPHA, 1e-5) - 1e-4, policy="drop")
    r = engine.generate(two_records(), beta=BETA, max_new_tokens=8, seed=7, budget=budget)
    assert r.dropped_units == ["A"] and r.units == ["B"]
    without_a = [{"role": "user", "content": ["A: \nB: ", private("Bob Stone, born 1980", unit="B"), "\nSummarise."]}]
    assert r.token_ids == engine.generate(without_a, alpha=ALPHA, beta=BETA, max_new_tokens=8, seed=7).token_ids


def test_abandoned_stream_is_charged_in_full(engine):
    budget = budget_with()
    stream = engine.stream(two_records(), beta=BETA, max_new_tokens=10, seed=1, budget=budget, call_id="s-1")
    next(stream)
    stream.close()  # tokens were released: the reservation stands in full
    worst = 10 * acc.per_step_rdp(ALPHA, ALPHA * BETA, groups=2)
    assert budget.spent_rdp("A") == pytest.approx(worst)


def test_replayed_call_id_is_not_charged_twice(engine):
    budget = budget_with()
    engine.generate(two_records(), beta=BETA, max_new_tokens=6, seed=2, budget=budget, call_id="same")
    first = budget.spent_rdp("A")
    with pytest.raises(ValueError, match="already used"):
        engine.generate(two_records(), beta=BETA, max_new_tokens=6, seed=2, budget=budget, call_id="same")
    assert budget.spent_rdp("A") == pytest.approx(first)


def test_beta_zero_spends_nothing(engine):
    budget = budget_with()
    r = engine.generate(two_records(), beta=0.0, max_new_tokens=4, budget=budget)
    assert r.epsilon == 0 and budget.spent_rdp("A") == 0 and budget.spent_rdp("B") == 0
