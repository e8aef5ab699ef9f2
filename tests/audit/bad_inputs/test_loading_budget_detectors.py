"""Bad-input sweep (issue 9): Model loading and devices (offline), PrivacyBudget's limits, ledger URLs
and reservations, and detectors. Every case must pass tests/helpers/audit_cases.py's `expect_error`:
the expected error, a message that says what to change, nothing charged, nothing private in the
error or the logs."""

from __future__ import annotations

from typing import Any

import pytest

from dpfusion_chains import PrivacyBudget
from dpfusion_chains.budget import AlphaMismatchError, BudgetExhaustedError, LedgerUnavailableError
from dpfusion_chains.core.detect import make_detector, resolve_detector
from dpfusion_chains.core.engine import DPFusionEngine
from dpfusion_chains.core.errors import ModelLoadError
from dpfusion_chains.core.models import resolve_device

from audit_cases import Call, Ctx, NO_GPU, case, expect_error, no_gpu_only


# -- model loading and devices (offline) ----------------------------------------------------------

def _lc_model(model: str, device: str) -> Any:
    pytest.importorskip("langchain_core")
    from dpfusion_chains.llms import ChatDPFusion

    return ChatDPFusion(model=model, device=device).invoke("hi")


def _li_model(model: str, device: str) -> Any:
    pytest.importorskip("llama_index.core")
    from dpfusion_chains.llms.llama_index import DPFusionLlamaLLM

    return DPFusionLlamaLLM(model=model, device=device).complete("hi")


LOADING = [
    case(lambda c: DPFusionEngine.from_pretrained("/nonexistent/model-dir", device="cpu"), ModelLoadError,
         r"could not load model '/nonexistent/model-dir'.*Pass a local model directory", "path-missing"),
    case(lambda c: DPFusionEngine.from_pretrained(str(c.tmp), device="cpu"), ModelLoadError,
         r"could not load model", "empty-directory"),
    case(lambda c: DPFusionEngine.from_pretrained("nobody/no-such-model-7f3a", device="cpu"), ModelLoadError,
         r"HF_HUB_OFFLINE=1: only local directories and the local cache", "unknown-hub-id-offline"),
    case(lambda c: DPFusionEngine.from_pretrained("/nonexistent", device="tpu9"), ValueError,
         r"unknown device 'tpu9': use 'auto', 'cpu', 'cuda'", "device=unknown"),
    case(lambda c: DPFusionEngine.from_pretrained("/nonexistent", device="cpu", dtype="int3"), ValueError,
         r"unknown dtype 'int3': use 'auto' or one of", "dtype=unknown"),
    case(lambda c: _lc_model("/nonexistent/model-dir", "cpu"), ModelLoadError, r"could not load model",
         "ChatDPFusion(model=missing)"),
    case(lambda c: _li_model("/nonexistent/model-dir", "cpu"), ModelLoadError, r"could not load model",
         "DPFusionLlamaLLM(model=missing)"),
]
GPU = [
    case(lambda c: resolve_device("cuda:1"), ValueError, NO_GPU, "resolve_device"),
    case(lambda c: DPFusionEngine(c.engine.model, c.engine.tokenizer, device="cuda"), ValueError, NO_GPU,
         "DPFusionEngine(device=cuda)"),
    case(lambda c: DPFusionEngine.from_pretrained("/nonexistent/model-dir", device="cuda"), ValueError, NO_GPU,
         "from_pretrained"),
    case(lambda c: DPFusionEngine.from_default(device="cuda"), ValueError, NO_GPU, "from_default"),
    case(lambda c: _lc_model("/nonexistent/model-dir", "cuda"), ValueError, NO_GPU, "ChatDPFusion"),
    case(lambda c: _li_model("/nonexistent/model-dir", "cuda"), ValueError, NO_GPU, "DPFusionLlamaLLM"),
]


@pytest.mark.parametrize("call,exc,match", LOADING)
def test_model_loading(ctx: Ctx, call: Call, exc: Any, match: str) -> None:
    expect_error(ctx, call, exc, match)


@no_gpu_only
@pytest.mark.parametrize("call,exc,match", GPU)
def test_unavailable_gpu(ctx: Ctx, call: Call, exc: Any, match: str) -> None:
    expect_error(ctx, call, exc, match)


# -- PrivacyBudget: limits, ledger URLs, reservations -----------------------------------------------

def _budget(c: Ctx, **kw: Any) -> PrivacyBudget:
    return PrivacyBudget(**{"epsilon": 10.0, "ledger": "memory://", **kw})


