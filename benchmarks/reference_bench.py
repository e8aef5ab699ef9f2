"""Side by side with dp-fusion-lib 0.1.0, the reference implementation, in one run.

    python -m benchmarks.reference_bench [--tokens 24] [--requests 8] [--repeats 2]

dp-fusion-lib is fetched from PyPI (`pip download --no-deps`) into benchmarks/.cache/ on first
use and imported from there; it is never a dependency of this project, and none of its code is
used by the library. Both sides get the same model object, the same private and public token
ids (our views of the same prompt: one group, the record private), the same α, β (its internal
bound is α·β, as ours) and temperature, and sample exactly --tokens tokens (EOS ignored on both
sides). Its tagger is not used: the views are given as tokens (`generate_from_tokens`).

One request: tokens/s of each. --requests requests: ours with `generate_batch` (one decode
loop), dp-fusion-lib one after another (it has no batch API). Goals: ≥ 1.5× its tokens/s for
one request, ≥ 4× for eight.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import warnings
import zipfile
from pathlib import Path
from typing import Any

import torch

from benchmarks.speed_common import (add_engine_flags, engine_flags, flags_suffix, load_average, load_engine,
                                     request_prompts, save, timed)

VERSION = "0.1.0"
CACHE = Path(__file__).resolve().parent / ".cache" / f"dp-fusion-lib-{VERSION}"
ALPHA, BETA = 2.0, 0.05


def import_reference() -> Any:
    """dp_fusion_lib from benchmarks/.cache (downloaded there once from PyPI)."""
    if not (CACHE / "dp_fusion_lib").is_dir():
        CACHE.mkdir(parents=True, exist_ok=True)
        subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", f"dp-fusion-lib=={VERSION}",
                        "-d", str(CACHE)], check=True)
        wheel = next(CACHE.glob("dp_fusion_lib-*.whl"))
        with zipfile.ZipFile(wheel) as archive:
            archive.extractall(CACHE)
    sys.path.insert(0, str(CACHE))
    # it asks for CUDA autocast on every step; on a CPU machine torch warns each time
    warnings.filterwarnings("ignore", message="CUDA is not available", category=UserWarning)
    import dp_fusion_lib

    return dp_fusion_lib


class _NoEosTokenizer:
    """The tokenizer as the reference sees it, with no EOS id, so it samples every token asked for."""

    eos_token_id = -1

    def __init__(self, tokenizer: Any) -> None:
        self._tokenizer = tokenizer

    def __getattr__(self, name: str) -> Any:
        return getattr(self._tokenizer, name)


def views(engine: Any, messages: list[dict[str, Any]]) -> tuple[torch.Tensor, torch.Tensor]:
    """(private view ids, public view ids) of a one-group prompt, as our engine builds them."""
    from dpfusion_chains.core.spans import build_views, normalize_messages, render_chat

    v = build_views(engine.tokenizer, render_chat(engine.tokenizer, normalize_messages(messages), "whole"))
    assert len(v.group_ids) == 1
    return torch.tensor(v.group_ids[0]), torch.tensor(v.public_ids)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tokens", type=int, default=24)
    parser.add_argument("--requests", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--device", default="auto")
    add_engine_flags(parser)
    args = parser.parse_args(argv)

    reference = import_reference()
    engine = load_engine(args.device, **engine_flags(args))
    theirs = reference.DPFusion(model=engine.model, tokenizer=_NoEosTokenizer(engine.tokenizer))
    prompts = request_prompts(args.requests)
    token_views = [views(engine, p) for p in prompts]
    n, tokens = args.requests, args.tokens
    ours_settings: dict[str, Any] = {"alpha": ALPHA, "beta": BETA, "max_new_tokens": tokens, "detector": "whole"}

    def ref_one(i: int) -> None:
        private_ids, public_ids = token_views[i]
        torch.manual_seed(i)
        with torch.inference_mode():
            out = theirs.generate_from_tokens(private_ids.clone(), public_ids.clone(), alpha=ALPHA, beta=BETA,
                                              max_new_tokens=tokens)
        # it records λ for every token but the first
        assert len(next(iter(out["lambdas"].values()))) == tokens - 1, "the reference stopped early"

    def ours_one() -> None:
        assert engine.generate(prompts[0], seed=0, **ours_settings).tokens == tokens

    def ours_batch() -> None:
        results = engine.generate_batch([{"messages": p, "seed": i} for i, p in enumerate(prompts)], **ours_settings)
        assert [r.tokens for r in results] == [tokens] * n

    def ref_many() -> None:
        for i in range(n):
            ref_one(i)

    runs = {"ours, 1 request": ours_one, "dp-fusion-lib, 1 request": lambda: ref_one(0),
            f"ours, {n} requests": ours_batch, f"dp-fusion-lib, {n} requests": ref_many}
    ours_one(), ref_one(0)  # warm-up
    if engine.compiled is not None:
        ours_batch()  # the batch's shapes need their own graph: built before timing
    best = {name: float("inf") for name in runs}
    for _ in range(args.repeats):  # interleaved: load from other processes hits both sides alike
        for name, fn in runs.items():
            best[name] = min(best[name], timed(fn, engine)[0])
    one = best["dp-fusion-lib, 1 request"] / best["ours, 1 request"]
    many = best[f"dp-fusion-lib, {n} requests"] / best[f"ours, {n} requests"]
    print(f"model: {engine.model_name} on {engine.device}, ours {'compiled' if engine.compiled else 'eager'}; α={ALPHA}, β={BETA}, {tokens} tokens, prompt "
          f"{len(token_views[0][0])} tokens; best of {args.repeats}; prefix store {args.prefix_cache_tokens} tokens (cold "
          f"at each run), weight-major {args.weight_major}, packed prefill {args.packed_prefill}; "
          f"load average {load_average()}")
    print(f"{'run':>28} {'seconds':>8} {'tokens/s':>9}")
    rows = []
    for name, elapsed in best.items():
        count = n if name.endswith(f"{n} requests") else 1
        rows.append({"run": name, "seconds": elapsed, "tokens_per_s": count * tokens / elapsed})
        print(f"{name:>28} {elapsed:>8.2f} {count * tokens / elapsed:>9.2f}")
    print(f"ours ÷ dp-fusion-lib tokens/s: {one:.2f}× for 1 request, {many:.2f}× for {n} requests")
    report = {"device": str(engine.device), "tokens": tokens, "requests": n, "alpha": ALPHA, "beta": BETA,
              "compiled": engine.compiled is not None, "rows": rows, "prefix_cache_tokens": args.prefix_cache_tokens,
              "weight_major": args.weight_major, "packed_prefill": args.packed_prefill, "speedup_one": one, "speedup_many": many,
              "reference": f"dp-fusion-lib {VERSION}"}
    save("reference_bench" + flags_suffix(args), report)
    return report


if __name__ == "__main__":
    main()
