"""Utility of DP-Fusion outputs: answer accuracy on questions answerable from the public part of
a record, and the perplexity of DP paraphrases (how likely the model finds the paraphrase as a
rewrite of the original record; lower is more faithful)."""

from __future__ import annotations

import math
import re
from typing import Any

from dpfusion_chains.evaluation.candidate_attack import PARAPHRASE_SYSTEM, _prompt_ids
from dpfusion_chains.evaluation.common import continuation_logprobs, private_record

QA_SYSTEM = "Answer the question using only the record. Be brief."


def answer_matches(output: str, answer: str) -> bool:
    """The reference answer's words appear, in order and contiguously, in the output (case and
    punctuation ignored)."""
    out = " ".join(re.sub(r"[^a-z0-9]+", " ", output.lower()).split())
    ref = " ".join(re.sub(r"[^a-z0-9]+", " ", answer.lower()).split())
    return bool(ref) and f" {ref} " in f" {out} "


def _record_part(rec: dict[str, Any], public: bool) -> Any:
    return rec["text"] if public else private_record(rec["text"], rec["spans"], rec["id"])


def qa_accuracy(engine: Any, records: list[dict[str, Any]], settings: dict[str, Any], public: bool = False,
                seed: int = 0, batch_size: int = 8) -> tuple[float, float]:
    """(accuracy, largest ε charged) on each record's first question whose answer is in the public part."""
    items = []
    for rec in records:
        q = next((q for q in rec["questions"] if q["answer_in"] == "public"), None)
        if q is not None:
            items.append((rec, q))
    hits, epsilon = 0, 0.0
    for start in range(0, len(items), batch_size):
        chunk = items[start:start + batch_size]
        batch = [{"messages": [{"role": "system", "content": QA_SYSTEM},
                               {"role": "user", "content": ["Record:\n", _record_part(rec, public),
                                                            f"\n\nQuestion: {q['question']}"]}],
                  "seed": seed + start + i} for i, (rec, q) in enumerate(chunk)]
        for (rec, q), res in zip(chunk, engine.generate_batch(batch, **settings)):
            hits += answer_matches(res.text, q["answer"])
            epsilon = max(epsilon, res.epsilon)
    return hits / max(1, len(items)), (math.inf if public else epsilon)


def paraphrase_perplexity(engine: Any, records: list[dict[str, Any]], settings: dict[str, Any], public: bool = False,
                          seed: int = 0, batch_size: int = 8) -> tuple[float, float]:
    """(perplexity of the paraphrases given the original records, largest ε charged)."""
    total_logprob, total_tokens, epsilon = 0.0, 0, 0.0
    for start in range(0, len(records), batch_size):
        chunk = records[start:start + batch_size]
        batch = [{"messages": [{"role": "system", "content": PARAPHRASE_SYSTEM},
                               {"role": "user", "content": [_record_part(rec, public)]}],
                  "seed": seed + start + i} for i, rec in enumerate(chunk)]
        for rec, res in zip(chunk, engine.generate_batch(batch, **settings)):
            epsilon = max(epsilon, res.epsilon)
            if res.token_ids:
                (lp,) = continuation_logprobs(engine, [_prompt_ids(engine, rec["text"])], res.token_ids)
                total_logprob += float(lp.sum())
                total_tokens += len(res.token_ids)
    ppl = math.exp(-total_logprob / total_tokens) if total_tokens else math.inf
    return ppl, (math.inf if public else epsilon)
