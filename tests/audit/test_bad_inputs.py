"""Bad-input sweep (issue 9): every public entry point fed wrong types, out-of-range settings, empty
input, too-long contexts, a missing optional dependency or an unavailable GPU.

Every case must give a clear error of the expected type whose message says what to change, and:
  * nothing is charged: the budget's ledger keeps exactly the charges it had before the call
    (a refunded reservation, RDP 0, is allowed; spent ε is unchanged);
  * nothing leaks: the private text (a random canary) and secrets (a ledger password) appear nowhere
    in the exception's message, repr or traceback chain, nor in log records at DEBUG.

One table per surface (engine, settings × entry points, model loading and devices, budget, detectors,
LangChain, LlamaIndex, retrievers and privatizers, callbacks, CLI, optional extras).
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import secrets
import subprocess
import sys
import textwrap
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pydantic
import pytest
import torch

from dpfusion_chains import PrivacyBudget, private
from dpfusion_chains.budget import AlphaMismatchError, BudgetExhaustedError, LedgerUnavailableError
from dpfusion_chains.cli import main as cli_main
from dpfusion_chains.core.accounting import InfeasibleEpsilonError
from dpfusion_chains.core.detect import make_detector, resolve_detector
from dpfusion_chains.core.engine import DPFusionEngine
from dpfusion_chains.core.errors import (ChatTemplateError, ContextTooLongError, EmptyContextError, MarkerError,
                                         ModelLoadError, UnsupportedSamplingError)
from dpfusion_chains.core.markers import mark
from dpfusion_chains.core.models import resolve_device
from dpfusion_chains.core.params import make_settings
from dpfusion_chains.testing import tiny_engine

REPO = Path(__file__).resolve().parents[2]
HAS_GPU = torch.cuda.is_available()
no_gpu_only = pytest.mark.skipif(HAS_GPU, reason="this machine has a GPU: device='cuda' is valid here")
Call = Callable[["Ctx"], Any]


# -- fixtures and checks ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def engine() -> DPFusionEngine:
    return tiny_engine(seed=11, detector="whole")


@dataclass
class Ctx:
    """One case's world: the engine, a fresh budget with an earlier charge, the private text."""

    engine: DPFusionEngine
    budget: PrivacyBudget
    canary: str                 # private text: must never appear in an error or a log record
    secret: str                 # a ledger password: same rule
    tmp: Path
    caplog: pytest.LogCaptureFixture
    before: list[tuple[str, str, float]] = field(default_factory=list)
    spent_before: dict[str, float] = field(default_factory=dict)

    @property
    def doc(self) -> str:
        return f"Patient {self.canary}, admitted on 3 March with seasonal asthma, treated with an inhaler."

    @property
    def long_doc(self) -> str:  # ~3000 tokens: past the tiny model's 2048-token window
        return " ".join([self.doc] * 120)

    def ask(self, text: str | None = None, unit: str = "doc-1", **segment: Any) -> list[dict[str, Any]]:
        return [{"role": "system", "content": "Answer from the record."},
                {"role": "user", "content": ["Record: ", private(text or self.doc, unit=unit, **segment),
                                             "\nWhat was the diagnosis?"]}]

    def marked(self, text: str | None = None) -> str:
        return mark(text or self.doc, unit="doc-1")

    # framework adapters over the same engine and budget (built on demand)
    def chat(self, **kw: Any) -> Any:
        from dpfusion_chains.llms import ChatDPFusion

        return ChatDPFusion(engine=self.engine, budget=self.budget, **{"max_new_tokens": 4, **kw})

    def llm(self, **kw: Any) -> Any:
        from dpfusion_chains.llms import DPFusionLLM

        return DPFusionLLM(engine=self.engine, budget=self.budget, **{"max_new_tokens": 4, **kw})

    def li(self, **kw: Any) -> Any:
        from dpfusion_chains.llms.llama_index import DPFusionLlamaLLM

        return DPFusionLlamaLLM(engine=self.engine, budget=self.budget, **{"max_new_tokens": 4, **kw})

    def lc_messages(self, text: str | None = None) -> list[Any]:
        from langchain_core.messages import HumanMessage, SystemMessage

        from dpfusion_chains.llms import private_block

        return [SystemMessage("Answer from the record."),
                HumanMessage(content=["Record: ", private_block(text or self.doc, unit="doc-1"), "\nDiagnosis?"])]


