"""Privacy accounting for DP-Fusion: per-step RDP, composition, (ε, δ) conversion.

Pure functions on floats (no torch), each formula with its source. Notation as in
DESIGN §4: α > 1 the Rényi order, b the per-step bound the λ search enforces,
G the number of mixed groups, T the number of sampled tokens.

Sound accounting ("sound", the default)
    The λ search enforces the symmetric bound D↔_{2α}(m, p_pub) ≤ b. By Mironov's
    weak triangle inequality (Rényi DP, 2017, Prop. 11 with p = q = 2) and the
    monotonicity of D in its order, two neighbouring mixtures then satisfy
    D_α(m‖m′) ≤ c_α·b with c_α = (α−½)/(α−1) + 1.
    With G groups mixed uniformly, changing one group's text changes one component;
    joint convexity of exp((α−1)·D_α) gives
        ρ_step = ln((G−1)/G + e^{(α−1)·c_α·b}/G) / (α−1).

Paper accounting ("paper", comparison only, UNPROVEN)
    DP-Fusion (Thareja et al. 2025, arXiv:2507.04531) and dp-fusion-lib enforce the
    bound at order α only and charge ln((G−1)/G + e^{(α−1)·4β}/G)/(α−1) per step with
    β = b/α. DESIGN §8 shows an order-α bound does not bound D_α(m‖m′), so numbers in
    this mode are labelled unproven wherever they are shown.

(ε, δ) conversion
    Balle et al. 2020 ("Hypothesis testing interpretations and Rényi DP", Thm. 21),
    as used by Opacus and dp_accounting:
        ε = ρ + ln((α−1)/α) − (ln δ + ln α)/(α−1).
    Classic (Mironov 2017, Prop. 3): ε = ρ + ln(1/δ)/(α−1).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal

Accounting = Literal["sound", "paper"]
ACCOUNTING_MODES: tuple[str, ...] = ("sound", "paper")
UNPROVEN_LABEL = "paper accounting (order-α bound; UNPROVEN, comparison only)"

# Orders tried when the user gives only a target ε (the choice depends on ε, δ, T, G only).
DEFAULT_ORDERS: tuple[float, ...] = (
    1.25, 1.5, 1.75, 2.0, 2.5, 3.0, 4.0, 5.0, 6.0, 8.0, 10.0, 12.0, 16.0, 20.0, 24.0, 32.0, 48.0, 64.0,
)


class InfeasibleEpsilonError(ValueError):
    """A target ε that no per-step bound b > 0 can meet."""


def check_alpha(alpha: float) -> float:
    if not isinstance(alpha, (int, float)) or isinstance(alpha, bool) or not math.isfinite(alpha) or alpha <= 1:
        raise ValueError(f"alpha must be a finite number > 1 (the Rényi order), got {alpha!r}; try alpha=2.0")
    return float(alpha)


def check_delta(delta: float) -> float:
    if not isinstance(delta, (int, float)) or isinstance(delta, bool) or not (0.0 < delta < 1.0):
        raise ValueError(f"delta must lie in (0, 1), got {delta!r}; a common choice is delta=1e-5")
    return float(delta)


def check_bound(b: float, name: str = "b") -> float:
    if not isinstance(b, (int, float)) or isinstance(b, bool) or not math.isfinite(b) or b < 0:
        raise ValueError(f"{name} must be a finite number >= 0, got {b!r} (0 means public-only generation)")
    return float(b)


def check_groups(groups: int, touched: int = 1) -> None:
    if not isinstance(groups, int) or groups < 1:
        raise ValueError(f"groups must be an integer >= 1, got {groups!r}")
    if not isinstance(touched, int) or not (1 <= touched <= groups):
        raise ValueError(f"touched must be an integer in [1, groups={groups}], got {touched!r}")


def c_alpha(alpha: float) -> float:
    """Constant of the weak triangle inequality: D_α(m‖m′) ≤ c_α·b (DESIGN §8)."""
    alpha = check_alpha(alpha)
    return (alpha - 0.5) / (alpha - 1.0) + 1.0


def _mixture_rdp(alpha: float, component_rdp: float, groups: int, touched: int) -> float:
    """RDP at order α of a uniform G-mixture whose `touched` components each move by at most
    `component_rdp` (joint convexity of exp((α−1)·D_α); untouched components contribute e⁰)."""
    if component_rdp == 0.0:
        return 0.0
    # log((G−k)/G + k/G·e^x) computed stably for large x.
    x = (alpha - 1.0) * component_rdp
    k, g = float(touched), float(groups)
    if touched == groups:
        return component_rdp
    log_val = math.log(k / g) + x + math.log1p((g - k) / k * math.exp(-x))
    return log_val / (alpha - 1.0)


def per_step_rdp(
    alpha: float,
    b: float,
    groups: int = 1,
    accounting: Accounting = "sound",
    touched: int = 1,
) -> float:
    """RDP (at order α) one sampled token costs a privacy unit.

    `touched` is how many of the G mixed groups contain that unit's text: 1 with the default
    per-unit grouping; with "entity_type" grouping one document may feed several groups.
    """
    alpha = check_alpha(alpha)
    b = check_bound(b)
    check_groups(groups, touched)
    if accounting == "sound":
        return _mixture_rdp(alpha, c_alpha(alpha) * b, groups, touched)
    if accounting == "paper":
        # dp-fusion-lib: internal bound b = α·β, per-step charge uses 4β.
        return _mixture_rdp(alpha, 4.0 * b / alpha, groups, touched)
    raise ValueError(f"accounting must be one of {ACCOUNTING_MODES}, got {accounting!r}")


def compose(per_step: Sequence[float] | float, steps: int | None = None) -> float:
    """Sequential composition of RDP at one order is additive (Mironov 2017, Prop. 1)."""
    if isinstance(per_step, (int, float)):
        if steps is None or steps < 0:
            raise ValueError("compose(per_step, steps) needs steps >= 0 for a constant per-step RDP")
        return float(per_step) * steps
    return float(math.fsum(per_step))


def conversion_offset(alpha: float, delta: float, method: Literal["balle", "classic"] = "balle") -> float:
    """ε − ρ for the given conversion: what (ε, δ) costs on top of the RDP itself."""
    alpha, delta = check_alpha(alpha), check_delta(delta)
    if method == "balle":
        return math.log((alpha - 1.0) / alpha) - (math.log(delta) + math.log(alpha)) / (alpha - 1.0)
    if method == "classic":
        return math.log(1.0 / delta) / (alpha - 1.0)
    raise ValueError(f"method must be 'balle' or 'classic', got {method!r}")


def rdp_to_epsilon(rdp: float, alpha: float, delta: float, method: Literal["balle", "classic"] = "balle") -> float:
    """(ε, δ)-DP from (α, ρ)-RDP. Default: Balle et al. 2020 (as Opacus and dp_accounting)."""
    if not isinstance(rdp, (int, float)) or math.isnan(rdp) or rdp < 0:
        raise ValueError(f"rdp must be a number >= 0, got {rdp!r}")
    return float(rdp) + conversion_offset(alpha, delta, method)


def epsilon_to_rdp_cap(epsilon: float, alpha: float, delta: float) -> float:
    """Largest total RDP at order α whose Balle conversion stays within ε (may be negative)."""
    if not isinstance(epsilon, (int, float)) or isinstance(epsilon, bool) or math.isnan(epsilon) or epsilon < 0:
        raise ValueError(f"epsilon must be a number >= 0, got {epsilon!r}")
    return float(epsilon) - conversion_offset(alpha, delta)


def best_epsilon(rdp_by_order: dict[float, float] | Sequence[tuple[float, float]], delta: float) -> tuple[float, float]:
    """Smallest ε over orders for a curve of RDP values; returns (ε, α at the minimum).

    Valid when the same mechanism satisfies every (α, ρ_α) pair (e.g. a fixed mechanism
    analysed at several orders); not for mixing budgets composed at different orders.
    """
    items = list(rdp_by_order.items()) if isinstance(rdp_by_order, dict) else list(rdp_by_order)
    if not items:
        raise ValueError("best_epsilon needs at least one (alpha, rdp) pair")
    return min((rdp_to_epsilon(r, a, delta), float(a)) for a, r in items)


def calibrate_bound(
    epsilon: float,
    delta: float,
    alpha: float,
    max_new_tokens: int,
    groups: int = 1,
    accounting: Accounting = "sound",
    touched: int = 1,
) -> float:
    """Largest per-step bound b such that max_new_tokens steps stay within (ε, δ) at order α.

    Inverts per_step_rdp in closed form. Raises InfeasibleEpsilonError when the conversion
    alone (the δ term) already exceeds ε at this α.
    """
    alpha, delta = check_alpha(alpha), check_delta(delta)
    check_groups(groups, touched)
    if not isinstance(max_new_tokens, int) or max_new_tokens < 1:
        raise ValueError(f"max_new_tokens must be an integer >= 1, got {max_new_tokens!r}")
    cap = epsilon_to_rdp_cap(epsilon, alpha, delta)
    if cap <= 0:
        raise InfeasibleEpsilonError(
            f"epsilon={epsilon} cannot be met at alpha={alpha}, delta={delta}: the (ε, δ) conversion alone costs "
            f"{conversion_offset(alpha, delta):.4g}. Raise epsilon, choose a larger alpha, raise delta, or use "
            f"beta=0 for public-only generation (ε = 0)."
        )
    step = cap / max_new_tokens  # per-step RDP allowed
    # Invert ρ = ln((G−k)/G + k/G·e^{(α−1)x})/(α−1) for the component RDP x.
    g, k = float(groups), float(touched)
    # Stable form: x = ρ + ln(G/k)/(α−1) + ln(1 − (G−k)/G·e^{−(α−1)ρ})/(α−1).
    x = step + (math.log(g / k) + math.log1p(-(g - k) / g * math.exp(-(alpha - 1.0) * step))) / (alpha - 1.0)
    if accounting == "sound":
        return x / c_alpha(alpha)
    if accounting == "paper":
        return x * alpha / 4.0
    raise ValueError(f"accounting must be one of {ACCOUNTING_MODES}, got {accounting!r}")


def choose_order(
    epsilon: float,
    delta: float,
    max_new_tokens: int,
    groups: int = 1,
    orders: Sequence[float] = DEFAULT_ORDERS,
    accounting: Accounting = "sound",
    touched: int = 1,
) -> tuple[float, float]:
    """The order α (from a fixed grid) expected to allow the largest mixing weight λ for (ε, δ).

    For small λ, D_k(m_λ‖p_pub) ≈ (k/2)·λ²·χ²(p_g‖p_pub), so a bound b at search order k = 2α
    (α for "paper") admits λ ≈ sqrt(b/(α·χ²)): the best order maximises b/α, not b.
    The choice depends only on ε, δ, T and G — never on the data — so it costs nothing.
    Returns (alpha, b). Raises InfeasibleEpsilonError if no order in the grid works.
    """
    best: tuple[float, float] | None = None
    for alpha in orders:
        try:
            b = calibrate_bound(epsilon, delta, alpha, max_new_tokens, groups, accounting, touched)
        except InfeasibleEpsilonError:
            continue
        if best is None or b / alpha > best[1] / best[0]:
            best = (float(alpha), b)
    if best is None:
        raise InfeasibleEpsilonError(
            f"epsilon={epsilon} cannot be met at delta={delta} by any alpha in {tuple(orders)}: raise epsilon or "
            f"delta, or use beta=0 for public-only generation (ε = 0)."
        )
    return best
