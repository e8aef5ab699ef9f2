"""Bad-input sweep (issue 9): the engine's own entry points fed wrong types, empty input, bad
detectors, budget objects and ids, and too-long contexts. Every case must pass
tests/helpers/audit_cases.py's `expect_error`: the expected error, a message that says what to
change, nothing charged, nothing private in the error or the logs."""

from __future__ import annotations

from typing import Any

import pytest

from dpfusion_chains import PrivacyBudget, private
from dpfusion_chains.budget import BudgetExhaustedError
from dpfusion_chains.core.engine import DPFusionEngine
from dpfusion_chains.core.errors import ChatTemplateError, ContextTooLongError, EmptyContextError

from audit_cases import Call, Ctx, case, expect_error


# -- engine: wrong types, empty input, detectors, budget objects, ids, too-long contexts -------------

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
