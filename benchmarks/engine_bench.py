"""DP-Fusion decoding speed against plain `model.generate`, measured side by side in one run.

    python -m benchmarks.engine_bench [--tokens 32] [--groups 1 2 4] [--repeats 2]

Same model, same prompt (a ~400-token record), same number of sampled tokens (EOS ignored on
both sides). Prints tokens/s for each, their ratio, the share of step time spent in the λ search
and mixing, and the peak RSS of `dpfusion demo --records 1`.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import torch

RESULTS = Path(__file__).resolve().parent / "results"


def record_prompt(groups: int) -> list[dict[str, Any]]:
    from dpfusion_chains.core.spans import private
    from dpfusion_chains.data import load_records

    records = load_records()
    content: list[Any] = []
    for i in range(groups):
        rec = records[i]
        content += [f"Record {i + 1}:\n", private(rec["text"], unit=rec["id"]), "\n\n"]
    while sum(len(c if isinstance(c, str) else c.text) for c in content) < 1600:  # pad to ~400 tokens
        content.insert(0, "Background: " + records[-1]["text"] + "\n\n")
    content.append("Question: summarise the records in two sentences.")
    return [{"role": "system", "content": "Answer using only the records."}, {"role": "user", "content": content}]


class _Timer:
    """Wraps the decode loop's λ search and mixing to measure their share of step time."""

    def __init__(self) -> None:
        self.seconds = 0.0

    def wrap(self, fn: Any) -> Any:
        def timed(*args: Any, **kwargs: Any) -> Any:
            start = time.perf_counter()
            out = fn(*args, **kwargs)
            self.seconds += time.perf_counter() - start
            return out
        return timed


def bench_dpfusion(engine: Any, groups: int, tokens: int, repeats: int) -> dict[str, float]:
    import dpfusion_chains.core.decode as decode_module

    timer = _Timer()
    originals = (decode_module.search_lambda, decode_module.mixture_logprobs, decode_module.fuse)
    decode_module.search_lambda, decode_module.mixture_logprobs, decode_module.fuse = map(timer.wrap, originals)
    try:
        best = float("inf")
        for r in range(repeats):
            timer.seconds = 0.0
            start = time.perf_counter()
            result = engine.generate(record_prompt(groups), beta=0.05, max_new_tokens=tokens, seed=r, detector="whole")
            elapsed = time.perf_counter() - start
            assert result.tokens == tokens and result.groups == groups, (result.tokens, result.groups)
            if elapsed < best:
                best, share = elapsed, timer.seconds / elapsed
    finally:
        decode_module.search_lambda, decode_module.mixture_logprobs, decode_module.fuse = originals
    return {"tokens_per_s": tokens / best, "lambda_share": share}


def bench_plain(engine: Any, tokens: int, repeats: int) -> float:
    from dpfusion_chains.core.spans import build_views, normalize_messages, render_chat

    msgs = normalize_messages(record_prompt(1))
    ids = build_views(engine.tokenizer, render_chat(engine.tokenizer, msgs, "whole")).group_ids[0]
    input_ids = torch.tensor([ids], device=engine.device)
    best = float("inf")
    for r in range(repeats):
        torch.manual_seed(r)
        start = time.perf_counter()
        with torch.inference_mode():
            out = engine.model.generate(input_ids, attention_mask=torch.ones_like(input_ids), do_sample=True,
                                        max_new_tokens=tokens, min_new_tokens=tokens, top_k=0, top_p=1.0,
                                        pad_token_id=engine.tokenizer.pad_token_id)
        best = min(best, time.perf_counter() - start)
        assert out.shape[1] - input_ids.shape[1] == tokens
    return tokens / best


def demo_peak_rss_mb() -> float:
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    cmd = [sys.executable, "-m", "dpfusion_chains.cli", "demo", "--records", "1", "--max-new-tokens", "8"]
    subprocess.run(cmd, check=True, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024.0


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--tokens", type=int, default=32)
    parser.add_argument("--groups", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--no-demo", action="store_true", help="skip the demo peak-RSS measurement")
    args = parser.parse_args(argv)
    from dpfusion_chains.core.engine import DPFusionEngine

    class NoEosEngine(DPFusionEngine):  # both sides sample exactly --tokens tokens
        def _eos_ids(self) -> frozenset[int]:
            return frozenset()

    engine = NoEosEngine.from_default(device="auto")
    engine.generate(record_prompt(1), beta=0.05, max_new_tokens=2, seed=0, detector="whole")  # warm-up
    plain = bench_plain(engine, args.tokens, args.repeats)
    rows = []
    print(f"model: {engine.model_name} on {engine.device}; {args.tokens} tokens, best of {args.repeats}")
    print(f"{'groups':>6} {'plain tok/s':>12} {'DP-Fusion tok/s':>16} {'ratio':>6} {'λ+mix share':>12}")
    for g in args.groups:
        dp = bench_dpfusion(engine, g, args.tokens, args.repeats)
        row = {"groups": g, "plain_tokens_per_s": plain, "dpfusion_tokens_per_s": dp["tokens_per_s"],
               "ratio": dp["tokens_per_s"] / plain, "lambda_share": dp["lambda_share"]}
        rows.append(row)
        print(f"{g:>6} {plain:>12.2f} {dp['tokens_per_s']:>16.2f} {row['ratio']:>6.2f} {dp['lambda_share']:>11.1%}")
    report: dict[str, Any] = {"device": str(engine.device), "tokens": args.tokens, "rows": rows}
    if not args.no_demo:
        report["demo_peak_rss_mb"] = demo_peak_rss_mb()
        print(f"peak RSS of `dpfusion demo --records 1`: {report['demo_peak_rss_mb']:.0f} MB")
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "engine_bench.json").write_text(json.dumps(report, indent=2))
    return report


if __name__ == "__main__":
    main()