@pytest.fixture
def ctx(engine: DPFusionEngine, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> Iterator[Ctx]:
    caplog.set_level(logging.DEBUG)
    budget = PrivacyBudget(epsilon=50.0, delta=1e-5, alpha=8.0, ledger="memory://")
    with budget.reserve({"doc-1"}, rdp=0.25, call_id="earlier-call") as r:  # spent ε must stay as it is
        r.settle(rdp=0.25, tokens=3)
    c = Ctx(engine, budget, f"Quillonbrae Vashti {secrets.token_hex(5)}", f"pw{secrets.token_hex(8)}", tmp_path,
            caplog)
    c.before, c.spent_before = charges(budget), spent(budget)
    yield c
    budget.close()


def charges(budget: PrivacyBudget) -> list[tuple[str, str, float]]:
    return sorted((e.call_id, e.unit, e.rdp) for e in budget.entries() if e.rdp > 0)


def spent(budget: PrivacyBudget) -> dict[str, float]:
    return {u: budget.spent(u) for u in budget.units() if budget.spent(u) > 0}


def unwrap(err: BaseException) -> BaseException:
    """The library's own error inside a wrapper: LlamaIndex's DPFusionCallError (`cause`) or a
    pydantic ValidationError raised by an adapter's validator (its ctx error)."""
    cause = getattr(err, "cause", None)
    if isinstance(cause, BaseException):
        return cause
    if isinstance(err, pydantic.ValidationError):
        inner = err.errors()[0].get("ctx", {}).get("error")
        if isinstance(inner, BaseException):
            return inner
    return err


def chain_text(err: BaseException) -> str:
    """Message, repr and formatted traceback of the error and of every cause/context it chains."""
    parts, seen, todo = [], set(), [err]
    while todo:
        e = todo.pop()
        if e is None or id(e) in seen:
            continue
        seen.add(id(e))
        parts += [str(e), repr(e), repr(e.args), "".join(traceback.format_exception(e))]
        todo += [e.__cause__, e.__context__, getattr(e, "cause", None)]
    return "\n".join(parts)


def expect_error(c: Ctx, call: Call, exc: type[BaseException] | tuple[type[BaseException], ...],
                 match: str) -> BaseException:
    """Run `call`; it must raise `exc` (or a DPFusionCallError around it) with a message matching
    `match`, charge nothing and leak neither the canary nor the secret."""
    try:
        call(c)
    except Exception as err:  # noqa: BLE001 - checked below
        got = unwrap(err)
        assert isinstance(got, exc), f"expected {exc}, got {type(err).__name__}: {err}"
        assert re.search(match, str(err), re.S), f"message does not match {match!r}: {err}"
        text = chain_text(err)
        assert c.canary not in text and c.secret not in text, f"private text in the error: {err!r}"
        assert charges(c.budget) == c.before, "the failed call changed the ledger's charges"
        assert spent(c.budget) == c.spent_before, "the failed call changed a unit's spent ε"
        logs = "\n".join(r.getMessage() for r in c.caplog.records)
        assert c.canary not in logs and c.secret not in logs, "private text in a log record"
        return err
    pytest.fail("no error was raised")


def case(call: Call, exc: Any, match: str, id: str, *marks: Any) -> Any:  # noqa: A002 - pytest's name
    return pytest.param(call, exc, match, id=id, marks=marks)


# -- 1. engine: wrong types, empty input, detectors, budget objects, ids, too-long contexts -------------

ENGINE = [
    # wrong types
    case(lambda c: c.engine.generate(None), TypeError, r"messages must be a str or a list", "messages=None"),
    case(lambda c: c.engine.generate({"role": "user", "content": c.doc}), TypeError, r"list of \{'role'", "messages=dict"),
    case(lambda c: c.engine.generate(c.doc.encode()), TypeError, r"got bytes", "messages=bytes"),
    case(lambda c: c.engine.generate([c.doc]), TypeError, r"mapping with 'role' and 'content'", "message=str"),
    case(lambda c: c.engine.generate([{"role": "user"}]), TypeError, r"'role' and 'content'", "message-no-content"),
    case(lambda c: c.engine.generate([{"role": "user", "content": 5}]), TypeError, r"content must be a str", "content=int"),
    case(lambda c: c.engine.generate([{"role": "user", "content": [c.doc, 3]}]), TypeError,
         r"content parts must be str or private", "content-part=int"),
    case(lambda c: c.engine.generate([{"role": "wizard", "content": c.doc}]), ValueError, r"unknown role 'wizard'",
         "role=wizard"),
    case(lambda c: c.engine.generate([{"role": None, "content": c.doc}]), ValueError, r"unknown role None", "role=None"),
    case(lambda c: c.engine.generate(c.ask(c.doc.encode())), TypeError, r"takes text as str, got bytes",
         "private(bytes)"),
    case(lambda c: c.engine.generate(c.ask(unit="")), ValueError, r"non-empty string unit id", "private(unit='')"),
    case(lambda c: c.engine.generate(c.ask(unit=7)), ValueError, r"non-empty string unit id", "private(unit=int)"),
    # empty input
    case(lambda c: c.engine.generate([]), EmptyContextError, r"messages is empty", "messages=[]"),
    case(lambda c: c.engine.generate(""), EmptyContextError, r"all messages are empty", "messages=''"),
    case(lambda c: c.engine.generate([{"role": "user", "content": " \n\t"}]), EmptyContextError,
         r"all messages are empty", "whitespace-only"),
    case(lambda c: c.engine.generate([{"role": "user", "content": [private("", unit="doc-1")]}]),
         EmptyContextError, r"give the model something", "empty-private-segment"),
    case(lambda c: list(c.engine.stream([])), EmptyContextError, r"messages is empty", "stream-empty"),
    case(lambda c: c.engine.generate_batch([c.ask(unit="doc-0"), []], budget=c.budget, max_new_tokens=4),
         EmptyContextError, r"messages is empty", "batch-item-empty(refunds-item-0)"),
    case(lambda c: c.engine.paraphrase("   ", unit="doc-1", budget=c.budget), EmptyContextError,
         r"empty document", "paraphrase-empty"),
    # wrong containers and levels
    case(lambda c: c.engine.generate_batch(c.doc), TypeError, r"list of requests.*use generate\(\)", "batch=str"),
    case(lambda c: c.engine.generate_batch(None), TypeError, r"list of requests", "batch=None"),
    case(lambda c: c.engine.generate_batch({"messages": c.ask()}), TypeError, r"list of requests", "batch=dict"),
    case(lambda c: c.engine.paraphrase(None), TypeError, r"document as str, got NoneType", "paraphrase(None)"),
    case(lambda c: c.engine.paraphrase(c.doc, level="full"), ValueError, r"level must be 'dp' or 'redact'",
         "paraphrase-level"),
    case(lambda c: c.engine.paraphrase(c.doc, unit=""), ValueError, r"non-empty string unit id", "paraphrase-unit=''"),
    # detectors
    case(lambda c: c.engine.generate(c.ask(), detector=5), TypeError, r"detector must be a name", "detector=int"),
    case(lambda c: c.engine.generate(c.ask(), detector="nope"), ValueError, r"unknown detector 'nope'; choose one",
         "detector=unknown"),
    case(lambda c: c.engine.generate(c.ask(detector="nope")), ValueError, r"unknown detector 'nope'",
         "segment-detector=unknown"),
    # budget objects and ids
    case(lambda c: c.engine.generate(c.ask(), budget="memory://"), TypeError, r"budget must be a PrivacyBudget",
         "budget=url-string"),
    case(lambda c: c.engine.generate(c.ask(), budget=10.0), TypeError, r"budget must be a PrivacyBudget",
         "budget=float"),
    case(lambda c: c.engine.generate(c.ask(), budget=c.budget, call_id=5), ValueError, r"call_id must be",
         "call_id=int"),
    case(lambda c: c.engine.generate(c.ask(unit=c.canary * 20), budget=c.budget), ValueError,
         r"unit must be .*got a string of \d+ characters", "unit=private-text(too-long)"),
    case(lambda c: c.engine.generate(c.ask(unit=c.canary + "\n"), budget=c.budget), ValueError,
         r"without control characters.*with control characters", "unit=multi-line"),
    case(lambda c: c.engine.generate(c.ask(), budget=c.budget, call_id="earlier-call"), ValueError,
         r"new call_id", "call_id=reused"),
    case(lambda c: c.engine.generate(c.ask(), budget=PrivacyBudget(1.5, ledger=c.budget.ledger), beta=1.0,
                                     max_new_tokens=64), BudgetExhaustedError, r"Nothing was charged",
         "budget-too-small"),
    # too-long contexts
    case(lambda c: c.engine.generate(c.ask(c.long_doc), budget=c.budget), ContextTooLongError,
         r"context window of 2048; shorten the context", "generate-long"),
    case(lambda c: list(c.engine.stream(c.ask(c.long_doc), budget=c.budget)), ContextTooLongError,
         r"shorten the context", "stream-long"),
    case(lambda c: c.engine.generate_batch([c.ask(unit="doc-0"), c.ask(c.long_doc)], budget=c.budget,
                                           max_new_tokens=4), ContextTooLongError, r"shorten the context",
         "batch-item-long(refunds-item-0)"),
    case(lambda c: c.engine.paraphrase(c.long_doc, unit="doc-1", budget=c.budget), ContextTooLongError,
         r"lower max_new_tokens", "paraphrase-long"),
    case(lambda c: c.engine.generate(c.ask(c.long_doc), budget=c.budget, placeholder="token"),
         ContextTooLongError, r"shorten the context", "long-token-placeholder"),
    case(lambda c: c.engine.generate(c.ask(), budget=c.budget, max_new_tokens=10**6), ContextTooLongError,
         r"max_new_tokens=1000000.*lower max_new_tokens", "max_new_tokens>window"),
    # chat templates that cannot place private text exactly (fail closed)
    case(lambda c: DPFusionEngine(c.engine.model, c.engine.tokenizer, device="cpu", detector="whole",
                                  chat_template="{% for m in messages %}{{ m['content'] | trim }}{% endfor %}")
         .generate([{"role": "user", "content": [private(f" {c.doc} ", unit="doc-1")]}], budget=c.budget),
         ChatTemplateError, r"changes message content .* strip surrounding whitespace", "template-trims"),
    case(lambda c: DPFusionEngine(c.engine.model, c.engine.tokenizer, device="cpu", detector="whole",
                                  chat_template="{{ raise_exception('bad: ' ~ messages[1]['content']) }}")
         .generate(c.ask(), budget=c.budget), ChatTemplateError, r"rejected these messages",
         "template-raises-with-content"),
]


@pytest.mark.parametrize("call,exc,match", ENGINE)
def test_engine(ctx: Ctx, call: Call, exc: Any, match: str) -> None:
    expect_error(ctx, call, exc, match)


def test_failed_batch_refunds_the_items_it_had_reserved(ctx: Ctx) -> None:
    """A batch whose second item is refused releases the first item's reservation (no token was sampled)."""
    expect_error(ctx, lambda c: c.engine.generate_batch([c.ask(unit="doc-7"), {"messages": c.ask(), "seed": 2**70}],
                                                        budget=c.budget, max_new_tokens=4),
                 ValueError, r"seed must fit in 64 bits")
    assert ctx.budget.spent("doc-7") == 0.0
    assert [e.status for e in ctx.budget.entries("doc-7")] in ([], ["settled"])


# -- 2. settings: the same out-of-range values through every entry point that takes them ----------

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
    "DPDocumentPrivatizer(...)": lambda c, kw: _privatizer(c, **kw),
}
# Where an adapter words a refusal its own way, by (entry point, setting name).
OVERRIDES: dict[tuple[str, str], tuple[Any, str]] = {
    # LlamaIndex's LLM has no do_sample field (it always samples): an unknown argument there.
    ("DPFusionLlamaLLM(...)", "do_sample"): (TypeError, r"unknown argument\(s\) \['do_sample'\]"),
}


