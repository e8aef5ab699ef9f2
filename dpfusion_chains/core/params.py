"""User-facing generation settings and how they turn into (α, b) for one call."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal, get_args

from pydantic import BaseModel, ConfigDict, field_validator, model_validator

from dpfusion_chains.core import accounting as acc
from dpfusion_chains.core.errors import UnsupportedSamplingError
from dpfusion_chains.core.spans import GROUPINGS, PLACEHOLDERS

DEFAULT_ALPHA = 2.0
DEFAULT_BETA = 0.01
# The weights' dtypes users name (resolve_dtype also takes fp32, fp16, bf16 and torch dtypes).
DTypeName = Literal["auto", "float32", "bfloat16", "float16"]
DTYPE_NAMES: tuple[str, ...] = get_args(DTypeName)
DTYPE_HELP = ("the model's weights (auto: float32 on a CPU, bfloat16 or float16 on a GPU; bfloat16 is faster "
              "on CPUs with AVX512-BF16 or AMX); the fusion math is float32 either way")


class GenerationSettings(BaseModel):
    """Privacy and decoding settings of one call. Give either a target `epsilon` (b is calibrated
    for `max_new_tokens` tokens) or raw `alpha`/`beta` with b = α·β as in dp-fusion-lib."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    epsilon: float | None = None
    alpha: float | None = None
    beta: float | None = None
    delta: float = 1e-5
    accounting: Literal["sound", "paper"] = "sound"
    max_new_tokens: int = 64
    temperature: float = 1.0
    top_k: int | None = None
    top_p: float | None = None
    do_sample: bool = True
    seed: int | None = None
    stop: tuple[str, ...] = ()
    groups: Literal["unit", "single", "entity_type"] = "unit"
    placeholder: Literal["typed", "token"] = "typed"

    @field_validator("alpha")
    @classmethod
    def _alpha(cls, v: float | None) -> float | None:
        return None if v is None else acc.check_alpha(v)

    @field_validator("beta")
    @classmethod
    def _beta(cls, v: float | None) -> float | None:
        if v is not None and (not math.isfinite(v) or v < 0):
            raise ValueError(f"beta must be >= 0, got {v} (beta=0 means public-only generation, ε = 0)")
        return v

    @field_validator("epsilon")
    @classmethod
    def _epsilon(cls, v: float | None) -> float | None:
        if v is not None and (not math.isfinite(v) or v < 0):
            raise ValueError(f"epsilon must be >= 0, got {v}")
        return v

    @field_validator("delta")
    @classmethod
    def _delta(cls, v: float) -> float:
        return acc.check_delta(v)

    @field_validator("max_new_tokens")
    @classmethod
    def _max_new(cls, v: int) -> int:
        if v < 1:
            raise ValueError(f"max_new_tokens must be >= 1, got {v}")
        return v

    @field_validator("temperature")
    @classmethod
    def _temperature(cls, v: float) -> float:
        if not (math.isfinite(v) and v > 0):
            raise ValueError(f"temperature must be > 0, got {v} (temperature 0 is greedy decoding, which is not DP)")
        return v

    @field_validator("top_k")
    @classmethod
    def _top_k(cls, v: int | None) -> int | None:
        if v is not None and v < 1:
            raise ValueError(f"top_k must be >= 1, got {v}")
        return v

    @field_validator("top_p")
    @classmethod
    def _top_p(cls, v: float | None) -> float | None:
        if v is not None and not (0 < v <= 1):
            raise ValueError(f"top_p must lie in (0, 1], got {v}")
        return v

    @field_validator("seed")
    @classmethod
    def _seed(cls, v: int | None) -> int | None:
        # torch.Generator.manual_seed takes a 64-bit value; refuse others here, before any budget work.
        if v is not None and not (-(2**63) <= v < 2**64):
            raise ValueError(f"seed must fit in 64 bits (-2**63 <= seed < 2**64), got {v}")
        return v

    @field_validator("stop", mode="before")
    @classmethod
    def _stop(cls, v: Any) -> tuple[str, ...]:
        if v is None:
            return ()
        if isinstance(v, str):
            return (v,)
        if not isinstance(v, (list, tuple, set, frozenset)):
            raise ValueError(f"stop must be a string or a list of strings, got {type(v).__name__}")
        return tuple(v)

    @model_validator(mode="after")
    def _consistent(self) -> GenerationSettings:
        if self.epsilon is not None and self.beta is not None:
            raise ValueError("give either epsilon (b is calibrated from it) or alpha/beta, not both")
        if not self.do_sample:
            raise UnsupportedSamplingError(
                "greedy decoding (do_sample=False) is not differentially private: DP-Fusion must sample; "
                "keep do_sample=True and lower the temperature for more focused answers"
            )
        return self


def make_settings(**kwargs: Any) -> GenerationSettings:
    """GenerationSettings from keyword arguments; pydantic errors become plain ValueErrors."""
    from pydantic import ValidationError

    unknown = set(kwargs) - set(GenerationSettings.model_fields)
    if unknown:
        raise TypeError(f"unknown generation setting(s) {sorted(unknown)}; known: {sorted(GenerationSettings.model_fields)}")
    try:
        return GenerationSettings(**kwargs)
    except ValidationError as exc:
        first = exc.errors()[0]
        cause = first.get("ctx", {}).get("error")
        if isinstance(cause, UnsupportedSamplingError):
            raise cause from None
        where = ".".join(str(p) for p in first.get("loc", ())) or "settings"
        raise ValueError(f"{where}: {first['msg'].removeprefix('Value error, ')}") from None


@dataclass(frozen=True)
class ResolvedBound:
    alpha: float
    bound: float          # b, the per-step bound the λ search enforces
    order: float          # the order the search checks (2α sound, α paper)
    beta: float | None


def resolve_bound(settings: GenerationSettings, groups: int, touched: int, budget_alpha: float | None = None) -> ResolvedBound:
    """(α, b) for a call with `groups` groups, the most-touched unit touching `touched` of them."""
    alpha = settings.alpha
    if budget_alpha is not None:
        if alpha is not None and alpha != budget_alpha:
            raise ValueError(f"this call asks for alpha={alpha} but the budget composes at alpha={budget_alpha}; "
                             "drop alpha from the call or use a budget at that alpha")
        alpha = budget_alpha
    if settings.epsilon is not None:
        if settings.epsilon == 0:
            bound, alpha = 0.0, alpha or DEFAULT_ALPHA
        elif alpha is None:
            alpha, bound = acc.choose_order(settings.epsilon, settings.delta, settings.max_new_tokens,
                                            max(groups, 1), accounting=settings.accounting, touched=max(touched, 1))
        else:
            bound = acc.calibrate_bound(settings.epsilon, settings.delta, alpha, settings.max_new_tokens,
                                        max(groups, 1), accounting=settings.accounting, touched=max(touched, 1))
        beta = None
    else:
        alpha = alpha or DEFAULT_ALPHA
        beta = DEFAULT_BETA if settings.beta is None else settings.beta
        bound = alpha * beta
    order = 2.0 * alpha if settings.accounting == "sound" else alpha
    return ResolvedBound(alpha=alpha, bound=bound, order=order, beta=beta)
