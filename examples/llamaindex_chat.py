"""A private chat over the bundled synthetic records: LlamaIndex's condense_plus_context chat engine
with DP-Fusion on the embedded SmolLM2, ε per turn.

    make example-llamaindex-chat
    python examples/llamaindex_chat.py --user-unit alice     # the user's own messages private too

Each turn retrieves records (marked private by PrivateNodePostprocessor) and answers with them
through DP-Fusion; the question-condensing call of later turns reads only the chat history (the
user's messages and earlier DP answers), so it costs nothing unless --user-unit makes the user's
messages private.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import sys
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

sys.path.insert(0, str(Path(__file__).resolve().parent))

from llama_index.core import Document, Settings, VectorStoreIndex  # noqa: E402
from llamaindex_query_engine import embedding, load_records  # noqa: E402

from dpfusion_chains.callbacks.llama_index import PrivacyBudgetEventHandler  # noqa: E402
from dpfusion_chains.llms.llama_index import DPFusionLlamaLLM  # noqa: E402
from dpfusion_chains.retrievers.llama_index import PrivateNodePostprocessor  # noqa: E402

TURNS = ("What was the working diagnosis of the admitted patient?",
         "Which medication was she started on?",
         "When was she discharged?")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=6)
    parser.add_argument("--turns", type=int, default=2, help=f"how many of the {len(TURNS)} scripted turns")
    parser.add_argument("--epsilon", type=float, default=4.0, help="target ε of one LLM call")
    parser.add_argument("--max-new-tokens", type=int, default=24)
    parser.add_argument("--detector", default="presidio", help="presidio | regex | whole")
    parser.add_argument("--user-unit", default=None, help="privacy unit of the user's own messages")
    parser.add_argument("--seed", type=int, default=None)
    args = parser.parse_args()
    if importlib.util.find_spec("llama_index.embeddings.huggingface") is None:
        raise SystemExit("install the examples extra: pip install 'dpfusion-chains[examples]'")

    llm = DPFusionLlamaLLM(epsilon=args.epsilon, alpha=8.0, max_new_tokens=args.max_new_tokens, temperature=0.7,
                           detector=args.detector, user_unit=args.user_unit, seed=args.seed)
    Settings.llm = llm
    Settings.embed_model = embedding()
    Settings.tokenizer = llm.tokenizer_fn
    handler = PrivacyBudgetEventHandler().attach()

    records = load_records("health", args.records)
    index = VectorStoreIndex.from_documents(
        [Document(text=r["text"], doc_id=r["id"], metadata={"title": r["title"]}) for r in records])
    chat = index.as_chat_engine(chat_mode="condense_plus_context", similarity_top_k=2,
                                node_postprocessors=[PrivateNodePostprocessor(detector=args.detector)])

    for message in TURNS[: args.turns]:
        before = len(handler.calls)
        reply = chat.chat(message)
        turn = handler.queries[-1]
        condensed = [c for c in handler.calls[before:] if c.call_id not in turn["call_ids"]]
        print(f"user: {message}\nassistant: {reply.response.strip()}")
        print(f"   answer ε = {turn['epsilon']:.2f} over {turn['calls']} call(s); records read: "
              f"{', '.join(turn['private_units'])}")
        if condensed:
            print(f"   question condensing: ε = {max(c.epsilon for c in condensed):.2f}")
        print()
    print("ε observed per privacy unit over the conversation:")
    for unit in handler.units():
        print(f"   {unit}: {handler.spent(unit):.2f}")


if __name__ == "__main__":
    main()