def _privatizer(c: Ctx, **kw: Any) -> Any:
    from dpfusion_chains.retrievers import DPDocumentPrivatizer

    return DPDocumentPrivatizer(c.engine, budget=c.budget, **kw)


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


# -- 3. model loading and devices (offline) ----------------------------------------------------------

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
NO_GPU = "no CUDA GPU here; use device='cpu' or 'auto'"
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


# -- 4. PrivacyBudget: limits, ledger URLs, reservations -----------------------------------------------

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


# -- 5. detectors -----------------------------------------------------------------------------------

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


# -- 6. LangChain: ChatDPFusion and DPFusionLLM -------------------------------------------------------

def _cut(c: Ctx) -> str:
    return "Context: " + c.marked()[:-12]  # a splitter or truncation cut the marker


def _altered(c: Ctx) -> str:
    return "Context: " + c.marked().replace("asthma", "asthmx")


def _lc(kind: str, content: Any, **kw: Any) -> Any:
    import langchain_core.messages as m

    return getattr(m, kind)(content=content, **kw)


LANGCHAIN = [
    case(lambda c: c.chat().invoke(None), ValueError, r"Invalid input type .*Must be a PromptValue, str",
         "chat.invoke(None)"),
    case(lambda c: c.chat().invoke(123), ValueError, r"Invalid input type", "chat.invoke(int)"),
    case(lambda c: c.chat().invoke([]), EmptyContextError, r"messages is empty", "chat.invoke([])"),
    case(lambda c: c.chat().invoke(""), EmptyContextError, r"all messages are empty", "chat.invoke('')"),
    case(lambda c: c.chat().invoke([_lc("HumanMessage", [{"type": "image_url", "image_url": {"url": "x"}}])]),
         ValueError, r"content block type 'image_url' is not supported", "chat-image-block"),
    case(lambda c: c.chat().invoke([_lc("ChatMessage", c.doc, role="wizard")]), ValueError,
         r"unknown message role 'wizard'", "chat-role"),
    case(lambda c: c.chat().invoke(c.lc_messages(c.long_doc)), ContextTooLongError, r"shorten the context",
         "chat-long"),
    case(lambda c: list(c.chat().stream(c.lc_messages(c.long_doc))), ContextTooLongError, r"shorten the context",
         "chat-stream-long"),
    case(lambda c: c.chat().batch([c.lc_messages(c.long_doc)] * 2), ContextTooLongError, r"shorten the context",
         "chat-batch-long"),
    case(lambda c: asyncio.run(c.chat().ainvoke(c.lc_messages(c.long_doc))), ContextTooLongError,
         r"shorten the context", "chat-ainvoke-long"),
    case(lambda c: c.chat().invoke([_lc("HumanMessage", _cut(c))]), MarkerError,
         r"split or truncated on its way to the model; fail closed", "chat-marker-cut"),
    case(lambda c: c.chat().invoke([_lc("HumanMessage", _altered(c))]), MarkerError,
         r"altered on its way to the model", "chat-marker-altered"),
    case(lambda c: c.chat(trace_public_only=True).invoke([_lc("HumanMessage", _cut(c))]), MarkerError,
         r"split or truncated", "chat-marker-cut-public-trace"),
    case(lambda c: c.chat().invoke("hi", bogus=1), TypeError, r"unknown DP-Fusion call argument\(s\) \['bogus'\]",
         "chat-call-kwarg"),
    case(lambda c: c.chat().invoke("hi", model="gpt-4o"), ValueError, r"serves one local model.*create another",
         "chat-call-model"),
    case(lambda c: c.chat().invoke("hi", budget="memory://"), TypeError, r"budget must be a PrivacyBudget",
         "chat-call-budget=str"),
    case(lambda c: c.chat().invoke("hi", max_tokens=4, max_new_tokens=4), TypeError,
         r"give max_tokens or max_new_tokens, not both", "chat-call-both-lengths"),
    case(lambda c: c.chat().invoke(c.lc_messages(), detector="nope"), ValueError, r"unknown detector 'nope'",
         "chat-call-detector"),
    case(lambda c: c.chat(unit=""), ValueError, r"unit must be a non-empty privacy unit id", "chat(unit='')"),
    case(lambda c: c.chat(private_roles=["wizard"]), ValueError, r"unknown role 'wizard' in private_roles",
         "chat(private_roles)"),
    case(lambda c: c.chat(max_tokens=4), ValueError, r"give max_tokens or max_new_tokens", "chat(both-lengths)"),
    case(lambda c: c.chat(epsiln=3.0), ValueError, r"epsiln\n +Extra inputs are not permitted", "chat(misspelt)"),
    case(lambda c: _private_block(c.doc.encode()), TypeError, r"takes text as str", "private_block(bytes)"),
    case(lambda c: _private_block(c.doc, unit=""), ValueError, r"non-empty string unit id", "private_block(unit='')"),
    case(lambda c: c.llm().invoke(None), ValueError, r"Invalid input type", "llm.invoke(None)"),
    case(lambda c: c.llm().invoke(""), EmptyContextError, r"all messages are empty", "llm.invoke('')"),
    case(lambda c: c.llm().invoke(c.marked(c.long_doc)), ContextTooLongError, r"shorten the context", "llm-long"),
    case(lambda c: list(c.llm().stream(c.marked(c.long_doc))), ContextTooLongError, r"shorten the context",
         "llm-stream-long"),
    case(lambda c: c.llm().batch([c.marked(), c.marked(c.long_doc)]), ContextTooLongError, r"shorten the context",
         "llm-batch-long(refunds-item-0)"),
    case(lambda c: c.llm().invoke(_cut(c)), MarkerError, r"split or truncated", "llm-marker-cut"),
    case(lambda c: c.llm().invoke("hi", bogus=1), TypeError, r"unknown DP-Fusion call argument", "llm-call-kwarg"),
]


