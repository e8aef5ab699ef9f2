"""`make eval`: the privacy–utility curve and the candidate-set attack on the embedded model.

    python -m benchmarks.eval_privacy [--records 50] [--tokens 24] [--m 5]

For each setting — redaction only (β = 0), DP-Fusion at several target ε (sound accounting),
the paper's accounting at two β (for comparison; its ε is unproven), and the no-privacy ceiling
— it measures answer accuracy on questions answerable from the public part of the records,
the perplexity of DP paraphrases given the originals, and the success of the candidate-set
attack (perplexity and min-k% attackers) next to the DP bound on any attacker. Writes
benchmarks/results/privacy_utility.{md,json,png}.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results"

SETTINGS: list[tuple[str, dict[str, Any], bool]] = [
    ("redaction only (β=0)", {"beta": 0.0}, False),
    ("DP-Fusion ε=2", {"epsilon": 2.0}, False),
    ("DP-Fusion ε=8", {"epsilon": 8.0}, False),
    ("DP-Fusion ε=32", {"epsilon": 32.0}, False),
    ("DP-Fusion ε=128", {"epsilon": 128.0}, False),
    ("paper acct. β=0.01 (unproven)", {"alpha": 2.0, "beta": 0.01, "accounting": "paper"}, False),
    ("paper acct. β=0.1 (unproven)", {"alpha": 2.0, "beta": 0.1, "accounting": "paper"}, False),
    ("no privacy (ceiling)", {}, True),
]


def fmt_eps(eps: float) -> str:
    return "∞" if math.isinf(eps) else f"{eps:.2f}"


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--records", type=int, default=50)
    parser.add_argument("--paraphrase-records", type=int, default=20)
    parser.add_argument("--tokens", type=int, default=24)
    parser.add_argument("--m", type=int, default=5, help="candidates per attack trial")
    parser.add_argument("--temperature", type=float, default=0.7)
    args = parser.parse_args(argv)

    from dpfusion_chains.core.engine import DPFusionEngine
    from dpfusion_chains.data import load_records
    from dpfusion_chains.evaluation.candidate_attack import build_trials, run_attack
    from dpfusion_chains.evaluation.utility import paraphrase_perplexity, qa_accuracy

    engine = DPFusionEngine.from_default()
    records = load_records()[: args.records]
    trials = build_trials(records, m=args.m, seed=0)
    rows: list[dict[str, Any]] = []
    print(f"model: {engine.model_name}; {len(records)} records, {len(trials)} attack trials (m={args.m}), "
          f"{args.tokens} tokens, temperature {args.temperature}")
    header = f"| setting | ε | QA accuracy | paraphrase PPL | attack (ppl) | attack (min-k) | DP bound |"
    print(header + "\n|---|---|---|---|---|---|---|")
    for label, settings, public in SETTINGS:
        start = time.perf_counter()
        common = {"max_new_tokens": args.tokens, "temperature": args.temperature, "delta": 1e-5, **settings}
        acc, eps_qa = qa_accuracy(engine, records, common, public=public)
        ppl, eps_pp = paraphrase_perplexity(engine, records[: args.paraphrase_records], common, public=public)
        attack = run_attack(engine, trials, common, label, public=public)
        row = {"setting": label, "accounting": settings.get("accounting", "sound"),
               "epsilon": max(eps_qa, eps_pp, attack.epsilon), "qa_accuracy": acc, "paraphrase_ppl": ppl,
               "attack_ppl": attack.rate_ppl, "attack_mink": attack.rate_mink, "bound": attack.bound,
               "trials": attack.trials, "seconds": time.perf_counter() - start}
        rows.append(row)
        print(f"| {label} | {fmt_eps(row['epsilon'])} | {acc:.2f} | {ppl:.2f} | {attack.rate_ppl:.2f} | "
              f"{attack.rate_mink:.2f} | {attack.bound:.2f} |", flush=True)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "privacy_utility.json").write_text(json.dumps(rows, indent=2, default=str))
    lines = [header, "|---|---|---|---|---|---|---|"] + [
        f"| {r['setting']} | {fmt_eps(r['epsilon'])} | {r['qa_accuracy']:.2f} | {r['paraphrase_ppl']:.2f} | "
        f"{r['attack_ppl']:.2f} | {r['attack_mink']:.2f} | {r['bound']:.2f} |" for r in rows]
    note = (f"\n\nModel {engine.model_name}; {len(records)} synthetic records; attack: {len(trials)} trials, "
            f"m={args.m} candidates (chance {1 / args.m:.2f}); ε per call at δ=1e-5; paper-accounting rows use "
            "the DP-Fusion paper's order-α bound and charge, which is unproven (DESIGN §8).\n")
    (RESULTS / "privacy_utility.md").write_text("\n".join(lines) + note)
    plot(rows, RESULTS / "privacy_utility.png")
    return rows


def plot(rows: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sound = [r for r in rows if r["accounting"] == "sound" and 0 < r["epsilon"] < math.inf]
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    xs = [r["epsilon"] for r in sound]
    left.plot(xs, [r["qa_accuracy"] for r in sound], "o-", label="DP-Fusion (sound ε)")
    for r, style in ((rows[0], "--"), (rows[-1], ":")):
        left.axhline(r["qa_accuracy"], linestyle=style, color="gray", label=r["setting"])
    paper = [r for r in rows if r["accounting"] == "paper"]
    left.plot([r["epsilon"] for r in paper], [r["qa_accuracy"] for r in paper], "s", label="paper accounting (unproven ε)")
    left.set_xscale("log"), left.set_xlabel("ε per call (δ=1e-5)"), left.set_ylabel("QA accuracy (public answers)")
    left.legend(fontsize=7)
    right.plot(xs, [r["attack_ppl"] for r in sound], "o-", label="attack success (perplexity)")
    right.plot(xs, [r["attack_mink"] for r in sound], "^-", label="attack success (min-k%)")
    right.plot(xs, [r["bound"] for r in sound], "k--", label="DP bound (any attacker)")
    right.axhline(rows[-1]["attack_ppl"], linestyle=":", color="gray", label="no privacy")
    right.set_xscale("log"), right.set_xlabel("ε per call (δ=1e-5)"), right.set_ylabel("success rate")
    right.legend(fontsize=7)
    fig.suptitle("dpfusion-chains: privacy–utility on synthetic records (SmolLM2-135M)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


if __name__ == "__main__":
    main()
