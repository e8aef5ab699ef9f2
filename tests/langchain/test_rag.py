"""A LangChain RAG chain end to end on tiny engines: ε everywhere it should be, canaries nowhere."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from langchain_core.documents import Document
from langchain_core.prompts import ChatPromptTemplate
from langchain_core.retrievers import BaseRetriever
from langchain_core.runnables import RunnablePassthrough

from dpfusion_chains import PrivacyBudget
from dpfusion_chains.callbacks import LeakGuardCallbackHandler, PrivacyBudgetCallbackHandler
from dpfusion_chains.core.errors import DPFusionError
from dpfusion_chains.llms import ChatDPFusion
from dpfusion_chains.retrievers import PrivateRetriever

from .conftest import CANARIES

PROMPT = ChatPromptTemplate.from_messages([
    ("system", "Answer the question from the record."),
    ("human", "Record:\n{context}\n\nQuestion: {question}"),
])


class ListRetriever(BaseRetriever):
    """Returns the documents whose id is in the query's ids (a deterministic stand-in for search)."""

    docs: list[Document]

    def _get_relevant_documents(self, query: str, *, run_manager: Any) -> list[Document]:
        return [d for d in self.docs if d.metadata["source"] in query] or self.docs[:1]


def records(a: str = CANARIES[0], b: str = CANARIES[1]) -> list[Document]:
    return [Document(page_content=f"Patient {a} was admitted on 3 March 2021 with asthma.",
                     metadata={"source": "rec-1"}),
            Document(page_content=f"Customer {b} ordered four chairs, invoice 9912.", metadata={"source": "rec-2"})]


def rag_chain(llm: ChatDPFusion, docs: list[Document]) -> Any:
    retriever = PrivateRetriever(base_retriever=ListRetriever(docs=docs), unit_key="source")
    fmt = (lambda ds: "\n\n".join(d.page_content for d in ds))
    return {"context": retriever | fmt, "question": RunnablePassthrough()} | PROMPT | llm


def test_rag_end_to_end(engine: Any) -> None:
    budget = PrivacyBudget(epsilon=1000.0, delta=1e-5, alpha=2.0, ledger="memory://")
    guard = LeakGuardCallbackHandler(CANARIES, mode="record")
    llm = ChatDPFusion(engine=engine, max_new_tokens=4, seed=0, trace_public_only=True, budget=budget,
                       private_roles=(), callbacks=[guard])
    handler = PrivacyBudgetCallbackHandler(budget=budget)
    chain = rag_chain(llm, records())
    questions = ["rec-1: when was the patient admitted?", "rec-2: what was ordered?", "rec-1 rec-2: compare"]
    answers = [chain.invoke(q, config={"callbacks": [handler]}) for q in questions]
    metas = [a.response_metadata["dpfusion"] for a in answers]
    assert [m["units"] for m in metas] == [["rec-1"], ["rec-2"], ["rec-1", "rec-2"]]
    assert all(m["epsilon"] > 0 and m["tokens"] == 4 for m in metas)
    # The handler's totals are the sum of the calls; per unit they agree with the budget's ledger.
    assert handler.calls == 3
    assert handler.total_epsilon == pytest.approx(sum(m["epsilon"] for m in metas))
    for unit in ("rec-1", "rec-2"):
        assert handler.unit_epsilon(unit) == pytest.approx(budget.spent(unit))
    # Nothing private in metadata, or in anything the chat model's callbacks received.
    assert all(c not in repr(a.response_metadata) for a in answers for c in CANARIES)
    assert guard.events >= 2 * 3  # start and end of every call: the guard did look
    guard.assert_clean()


def test_without_trace_public_only_the_guard_catches_the_prompt(engine: Any) -> None:
    guard = LeakGuardCallbackHandler(CANARIES, mode="record")
    llm = ChatDPFusion(engine=engine, max_new_tokens=2, seed=0, callbacks=[guard])
    rag_chain(llm, records()).invoke("rec-1: when?")
    assert {leak.event for leak in guard.leaks} == {"on_chat_model_start"}
    assert all(CANARIES[0] not in str(leak) for leak in guard.leaks)  # reports never quote the text


def test_errors_carry_no_private_text(engine: Any) -> None:
    budget = PrivacyBudget(epsilon=12.0, delta=1e-5, alpha=2.0, ledger="memory://")
    llm = ChatDPFusion(engine=engine, max_new_tokens=8, seed=0, budget=budget, beta=5.0, trace_public_only=True)
    with pytest.raises(DPFusionError) as info:  # the budget cannot fit 8 tokens at this bound
        rag_chain(llm, records()).invoke("rec-1: when?")
    text = repr(info.value) + str(info.value) + repr(info.value.__cause__) + repr(info.value.__context__)
    assert all(c not in text for c in CANARIES)


def test_beta_zero_answer_does_not_depend_on_the_private_text(sensitive_engine: Any) -> None:
    def answer(beta: float, secret: str, seed: int) -> str:
        llm = ChatDPFusion(engine=sensitive_engine, max_new_tokens=4, seed=seed, beta=beta, private_roles=())
        return rag_chain(llm, records(a=secret)).invoke("rec-1: who is the patient?").content

    other = "Bartholomew Quince-Harrington of Lower Wensleydale"
    for seed in range(2):
        assert answer(0.0, CANARIES[0], seed) == answer(0.0, other, seed)
    # Control: with a loose bound the same comparison does see the private text.
    assert any(answer(5.0, CANARIES[0], s) != answer(5.0, other, s) for s in range(3))


def test_public_trace_when_streaming_and_async(engine: Any) -> None:
    guard = LeakGuardCallbackHandler(CANARIES, mode="record")
    handler = PrivacyBudgetCallbackHandler()
    llm = ChatDPFusion(engine=engine, max_new_tokens=3, seed=0, trace_public_only=True, callbacks=[guard])
    chain = rag_chain(llm, records())
    streamed = "".join(c.content for c in llm.stream(PROMPT.invoke({"context": records()[0].page_content,
                                                                     "question": "who?"})))
    assert streamed  # the model got the private text back from the public copies

    async def run() -> Any:
        return await chain.ainvoke("rec-2: what?", config={"callbacks": [handler]})

    msg = asyncio.run(run())
    assert msg.response_metadata["dpfusion"]["units"] == ["rec-2", "user"]
    assert handler.calls == 1
    guard.assert_clean()