def _private_block(*args: Any, **kw: Any) -> Any:
    from dpfusion_chains.llms import private_block

    return private_block(*args, **kw)


@pytest.mark.parametrize("call,exc,match", LANGCHAIN)
def test_langchain(ctx: Ctx, call: Call, exc: Any, match: str) -> None:
    pytest.importorskip("langchain_core")
    expect_error(ctx, call, exc, match)


# -- 7. LlamaIndex: DPFusionLlamaLLM ------------------------------------------------------------------

def _li_chat(c: Ctx, *messages: tuple[str, Any]) -> Any:
    from llama_index.core.llms import ChatMessage

    return c.li().chat([ChatMessage(role=role, content=content) for role, content in messages])


def _li_image(c: Ctx) -> Any:
    from llama_index.core.base.llms.types import ImageBlock, TextBlock
    from llama_index.core.llms import ChatMessage

    msg = ChatMessage(role="user", blocks=[TextBlock(text=c.marked()), ImageBlock(url="https://example.invalid/x.png")])
    return c.li().chat([msg])


def _li_call_error(cause: str, match: str) -> str:
    return rf"{cause}: .*{match}"


LLAMAINDEX = [
    case(lambda c: c.li().complete(""), EmptyContextError, _li_call_error("EmptyContextError", "all messages are empty"),
         "complete('')"),
    case(lambda c: _li_chat(c), EmptyContextError, r"messages is empty", "chat([])"),
    case(lambda c: _li_image(c), TypeError, r"text messages only \(found a non-text content block\)", "image-block"),
    case(lambda c: c.li().complete(c.marked(c.long_doc)), ContextTooLongError,
         _li_call_error("ContextTooLongError", "shorten the context"), "complete-long"),
    case(lambda c: list(c.li().stream_complete(c.marked(c.long_doc))), ContextTooLongError, r"shorten the context",
         "stream_complete-long"),
    case(lambda c: asyncio.run(c.li().acomplete(c.marked(c.long_doc))), ContextTooLongError, r"shorten the context",
         "acomplete-long"),
    case(lambda c: _li_chat(c, ("user", c.marked(c.long_doc))), ContextTooLongError, r"shorten the context",
         "chat-long"),
    case(lambda c: c.li().complete(_cut(c)), MarkerError, _li_call_error("MarkerError", "split or truncated"),
         "marker-cut"),
    case(lambda c: c.li().complete(_altered(c)), MarkerError, r"altered", "marker-altered"),
    case(lambda c: c.li().complete("hi", bogus=2), TypeError, r"unknown argument\(s\) \['bogus'\]", "call-kwarg"),
    case(lambda c: c.li().complete("hi", budget="memory://"), TypeError, r"budget must be a PrivacyBudget",
         "call-budget=str"),
    case(lambda c: c.li(epsiln=2.0), TypeError, r"unknown argument\(s\) \['epsiln'\] for DPFusionLlamaLLM",
         "misspelt-setting"),
    case(lambda c: c.li(user_unit=""), ValueError, r"user_unit must be a non-empty privacy unit id", "user_unit=''"),
]


