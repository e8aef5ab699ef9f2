"""`make bench`: every benchmark, each printing ratios measured side by side in one run, then the
goals beside the figures they saved (benchmarks/goals.py)."""

from __future__ import annotations

import importlib
import sys

# (module, its arguments): batching at 128 tokens too, so that every figure the goals read is this run's
BENCHMARKS: list[tuple[str, list[str]]] = [
    ("benchmarks.engine_bench", []), ("benchmarks.batch_bench", []), ("benchmarks.batch_bench", ["--tokens", "128"]),
    ("benchmarks.scaling_bench", []), ("benchmarks.reference_bench", []), ("benchmarks.compile_bench", []),
    ("benchmarks.dtype_bench", []), ("benchmarks.detect_speed", []), ("benchmarks.ledger_bench", [])]


def main() -> int:
    failed = []
    for name, argv in BENCHMARKS:
        label = " ".join([name, *argv])
        print(f"\n=== {label} ===", flush=True)
        try:
            importlib.import_module(name).main(argv)
        except Exception as exc:  # keep going: one broken benchmark should not hide the others
            print(f"{label} failed: {type(exc).__name__}: {exc}", file=sys.stderr)
            failed.append(label)
    print("\n=== goals (benchmarks.goals) ===", flush=True)
    import torch

    from benchmarks import goals

    goals.main(["--device", "cuda" if torch.cuda.is_available() else "cpu"])  # what the runs above saved
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
