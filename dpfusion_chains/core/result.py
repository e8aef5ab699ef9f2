"""What one DP-Fusion call returns, and the private-text-free metadata adapters publish."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from dpfusion_chains.core.accounting import UNPROVEN_LABEL


@dataclass
class GenerationResult:
    """One call's output and its privacy cost.

    `tokens` is T, every sampled token (the first and a final EOS included). `rdp` is the
    largest per-unit RDP at order `alpha`; `epsilon` its (ε, δ) conversion (Balle et al.;
    `epsilon_classic` the classic one). `units` are the privacy units charged and `unit_rdp`
    what each was charged. `lambdas`/`divergences` are per step × group diagnostics and
    `empirical_epsilon` is data-dependent: shown, never debited.
    """

    text: str
    token_ids: list[int]
    tokens: int
    epsilon: float
    delta: float
    alpha: float
    rdp: float
    epsilon_classic: float
    bound: float
    beta: float | None
    accounting: str
    groups: int
    group_keys: list[str]
    units: list[str]
    unit_rdp: dict[str, float]
    lambdas: list[list[float]]
    divergences: list[list[float]]
    public_prompt: str
    finish_reason: str
    prompt_tokens: int
    empirical_epsilon: float | None = None
    redacted_units: list[str] = field(default_factory=list)
    dropped_units: list[str] = field(default_factory=list)
    call_id: str | None = None
    model: str = ""
    audit_margin: float | None = None   # audit mode: worst (b − D↔) over all steps, float64

    @property
    def proven(self) -> bool:
        return self.accounting == "sound"

    @property
    def epsilon_label(self) -> str:
        return "sound (order-2α bound)" if self.proven else UNPROVEN_LABEL

    def metadata(self) -> dict[str, Any]:
        """ε and friends for framework metadata: numbers and unit ids only, never private text."""
        return {
            "epsilon": self.epsilon,
            "delta": self.delta,
            "alpha": self.alpha,
            "rdp": self.rdp,
            "epsilon_classic": self.epsilon_classic,
            "bound": self.bound,
            "beta": self.beta,
            "tokens": self.tokens,
            "groups": self.groups,
            "units": list(self.units),
            "unit_rdp": dict(self.unit_rdp),
            "accounting": self.accounting,
            "proven": self.proven,
            "empirical_epsilon": self.empirical_epsilon,
            "public_prompt_chars": len(self.public_prompt),
            "prompt_tokens": self.prompt_tokens,
            "redacted_units": list(self.redacted_units),
            "dropped_units": list(self.dropped_units),
            "finish_reason": self.finish_reason,
            "call_id": self.call_id,
            "model": self.model,
            "audit_margin": self.audit_margin,
        }

    def __repr__(self) -> str:
        return (f"GenerationResult(tokens={self.tokens}, epsilon={self.epsilon:.4g}, delta={self.delta:g}, "
                f"alpha={self.alpha:g}, units={self.units}, accounting={self.accounting!r}, text={self.text!r})")