@pytest.mark.parametrize("call,exc,match", LLAMAINDEX)
def test_llamaindex(ctx: Ctx, call: Call, exc: Any, match: str) -> None:
    pytest.importorskip("llama_index.core")
    expect_error(ctx, call, exc, match)


# -- 8. retrievers, postprocessors and document privatizers ---------------------------------------------

def _doc(text: str, **metadata: Any) -> Any:
    from langchain_core.documents import Document

    return Document(page_content=text, metadata=metadata)


def _mark_private(*args: Any, **kw: Any) -> Any:
    from dpfusion_chains.retrievers import mark_private

    return mark_private(*args, **kw)


def _retriever(**kw: Any) -> Any:
    from dpfusion_chains.retrievers import PrivateRetriever

    return PrivateRetriever(**kw)


def _nodes(*texts: str, **metadata: Any) -> list[Any]:
    from llama_index.core.schema import NodeWithScore, TextNode

    return [NodeWithScore(node=TextNode(text=t, id_=f"n-{i}", metadata=dict(metadata)), score=1.0)
            for i, t in enumerate(texts)]


def _postprocessor(**kw: Any) -> Any:
    from dpfusion_chains.retrievers import PrivateNodePostprocessor

    return PrivateNodePostprocessor(**kw)


def _node_privatizer(c: Ctx, nodes: list[Any], **kw: Any) -> Any:
    from dpfusion_chains.retrievers.llama_index_privatizer import DPNodePrivatizer

    return DPNodePrivatizer(llm=c.li(), **kw)(nodes)


LC_RETRIEVERS = [
    case(lambda c: _mark_private(5), TypeError, r"takes a Document or str, got int", "mark_private(int)"),
    case(lambda c: _mark_private(c.doc), ValueError, r"needs unit=", "mark_private(text,no-unit)"),
    case(lambda c: _mark_private(_doc(c.doc)), ValueError, r"no metadata\['source'\].*set unit_key",
         "mark_private(doc,no-unit)"),
    case(lambda c: mark(c.doc + "\ue001"), MarkerError, r"already contains marker characters", "mark(marker-chars)"),
    case(lambda c: mark(c.doc.encode()), TypeError, r"mark\(\) takes text as str", "mark(bytes)"),
    case(lambda c: _retriever(base_retriever=None), ValueError, r"base_retriever", "PrivateRetriever(None)"),
    case(lambda c: _privatizer(c, level="full"), ValueError, r"level must be 'dp' or 'redact'", "privatizer-level"),
    case(lambda c: _privatizer(c).transform_documents([_doc(c.marked(), source="d")]), ValueError,
         r"already marked private \(privatise before", "privatizer-marked-doc"),
    case(lambda c: _privatizer(c).transform_documents([_doc(c.doc)]), ValueError, r"no metadata\['source'\]",
         "privatizer-no-unit"),
    case(lambda c: _privatizer(c).transform_documents([_doc("  ", source="doc-1")]), EmptyContextError,
         r"empty document", "privatizer-empty-doc"),
    case(lambda c: _privatizer(c).transform_documents([_doc(c.long_doc, source="doc-1")]), ContextTooLongError,
         r"shorten the context", "privatizer-long-doc"),
]
LI_RETRIEVERS = [
    case(lambda c: _postprocessor(on_exhausted="wait"), ValueError, r"'raise', 'redact' or 'drop'",
         "postprocessor(on_exhausted)"),
    case(lambda c: _postprocessor().postprocess_nodes(_nodes(c.doc)), ValueError,
         r"node 'n-0' has no privacy unit id.*unit_key=/default_unit=", "postprocessor-no-unit"),
    case(lambda c: _node_privatizer(c, [], level="full"), ValueError, r"'dp' or 'redact'", "node-privatizer-level"),
    case(lambda c: _node_privatizer(c, [n.node for n in _nodes(c.doc)]), ValueError, r"no privacy unit id",
         "node-privatizer-no-unit"),
    case(lambda c: _node_privatizer(c, ["not a node"], default_unit="u"), TypeError, r"rewrites text nodes",
         "node-privatizer-str"),
    case(lambda c: _node_privatizer(c, [n.node for n in _nodes(c.doc)], default_unit="doc-1",
                                    settings={"temperature": 0}), ValueError, r"greedy decoding",
         "node-privatizer-temperature=0"),
    case(lambda c: _node_privatizer(c, [n.node for n in _nodes(c.long_doc)], default_unit="doc-1"),
         ContextTooLongError, r"shorten the context", "node-privatizer-long"),
]


