"""How DP-Fusion's cost grows with the context length and with the number of groups G.

    python -m benchmarks.scaling_bench [--contexts 256 512 1024 2048 4096] [--groups 1 2 4 8]
                                       [--groups-context 1024] [--tokens 16]

For each context length (G=1) and each G (at --groups-context), DP-Fusion calls and plain
`model.generate` calls on the same chat with the records in clear, interleaved. A context length
is a number of prompt tokens: the chat is padded with public background until its plain rendering
has at least that many (a block of background is ~100 tokens, so up to that many more). Per-token decode
time is separated from the prefill by timing each side at 1 and at 1+--tokens sampled tokens (shortest of --repeats).
Writes benchmarks/results/scaling_bench.{json,png} (scaling_bench_cuda.* from a GPU).
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from benchmarks.speed_common import (add_engine_flags, engine_flags, flags_suffix, load_average, load_engine, plain_ids,
                                     record_prompt, run_plain, save, timed)

SETTINGS: dict[str, Any] = {"beta": 0.05, "detector": "whole"}


def prompt_of_length(engine: Any, groups: int, context: int) -> list[dict[str, Any]]:
    """record_prompt over `groups` records, with the least background that brings its plain
    rendering to at least `context` tokens."""
    chars = 0
    while True:
        prompt = record_prompt(groups, min_chars=chars)
        missing = context - plain_ids(engine, prompt).shape[1]
        if missing <= 0:
            return prompt
        # A token of these (ASCII) records takes a character at least, so the least prompt long enough has
        # this many characters at least: asking for them adds a block or more, never more than it has.
        padded = prompt[-1]["content"][:-1]  # record_prompt pads to min_chars, then appends the question
        chars = sum(len(c if isinstance(c, str) else c.text) for c in padded) + missing


def measure(engine: Any, groups: int, context: int, tokens: int, repeats: int) -> dict[str, float] | None:
    """Both sides at this length; None (printed) where the prompt and its tokens exceed the model's window."""
    prompt = prompt_of_length(engine, groups, context)
    ids = plain_ids(engine, prompt)
    if ids.shape[1] + 1 + tokens > engine.context_window:
        print(f"skipped: {ids.shape[1]} prompt tokens and {1 + tokens} more exceed the model's "
              f"{engine.context_window}-token window")
        return None
    best = {"plain_1": float("inf"), "plain_n": float("inf"), "dp_1": float("inf"), "dp_n": float("inf")}
    for _ in range(repeats):  # interleaved, shortest kept: load from other processes hits all alike
        runs = {"plain_1": lambda: run_plain(engine, ids, 1, 0),
                "plain_n": lambda: run_plain(engine, ids, 1 + tokens, 0),
                "dp_1": lambda: engine.generate(prompt, max_new_tokens=1, seed=0, **SETTINGS),
                "dp_n": lambda: engine.generate(prompt, max_new_tokens=1 + tokens, seed=0, **SETTINGS)}
        for name, fn in runs.items():
            best[name] = min(best[name], timed(fn, engine)[0])
    plain_1, plain_n, dp_1, dp_n = best["plain_1"], best["plain_n"], best["dp_1"], best["dp_n"]
    plain_step, dp_step = (plain_n - plain_1) / tokens, (dp_n - dp_1) / tokens
    return {"groups": groups, "prompt_tokens": int(ids.shape[1]), "plain_step_ms": 1e3 * plain_step,
            "dpfusion_step_ms": 1e3 * dp_step, "step_ratio": plain_step / dp_step,
            "plain_prefill_s": plain_1, "dpfusion_prefill_s": dp_1}


def plot(by_context: list[dict[str, float]], by_groups: list[dict[str, float]], path: Path) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib missing (pip install 'dpfusion-chains[plot]'): no PNG written")
        return
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    x = [r["prompt_tokens"] for r in by_context]
    left.plot(x, [r["plain_step_ms"] for r in by_context], "o-", label="plain generate")
    left.plot(x, [r["dpfusion_step_ms"] for r in by_context], "s-", label="DP-Fusion, G=1")
    left.set(xscale="log", xlabel="prompt tokens", ylabel="ms per generated token", title="Context length")
    left.set_xticks(x, [str(n) for n in x])  # the measured lengths, not log-scale minor labels on top of each other
    left.minorticks_off()
    g = [r["groups"] for r in by_groups]
    right.plot(g, [r["plain_step_ms"] for r in by_groups], "o-", label="plain generate")
    right.plot(g, [r["dpfusion_step_ms"] for r in by_groups], "s-", label="DP-Fusion")
    right.set(xlabel="groups G (G+1 rows per step)", ylabel="ms per generated token",
              title=f"Groups (~{by_groups[0]['prompt_tokens']} prompt tokens)" if by_groups else "Groups")
    for ax in (left, right):
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--contexts", type=int, nargs="+", default=[256, 512, 1024, 2048, 4096],
                        help="prompt tokens, at least (G=1)")
    parser.add_argument("--groups", type=int, nargs="+", default=[1, 2, 4, 8])
    parser.add_argument("--groups-context", type=int, default=1024, help="prompt tokens, at least, of the G sweep")
    parser.add_argument("--tokens", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--device", default="auto")
    add_engine_flags(parser)
    args = parser.parse_args(argv)

    engine = load_engine(args.device, **engine_flags(args))
    engine.generate(record_prompt(1), max_new_tokens=2, seed=0, **SETTINGS)  # warm-up
    print(f"model: {engine.model_name} on {engine.device}; {args.tokens} decode tokens; load average {load_average()}")
    print(f"{'G':>3} {'prompt':>7} {'plain ms/tok':>13} {'DP ms/tok':>10} {'ratio':>6} {'plain prefill s':>16} "
          f"{'DP prefill s':>13}")
    by_context = [r for c in args.contexts if (r := measure(engine, 1, c, args.tokens, args.repeats)) is not None]
    by_groups = [r for g in args.groups
                 if (r := measure(engine, g, args.groups_context, args.tokens, args.repeats)) is not None]
    for r in by_context + by_groups:
        print(f"{r['groups']:>3} {r['prompt_tokens']:>7} {r['plain_step_ms']:>13.1f} {r['dpfusion_step_ms']:>10.1f} "
              f"{r['step_ratio']:>6.2f} {r['plain_prefill_s']:>16.2f} {r['dpfusion_prefill_s']:>13.2f}")
    report = {"device": str(engine.device), "tokens": args.tokens, "by_context": by_context, "by_groups": by_groups}
    plot(by_context, by_groups, save("scaling_bench" + flags_suffix(args), report).with_suffix(".png"))
    return report


if __name__ == "__main__":
    main()
