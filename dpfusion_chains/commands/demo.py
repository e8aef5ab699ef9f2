"""`dpfusion demo`: DP-Fusion answers over bundled synthetic records, with the public view and ε."""

from __future__ import annotations

import argparse
import math
import time
from collections import defaultdict

from dpfusion_chains.commands._common import add_engine_options, add_privacy_options, build_engine, settings_from

SYSTEM = "Answer the question using only the record. Be brief."


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="answer questions over bundled synthetic records with DP-Fusion")
    add_engine_options(p)
    add_privacy_options(p)
    p.add_argument("--records", type=int, default=3, help="how many records (one per domain first)")
    p.set_defaults(func=run)


def pick_records(n: int) -> list[dict]:
    from dpfusion_chains.data import DOMAINS, load_records

    by_domain = [load_records(d) for d in DOMAINS]
    picked = [rec for i in range(max(len(x) for x in by_domain)) for recs in by_domain if i < len(recs) for rec in [recs[i]]]
    return picked[:n]


def run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from dpfusion_chains.core.accounting import rdp_to_epsilon
    from dpfusion_chains.core.spans import private

    print("Loading the model (the first run converts the embedded GGUF once, ~1 min on a small CPU)…", flush=True)
    engine = build_engine(args)
    settings = settings_from(args)
    dtype = str(getattr(engine.model, "dtype", "")).removeprefix("torch.")
    print(f"model: {engine.model_name} on {engine.device} ({dtype}); detector: {args.detector}\n")
    rdp_by_alpha: dict[float, float] = defaultdict(float)
    for rec in pick_records(args.records):
        question = next((q for q in rec["questions"] if q["answer_in"] == "public"), rec["questions"][0])
        messages = [{"role": "system", "content": SYSTEM},
                    {"role": "user", "content": ["Record:\n", private(rec["text"], unit=rec["id"]),
                                                 f"\n\nQuestion: {question['question']}"]}]
        print(f"━━ {rec['id']} · {rec['domain']} · {rec['title']}")
        start = time.perf_counter()
        result = None
        with tqdm(total=settings["max_new_tokens"], desc="DP-Fusion", unit="tok", leave=False) as bar:
            for chunk in engine.stream(messages, **settings):
                if chunk.result is not None:
                    result = chunk.result
                else:
                    bar.update(1)
        elapsed = time.perf_counter() - start
        public = result.public_prompt
        body = public[public.find("Record:"):public.rfind("<|im_end|>")] if "Record:" in public else public
        print("public view (what the mechanism protects around):\n  " + body.strip().replace("\n", "\n  "))
        print(f"answer: {result.text.strip()}")
        lam = [x for row in result.lambdas for x in row]
        mean_lam = sum(lam) / len(lam) if lam else 0.0
        print(f"ε = {result.epsilon:.3f} (δ={result.delta:g}, α={result.alpha:g}, {result.epsilon_label}), "
              f"T = {result.tokens} tokens, mean λ = {mean_lam:.2f}, {result.tokens / elapsed:.1f} tok/s\n")
        rdp_by_alpha[result.alpha] += result.rdp
    totals = [rdp_to_epsilon(r, a, args.delta) for a, r in rdp_by_alpha.items() if r > 0]
    if totals:
        print(f"Each record is its own privacy unit and was charged once. Had all calls touched one unit, "
              f"its total would be ε = {min(totals) if len(totals) == 1 else math.inf:.3f} (RDP composed at α).")
    return 0