@pytest.mark.parametrize("call,exc,match", LC_RETRIEVERS)
def test_langchain_retrievers(ctx: Ctx, call: Call, exc: Any, match: str) -> None:
    pytest.importorskip("langchain_core")
    expect_error(ctx, call, exc, match)


@pytest.mark.parametrize("call,exc,match", LI_RETRIEVERS)
def test_llamaindex_retrievers(ctx: Ctx, call: Call, exc: Any, match: str) -> None:
    pytest.importorskip("llama_index.core")
    expect_error(ctx, call, exc, match)


# -- 9. callback handlers --------------------------------------------------------------------------------

def _handler(name: str, *args: Any, **kw: Any) -> Any:
    pytest.importorskip("llama_index.core" if "Event" in name else "langchain_core")
    import dpfusion_chains.callbacks as cb

    return getattr(cb, name)(*args, **kw)


CALLBACKS = [
    case(lambda c: _handler("PrivacyBudgetCallbackHandler", on_limit="stop"), ValueError,
         r"on_limit must be 'warn', 'raise' or 'ignore'", "spend-on_limit"),
    case(lambda c: _handler("PrivacyBudgetCallbackHandler", limit=-1.0), ValueError, r"limit must be an ε >= 0",
         "spend-limit<0"),
    case(lambda c: _handler("LeakGuardCallbackHandler", []), ValueError, r"at least one non-empty canary",
         "leak-guard-no-canary"),
    case(lambda c: _handler("LeakGuardCallbackHandler", [c.canary], mode="log"), ValueError,
         r"mode must be 'raise' or 'record'", "leak-guard-mode"),
    case(lambda c: _handler("PrivacyBudgetEventHandler", on_limit="raise"), ValueError,
         r"dispatcher swallows errors", "llamaindex-on_limit=raise"),
    case(lambda c: _handler("PrivacyBudgetEventHandler", on_limit="stop"), ValueError, r"on_limit",
         "llamaindex-on_limit"),
]


@pytest.mark.parametrize("call,exc,match", CALLBACKS)
def test_callbacks(ctx: Ctx, call: Call, exc: Any, match: str) -> None:
    expect_error(ctx, call, exc, match)


# -- 10. the `dpfusion` command line: exit status 1/2, one helpful line, no traceback ----------------------

def _gen(c: Ctx, *extra: str) -> list[str]:
    return ["generate", "--private", c.doc, *extra, "What was the diagnosis?"]


def _file(c: Ctx) -> str:
    path = c.tmp / "record.txt"
    path.write_text(c.doc, encoding="utf-8")
    return str(path)


