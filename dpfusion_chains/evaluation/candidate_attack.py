"""The candidate-set attack (DP-Fusion paper's evaluation) and the bound DP puts on it.

Game: for each record, one sensitive span (the person's name) is replaced by one of m
candidates chosen uniformly at random; the mechanism's output is shown to an attacker who
knows the rest of the record, the m candidates and the model, and who guesses the candidate.
The attacker here scores each candidate c by the model's likelihood of the output given the
record with c (total log-likelihood, i.e. perplexity) or by the min-k% score (mean of the k %
least likely output tokens), and guesses the best.

Bound. All m variants have the same public view, so the mechanism is (ε, δ)-DP between any two
of them. Write p_j(i) = P[guess i | true j]. DP gives p_i(i) ≤ e^ε·p_j(i) + δ for every j ≠ i;
averaging over j ≠ i and summing over i, with Σ_i p_j(i) = 1 for each j:
    S = Σ_i p_i(i) ≤ e^ε/(m−1) · Σ_j (1 − p_j(j)) + m·δ = e^ε/(m−1) · (m − S) + m·δ,
so the success rate S/m satisfies
    P[success] ≤ (e^ε + (m−1)·δ) / (m − 1 + e^ε),
which is 1/m at ε = 0, δ = 0 and tends to 1 as ε grows. It holds for every attacker.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from typing import Any

from dpfusion_chains.core.spans import build_views, normalize_messages, render_chat
from dpfusion_chains.evaluation.common import continuation_logprobs, private_record, substitute

PARAPHRASE_SYSTEM = "Rewrite the user's record in your own words. Output only the rewritten record."


def success_bound(epsilon: float, delta: float, m: int) -> float:
    """Largest success probability any attacker can have in the m-candidate game under (ε, δ)-DP."""
    if m < 2:
        raise ValueError("the candidate game needs m >= 2 candidates")
    if math.isinf(epsilon):
        return 1.0
    e = math.exp(min(epsilon, 700.0))
    return min(1.0, (e + (m - 1) * delta) / (m - 1 + e))


def wilson_interval(successes: int, trials: int, z: float = 1.959964) -> tuple[float, float]:
    """Wilson score interval for a binomial proportion (Wilson 1927; Newcombe 1998, method 3),
    95 % by default: how far an empirical success rate over few trials is from certain."""
    if trials <= 0 or not 0 <= successes <= trials:
        raise ValueError(f"need 0 <= successes <= trials and trials > 0, got {successes}/{trials}")
    p = successes / trials
    scale = 1 + z * z / trials
    centre = (p + z * z / (2 * trials)) / scale
    half = z * math.sqrt(p * (1 - p) / trials + z * z / (4 * trials * trials)) / scale
    return max(0.0, centre - half), min(1.0, centre + half)


@dataclass
class AttackOutcome:
    setting: str
    epsilon: float
    successes_ppl: int
    successes_mink: int
    trials: int
    bound: float

    @property
    def rate_ppl(self) -> float:
        return self.successes_ppl / self.trials

    @property
    def rate_mink(self) -> float:
        return self.successes_mink / self.trials


def min_k_score(logprobs: Any, k: float = 0.2) -> float:
    values = sorted(logprobs.tolist())
    n = max(1, int(len(values) * k))
    return sum(values[:n]) / n


def _messages(segment: Any) -> list[dict[str, Any]]:
    return [{"role": "system", "content": PARAPHRASE_SYSTEM}, {"role": "user", "content": [segment]}]


def _target_span(record: dict[str, Any]) -> int | None:
    return next((i for i, s in enumerate(record["spans"]) if s["type"] == "PERSON"), None)


def build_trials(records: list[dict[str, Any]], m: int, seed: int) -> list[dict[str, Any]]:
    """One trial per record with a PERSON span: m candidates (the true name first in `candidates`)
    and the index of the one used (uniform)."""
    rng = random.Random(seed)
    names = sorted({r["text"][s["start"]:s["end"]] for r in records for s in r["spans"] if s["type"] == "PERSON"})
    trials = []
    for rec in records:
        idx = _target_span(rec)
        if idx is None:
            continue
        true = rec["text"][rec["spans"][idx]["start"]:rec["spans"][idx]["end"]]
        others = rng.sample([n for n in names if n != true], m - 1)
        candidates = [true] + others
        rng.shuffle(candidates)
        trials.append({"record": rec, "span": idx, "candidates": candidates, "answer": rng.randrange(m)})
    return trials


def run_attack(engine: Any, trials: list[dict[str, Any]], settings: dict[str, Any], label: str,
               seed: int = 0, batch_size: int = 8, public: bool = False) -> AttackOutcome:
    """Generate each trial's output under `settings` (or with the record public, for the no-privacy
    ceiling) and let the attacker guess. ε is the largest ε any trial's call was charged."""
    prompts, variants = [], []
    for t in trials:
        rec = t["record"]
        per_candidate = [substitute(rec["text"], rec["spans"], t["span"], c) for c in t["candidates"]]
        variants.append(per_candidate)
        text, spans = per_candidate[t["answer"]]
        prompts.append(_messages(text if public else private_record(text, spans, rec["id"])))
    results = []
    for start in range(0, len(prompts), batch_size):
        chunk = [{"messages": p, "seed": seed + start + i} for i, p in enumerate(prompts[start:start + batch_size])]
        results.extend(engine.generate_batch(chunk, **settings))
    hits_ppl = hits_mink = 0
    epsilon = 0.0
    for t, per_candidate, res in zip(trials, variants, results):
        epsilon = max(epsilon, res.epsilon if not public else math.inf)
        if not res.token_ids:
            continue
        prompt_ids = [_prompt_ids(engine, text) for text, _ in per_candidate]
        scores = continuation_logprobs(engine, prompt_ids, res.token_ids)
        hits_ppl += int(max(range(len(scores)), key=lambda i: float(scores[i].sum())) == t["answer"])
        hits_mink += int(max(range(len(scores)), key=lambda i: min_k_score(scores[i])) == t["answer"])
    m = len(trials[0]["candidates"]) if trials else 2
    # public-only generation never reads the private text: it is (0, 0)-DP, not (0, δ)
    delta = settings.get("delta", 1e-5) if epsilon > 0 else 0.0
    return AttackOutcome(label, epsilon, hits_ppl, hits_mink, len(trials), success_bound(epsilon, delta, m))


def _prompt_ids(engine: Any, text: str) -> list[int]:
    msgs = normalize_messages(_messages(text))
    return build_views(engine.tokenizer, render_chat(engine.tokenizer, msgs, "whole")).public_ids
