"""bfloat16 weights against float32 on the same device, measured side by side in one run.

    python -m benchmarks.dtype_bench [--tokens 24] [--requests 8] [--long-chars 6400] [--repeats 3]

Two engines over the embedded SmolLM2 in one process, one per dtype (the fusion math is float32
in both). Three ways, interleaved (each way in one dtype, then the other, then again) so machine
load hits both alike, best of --repeats kept:
  one request — engine.generate of one ~370-token question over a private record;
  batch       — engine.generate_batch of --requests such questions (a different record each);
  long prefill — one question padded to ~--long-chars/4 tokens, one token sampled: time to the
                 first token, which prefill decides.
On a CPU, bfloat16 gains where oneDNN computes it natively (AVX512-BF16 or AMX; core.matmul
packs bfloat16 layers only there). Also printed: how far bfloat16 moves the model's next-token
distribution (mean KL(float32 ‖ bfloat16) over the batch's prompts in clear, and how often the two
agree on the most likely token): the price of the speed.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

import torch

from benchmarks.speed_common import (add_engine_flags, engine_flags, flags_suffix, load_average, load_engine,
                                     peak_memory_mb, plain_ids, record_prompt, request_prompts, save, timed)
from dpfusion_chains.core import matmul

SETTINGS: dict[str, Any] = {"beta": 0.05, "detector": "whole"}
DTYPES = ("float32", "bfloat16")


def next_token_shift(engines: dict[str, Any], prompts: list[list[dict[str, Any]]]) -> dict[str, float]:
    """Mean KL(float32 ‖ bfloat16) of the next token after each prompt in clear, and the share of
    prompts whose most likely token is the same."""
    kls, same = [], 0
    with torch.inference_mode():
        for prompt in prompts:
            logp = {}
            for name, engine in engines.items():
                ids = plain_ids(engine, prompt).to(engine.device)
                logits = engine.model(ids, logits_to_keep=1).logits[0, -1].float()
                logp[name] = torch.log_softmax(logits, dim=-1)
            p32 = logp["float32"].exp()
            kls.append(float((p32 * (logp["float32"] - logp["bfloat16"])).sum()))
            same += int(logp["float32"].argmax() == logp["bfloat16"].argmax())
    return {"mean_kl": sum(kls) / len(kls), "top1_agreement": same / len(prompts)}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tokens", type=int, default=24)
    parser.add_argument("--requests", type=int, default=8)
    parser.add_argument("--long-chars", type=int, default=6400)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="auto")
    add_engine_flags(parser)
    args = parser.parse_args(argv)
    if args.dtype != "auto":
        parser.error("--dtype is what this benchmark varies: leave it out")

    flags = {k: v for k, v in engine_flags(args).items() if k != "dtype"}
    engines = {name: load_engine(args.device, dtype=name, **flags) for name in DTYPES}
    prompts = request_prompts(args.requests)
    long_prompt = record_prompt(1, min_chars=args.long_chars)
    n = args.tokens

    def ways(engine: Any) -> dict[str, Callable[[], Any]]:
        return {
            "one request": lambda: engine.generate(prompts[0], max_new_tokens=n, seed=0, **SETTINGS),
            "batch": lambda: engine.generate_batch([{"messages": p, "seed": i, "max_new_tokens": n}
                                                    for i, p in enumerate(prompts)], **SETTINGS),
            "long prefill": lambda: engine.generate(long_prompt, max_new_tokens=1, seed=0, **SETTINGS),
        }

    calls = {name: ways(engine) for name, engine in engines.items()}
    for engine_calls in calls.values():  # warm-up: packs the weights, sizes the caches
        for call in engine_calls.values():
            call()
    best: dict[tuple[str, str], float] = {}
    prompt_tokens: dict[str, int] = {}
    for _ in range(args.repeats):
        for way in calls["float32"]:
            for name, engine in engines.items():
                seconds, out = timed(calls[name][way], engine)
                best[way, name] = min(best.get((way, name), float("inf")), seconds)
                results = out if isinstance(out, list) else [out]
                prompt_tokens[way] = results[0].prompt_tokens

    rows = [{"way": way, "prompt_tokens": prompt_tokens[way], "float32_s": best[way, "float32"],
             "bfloat16_s": best[way, "bfloat16"], "speedup": best[way, "float32"] / best[way, "bfloat16"]}
            for way in calls["float32"]]
    shift = next_token_shift(engines, prompts)
    device = engines["float32"].device
    print(f"\ndevice {device}, oneDNN bfloat16: {matmul.packs_bfloat16()}, {n} tokens, "
          f"{args.requests} requests batched, best of {args.repeats}, load {load_average()}")
    print(f"{'way':<14} {'prompt tokens':>13} {'float32 s':>10} {'bfloat16 s':>11} {'bf16 speedup':>13}")
    for row in rows:
        print(f"{row['way']:<14} {row['prompt_tokens']:>13} {row['float32_s']:>10.3f} {row['bfloat16_s']:>11.3f} "
              f"{row['speedup']:>12.2f}×")
    print(f"next token, bfloat16 against float32: mean KL {shift['mean_kl']:.4f} nats, "
          f"same most likely token in {shift['top1_agreement']:.0%} of {len(prompts)} prompts")
    result = {"device": str(device), "tokens": n, "requests": args.requests, "repeats": args.repeats,
              "onednn_bfloat16": matmul.packs_bfloat16(), "rows": rows, "next_token": shift,
              **peak_memory_mb(device)}
    path = save("dtype_bench" + flags_suffix(args), result)
    print(f"saved {path}")
    return result


if __name__ == "__main__":
    main()
