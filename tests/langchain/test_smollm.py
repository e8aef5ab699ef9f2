"""Integration on the embedded SmolLM2-135M: invoke, stream, batch and async through LangChain."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from langchain_core.prompts import ChatPromptTemplate

from dpfusion_chains.llms import ChatDPFusion
from dpfusion_chains.retrievers import mark_private

pytestmark = pytest.mark.slow

RECORD = "Patient Jane Roe, born 4 May 1970, was admitted on 3 March 2021 with pneumonia."
PROMPT = ChatPromptTemplate.from_messages([("system", "Answer from the record in a few words."),
                                           ("human", "Record: {record}\nQuestion: {question}")])


def ask(question: str) -> dict[str, str]:
    return {"record": mark_private(RECORD, unit="rec-7"), "question": question}


def test_invoke_and_stream(smollm: Any) -> None:
    chain = PROMPT | ChatDPFusion(engine=smollm, epsilon=8.0, max_new_tokens=8, seed=1, private_roles=())
    msg = chain.invoke(ask("When was she admitted?"))
    meta = msg.response_metadata["dpfusion"]
    assert meta["units"] == ["rec-7"] and 1 <= meta["tokens"] <= 8
    assert 0 < meta["epsilon"] <= 8.0 + 1e-9
    assert msg.content.strip() and "Jane" not in repr(meta)
    chunks = list(chain.stream(ask("When was she admitted?")))
    assert "".join(c.content for c in chunks) == msg.content  # same seed, same tokens
    assert chunks[-1].response_metadata["dpfusion"]["tokens"] == meta["tokens"]


def test_batch_and_ainvoke(smollm: Any) -> None:
    llm = ChatDPFusion(engine=smollm, beta=0.05, max_new_tokens=6, seed=2, private_roles=())
    chain = PROMPT | llm
    questions = [ask("Why was she admitted?"), ask("What is her birth date?")]
    batched = chain.batch(questions)
    assert all(m.response_metadata["dpfusion"]["units"] == ["rec-7"] for m in batched)
    single = asyncio.run(chain.ainvoke(questions[0]))
    assert single.content == batched[0].content  # one decode loop gives each request its own sampler
