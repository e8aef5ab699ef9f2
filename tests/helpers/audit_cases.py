"""What the bad-input sweep (tests/audit/bad_inputs) shares: one case's world (`Ctx`), the
checks every refusal must pass (`expect_error`: the expected error and message, nothing charged,
nothing private in the error or the logs) and a table row (`case`). Importable from the tests
through pytest's `pythonpath` setting (pyproject.toml)."""

from __future__ import annotations

import re
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pydantic
import pytest
import torch

from dpfusion_chains import PrivacyBudget, private
from dpfusion_chains.core.engine import DPFusionEngine
from dpfusion_chains.core.markers import mark

REPO = Path(__file__).resolve().parents[2]
HAS_GPU = torch.cuda.is_available()
no_gpu_only = pytest.mark.skipif(HAS_GPU, reason="this machine has a GPU: device='cuda' is valid here")
Call = Callable[["Ctx"], Any]
NO_GPU = "no CUDA GPU here; use device='cpu' or 'auto'"


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


def privatizer(c: Ctx, **kw: Any) -> Any:
    """A LangChain document privatizer over the case's engine and budget."""
    from dpfusion_chains.retrievers import DPDocumentPrivatizer

    return DPDocumentPrivatizer(c.engine, budget=c.budget, **kw)