CLI = [
    pytest.param(lambda c: [], 2, r"usage: dpfusion", id="no-command"),
    pytest.param(lambda c: ["frobnicate"], 2, r"invalid choice: 'frobnicate'", id="unknown-command"),
    pytest.param(lambda c: ["generate", "--private", c.doc], 2, r"required: prompt", id="generate-no-prompt"),
    pytest.param(lambda c: ["generate", "Diagnosis?"], 2, r"give the private text with --private-file FILE",
                 id="generate-no-private-text"),
    pytest.param(lambda c: _gen(c, "--epsilon", "lots"), 2, r"argument --epsilon: invalid float value",
                 id="epsilon=str"),
    pytest.param(lambda c: _gen(c, "--max-new-tokens", "0"), 2, r"max_new_tokens must be >= 1",
                 id="max-new-tokens=0"),
    pytest.param(lambda c: _gen(c, "--temperature", "0"), 2, r"greedy decoding", id="temperature=0"),
    pytest.param(lambda c: _gen(c, "--beta", "0.1", "--alpha", "1"), 2, r"alpha must be a finite number > 1",
                 id="alpha=1"),
    pytest.param(lambda c: _gen(c, "--delta", "2"), 2, r"delta must lie in \(0, 1\)", id="delta=2"),
    pytest.param(lambda c: _gen(c, "--detector", "nope"), 2, r"unknown --detector 'nope'; choose one of",
                 id="detector=unknown"),
    pytest.param(lambda c: _gen(c, "--model", "/nonexistent/model-dir", "--device", "cpu"), 2,
                 r"could not load model '/nonexistent/model-dir'", id="model=missing"),
    pytest.param(lambda c: _gen(c, "--model", "/nonexistent/model-dir", "--device", "tpu9"), 2,
                 r"unknown device 'tpu9'", id="device=unknown"),
    pytest.param(lambda c: _gen(c, "--model", "/nonexistent/model-dir", "--device", "cuda"), 2, NO_GPU,
                 id="device=cuda", marks=no_gpu_only),
    pytest.param(lambda c: _gen(c, "--device", "cuda"), 2, NO_GPU, id="default-model-device=cuda",
                 marks=no_gpu_only),
    pytest.param(lambda c: _gen(c, "--ledger", "memory://"), 2, r"--ledger needs --budget-epsilon",
                 id="ledger-without-limit"),
    pytest.param(lambda c: _gen(c, "--ledger", "ftp://host/b", "--budget-epsilon", "5"), 2, r"unknown ledger",
                 id="ledger=ftp"),
    pytest.param(lambda c: _gen(c, "--ledger", f"sqlite:///{c.tmp}/no/dir/b.db", "--budget-epsilon", "5"), 2,
                 r"Check that its directory exists", id="ledger=missing-dir"),
    pytest.param(lambda c: _gen(c, "--ledger", "memory://", "--budget-epsilon", "-5"), 2,
                 r"epsilon must be a finite number >= 0", id="budget-epsilon<0"),
    pytest.param(lambda c: _gen(c, "--ledger", "memory://", "--budget-epsilon", "0.01"), 2, r"admits no release",
                 id="budget-epsilon-too-small"),
    pytest.param(lambda c: ["generate", "--private-file", str(c.tmp / "missing.txt"), "Diagnosis?"], 2,
                 r"No such file or directory", id="private-file-missing"),
    pytest.param(lambda c: ["demo", "--records", "x"], 2, r"argument --records: invalid int value", id="demo-records"),
    pytest.param(lambda c: ["demo", "--device", "cuda"], 2, NO_GPU, id="demo-device=cuda", marks=no_gpu_only),
    pytest.param(lambda c: ["demo", "--dtype", "int8"], 2, r"argument --dtype: invalid choice: 'int8'",
                 id="demo-dtype=int8"),
    pytest.param(lambda c: ["budget"], 2, r"required: ACTION", id="budget-no-action"),
    pytest.param(lambda c: ["budget", "show", "--ledger", "ftp://host/b"], 2, r"unknown ledger", id="show-ftp"),
    pytest.param(lambda c: ["budget", "show", "--ledger", str(c.tmp / "missing.db")], 2, r"no ledger file at",
                 id="show-missing-file"),
    pytest.param(lambda c: ["budget", "show", "--ledger", f"sqlite:///{c.tmp}/no/dir/b.db"], 2,
                 r"Check that its directory exists", id="show-missing-dir"),
    pytest.param(lambda c: ["budget", "show", "--delta", "x"], 2, r"argument --delta: invalid float value",
                 id="show-delta=str"),
    pytest.param(lambda c: ["budget", "reset", "--ledger", "memory://"], 2, r"required: --unit", id="reset-no-unit"),
    pytest.param(lambda c: ["budget", "reset", "--ledger", "memory://", "--unit", "doc-1"], 1,
                 r"refusing to reset unit 'doc-1' without --yes", id="reset-without-yes"),
    pytest.param(lambda c: ["budget", "export", "--ledger", "memory://"], 2, r"required: --csv", id="export-no-csv"),
    pytest.param(lambda c: ["detect", str(c.tmp / "missing.txt")], 2, r"no such file", id="detect-missing-file"),
    pytest.param(lambda c: ["detect", _file(c), "--detector", "nope"], 2, r"unknown detector kind 'nope'",
                 id="detect-kind"),
    pytest.param(lambda c: ["detect", _file(c), "--detector", "regex", "--profile", "nope"], 2,
                 r"unknown detection profile 'nope'", id="detect-profile"),
    pytest.param(lambda c: ["detect", _file(c), "--detector", "hf"], 2, r"needs --model-path", id="detect-hf"),
    pytest.param(lambda c: ["serve", "--in-process", "--replicas", "0"], 2, r"--replicas: .*greater than or equal to 1",
                 id="serve-replicas=0"),
    pytest.param(lambda c: ["serve", "--hash-key", "no-colon"], 2, r"--hash-key takes TENANT:KEY",
                 id="serve-hash-key"),
]


@pytest.mark.parametrize("argv,rc,match", CLI)
def test_cli(ctx: Ctx, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
             argv: Callable[[Ctx], list[str]], rc: int, match: str) -> None:
    monkeypatch.delenv("DPFUSION_LEDGER", raising=False)
    try:
        code = cli_main(argv(ctx))
    except SystemExit as exit_:  # argparse's own usage errors
        code = exit_.code
    out, err = capsys.readouterr()
    assert code == rc, (code, out, err)
    assert re.search(match, out + err), out + err
    assert "Traceback" not in out + err
    assert ctx.canary not in out + err, "the private text was echoed"


# -- 11. missing optional dependencies: the ImportError names the pip extra -------------------------------

SERVE_KEYS = "tenant-1:k-" + "0123456789abcdef" * 2

