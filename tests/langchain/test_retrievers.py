"""PrivateRetriever / mark_private and DPDocumentPrivatizer."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from langchain_core.documents import Document
from langchain_core.retrievers import BaseRetriever

from dpfusion_chains import PrivacyBudget
from dpfusion_chains.core.errors import MarkerError
from dpfusion_chains.core.markers import parse_marked
from dpfusion_chains.core.spans import PrivateSegment
from dpfusion_chains.retrievers import DPDocumentPrivatizer, PrivateRetriever, mark_private

from .conftest import CANARIES


class Fixed(BaseRetriever):
    docs: list[Document]

    def _get_relevant_documents(self, query: str, *, run_manager: Any) -> list[Document]:
        return list(self.docs)


DOCS = [Document(page_content=f"Patient {CANARIES[0]} has asthma.", metadata={"source": "rec-1", "team": "a"}),
        Document(page_content="Invoice 9912 for four chairs.", metadata={"source": "rec-2"})]


def test_private_retriever_marks_documents_with_their_units() -> None:
    docs = PrivateRetriever(base_retriever=Fixed(docs=DOCS), group_key="team").invoke("q")
    assert [d.metadata["dpfusion_unit"] for d in docs] == ["rec-1", "rec-2"]
    assert all(d.metadata["dpfusion_private"] for d in docs)
    (segment,) = parse_marked(docs[0].page_content)
    assert segment == PrivateSegment(DOCS[0].page_content, unit="rec-1", group="a")
    assert parse_marked(docs[1].page_content)[0].group is None
    again = asyncio.run(PrivateRetriever(base_retriever=Fixed(docs=DOCS)).ainvoke("q"))
    assert [parse_marked(d.page_content)[0].text for d in again] == [d.page_content for d in DOCS]


def test_missing_unit_is_an_error_unless_defaulted() -> None:
    docs = [Document(page_content="no source here", metadata={})]
    with pytest.raises(ValueError, match="metadata\\['source'\\]"):
        PrivateRetriever(base_retriever=Fixed(docs=docs)).invoke("q")
    marked = PrivateRetriever(base_retriever=Fixed(docs=docs), default_unit="tenant-1").invoke("q")
    assert marked[0].metadata["dpfusion_unit"] == "tenant-1"


def test_mark_private_is_idempotent_and_needs_a_unit_for_text() -> None:
    once = mark_private(DOCS[0])
    assert mark_private(once) is once
    with pytest.raises(ValueError, match="unit"):
        mark_private("free text")
    assert parse_marked(mark_private("free text", unit="u"))[0].unit == "u"
    with pytest.raises(MarkerError):  # marking text that carries half a marker
        mark_private(once.page_content[:10], unit="u")


def test_privatizer_paraphrases_with_epsilon_per_document(engine: Any) -> None:
    budget = PrivacyBudget(epsilon=1000.0, delta=1e-5, alpha=2.0, ledger="memory://")
    privatizer = DPDocumentPrivatizer(engine, budget=budget, max_new_tokens=4, seed=0)
    out = privatizer.transform_documents(DOCS)
    assert [d.metadata["source"] for d in out] == ["rec-1", "rec-2"]
    for doc in out:
        meta = doc.metadata["dpfusion"]
        assert meta["tokens"] == 4 and meta["epsilon"] > 0 and meta["level"] == "dp"
        assert meta["units"] == [doc.metadata["source"]]
        assert budget.spent(doc.metadata["source"]) == pytest.approx(meta["epsilon"])
    assert all(CANARIES[0] not in repr(d.metadata) for d in out)


def test_privatizer_redact_level_spends_nothing_and_checks_input(engine: Any) -> None:
    out = DPDocumentPrivatizer(engine, level="redact", max_new_tokens=3, seed=0).transform_documents(DOCS[:1])
    assert out[0].metadata["dpfusion"]["epsilon"] == 0.0
    with pytest.raises(ValueError, match="already marked"):
        DPDocumentPrivatizer(engine).transform_documents([mark_private(DOCS[0])])
    with pytest.raises(ValueError, match="unit_key"):
        DPDocumentPrivatizer(engine).transform_documents([Document(page_content="x")])
    with pytest.raises(ValueError, match="level"):
        DPDocumentPrivatizer(engine, level="blur")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="either epsilon"):
        DPDocumentPrivatizer(engine, epsilon=1.0, beta=0.1)
