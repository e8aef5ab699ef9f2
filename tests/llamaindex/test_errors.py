"""Bad input fails closed with clear errors that quote no private text."""

from __future__ import annotations

import pytest
from llama_index.core import PromptTemplate, VectorStoreIndex
from llama_index.core.schema import NodeRelationship, RelatedNodeInfo, TextNode

from dpfusion_chains.callbacks.leak_guard import LeakGuard
from dpfusion_chains.callbacks.llama_index import query_scope
from dpfusion_chains.core.errors import ContextTooLongError, MarkerError
from dpfusion_chains.core.markers import mark
from dpfusion_chains.llms.llama_index import DPFusionCallError
from dpfusion_chains.retrievers.llama_index import MissingUnitError, PrivateNodePostprocessor


def _no_canary(exc: BaseException, cans: list[str]) -> None:
    guard = LeakGuard(cans, mode="record")
    guard.check("exception", exc)
    guard.assert_clean()


def test_node_without_a_unit_id_is_refused(kit, make_llm):
    cans = kit.canaries("UNIT", 1)
    nodes = [TextNode(text=kit.record_text(0, cans[0], repeat=2), id_="node-1")]  # no source document
    index = VectorStoreIndex(nodes, embed_model=kit.HashEmbedding())
    engine = index.as_query_engine(llm=make_llm(), node_postprocessors=[PrivateNodePostprocessor()])
    with pytest.raises(MissingUnitError, match="node-1.*no privacy unit id") as err:
        engine.query("When was the patient admitted?")
    _no_canary(err.value, cans)
    # The ways out the message names all work.
    for post, unit in ((PrivateNodePostprocessor(default_unit="ward-3"), "ward-3"),
                       (PrivateNodePostprocessor(require_unit=False), "node-1")):
        response = index.as_query_engine(llm=make_llm(), node_postprocessors=[post]).query("When?")
        assert response.metadata["dpfusion"]["units"] == [unit]


@pytest.mark.parametrize("mode", ["compact", "refine", "simple_summarize", "tree_summarize"])
def test_context_longer_than_the_model_window(mode, kit, make_llm):
    cans = kit.canaries("LONG", 1)
    node = TextNode(text=kit.record_text(0, cans[0], repeat=160), id_="n0",  # one node of ~2600 tokens
                    relationships={NodeRelationship.SOURCE: RelatedNodeInfo(node_id="rec-0")})
    index = VectorStoreIndex([node], embed_model=kit.HashEmbedding())
    # LlamaIndex is told the window is huge, so it packs everything into one prompt; the engine refuses.
    engine = index.as_query_engine(llm=make_llm(context_window=100_000), similarity_top_k=10, response_mode=mode,
                                   node_postprocessors=[PrivateNodePostprocessor()])
    with pytest.raises(DPFusionCallError, match="context window") as err:  # refine would swallow a ValueError
        engine.query("When was the patient admitted?")
    assert isinstance(err.value.__cause__, ContextTooLongError)
    _no_canary(err.value, cans)


@pytest.mark.parametrize("rewrite", [
    lambda text: text.replace("admitted", "seen"),            # edits the private text
    lambda text: text.encode("ascii", "ignore").decode(),      # strips the markers: would look public
    lambda text: text[: len(text) // 2],                       # cuts a marker
], ids=["edit", "strip-markers", "truncate"])
def test_template_that_alters_private_text_fails_closed(rewrite, kit, make_llm):
    cans = kit.canaries("TMPL", 2)
    index = kit.make_index({f"rec-{i}": kit.record_text(i, c, repeat=2) for i, c in enumerate(cans)})
    template = PromptTemplate("Context:\n{context_str}\nQuestion: {query_str}\nAnswer: ",
                              function_mappings={"context_str": lambda **kw: rewrite(kw["context_str"])})
    engine = index.as_query_engine(llm=make_llm(), text_qa_template=template, similarity_top_k=2,
                                   node_postprocessors=[PrivateNodePostprocessor()])
    with pytest.raises(DPFusionCallError, match="template changed the private text") as err:
        engine.query("When was the patient admitted?")
    assert isinstance(err.value.cause, MarkerError)
    _no_canary(err.value, cans)


def test_split_marker_needs_a_query_scope(make_llm):
    llm = make_llm()
    marked = mark("Quillon Vasquez-Ortega was admitted on 3 May.", unit="rec-9")
    template = PromptTemplate("Context: {context_str}\nWhen? ")
    with pytest.raises(DPFusionCallError) as err:
        llm.predict(template, context_str=marked[: len(marked) // 2])
    assert isinstance(err.value.cause, MarkerError) and "query_scope" in str(err.value)
    with query_scope() as scope:  # inside a scope that knows the unit, the fragment is attributed
        scope.register({"rec-9"})
        llm.predict(template, context_str=marked[: len(marked) // 2])
    assert scope.summary["units"] == ["rec-9"] and scope.summary["fragment_calls"] == 1


def test_marker_cut_in_a_direct_chat_call_raises(make_llm):
    marked = mark("Quillon Vasquez-Ortega was admitted on 3 May.", unit="rec-9")
    with pytest.raises(DPFusionCallError) as err:
        make_llm().complete("Record: " + marked[:20])
    assert isinstance(err.value.cause, MarkerError)
