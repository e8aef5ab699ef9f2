"""Recall and precision of the detectors on the labelled synthetic set (`make eval-detect`).

    .venv/bin/python -m benchmarks.detect_eval [--detector presidio] [--misses 20]

For each domain the detector runs with the matching profile (health records with
profile="health", ...). Rules (see dpfusion_chains/core/detectors/evaluation.py): a labelled span is
recalled when all its letters/digits are inside detected spans; a detected span is correct when it
overlaps a label. Goal: recall >= 0.98 and precision >= 0.6 for the default (presidio) detector.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

from dpfusion_chains.core.detectors.evaluation import Counts, Report, evaluate, format_table, load_labelled

EVAL_SET = Path(__file__).resolve().parents[1] / "tests" / "data" / "detect_eval.jsonl"
DOMAINS = ("health", "legal", "finance")
NOTES = {
    "detect_eval.jsonl": "evaluation set (style B); detectors were developed against it",
    "detect_holdout.jsonl": "held-out set (style C); one round of general fixes after its first run (recall was 0.887)",
    "detect_holdout2.jsonl": "held-out set (style D); one round of general fixes after its first run (recall was 0.907)",
}


def run(kind: str, records: list[dict[str, object]], profile_mode: str = "matching") -> tuple[dict[str, Report], float]:
    from dpfusion_chains.core.detect import make_detector

    reports: dict[str, Report] = {}
    elapsed = 0.0
    for domain in DOMAINS:
        subset = [r for r in records if r["domain"] == domain]
        detector = make_detector(kind, profile=domain if profile_mode == "matching" else "general")
        detector.detect("warm-up: Jane Roe, 12 Elm Lane.")
        start = time.perf_counter()
        reports[domain] = evaluate(detector, subset)
        elapsed += time.perf_counter() - start
    return reports, elapsed


def print_reports(kind: str, reports: dict[str, Report], elapsed: float, n: int, profile_mode: str, misses: int) -> None:
    overall = Report()
    for report in reports.values():
        overall.total.add(report.total)
        overall.chars_detected += report.chars_detected
        overall.chars_in_labels += report.chars_in_labels
        for kind_name, counts in report.by_type.items():
            overall.by_type[kind_name].add(counts)
        overall.misses.extend(report.misses)
        overall.false_positives.extend(report.false_positives)
    header = f"detector={kind}  profile={'matching domain' if profile_mode == 'matching' else 'general'}  records={n}  {1000 * elapsed / n:.1f} ms/record"
    print("=" * len(header))
    print(header)
    print("=" * len(header))
    rows: list[tuple[str, Counts]] = sorted(overall.by_type.items())
    print(format_table(rows, "per entity type (recall by labelled type, precision by detected type)"))
    print()
    profile_rows = [(domain, reports[domain].total) for domain in DOMAINS]
    profile_rows.append(("ALL", overall.total))
    print(format_table(profile_rows, "per profile", extra=f"character precision (detected letters/digits inside labels): {overall.char_precision:.3f}"))
    if misses:
        print(f"\nmissed labels (first {misses} of {len(overall.misses)}):")
        for record_id, kind_name, text in overall.misses[:misses]:
            print(f"  {record_id:<10} {kind_name:<14} {text!r}")
        print(f"false positives (first {misses} of {len(overall.false_positives)}):")
        for record_id, kind_name, text in overall.false_positives[:misses]:
            print(f"  {record_id:<10} {kind_name:<14} {text!r}")
    print()


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--detector", action="append", choices=("presidio", "regex"), help="detector(s) to score (default: presidio and regex)")
    parser.add_argument("--general", action="store_true", help="also score the general profile on every domain")
    parser.add_argument("--misses", type=int, default=5, help="how many missed labels / false positives to list (default 10)")
    parser.add_argument("--data", action="append", help="labelled JSONL file(s) (default: every tests/data/detect_*.jsonl)")
    args = parser.parse_args(argv)
    paths = [Path(p) for p in args.data] if args.data else sorted(EVAL_SET.parent.glob("detect_*.jsonl"))
    for path in paths:
        records = load_labelled(path)
        print(f"##### {path.name}: {NOTES.get(path.name, 'user-supplied labelled set')}\n")
        for kind in args.detector or ["presidio", "regex"]:
            for mode in ["matching", "general"] if args.general else ["matching"]:
                reports, elapsed = run(kind, records, mode)
                print_reports(kind, reports, elapsed, len(records), mode, args.misses)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
