"""Eight concurrent requests decoded together against the same eight one after another.

    python -m benchmarks.batch_bench [--requests 8] [--tokens 24] [--repeats 2] [--staggered]

Each request asks about a different private record (one group each, its own seed). Four ways,
interleaved in one run so machine load hits them alike, best of --repeats kept (with the time
spent prefilling, which batching shrinks only by packing the requests' suffixes into larger
forwards, and the rest, the decode steps):
  sequential  — engine.generate eight times;
  batch       — engine.generate_batch of the eight (one decode loop);
  threads     — eight threads each calling engine.generate at once (the in-process scheduler
                packs them into one loop, as concurrent `ainvoke` calls are);
  unpacked    — the batch again with packed prefill off for its duration (core.packing): each
                suffix its own forward, to show what packing the prefills together gains;
  seq out-pk, batch out-pk — sequential and batch again with only the output layer packed, the
                other layers weight-major (core.matmul; the engine before `packed_weights` packed
                every layer), to show what packing them gains on each side. Only where every
                layer is packed.
  batch per-row — the batch again with every row's copy of the requests' shared opening read in
                every decode step (core.shared_prefix off), to show what reading it once gains. CPU only.
  batch torch-attn — the batch again with that attention computed by torch's ops instead of the
                compiled kernel (core.native_attention off), to show what the kernel gains. Only
                where the kernel is available.
  seq own-linear, batch own-linear — sequential and batch again with the few-row products
                computed by each layer's own product (oneDNN packed or weight-major) instead of
                the compiled kernel (core.native_linear off), to show what it gains on each side.
                Only where it is available.
  seq hf-forward, batch hf-forward — sequential and batch again with every decode step through
                transformers' forward instead of the model's ops alone (core.lean_decode off), to
                show what skipping the module machinery gains on each side. Only where it applies.
  seq apart, batch apart — sequential and batch again with sibling projections (query, key,
                value; gate, up) one product each (core.fused_linear off), to show what one
                joint product gains on each side. Only where they are fused. Those layers then
                pack copies of their own weights, which the peak memory printed includes.
Goal on CPU: batched throughput ≥ 3× sequential. With --staggered, request i samples
tokens·(i+1)/requests tokens, so requests leave the batch one by one as answers of different
lengths do (the time spent on leaving is printed).

Each way is then run once more, untimed, to record its forwards, and the machine's floor under
them is printed (benchmarks/roofline.py: measured GEMM peak and read bandwidth, perfect overlap).
The batch's floor bounds what any implementation of the same forwards could show here:
sequential seconds ÷ batch floor.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager
from typing import Any

from benchmarks.roofline import Machine, ModelCosts, record_forwards
from benchmarks.speed_common import (StageTimers, add_engine_flags, engine_flags, flags_suffix, load_average,
                                     load_engine, opening_read_per_row, output_layer_packed_only, packed_body_layers,
                                     peak_memory_mb, request_prompts, save, timed)
from dpfusion_chains.core import fused_linear, lean_decode, native_attention, native_linear, packing
from dpfusion_chains.core.fused_linear import FusedLinear

SETTINGS: dict[str, Any] = {"beta": 0.05, "detector": "whole"}
# ways run on both sides with one change undone: (their name's suffix, the change, what it replaced)
PAIRED_WAYS = (("out-pk", "packing every layer", "with the output layer alone packed"),
               ("own-linear", "few-row products as one compiled kernel", "the layers' own"),
               ("hf-forward", "decode steps as the model's ops alone", "through transformers' forward"),
               ("apart", "sibling projections as one product", "one product each"))


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=8)
    parser.add_argument("--tokens", type=int, default=24)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--staggered", action="store_true", help="request i samples tokens·(i+1)/requests tokens")
    add_engine_flags(parser)
    args = parser.parse_args(argv)

    engine = load_engine(args.device, **engine_flags(args))
    prompts = request_prompts(args.requests)
    n, tokens = args.requests, args.tokens
    lengths = [max(1, round(tokens * (i + 1) / n)) if args.staggered else tokens for i in range(n)]

    def sequential() -> list[Any]:
        return [engine.generate(p, max_new_tokens=lengths[i], seed=i, **SETTINGS) for i, p in enumerate(prompts)]

    def batched() -> list[Any]:
        return engine.generate_batch([{"messages": p, "seed": i, "max_new_tokens": lengths[i]}
                                      for i, p in enumerate(prompts)], **SETTINGS)

    def threads() -> list[Any]:
        with ThreadPoolExecutor(max_workers=n) as pool:
            return list(pool.map(lambda i: engine.generate(prompts[i], max_new_tokens=lengths[i], seed=i, **SETTINGS),
                                 range(n)))

    def unpacked() -> list[Any]:
        packing.uninstall(engine.model)
        try:
            return batched()
        finally:
            packing.install(engine.model)

    def within(context: Callable[[], AbstractContextManager[Any]], way: Callable[[], list[Any]]) -> Any:
        """`way` run inside a fresh `context()`: an engine setting changed for its turn only."""
        def run() -> list[Any]:
            with context():
                return way()
        return run

    ways = {"sequential": sequential, "batch": batched, "threads": threads}
    if engine.device.type == "cpu":  # where core.shared_prefix applies
        ways["batch per-row"] = within(opening_read_per_row, batched)
    if engine.device.type == "cpu" and native_attention.available():
        ways["batch torch-attn"] = within(native_attention.disabled, batched)
    if engine.device.type == "cpu" and native_linear.available():
        ways["seq own-linear"] = within(native_linear.disabled, sequential)
        ways["batch own-linear"] = within(native_linear.disabled, batched)
    if engine.device.type == "cpu" and lean_decode.for_model(engine.model) is not None:
        ways["seq hf-forward"] = within(lean_decode.disabled, sequential)
        ways["batch hf-forward"] = within(lean_decode.disabled, batched)
    if packing.supports(engine.model):
        ways["unpacked"] = unpacked
    if packed_body_layers(engine):
        ways["seq out-pk"] = within(lambda: output_layer_packed_only(engine), sequential)
        ways["batch out-pk"] = within(lambda: output_layer_packed_only(engine), batched)
    if any(type(m) is FusedLinear for m in engine.model.modules()):
        ways["seq apart"] = within(lambda: fused_linear.computing_apart(engine.model), sequential)
        ways["batch apart"] = within(lambda: fused_linear.computing_apart(engine.model), batched)
    engine.generate(prompts[0], max_new_tokens=2, seed=0, **SETTINGS)  # warm-up
    best = {name: (float("inf"), 0.0, 0.0) for name in ways}
    with StageTimers(engine.device) as timers:
        for _ in range(args.repeats):
            for name, fn in ways.items():
                timers.reset()
                elapsed, results = timed(fn, engine)
                assert [r.tokens for r in results] == lengths
                if elapsed < best[name][0]:
                    best[name] = (elapsed, timers.prefill, timers.leaving)
    floors = work_floors(engine, ways)
    print(f"model: {engine.model_name} on {engine.device}; {n} requests × "
          f"{f'{lengths[0]}…{tokens} (staggered)' if args.staggered else tokens} tokens, best of {args.repeats}; "
          f"prefix store {args.prefix_cache_tokens} tokens, weight-major {args.weight_major}, "
          f"packed weights {args.packed_weights}, packed prefill {args.packed_prefill}, "
          f"keep freed memory {args.keep_freed_memory}; load average {load_average()}")
    rows = table(best, floors, sum(lengths))
    for suffix, change, against in PAIRED_WAYS:
        if f"seq {suffix}" in best:
            seq, batch, seq_without, batch_without = (best[w][0] for w in ("sequential", "batch", f"seq {suffix}",
                                                                          f"batch {suffix}"))
            print(f"{change}: sequential {seq_without / seq:.2f}× and batch {batch_without / batch:.2f}× faster than "
                  f"{against}, where batch ÷ sequential is {seq_without / batch_without:.2f}×")
    if "batch per-row" in best:
        print(f"reading the shared opening once: batch {best['batch per-row'][0] / best['batch'][0]:.2f}× faster "
              "than reading every row's copy")
    if "batch torch-attn" in best:
        print(f"decode attention as one compiled kernel: batch {best['batch torch-attn'][0] / best['batch'][0]:.2f}× "
              "faster than as torch's ops")
    report = {"device": str(engine.device), "requests": n, "tokens": tokens, "lengths": lengths,
              "repeats": args.repeats, "rows": rows,
              "prefix_cache_tokens": args.prefix_cache_tokens, "weight_major": args.weight_major,
              "packed_weights": args.packed_weights, "packed_prefill": args.packed_prefill,
              "keep_freed_memory": args.keep_freed_memory,
              "gemm_gflops": floors["gemm_gflops"], "read_gb_s": floors["read_gb_s"],
              **peak_memory_mb(engine.device)}
    save("batch_bench" + ("" if n == 8 else f"_{n}requests") + ("" if tokens == 24 else f"_{tokens}tokens")
         + ("_staggered" if args.staggered else "") + flags_suffix(args), report)
    return report


def table(best: dict[str, tuple[float, float, float]], floors: dict[str, Any], total: int) -> list[dict[str, Any]]:
    """Print each way's (seconds, prefill, leaving) beside its floor; the result rows."""
    seq, seq_prefill, _ = best["sequential"]
    print(f"{'way':>16} {'seconds':>8} {'tokens/s':>9} {'× sequential':>13} {'prefill s':>10} {'leaving s':>10} "
          f"{'decode s':>9} {'decode × seq.':>14} {'floor s':>8} {'÷ floor':>8}")
    rows = []
    for name, (elapsed, prefill, leaving) in best.items():
        decode = elapsed - prefill
        row = {"way": name, "seconds": elapsed, "tokens_per_s": total / elapsed, "speedup": seq / elapsed,
               "prefill_s": prefill, "leaving_s": leaving, "decode_s": decode,
               "decode_speedup": (seq - seq_prefill) / decode, **floors["ways"][name]}
        rows.append(row)
        print(f"{name:>16} {elapsed:>8.2f} {row['tokens_per_s']:>9.1f} {row['speedup']:>12.2f}× {prefill:>10.2f} "
              f"{leaving:>10.2f} {decode:>9.2f} {row['decode_speedup']:>13.2f}× {row['floor_s']:>8.2f} "
              f"{elapsed / row['floor_s']:>7.2f}×")
    batch_floor, seq_floor = floors["ways"]["batch"]["floor_s"], floors["ways"]["sequential"]["floor_s"]
    print(f"machine: GEMM {floors['gemm_gflops']:.0f} GFLOP/s, reads {floors['read_gb_s']:.1f} GB/s. No implementation "
          f"of the batch's forwards runs under {batch_floor:.2f} s here: against this sequential run that caps "
          f"batched ÷ sequential at {seq / batch_floor:.2f}×, against a sequential at its own floor at "
          f"{seq_floor / batch_floor:.2f}×")
    return rows


def work_floors(engine: Any, ways: dict[str, Any]) -> dict[str, Any]:
    """Each way's forwards, recorded in one more (untimed, cold) run, and this machine's floor
    under them: in all, and for the prefill forwards alone (those taking more than one token)."""
    costs, machine = ModelCosts.of(engine.model), Machine.measure(engine.model, engine.device)
    out: dict[str, Any] = {"gemm_gflops": machine.gemm_flops / 1e9, "read_gb_s": machine.read_bytes / 1e9, "ways": {}}
    for name, fn in ways.items():
        with record_forwards(engine.model) as forwards:
            timed(fn, engine)
        prefill = [f for f in forwards if max(f.new) > 1]
        out["ways"][name] = {"floor_s": machine.floors(forwards, costs),
                             "floor_prefill_s": machine.floors(prefill, costs), "forwards": len(forwards)}
    return out


if __name__ == "__main__":
    main()
