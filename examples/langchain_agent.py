"""A privacy-aware LangChain agent: a record-search tool whose results are private, answers under DP.

Design. SmolLM2-135M cannot emit reliable tool calls, and a tool call written by the model would
be text generated from private context. So the agent's *planning* is an LCEL step that reads
only the user's question (a keyword router: a record id -> `lookup_record`, otherwise
`search_records`), and the model only writes the final answer:

    question -> plan (tool call) -> run tool (ToolMessage, marked private per record) -> ChatDPFusion

The observation goes back to the model in the user turn ("Result of lookup_record: ... Question:
..."): SmolLM2 was not trained on `tool` turns and ignores them (a model whose chat template knows
tools can take the ToolMessage itself; ChatDPFusion treats `tool` messages as private by default).
The tool output is wrapped with `mark_private` for each record, so `ChatDPFusion` charges each
record it saw; the user's own message is private too (unit = the user id). A `PrivacyBudget`
with ``on_exhausted="redact"`` caps every record: once a record has spent its ε, later answers
see only its public view (placeholders) and spend nothing more on it. Offline;
`make example-langchain-agent`.

    python examples/langchain_agent.py [--epsilon 4] [--budget 9] [--max-new-tokens 32] [--detector presidio]
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the RAG example's embedding and index helpers

from langchain_rag import MiniLMEmbeddings, build_retriever, record_documents  # noqa: E402

from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, SystemMessage, ToolMessage  # noqa: E402
from langchain_core.runnables import Runnable, RunnableLambda  # noqa: E402
from langchain_core.tools import BaseTool, tool  # noqa: E402

from dpfusion_chains import PrivacyBudget  # noqa: E402
from dpfusion_chains.callbacks import PrivacyBudgetCallbackHandler  # noqa: E402
from dpfusion_chains.data import load_records  # noqa: E402
from dpfusion_chains.llms import ChatDPFusion  # noqa: E402
from dpfusion_chains.retrievers import mark_private  # noqa: E402

SYSTEM = ("You are a records assistant. A tool has looked up the relevant records for you. Answer the "
          "question from the tool result in one short sentence.")
RECORD_ID = re.compile(r"\brec-\d{3}\b")


def make_tools(retriever: Runnable, records: dict[str, dict[str, Any]]) -> dict[str, BaseTool]:
    @tool
    def search_records(query: str) -> str:
        """Search the records by meaning; returns the best matches (private)."""
        return "\n\n".join(d.page_content for d in retriever.invoke(query))

    @tool
    def lookup_record(record_id: str) -> str:
        """Return one record by its id (private)."""
        record = records.get(record_id)
        if record is None:
            return f"No record {record_id}."
        return mark_private(record["text"], unit=record_id)

    return {t.name: t for t in (search_records, lookup_record)}


def plan(question: str) -> AIMessage:
    """The agent's tool choice, from the question alone (never from private text)."""
    match = RECORD_ID.search(question)
    call = ({"name": "lookup_record", "args": {"record_id": match.group(0)}} if match
            else {"name": "search_records", "args": {"query": question}})
    text = f"Calling {call['name']}({', '.join(f'{k}={v!r}' for k, v in call['args'].items())})."
    return AIMessage(content=text, tool_calls=[{**call, "id": "call-0", "type": "tool_call"}])


def build_agent(llm: ChatDPFusion, tools: dict[str, BaseTool], user: str) -> Runnable:
    def act(state: dict[str, Any]) -> list[BaseMessage]:
        call = state["plan"].tool_calls[0]
        result: ToolMessage = tools[call["name"]].invoke(call)  # a ToolCall in -> a ToolMessage out
        observation = f"Result of {call['name']}:\n{result.content}\n\nQuestion: {state['question']}"
        return [SystemMessage(SYSTEM), HumanMessage(observation)]  # marked record text passes through as is

    steps = RunnableLambda(lambda q: {"question": q, "plan": plan(q)}) | RunnableLambda(act)
    return steps | llm.bind(unit=user)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--epsilon", type=float, default=4.0, help="ε target per answer")
    p.add_argument("--budget", type=float, default=9.0, help="ε budget per record and per user")
    p.add_argument("--max-new-tokens", type=int, default=32)
    p.add_argument("--detector", default="presidio", help="presidio | regex | whole")
    p.add_argument("--temperature", type=float, default=0.7, help="sampling temperature (> 0: DP must sample)")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)

    records = {r["id"]: r for r in load_records()}
    print("Indexing the bundled synthetic records with all-MiniLM-L6-v2 ...")
    retriever = build_retriever(MiniLMEmbeddings(), record_documents(), k=1)
    budget = PrivacyBudget(epsilon=args.budget, delta=1e-5, alpha=8.0, ledger="memory://", on_exhausted="redact")
    llm = ChatDPFusion(epsilon=args.epsilon, max_new_tokens=args.max_new_tokens, seed=args.seed,
                       temperature=args.temperature, detector=args.detector, budget=budget, trace_public_only=True)
    handler = PrivacyBudgetCallbackHandler(budget=budget)
    agent = build_agent(llm, make_tools(retriever, records), user="alice")
    questions = [
        "What was the working diagnosis in rec-001?",
        "Which medication was the patient in rec-001 started on?",
        "What did the court decide in the unfair dismissal claim?",
        "When was the patient in rec-001 admitted?",
        "Who was the attending physician in rec-001?",  # rec-001 is out of budget by now: redacted
    ]
    print(f"Loading {llm.model_label} ...")
    for question in questions:
        msg = agent.invoke(question, config={"callbacks": [handler]})
        meta = msg.response_metadata["dpfusion"]
        print(f"\nQ: {question}\nA: {msg.content.strip()}")
        print(f"   ε = {meta['epsilon']:.3f} over {meta['tokens']} tokens; charged {meta['units'] or 'nothing'}"
              + (f"; redacted (budget spent): {meta['redacted_units']}" if meta["redacted_units"] else ""))

    print(f"\nBudget per unit (ε limit {args.budget:g}, δ = 1e-5, α = 8):")
    for unit in sorted(budget.units()):
        print(f"  {unit}: spent {budget.spent(unit):.3f}, remaining {budget.remaining(unit):.3f}")
    print(f"Handler: {handler.calls} calls, summed ε = {handler.total_epsilon:.3f}")


if __name__ == "__main__":
    main()
