"""PrivateNodePostprocessor: marking, units, groups and the budget's on_exhausted policies."""

from __future__ import annotations

import pytest
from llama_index.core.schema import MetadataMode, NodeRelationship, NodeWithScore, RelatedNodeInfo, TextNode

from dpfusion_chains.budget import BudgetExhaustedError, PrivacyBudget
from dpfusion_chains.callbacks.llama_index import query_scope
from dpfusion_chains.core.markers import parse_marked
from dpfusion_chains.core.spans import PrivateSegment
from dpfusion_chains.retrievers.llama_index import (PrivateNodePostprocessor, PrivatePublicNode, PrivateTextNode,
                                                    redact_text)

TEXT = "Ottoline Brisbane-Kahale was admitted on 3 May."


def _nodes(n=2, **metadata):
    return [NodeWithScore(node=TextNode(
        text=f"{TEXT} Record {i}.", id_=f"node-{i}", metadata={**metadata, "ward": f"w{i}"},
        relationships={NodeRelationship.SOURCE: RelatedNodeInfo(node_id=f"rec-{i}")}), score=1.0) for i in range(n)]


def _segments(node) -> list[PrivateSegment]:
    return [p for p in parse_marked(node.get_content(MetadataMode.LLM)) if isinstance(p, PrivateSegment)]


def test_only_the_llm_view_is_marked():
    with query_scope() as scope:
        out = PrivateNodePostprocessor().postprocess_nodes(_nodes())
    node = out[0].node
    assert isinstance(node, PrivateTextNode) and node.node_id == _nodes()[0].node.node_id
    assert node.text == node.get_content() == f"{TEXT} Record 0."
    assert node.get_content(MetadataMode.EMBED) == _nodes()[0].node.get_content(MetadataMode.EMBED)
    (seg,) = _segments(node)
    assert seg.unit == "rec-0" and "ward: w0" in seg.text and TEXT in seg.text  # metadata inside the marker
    assert scope.units == {"rec-0", "rec-1"}
    with query_scope():
        (bare,) = _segments(PrivateNodePostprocessor(llm_metadata=False).postprocess_nodes(_nodes(1))[0].node)
    assert bare.text == f"{TEXT} Record 0."


def test_unit_and_group_from_metadata():
    with query_scope():
        out = PrivateNodePostprocessor(unit_key="patient", group_key="ward", detector="whole").postprocess_nodes(
            _nodes(patient="p-9"))
    segs = [_segments(n.node)[0] for n in out]
    assert [(s.unit, s.group) for s in segs] == [("p-9", "w0"), ("p-9", "w1")]
    assert segs[0].detector == "whole"


@pytest.mark.parametrize("policy", ["raise", "drop", "redact"])
def test_exhausted_units(policy, make_llm):
    budget = PrivacyBudget(epsilon=40.0, ledger="memory://", per_unit={"rec-1": 0.0}, on_exhausted=policy)
    post = PrivateNodePostprocessor(budget=budget, detector="whole")
    if policy == "raise":
        with pytest.raises(BudgetExhaustedError, match="rec-1"):
            post.postprocess_nodes(_nodes())
        return
    with query_scope() as scope:
        out = post.postprocess_nodes(_nodes())
        assert scope.units == {"rec-0"}  # nothing of rec-1 will be charged
        if policy == "drop":
            assert [n.node.ref_doc_id for n in out] == ["rec-0"]
        else:
            redacted = out[1].node
            assert isinstance(redacted, PrivatePublicNode)
            assert redacted.text == "[PRIVATE]" and TEXT not in redacted.get_content(MetadataMode.LLM)
        context = "\n\n".join(n.node.get_content(MetadataMode.LLM) for n in out)
        meta = make_llm(budget=budget).complete("Context:\n" + context + "\nWhen?").additional_kwargs["dpfusion"]
    assert meta["units"] == ["rec-0"] and budget.spent("rec-1") == 0.0


def test_redact_text_keeps_public_parts():
    assert redact_text(TEXT, "whole") == "[PRIVATE]"
