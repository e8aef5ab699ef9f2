"""`make bench`: every benchmark, each printing ratios measured side by side in one run."""

from __future__ import annotations

import importlib
import sys

BENCHMARKS = ["benchmarks.engine_bench", "benchmarks.batch_bench", "benchmarks.scaling_bench",
              "benchmarks.reference_bench", "benchmarks.compile_bench", "benchmarks.detect_speed",
              "benchmarks.ledger_bench"]


def main() -> int:
    failed = []
    for name in BENCHMARKS:
        print(f"\n=== {name} ===", flush=True)
        try:
            importlib.import_module(name).main([])
        except Exception as exc:  # keep going: one broken benchmark should not hide the others
            print(f"{name} failed: {type(exc).__name__}: {exc}", file=sys.stderr)
            failed.append(name)
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
