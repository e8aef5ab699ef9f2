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

from benchmarks.goals import RESULTS

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


HEADER = "| setting | ε | QA accuracy | paraphrase PPL | attack (ppl) [95 % CI] | attack (min-k) [95 % CI] | DP bound |"
RULE = "|---|---|---|---|---|---|---|"


def fmt_eps(eps: float) -> str:
    return "∞" if math.isinf(eps) else f"{eps:.2f}"


def fmt_rate(rate: float, trials: int) -> str:
    """An attack success rate with its Wilson 95 % interval (few trials: the interval matters)."""
    from dpfusion_chains.evaluation.candidate_attack import wilson_interval

    low, high = wilson_interval(round(rate * trials), trials)
    return f"{rate:.2f} [{low:.2f}, {high:.2f}]"


def table_row(r: dict[str, Any]) -> str:
    return (f"| {r['setting']} | {fmt_eps(float(r['epsilon']))} | {r['qa_accuracy']:.2f} | {r['paraphrase_ppl']:.2f} | "
            f"{fmt_rate(r['attack_ppl'], r['trials'])} | {fmt_rate(r['attack_mink'], r['trials'])} | {r['bound']:.2f} |")


def render(rows: list[dict[str, Any]], meta: dict[str, Any]) -> None:
    """Write privacy_utility.md and .png from measured rows."""
    note = (f"\n\nModel {meta['model']}; {meta['records']} synthetic records, {meta['tokens']} tokens per output at "
            f"temperature {meta['temperature']}; attack: {meta['trials']} trials, m={meta['m']} candidates (chance "
            f"{1 / meta['m']:.2f}), Wilson 95 % intervals; ε per call at δ=1e-5; paper-accounting rows use the "
            "DP-Fusion paper's order-α bound and charge, which is unproven (DESIGN §8).\n")
    (RESULTS / "privacy_utility.md").write_text("\n".join([HEADER, RULE] + [table_row(r) for r in rows]) + note)
    plot(rows, RESULTS / "privacy_utility.png")


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--records", type=int, default=50)
    parser.add_argument("--paraphrase-records", type=int, default=20)
    parser.add_argument("--tokens", type=int, default=24)
    parser.add_argument("--m", type=int, default=5, help="candidates per attack trial")
    parser.add_argument("--temperature", type=float, default=0.7)
    parser.add_argument("--render-only", action="store_true",
                        help="rewrite the table and plot from results/privacy_utility.json (no model run)")
    args = parser.parse_args(argv)
    if args.render_only:
        saved = json.loads((RESULTS / "privacy_utility.json").read_text())
        render(saved["rows"], saved["meta"])
        return saved["rows"]

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
    print(HEADER + "\n" + RULE)
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
        print(table_row(row), flush=True)
    meta = {"model": engine.model_name, "records": len(records), "trials": len(trials), "m": args.m,
            "tokens": args.tokens, "temperature": args.temperature}
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "privacy_utility.json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=2, default=str))
    render(rows, meta)
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
    from dpfusion_chains.evaluation.candidate_attack import wilson_interval

    for key, style, name in (("attack_ppl", "o-", "perplexity"), ("attack_mink", "^-", "min-k%")):
        rates = [r[key] for r in sound]
        spans = [wilson_interval(round(r[key] * r["trials"]), r["trials"]) for r in sound]
        errors = [[rate - lo for rate, (lo, _) in zip(rates, spans)], [hi - rate for rate, (_, hi) in zip(rates, spans)]]
        right.errorbar(xs, rates, yerr=errors, fmt=style, capsize=3, label=f"attack success ({name}), 95 % CI")
    right.plot(xs, [r["bound"] for r in sound], "k--", label="DP bound (any attacker)")
    right.axhline(rows[-1]["attack_ppl"], linestyle=":", color="gray", label="no privacy")
    right.set_xscale("log"), right.set_xlabel("ε per call (δ=1e-5)"), right.set_ylabel("success rate")
    right.legend(fontsize=7)
    fig.suptitle("dpfusion-chains: privacy–utility on synthetic records (SmolLM2-135M)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


if __name__ == "__main__":
    main()
