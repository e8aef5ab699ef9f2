"""Accounting formulas against known values (DESIGN §4) and their algebraic properties."""

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dpfusion_chains.core import accounting as acc


def test_balle_conversion_known_value():
    assert acc.rdp_to_epsilon(3.0, 2.0, 1e-5) == pytest.approx(13.1266, abs=1e-4)


def test_classic_conversion_known_value():
    assert acc.rdp_to_epsilon(3.0, 2.0, 1e-5, method="classic") == pytest.approx(14.5129, abs=1e-4)


def test_best_epsilon_over_orders_matches_dp_accounting():
    eps, order = acc.best_epsilon({a: 1.1 for a in range(2, 33)}, 1e-5)
    assert eps == pytest.approx(1.32783806, abs=1e-7)
    assert order == 32


def test_c_alpha_values():
    assert acc.c_alpha(2.0) == pytest.approx(2.5)
    assert acc.c_alpha(1.5) == pytest.approx(3.0)


@pytest.mark.parametrize("alpha", [1.25, 1.5, 2.0, 4.0, 16.0])
@pytest.mark.parametrize("b", [0.0, 1e-4, 0.02, 0.5])
def test_single_group_is_c_alpha_b(alpha, b):
    assert acc.per_step_rdp(alpha, b, groups=1) == pytest.approx(acc.c_alpha(alpha) * b, rel=1e-12)


def test_per_step_formula_for_groups():
    alpha, b, g = 2.0, 0.02, 3
    expected = math.log((g - 1) / g + math.exp((alpha - 1) * acc.c_alpha(alpha) * b) / g) / (alpha - 1)
    assert acc.per_step_rdp(alpha, b, groups=g) == pytest.approx(expected, rel=1e-12)


@given(alpha=st.floats(1.01, 64), b=st.floats(1e-6, 5.0))
def test_per_step_rdp_decreases_with_groups(alpha, b):
    values = [acc.per_step_rdp(alpha, b, groups=g) for g in range(1, 9)]
    assert all(x >= y for x, y in zip(values, values[1:]))
    assert values[0] == pytest.approx(acc.c_alpha(alpha) * b)


def test_touching_every_group_costs_the_component_bound():
    assert acc.per_step_rdp(2.0, 0.1, groups=4, touched=4) == pytest.approx(acc.c_alpha(2.0) * 0.1)
    assert acc.per_step_rdp(2.0, 0.1, groups=4, touched=2) > acc.per_step_rdp(2.0, 0.1, groups=4, touched=1)


def test_paper_accounting_matches_the_library_formula():
    # dp-fusion-lib: ln((N−1)/N + e^{(α−1)·4β}/N)/(α−1) with internal bound α·β.
    alpha, beta, n = 2.0, 0.01, 2
    expected = math.log((n - 1) / n + math.exp((alpha - 1) * 4 * beta) / n) / (alpha - 1)
    assert acc.per_step_rdp(alpha, alpha * beta, groups=n, accounting="paper") == pytest.approx(expected)


def test_composition_is_additive():
    assert acc.compose([0.1, 0.2, 0.3]) == pytest.approx(0.6)
    assert acc.compose(0.05, steps=64) == pytest.approx(3.2)


@settings(max_examples=200)
@given(eps=st.floats(11.0, 200.0), alpha=st.sampled_from([2.0, 4.0, 8.0]), tokens=st.integers(1, 512),
       groups=st.integers(1, 6), accounting=st.sampled_from(["sound", "paper"]))
def test_calibration_spends_exactly_the_target(eps, alpha, tokens, groups, accounting):
    b = acc.calibrate_bound(eps, 1e-5, alpha, tokens, groups, accounting)
    spent = acc.rdp_to_epsilon(tokens * acc.per_step_rdp(alpha, b, groups, accounting), alpha, 1e-5)
    assert spent <= eps + 1e-9
    assert spent == pytest.approx(eps, rel=1e-6)


def test_infeasible_target_suggests_public_only():
    with pytest.raises(acc.InfeasibleEpsilonError, match="beta=0"):
        acc.calibrate_bound(5.0, 1e-5, 2.0, 64)
    with pytest.raises(acc.InfeasibleEpsilonError, match="beta=0"):
        acc.choose_order(0.01, 1e-5, 64)


def test_choose_order_is_feasible_and_data_independent():
    alpha, b = acc.choose_order(8.0, 1e-5, 64)
    assert acc.rdp_to_epsilon(64 * acc.per_step_rdp(alpha, b), alpha, 1e-5) <= 8.0 + 1e-9


@pytest.mark.parametrize("bad", [1.0, 0.5, -2.0, float("nan"), float("inf")])
def test_alpha_must_exceed_one(bad):
    with pytest.raises(ValueError, match="alpha"):
        acc.per_step_rdp(bad, 0.1)


@pytest.mark.parametrize("bad", [0.0, 1.0, -1e-5, 2.0])
def test_delta_in_open_unit_interval(bad):
    with pytest.raises(ValueError, match="delta"):
        acc.rdp_to_epsilon(1.0, 2.0, bad)


def test_negative_bound_and_groups_rejected():
    with pytest.raises(ValueError, match="b must be"):
        acc.per_step_rdp(2.0, -0.1)
    with pytest.raises(ValueError, match="groups"):
        acc.per_step_rdp(2.0, 0.1, groups=0)