# (modules made unimportable, code run in a fresh interpreter, the extra the message must name)
EXTRAS = [
    pytest.param(["langchain_core"], "from dpfusion_chains.llms import ChatDPFusion", "langchain", id="ChatDPFusion"),
    pytest.param(["langchain_core"], "from dpfusion_chains.llms.langchain_llm import DPFusionLLM", "langchain",
                 id="DPFusionLLM"),
    pytest.param(["langchain_core"], "from dpfusion_chains.callbacks import PrivacyBudgetCallbackHandler", "langchain",
                 id="langchain-callbacks"),
    pytest.param(["langchain_core"], "from dpfusion_chains.retrievers import PrivateRetriever", "langchain",
                 id="PrivateRetriever"),
    pytest.param(["langchain_core"], "from dpfusion_chains.retrievers import DPDocumentPrivatizer", "langchain",
                 id="DPDocumentPrivatizer"),
    pytest.param(["llama_index"], "from dpfusion_chains.llms.llama_index import DPFusionLlamaLLM", "llamaindex",
                 id="DPFusionLlamaLLM"),
    pytest.param(["llama_index"], "from dpfusion_chains.callbacks import PrivacyBudgetEventHandler", "llamaindex",
                 id="llamaindex-callbacks"),
    pytest.param(["llama_index"], "from dpfusion_chains.retrievers import PrivateNodePostprocessor", "llamaindex",
                 id="PrivateNodePostprocessor"),
    pytest.param(["llama_index"], "from dpfusion_chains.retrievers.llama_index_privatizer import DPNodePrivatizer",
                 "llamaindex", id="DPNodePrivatizer"),
    pytest.param(["spacy", "presidio_analyzer"], "from dpfusion_chains.core.detect import make_detector\n"
                 "make_detector('presidio')", "presidio", id="presidio-detector"),
    pytest.param(["psycopg"], "from dpfusion_chains import PrivacyBudget\n"
                 "PrivacyBudget(10.0, ledger='postgresql://app@127.0.0.1:1/db')", "postgres", id="postgres-ledger"),
    pytest.param(["fastapi"], "from dpfusion_chains.serve import create_app", "serve", id="serve-app"),
    pytest.param(["httpx"], "from dpfusion_chains.serve import RemoteEngine", "serve", id="RemoteEngine"),
    pytest.param(["ray"], "from dpfusion_chains.serve.deployment import run", "serve", id="ray-deployment"),
    # through the CLI: exit status 2 and one line, no traceback
    pytest.param(["uvicorn"], "cli serve --in-process --device cpu --api-keys-file {keys}", "serve",
                 id="cli-serve-in-process"),
    pytest.param(["fastapi"], "cli serve --in-process --device cpu --api-keys-file {keys}", "serve",
                 id="cli-serve-fastapi"),
    pytest.param(["ray"], "cli serve --device cpu --ledger sqlite:///{tmp}/b.db --api-keys-file {keys}", "serve",
                 id="cli-serve-ray"),
    pytest.param(["matplotlib"], "cli budget show --ledger sqlite:///{tmp}/b.db --plot {tmp}/plot.png", "plot",
                 id="cli-budget-plot"),
]


@pytest.mark.parametrize("blocked,code,extra", EXTRAS)
def test_missing_extra(tmp_path: Path, blocked: list[str], code: str, extra: str) -> None:
    keys = tmp_path / "keys.txt"
    keys.write_text(SERVE_KEYS + "\n")
    PrivacyBudget(10.0, ledger=f"sqlite:///{tmp_path}/b.db").reserve({"doc-1"}, rdp=0.1)  # something to plot
    is_cli = code.startswith("cli ")
    if is_cli:
        argv = code.removeprefix("cli ").format(keys=keys, tmp=tmp_path).split()
        code = f"from dpfusion_chains.cli import main\nraise SystemExit(main({argv!r}))"
    # None in sys.modules makes `import name` (and its submodules) fail as if it were not installed.
    program = "import sys\n" + "".join(f"sys.modules[{m!r}] = None\n" for m in blocked) + textwrap.dedent(code)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    env.pop("DPFUSION_LEDGER", None)
    done = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True, cwd=REPO, env=env,
                          timeout=120)
    last = done.stderr.strip().splitlines()[-1] if done.stderr.strip() else ""
    assert done.returncode == (2 if is_cli else 1), done.stderr
    assert f"pip install 'dpfusion-chains[{extra}]'" in last, done.stderr
    if is_cli:
        assert "Traceback" not in done.stderr and last.startswith("dpfusion "), done.stderr
    else:
        assert last.startswith("ImportError: "), last


def test_missing_presidio_through_the_engine(ctx: Ctx, monkeypatch: pytest.MonkeyPatch) -> None:
    """The default detector is Presidio: without the extra, a call names it and charges nothing."""
    from dpfusion_chains.core import detect
    from dpfusion_chains.core.detectors import factory

    for name in ("spacy", "presidio_analyzer"):
        monkeypatch.setitem(sys.modules, name, None)
    monkeypatch.setattr(detect, "_INSTANCES", {})  # no Presidio detector built earlier in this process
    monkeypatch.setattr(factory, "_CACHE", {})
    expect_error(ctx, lambda c: c.engine.generate(c.ask(), detector="presidio", budget=c.budget), ImportError,
                 r"optional dependency 'spacy' \(for the Presidio detector; detector='regex' needs no extra\) is not "
                 r"installed; install it with: pip install 'dpfusion-chains\[presidio\]'")


@pytest.mark.parametrize("module,expected", [
    ("dpfusion_no_such_module_4c1e", r"'dpfusion_no_such_module_4c1e' \(for X\) is not installed"),
    ("dpfusion_no_such_pkg_4c1e.core", r"'dpfusion_no_such_pkg_4c1e.core' \(for X\) is not installed"),
])
def test_require_names_the_extra(module: str, expected: str) -> None:
    from dpfusion_chains._optional import require

    with pytest.raises(ImportError, match=expected) as err:
        require(module, "langchain", "X")
    assert "pip install 'dpfusion-chains[langchain]'" in str(err.value) and err.value.name == module


def test_require_tells_a_broken_install_from_a_missing_one(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "dpf_broken_pkg_4c1e.py").write_text("import dpf_missing_dependency_4c1e\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    from dpfusion_chains._optional import require

    with pytest.raises(ImportError, match=r"could not be imported \(ModuleNotFoundError: .*dpf_missing_dependency"):
        require("dpf_broken_pkg_4c1e", "presidio")
