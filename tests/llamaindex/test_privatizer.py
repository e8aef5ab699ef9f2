"""DPNodePrivatizer: DP paraphrase at ingestion, ε per node in its metadata."""

from __future__ import annotations

import pytest
from llama_index.core import Document
from llama_index.core.ingestion import IngestionPipeline
from llama_index.core.node_parser import SentenceSplitter
from llama_index.core.schema import MetadataMode

from dpfusion_chains.budget import PrivacyBudget
from dpfusion_chains.retrievers.llama_index_privatizer import META_KEYS, DPNodePrivatizer


def _docs(kit):
    cans = kit.canaries("INGEST", 2)
    return cans, [Document(text=kit.record_text(i, c, repeat=2), doc_id=f"rec-{i}") for i, c in enumerate(cans)]


def test_dp_paraphrase_at_ingestion(kit, make_llm, collector):
    cans, docs = _docs(kit)
    budget = PrivacyBudget(epsilon=60.0, ledger="memory://")
    privatizer = DPNodePrivatizer(llm=make_llm(budget=budget), max_new_tokens=8)
    nodes = IngestionPipeline(transformations=[SentenceSplitter(chunk_size=256), privatizer]).run(documents=docs)
    assert [n.metadata["dpfusion_unit"] for n in nodes] == ["rec-0", "rec-1"]
    for node, doc, can in zip(nodes, docs, cans):
        assert node.metadata["dpfusion_epsilon"] > 0 and node.metadata["dpfusion_tokens"] == 8
        assert node.metadata["dpfusion_level"] == "dp"
        assert can not in node.text and node.text != doc.text
        assert budget.spent(node.metadata["dpfusion_unit"]) == pytest.approx(node.metadata["dpfusion_epsilon"])
        for key in META_KEYS:  # the accounting stays out of embeddings and prompts
            assert key not in node.get_content(MetadataMode.EMBED) and key not in node.get_content(MetadataMode.LLM)
    assert len(collector.calls) == 2 and {c.units[0] for c in collector.calls} == {"rec-0", "rec-1"}
    assert docs[0].text.count(cans[0]) == 2  # the source documents are not modified


def test_redact_level_costs_nothing(kit, make_llm):
    _, docs = _docs(kit)
    nodes = DPNodePrivatizer(llm=make_llm(), level="redact", max_new_tokens=6)(docs)
    assert all(n.metadata["dpfusion_epsilon"] == 0.0 and n.metadata["dpfusion_level"] == "redact" for n in nodes)
