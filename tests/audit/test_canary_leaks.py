"""Canary leak sweep across the whole surface (issue 9): random canaries in private documents must
never appear in outputs at ε ≈ 0, nor — at any ε — in response metadata, callback payloads
(trace_public_only), instrumentation events, ledger rows, exceptions or DEBUG log records."""

import logging
import secrets
import traceback

import pytest

from dpfusion_chains.budget import BudgetExhaustedError, PrivacyBudget
from dpfusion_chains.callbacks.leak_guard import find_canaries
from dpfusion_chains.core.errors import ContextTooLongError, MarkerError
from dpfusion_chains.core.markers import mark, parse_marked
from dpfusion_chains.core.spans import private

TINY_BETA = 1e-9  # b ≈ 2e-9: the output distribution is the public one up to ~1e-9


def make_canaries() -> dict[str, str]:
    h = secrets.token_hex(4).upper()
    digits = str(secrets.randbelow(10**6)).zfill(6)
    return {"name": f"Quillonbrae Vashti{h.lower()}", "record": f"QX-{h}-{digits}",
            "phone": f"+44 7700 9{digits}", "account": f"GB{digits}ZZ{h}"}


@pytest.fixture()
def canaries():
    return make_canaries()


@pytest.fixture(scope="module")
def engine():
    from dpfusion_chains.testing import tiny_engine

    return tiny_engine(seed=5, detector="whole")


def document(c: dict[str, str]) -> str:
    return (f"Patient {c['name']}, record {c['record']}, phone {c['phone']}, account {c['account']}. "
            f"Diagnosis: seasonal asthma, treated with an inhaler.")


def leaks(obj, c) -> list:
    return find_canaries(obj, list(c.values()))


def ask(c, unit="doc-1"):
    return [{"role": "system", "content": "Answer from the record."},
            {"role": "user", "content": ["Record: ", private(document(c), unit=unit), "\nWhat was the diagnosis?"]}]


def test_engine_surface(engine, canaries, tmp_path, caplog):
    caplog.set_level(logging.DEBUG)
    budget = PrivacyBudget(epsilon=50.0, delta=1e-5, alpha=8.0, ledger=f"sqlite:///{tmp_path / 'ledger.db'}")
    tiny = dict(beta=TINY_BETA, max_new_tokens=12)
    results = [engine.generate(ask(canaries), seed=0, budget=budget, **tiny)]
    results.append(list(engine.stream(ask(canaries), seed=1, budget=budget, **tiny))[-1].result)
    results += engine.generate_batch([ask(canaries), {"messages": ask(canaries, "doc-2"), "seed": 9}], seed=2,
                                     budget=budget, **tiny)
    results.append(engine.paraphrase(document(canaries), unit="doc-3", seed=3, **tiny))
    for r in results:  # at ε ≈ 0 not even the output may carry a canary
        assert not leaks(r.text, canaries)
        assert not leaks(r.metadata(), canaries) and not leaks(r.public_prompt, canaries)
        assert not leaks(repr(r), canaries)
    default = engine.generate(ask(canaries), seed=4, budget=budget, epsilon=None, max_new_tokens=8)
    assert not leaks(default.metadata(), canaries)
    # ledger rows and the database files themselves
    assert not leaks([e.__dict__ if hasattr(e, "__dict__") else e for e in budget.entries()], canaries)
    raw = b"".join(p.read_bytes() for p in tmp_path.iterdir() if p.is_file())
    assert not any(v.encode() in raw for v in canaries.values())
    assert not leaks([r.getMessage() for r in caplog.records], canaries)


def test_exceptions_carry_no_private_text(engine, canaries, caplog):
    caplog.set_level(logging.DEBUG)
    errors = []
    with pytest.raises(ContextTooLongError) as e1:
        engine.generate(ask({k: v * 400 for k, v in canaries.items()}), beta=0.01)
    errors.append(e1.value)
    tampered = mark(document(canaries), unit="doc-1").replace("asthma", "asthmx")
    with pytest.raises(MarkerError) as e2:
        parse_marked(tampered)
    errors.append(e2.value)
    with pytest.raises(MarkerError) as e3:
        parse_marked(mark(document(canaries), unit="doc-1")[:60])
    errors.append(e3.value)
    tight = PrivacyBudget(epsilon=0.5, delta=1e-5, alpha=64.0, ledger="memory://")
    with pytest.raises(BudgetExhaustedError) as e4:
        engine.generate(ask(canaries), beta=0.5, max_new_tokens=64, budget=tight)
    errors.append(e4.value)
    for err in errors:
        text = "".join(traceback.format_exception(err)) + repr(err)
        assert not leaks(text, canaries), type(err).__name__
    assert not leaks([r.getMessage() for r in caplog.records], canaries)


