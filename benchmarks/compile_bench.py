"""Eager vs compiled decode steps (static cache + torch.compile), measured side by side in one run.

    python -m benchmarks.compile_bench [--tokens 32] [--groups 1] [--repeats 3] [--device auto]

Same model object, same prompt, same seed, same number of sampled tokens (EOS ignored) for both
engines; the only difference is `compile=False` vs `compile=True`. Reports the one-off compile
time (the first compiled call minus an eager call of the same size), tokens/s of both at steady
state (best of --repeats, interleaved) next to plain `model.generate` on the same chat with the
records in clear, the ratios, and whether both DP-Fusion engines sampled the same tokens (in how
many of the repeats, and from which token on where not: the two paths' products and sums round
differently, and a draw changes where two candidates tie to within that rounding, core.sampling).
"""

from __future__ import annotations

import argparse
from typing import Any

from benchmarks.speed_common import (load_average, load_engine, peak_memory_mb, plain_ids, record_prompt, run_plain,
                                     save, timed)
from dpfusion_chains.core.prefix_cache import common_length


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tokens", type=int, default=32)
    parser.add_argument("--groups", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="auto")
    args = parser.parse_args(argv)

    eager = load_engine(args.device, compile=False)
    compiled = type(eager)(eager.model, eager.tokenizer, device=eager.device, model_name=eager.model_name,
                           compile=True)
    prompt = record_prompt(args.groups)
    clear = plain_ids(eager, prompt)

    def run(engine: Any, seed: int) -> Any:
        return engine.generate(prompt, beta=0.05, max_new_tokens=args.tokens, seed=seed, detector="whole")

    first_eager, _ = timed(lambda: run(eager, 0), eager)
    first_compiled, _ = timed(lambda: run(compiled, 0), compiled)  # builds the graph
    best = {"plain": float("inf"), "eager": float("inf"), "compiled": float("inf")}
    first_differences: list[int | None] = []  # per repeat: the first token the two engines sampled differently
    for r in range(args.repeats):  # interleaved: all three see the same machine load
        t_plain, _ = timed(lambda: run_plain(eager, clear, args.tokens, r + 1))
        t_eager, out_eager = timed(lambda: run(eager, r + 1), eager)
        t_compiled, out_compiled = timed(lambda: run(compiled, r + 1), compiled)
        best = {"plain": min(best["plain"], t_plain), "eager": min(best["eager"], t_eager),
                "compiled": min(best["compiled"], t_compiled)}
        first_differences.append(first_difference(out_eager.token_ids, out_compiled.token_ids))
    if compiled.compiled.broken:
        raise RuntimeError("the compiled graph could not be built on this machine (see the warning above)")
    report = {"device": str(eager.device), "tokens": args.tokens, "groups": args.groups, "repeats": args.repeats,
              "prompt_tokens": out_eager.prompt_tokens, "compile_s": first_compiled - first_eager,
              "eager_tokens_per_s": args.tokens / best["eager"],
              "compiled_tokens_per_s": args.tokens / best["compiled"],
              "compiled_over_eager": best["eager"] / best["compiled"],
              "same_tokens": all(d is None for d in first_differences), "first_differences": first_differences,
              "plain_tokens_per_s": args.tokens / best["plain"], "eager_over_plain": best["plain"] / best["eager"],
              "compiled_over_plain": best["plain"] / best["compiled"],
              **peak_memory_mb(eager.device)}
    print(f"model: {eager.model_name} on {eager.device}; G={args.groups}, {out_eager.prompt_tokens} prompt tokens, "
          f"{args.tokens} tokens, best of {args.repeats}; load average {load_average()}")
    print(f"compile (first call, beyond an eager call): {report['compile_s']:.1f} s")
    same = sum(d is None for d in first_differences)
    print(f"{'plain tok/s':>12} {'eager tok/s':>12} {'compiled tok/s':>15} {'compiled ÷ eager':>17} "
          f"{'eager ÷ plain':>14} {'compiled ÷ plain':>17} {'same tokens':>12}")
    print(f"{report['plain_tokens_per_s']:>12.2f} {report['eager_tokens_per_s']:>12.2f} "
          f"{report['compiled_tokens_per_s']:>15.2f} {report['compiled_over_eager']:>17.2f} "
          f"{report['eager_over_plain']:>14.2f} {report['compiled_over_plain']:>17.2f} "
          f"{f'{same} of {args.repeats}':>12}")
    for r, d in enumerate(first_differences):
        if d is not None:
            print(f"repeat {r + 1} (seed {r + 1}): the same first {d} tokens, then different")
    save("compile_bench", report)
    return report


def first_difference(a: list[int], b: list[int]) -> int | None:
    """The first position where token lists `a` and `b` differ (None: equal)."""
    return None if a == b else common_length(a, b)


if __name__ == "__main__":
    main()