BUDGET = [
    case(lambda c: _budget(c, epsilon=-1), ValueError, r"epsilon must be a finite number >= 0.*e\.g\. epsilon=10",
         "epsilon<0"),
    case(lambda c: _budget(c, epsilon=float("nan")), ValueError, r"epsilon must be a finite number", "epsilon=nan"),
    case(lambda c: _budget(c, epsilon="10"), ValueError, r"epsilon must be a finite number", "epsilon=str"),
    case(lambda c: _budget(c, epsilon=0.01), ValueError, r"admits no release.*Choose a larger alpha",
         "epsilon-below-conversion-cost"),
    case(lambda c: _budget(c, delta=0), ValueError, r"delta must lie in \(0, 1\)", "delta=0"),
    case(lambda c: _budget(c, delta=1), ValueError, r"delta must lie in \(0, 1\)", "delta=1"),
    case(lambda c: _budget(c, alpha=1), ValueError, r"alpha must be a finite number > 1", "alpha=1"),
    case(lambda c: _budget(c, alpha=float("inf")), ValueError, r"alpha must be a finite number > 1", "alpha=inf"),
    case(lambda c: _budget(c, on_exhausted="wait"), ValueError, r"on_exhausted must be one of", "on_exhausted"),
    case(lambda c: _budget(c, per_unit=[1.0]), TypeError, r"per_unit must map unit ids", "per_unit=list"),
    case(lambda c: _budget(c, per_unit={"a": -1}), ValueError, r"per_unit\['a'\] must be", "per_unit<0"),
    case(lambda c: _budget(c, per_unit={c.canary * 20: 1.0}), ValueError, r"per_unit key must be",
         "per_unit-key=private-text"),
    case(lambda c: _budget(c, ledger="ftp://host/budget"), ValueError, r"unknown ledger .*use 'sqlite:///",
         "ledger=ftp"),
    case(lambda c: _budget(c, ledger="budget.db"), ValueError, r"unknown ledger", "ledger=bare-string"),
    case(lambda c: _budget(c, ledger=5), TypeError, r"ledger must be a URL string, a path", "ledger=int"),
    case(lambda c: _budget(c, ledger="memory://x"), ValueError, r"exactly 'memory://'", "ledger=memory-path"),
    case(lambda c: _budget(c, ledger="sqlite://host/b.db"), ValueError, r"look like 'sqlite:///relative",
         "ledger=sqlite-netloc"),
    case(lambda c: _budget(c, ledger=f"sqlite:///{c.tmp}/b.db?timeout=soon"), ValueError,
         r"timeout must be a number of seconds", "ledger=sqlite-timeout"),
    case(lambda c: _budget(c, ledger=f"sqlite:///{c.tmp}/no/such/dir/b.db"), LedgerUnavailableError,
         r"Check that its directory exists", "ledger=sqlite-missing-dir"),
    case(lambda c: _budget(c, ledger=f"postgresql://app:{c.secret}@127.0.0.1:1/db?connect_timeout=2"),
         LedgerUnavailableError, r"cannot reach the PostgreSQL ledger at postgresql://app:\*\*\*@",
         "ledger=postgres-down(password-redacted)"),
    case(lambda c: _budget(c, ledger=f"postgresql://app:{c.secret}@127.0.0.1:1/db?schema=Bad-Name"), ValueError,
         r"schema must be a lower-case identifier", "ledger=postgres-bad-schema"),
    # reservations on the context's budget: refused before anything is written
    case(lambda c: c.budget.reserve({"doc-1"}, rdp=-1.0), ValueError, r"rdp must be a finite number >= 0", "rdp<0"),
    case(lambda c: c.budget.reserve({"doc-1"}), ValueError, r"rdp= is required", "rdp-missing"),
    case(lambda c: c.budget.reserve({"doc-1": 0.1}, rdp=0.1), ValueError, r"either per unit in a dict",
         "rdp-twice"),
    case(lambda c: c.budget.reserve({"doc-1"}, rdp=0.1, alpha=2.0), AlphaMismatchError,
         r"run the call with alpha=8", "alpha-mismatch"),
    case(lambda c: c.budget.reserve({c.canary * 20}, rdp=0.1), ValueError,
         r"unit must be .*never the text itself\), got a string of", "unit=private-text"),
    case(lambda c: c.budget.reserve({"doc-1"}, rdp=0.1, call_id=""), ValueError, r"call_id must be", "call_id=''"),
    case(lambda c: c.budget.reserve({"doc-1"}, rdp=1e6), BudgetExhaustedError,
         r"exhausted for 1 unit\(s\): 'doc-1'.*Nothing was charged", "over-limit"),
    case(lambda c: c.budget.spent(5), ValueError, r"unit must be .*got int", "spent(int)"),
]


@pytest.mark.parametrize("call,exc,match", BUDGET)
def test_budget(ctx: Ctx, call: Call, exc: Any, match: str) -> None:
    expect_error(ctx, call, exc, match)


# -- detectors -----------------------------------------------------------------------------------

DETECTORS = [
    case(lambda c: make_detector("nope"), ValueError, r"unknown detector kind 'nope'; choose one of", "kind"),
    case(lambda c: make_detector(5), TypeError, r"make_detector takes a detector name", "kind=int"),
    case(lambda c: make_detector("regex:nope"), ValueError, r"unknown detection profile 'nope'; choose one of",
         "profile-in-name"),
    case(lambda c: make_detector("regex", profile="nope"), ValueError, r"unknown detection profile 'nope'",
         "profile="),
    case(lambda c: make_detector("regex:health", profile="legal"), ValueError, r"profile given twice",
         "profile-twice"),
    case(lambda c: make_detector("whole", profile="health"), ValueError, r"takes no options", "whole+options"),
    case(lambda c: make_detector("regex", bogus=1), TypeError, r"unexpected options for the regex detector",
         "regex-option"),
    case(lambda c: make_detector("regex", score_threshold=2), ValueError, r"less than or equal to 1",
         "threshold>1"),
    case(lambda c: make_detector("hf"), ValueError, r"needs model_path=", "hf-no-path"),
    case(lambda c: make_detector("hf", model_path=str(c.tmp / "no-ner")), FileNotFoundError,
         r"token-classification model directory not found", "hf-missing-path"),
    case(lambda c: make_detector("presidio", ner_scope="everything"), ValueError,
         r"ner_scope must be 'candidates' or 'all'", "presidio-ner_scope"),
    case(lambda c: resolve_detector("nope"), ValueError, r"unknown detector 'nope'", "resolve-unknown"),
    case(lambda c: resolve_detector(3.5), TypeError, r"detector must be a name", "resolve-float"),
]


@pytest.mark.parametrize("call,exc,match", DETECTORS)
def test_detectors(ctx: Ctx, call: Call, exc: Any, match: str) -> None:
    expect_error(ctx, call, exc, match)
