"""Bad-input sweep (issue 9): the same out-of-range settings through every entry point that takes them,
and settings that are fine alone but not for the budget at hand. Every case must pass
tests/helpers/audit_cases.py's `expect_error`: the expected error, a message that says what to
change, nothing charged, nothing private in the error or the logs."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from dpfusion_chains.core.accounting import InfeasibleEpsilonError
from dpfusion_chains.core.engine import DPFusionEngine
from dpfusion_chains.core.errors import UnsupportedSamplingError
from dpfusion_chains.core.params import make_settings

from audit_cases import Ctx, expect_error, privatizer


# -- settings: the same out-of-range values through every entry point that takes them ----------

# epsilon=0 and beta=0 are valid on purpose (public-only generation, ε = 0), so only negatives are here.
SETTINGS = [
    pytest.param({"alpha": 1.0}, ValueError, r"alpha must be a finite number > 1.*try alpha=2", id="alpha=1"),
    pytest.param({"alpha": 0.5}, ValueError, r"alpha must be a finite number > 1", id="alpha=0.5"),
    pytest.param({"alpha": float("inf")}, ValueError, r"alpha must be a finite number > 1", id="alpha=inf"),
    pytest.param({"beta": -0.1}, ValueError, r"beta must be >= 0", id="beta<0"),
    pytest.param({"beta": float("nan")}, ValueError, r"beta must be >= 0", id="beta=nan"),
    pytest.param({"delta": 0.0}, ValueError, r"delta must lie in \(0, 1\).*delta=1e-5", id="delta=0"),
    pytest.param({"delta": 1.0}, ValueError, r"delta must lie in \(0, 1\)", id="delta=1"),
    pytest.param({"delta": -1e-5}, ValueError, r"delta must lie in \(0, 1\)", id="delta<0"),
    pytest.param({"epsilon": -1.0}, ValueError, r"epsilon must be >= 0", id="epsilon<0"),
    pytest.param({"epsilon": float("inf")}, ValueError, r"epsilon must be >= 0", id="epsilon=inf"),
    pytest.param({"epsilon": 5.0, "beta": 0.1}, ValueError, r"give either epsilon .* or alpha/beta, not both",
                 id="epsilon+beta"),
    pytest.param({"temperature": 0.0}, ValueError, r"temperature 0 is greedy decoding, which is not DP",
                 id="temperature=0"),
    pytest.param({"temperature": -1.0}, ValueError, r"temperature must be > 0", id="temperature<0"),
    pytest.param({"do_sample": False}, UnsupportedSamplingError, r"not differentially private.*keep do_sample=True",
                 id="greedy"),
    pytest.param({"max_new_tokens": 0}, ValueError, r"max_new_tokens must be >= 1", id="max_new_tokens=0"),
    pytest.param({"max_new_tokens": -3}, ValueError, r"max_new_tokens must be >= 1", id="max_new_tokens<0"),
    pytest.param({"max_new_tokens": "ten"}, ValueError, r"valid integer", id="max_new_tokens=str"),
    pytest.param({"groups": "per-doc"}, ValueError, r"'unit', 'single' or 'entity_type'", id="groups=unknown"),
    pytest.param({"placeholder": "mask"}, ValueError, r"'typed' or 'token'", id="placeholder=unknown"),
    pytest.param({"accounting": "loose"}, ValueError, r"'sound' or 'paper'", id="accounting=unknown"),
    pytest.param({"top_k": 0}, ValueError, r"top_k must be >= 1", id="top_k=0"),
    pytest.param({"top_p": 0.0}, ValueError, r"top_p must lie in \(0, 1\]", id="top_p=0"),
    pytest.param({"top_p": 1.5}, ValueError, r"top_p must lie in \(0, 1\]", id="top_p>1"),
    pytest.param({"seed": 2**70}, ValueError, r"seed must fit in 64 bits", id="seed=2**70"),
    pytest.param({"seed": "abc"}, ValueError, r"valid integer", id="seed=str"),
    pytest.param({"stop": 5}, ValueError, r"stop must be a string or a list of strings|valid list", id="stop=int"),
    pytest.param({"num_beams": 4}, (TypeError, ValueError),
                 r"unknown (generation setting|DP-Fusion call argument|argument)\(s\) \['num_beams'\]|"
                 r"num_beams\n +Extra inputs are not permitted", id="unknown-setting"),
]

# Settings that are fine alone but not for this call: the budget composes at alpha=8.
FOR_THIS_BUDGET = [
    pytest.param({"alpha": 2.0}, ValueError, r"budget composes at alpha=8", id="alpha!=budget-alpha"),
    pytest.param({"epsilon": 0.5}, InfeasibleEpsilonError, r"beta=0", id="epsilon-unreachable"),
]


def _batch(c: Ctx, kw: dict[str, Any]) -> Any:  # the bad item second: the first one's reservation is refunded
    return c.engine.generate_batch([c.ask(unit="doc-0"), {"messages": c.ask(), **kw}], budget=c.budget,
                                   max_new_tokens=4)


def _li_complete(c: Ctx, kw: dict[str, Any]) -> Any:
    return c.li().complete(c.marked() + "\nWhat was the diagnosis?", **kw)


CALLS: dict[str, Callable[[Ctx, dict[str, Any]], Any]] = {
    "engine.generate": lambda c, kw: c.engine.generate(c.ask(), budget=c.budget, **kw),
    "engine.stream": lambda c, kw: list(c.engine.stream(c.ask(), budget=c.budget, **kw)),
    "engine.generate_batch": _batch,
    "engine.paraphrase": lambda c, kw: c.engine.paraphrase(c.doc, unit="doc-1", budget=c.budget, **kw),
    "ChatDPFusion.invoke": lambda c, kw: c.chat().invoke(c.lc_messages(), **kw),
    "DPFusionLLM.invoke": lambda c, kw: c.llm().invoke(c.marked() + "\nDiagnosis?", **kw),
    "DPFusionLlamaLLM.complete": _li_complete,
}
CONSTRUCTORS: dict[str, Callable[[Ctx, dict[str, Any]], Any]] = {
    "make_settings": lambda c, kw: make_settings(**kw),
    "DPFusionEngine(**defaults)": lambda c, kw: DPFusionEngine(c.engine.model, c.engine.tokenizer, device="cpu",
                                                               detector="whole", **kw),
    "ChatDPFusion(...)": lambda c, kw: c.chat(**kw),
    "DPFusionLLM(...)": lambda c, kw: c.llm(**kw),
    "DPFusionLlamaLLM(...)": lambda c, kw: c.li(**kw),
    "DPDocumentPrivatizer(...)": lambda c, kw: privatizer(c, **kw),
}
# Where an adapter words a refusal its own way, by (entry point, setting name).
OVERRIDES: dict[tuple[str, str], tuple[Any, str]] = {
    # LlamaIndex's LLM has no do_sample field (it always samples): an unknown argument there.
    ("DPFusionLlamaLLM(...)", "do_sample"): (TypeError, r"unknown argument\(s\) \['do_sample'\]"),
}


def _needs_framework(entry: str) -> None:
    if "LlamaLLM" in entry:
        pytest.importorskip("llama_index.core")
    elif any(name in entry for name in ("Chat", "LLM", "Privatizer")):
        pytest.importorskip("langchain_core")


@pytest.mark.parametrize("entry", [*CONSTRUCTORS, *CALLS])
@pytest.mark.parametrize("kw,exc,match", SETTINGS)
def test_settings(ctx: Ctx, entry: str, kw: dict[str, Any], exc: Any, match: str) -> None:
    _needs_framework(entry)
    run = {**CONSTRUCTORS, **CALLS}[entry]
    exc, match = OVERRIDES.get((entry, next(iter(kw))), (exc, match))
    expect_error(ctx, lambda c: run(c, kw), exc, match)


@pytest.mark.parametrize("entry", list(CALLS))
@pytest.mark.parametrize("kw,exc,match", FOR_THIS_BUDGET)
def test_settings_for_this_budget(ctx: Ctx, entry: str, kw: dict[str, Any], exc: Any, match: str) -> None:
    _needs_framework(entry)
    expect_error(ctx, lambda c: CALLS[entry](c, kw), exc, match)
