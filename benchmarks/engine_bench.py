"""DP-Fusion decoding speed against plain `model.generate`, measured side by side in one run.

    python -m benchmarks.engine_bench [--tokens 32] [--groups 1 2 4] [--repeats 3]

Same model, same prompt for each G (a ~400-token question over G private records; plain
`generate` gets the same chat with the records in clear), same number of sampled tokens (EOS
ignored on both sides); prefill included on both sides. The runs are interleaved (plain and
DP-Fusion for G=1, G=2, … then again) and the best of --repeats is kept, so that load from other processes hits
both sides alike. Prints tokens/s for each, their ratio, the share of decode-step time spent in
the λ search and mixing, the process's peak memory and the peak RSS of `dpfusion demo`.
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import time
from typing import Any

from benchmarks.speed_common import (StageTimers, add_engine_flags, cold, engine_flags, flags_suffix, load_average,
                                     load_engine, peak_memory_mb, plain_ids, record_prompt, run_plain, save, timed)


def run_dpfusion(engine: Any, timers: StageTimers, prompt: list[dict[str, Any]], groups: int, tokens: int,
                 seed: int) -> dict[str, float]:
    timers.reset()
    cold(engine)  # plain `generate` has no prefix store: each run computes its whole prompt
    start = time.perf_counter()
    result = engine.generate(prompt, beta=0.05, max_new_tokens=tokens, seed=seed, detector="whole")
    elapsed = time.perf_counter() - start
    assert result.tokens == tokens and result.groups == groups, (result.tokens, result.groups)
    return {"mixing_s": timers.mixing, "prefill_s": timers.prefill, "elapsed_s": elapsed,
            "prompt_tokens": result.prompt_tokens}


def demo_peak_rss_mb() -> float:
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    cmd = [sys.executable, "-m", "dpfusion_chains.cli", "demo", "--records", "1", "--max-new-tokens", "8"]
    subprocess.run(cmd, check=True, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024.0


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tokens", type=int, default=32)
    parser.add_argument("--groups", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--no-demo", action="store_true", help="skip the demo peak-RSS measurement")
    add_engine_flags(parser)
    args = parser.parse_args(argv)

    # Measured first: a child's peak RSS counts the parent's memory at fork, so the parent must be small.
    demo_rss = None if args.no_demo else demo_peak_rss_mb()
    engine = load_engine(args.device, **engine_flags(args))
    prompts = {g: record_prompt(g) for g in args.groups}
    inputs = {g: plain_ids(engine, prompts[g]) for g in args.groups}  # same text, nothing private
    with StageTimers(engine.device) as timers:
        engine.generate(prompts[args.groups[0]], beta=0.05, max_new_tokens=2, seed=0, detector="whole")  # warm-up
        run_plain(engine, inputs[args.groups[0]], 2, 0)
        plain_best = {g: float("inf") for g in args.groups}
        dp_best: dict[int, dict[str, float]] = {}
        for r in range(args.repeats):  # interleaved: every configuration sees the same machine load
            for g in args.groups:
                plain_best[g] = min(plain_best[g], timed(lambda: run_plain(engine, inputs[g], args.tokens, r))[0])
                run = run_dpfusion(engine, timers, prompts[g], g, args.tokens, r)
                if g not in dp_best or run["elapsed_s"] < dp_best[g]["elapsed_s"]:
                    dp_best[g] = run
    print(f"model: {engine.model_name} on {engine.device}; {args.tokens} tokens, best of {args.repeats}; "
          f"load average {load_average()}")
    print(f"{'groups':>6} {'prompt':>7} {'plain tok/s':>12} {'DP-Fusion tok/s':>16} {'ratio':>6} "
          f"{'λ+mix / step time':>18}")
    rows = []
    for g in args.groups:
        run = dp_best[g]
        steps_s = run["elapsed_s"] - run["prefill_s"]
        plain = args.tokens / plain_best[g]
        row = {"groups": g, "prompt_tokens": int(inputs[g].shape[1]), "public_view_tokens": run["prompt_tokens"],
               "plain_tokens_per_s": plain, "dpfusion_tokens_per_s": args.tokens / run["elapsed_s"],
               "ratio": plain_best[g] / run["elapsed_s"], "lambda_share_of_step_time": run["mixing_s"] / steps_s,
               "lambda_ms_per_token": 1e3 * run["mixing_s"] / args.tokens,
               "step_ms": 1e3 * steps_s / args.tokens, "prefill_s": run["prefill_s"]}
        rows.append(row)
        print(f"{g:>6} {row['prompt_tokens']:>7} {plain:>12.2f} {row['dpfusion_tokens_per_s']:>16.2f} "
              f"{row['ratio']:>6.2f} {row['lambda_share_of_step_time']:>17.1%}")
    report: dict[str, Any] = {"device": str(engine.device), "tokens": args.tokens, "repeats": args.repeats,
                              "rows": rows, **peak_memory_mb(engine.device)}
    print(f"peak RSS of this benchmark process: {report['peak_rss_mb']:.0f} MB")
    if demo_rss is not None:
        report["demo_peak_rss_mb"] = demo_rss
        print(f"peak RSS of `dpfusion demo --records 1`: {report['demo_peak_rss_mb']:.0f} MB")
    save("engine_bench" + flags_suffix(args), report)
    return report


if __name__ == "__main__":
    main()
