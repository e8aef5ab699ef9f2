"""Bad-input sweep (issue 9): the framework adapters: LangChain's ChatDPFusion and DPFusionLLM,
LlamaIndex's DPFusionLlamaLLM, the retrievers, postprocessors and document privatizers. Every case
must pass tests/helpers/audit_cases.py's `expect_error`: the expected error, a message that says
what to change, nothing charged, nothing private in the error or the logs."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from dpfusion_chains.core.errors import ContextTooLongError, EmptyContextError, MarkerError
from dpfusion_chains.core.markers import mark

from audit_cases import Call, Ctx, case, expect_error, privatizer


# -- LangChain: ChatDPFusion and DPFusionLLM -------------------------------------------------------

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


# -- LlamaIndex: DPFusionLlamaLLM ------------------------------------------------------------------

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


# -- retrievers, postprocessors and document privatizers ---------------------------------------------

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


def _nodeprivatizer(c: Ctx, nodes: list[Any], **kw: Any) -> Any:
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
    case(lambda c: privatizer(c, level="full"), ValueError, r"level must be 'dp' or 'redact'", "privatizer-level"),
    case(lambda c: privatizer(c).transform_documents([_doc(c.marked(), source="d")]), ValueError,
         r"already marked private \(privatise before", "privatizer-marked-doc"),
    case(lambda c: privatizer(c).transform_documents([_doc(c.doc)]), ValueError, r"no metadata\['source'\]",
         "privatizer-no-unit"),
    case(lambda c: privatizer(c).transform_documents([_doc("  ", source="doc-1")]), EmptyContextError,
         r"empty document", "privatizer-empty-doc"),
    case(lambda c: privatizer(c).transform_documents([_doc(c.long_doc, source="doc-1")]), ContextTooLongError,
         r"shorten the context", "privatizer-long-doc"),
]
LI_RETRIEVERS = [
    case(lambda c: _postprocessor(on_exhausted="wait"), ValueError, r"'raise', 'redact' or 'drop'",
         "postprocessor(on_exhausted)"),
    case(lambda c: _postprocessor().postprocess_nodes(_nodes(c.doc)), ValueError,
         r"node 'n-0' has no privacy unit id.*unit_key=/default_unit=", "postprocessor-no-unit"),
    case(lambda c: _nodeprivatizer(c, [], level="full"), ValueError, r"'dp' or 'redact'", "node-privatizer-level"),
    case(lambda c: _nodeprivatizer(c, [n.node for n in _nodes(c.doc)]), ValueError, r"no privacy unit id",
         "node-privatizer-no-unit"),
    case(lambda c: _nodeprivatizer(c, ["not a node"], default_unit="u"), TypeError, r"rewrites text nodes",
         "node-privatizer-str"),
    case(lambda c: _nodeprivatizer(c, [n.node for n in _nodes(c.doc)], default_unit="doc-1",
                                    settings={"temperature": 0}), ValueError, r"greedy decoding",
         "node-privatizer-temperature=0"),
    case(lambda c: _nodeprivatizer(c, [n.node for n in _nodes(c.long_doc)], default_unit="doc-1"),
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