def test_langchain_surface(engine, canaries, caplog):
    pytest.importorskip("langchain_core")
    from langchain_core.documents import Document
    from langchain_core.prompts import ChatPromptTemplate

    from dpfusion_chains.callbacks import LeakGuardCallbackHandler, PrivacyBudgetCallbackHandler
    from dpfusion_chains.llms import ChatDPFusion, DPFusionLLM
    from dpfusion_chains.retrievers import mark_private
    from dpfusion_chains.retrievers.langchain_privatizer import DPDocumentPrivatizer

    caplog.set_level(logging.DEBUG)
    guard = LeakGuardCallbackHandler(list(canaries.values()))
    spent = PrivacyBudgetCallbackHandler()
    chat = ChatDPFusion(engine=engine, trace_public_only=True, beta=TINY_BETA, max_new_tokens=10, seed=0,
                        callbacks=[guard, spent])
    doc = mark_private(Document(page_content=document(canaries), metadata={"source": "doc-1"}))
    prompt = ChatPromptTemplate.from_messages([("system", "Answer from the context."),
                                               ("human", "{context}\n\nQuestion: what was the diagnosis?")])
    chain = prompt | chat
    outputs = [chain.invoke({"context": doc.page_content})]
    outputs.append(chain.batch([{"context": doc.page_content}] * 2)[0])
    streamed = list(chain.stream({"context": doc.page_content}))
    for msg in outputs + streamed:
        assert not leaks(msg.content, canaries)
        assert not leaks(msg.response_metadata, canaries) and not leaks(msg.usage_metadata, canaries)
    guard.assert_clean()
    assert not leaks(spent.totals(), canaries)
    # DPFusionLLM has no public-only tracing (documented): its callbacks see the prompt as given
    llm = DPFusionLLM(engine=engine, beta=TINY_BETA, max_new_tokens=8, seed=1)
    generation = llm.generate([f"Context: {doc.page_content}\nDiagnosis?"]).generations[0][0]
    assert not leaks(generation.text, canaries) and not leaks(generation.generation_info, canaries)
    privatized = DPDocumentPrivatizer(engine, level="dp", beta=TINY_BETA, max_new_tokens=8, seed=0) \
        .transform_documents([Document(page_content=document(canaries), metadata={"source": "doc-9"})])
    assert not leaks(privatized[0].page_content, canaries) and not leaks(privatized[0].metadata, canaries)
    assert not leaks([r.getMessage() for r in caplog.records], canaries)


def test_llamaindex_surface(engine, canaries, caplog):
    pytest.importorskip("llama_index.core")
    from llama_index.core import Document, MockEmbedding, VectorStoreIndex
    from llama_index.core.schema import TextNode

    from dpfusion_chains.callbacks.llama_index import PrivacyBudgetEventHandler
    from dpfusion_chains.llms.llama_index import DPFusionLlamaLLM
    from dpfusion_chains.retrievers.llama_index import PrivateNodePostprocessor
    from dpfusion_chains.retrievers.llama_index_privatizer import DPNodePrivatizer

    caplog.set_level(logging.DEBUG)
    handler = PrivacyBudgetEventHandler().attach()
    try:
        llm = DPFusionLlamaLLM(engine=engine, beta=TINY_BETA, max_new_tokens=10, seed=0)
        index = VectorStoreIndex.from_documents([Document(text=document(canaries), doc_id="doc-1")],
                                                embed_model=MockEmbedding(embed_dim=8))
        for mode in ("compact", "refine", "tree_summarize", "simple_summarize"):
            qe = index.as_query_engine(llm=llm, node_postprocessors=[PrivateNodePostprocessor()], response_mode=mode)
            response = qe.query("What was the diagnosis?")
            assert not leaks(str(response), canaries), mode
            assert not leaks(response.metadata, canaries), mode
        assert not leaks(handler.totals(), canaries) and not leaks(handler.calls, canaries)
        nodes = DPNodePrivatizer(engine=engine, beta=TINY_BETA, max_new_tokens=8, seed=0)(
            [TextNode(text=document(canaries), id_="n-1", metadata={"ref_doc_id": "doc-5"})])
        assert not leaks(nodes[0].get_content(), canaries) and not leaks(nodes[0].metadata, canaries)
    finally:
        handler.detach()
    # LlamaIndex's own retriever logs retrieved node text at DEBUG (llama_index.core.indices.utils),
    # before any postprocessor runs: the framework's logger, outside this library. Ours stay clean.
    ours = [r.getMessage() for r in caplog.records if r.name.startswith("dpfusion_chains")]
    assert not leaks(ours, canaries)
