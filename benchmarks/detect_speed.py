"""Milliseconds per 500-word document for the detectors (built once, then timed).

    .venv/bin/python -m benchmarks.detect_speed [--docs 20] [--repeat 3]

Documents are 500-word stretches of the labelled evaluation set's texts (records joined by blank
lines), so they are as dense in names, dates and identifiers as real records. Reports the median
over documents (best of `--repeat` runs each) and, for the default Presidio pipeline, where the time
goes: spaCy NER, Presidio's pattern recognizers, our recognizers. Goal on the 2-core dev CPU:
default pipeline <= 50 ms per document.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from collections.abc import Callable
from pathlib import Path

from dpfusion_chains.core.detectors.evaluation import load_labelled

EVAL_SET = Path(__file__).resolve().parents[1] / "tests" / "data" / "detect_eval.jsonl"


def documents(n: int, words: int = 500) -> list[str]:
    records = load_labelled(EVAL_SET)
    stream = "\n\n".join(str(r["text"]) for r in records).split(" ")
    docs = []
    for i in range(n):
        chunk = stream[i * words : (i + 1) * words]
        if len(chunk) < words:
            break
        docs.append(" ".join(chunk))
    return docs


def time_ms(fn: Callable[[str], object], docs: list[str], repeat: int) -> float:
    per_doc = []
    for doc in docs:
        best = float("inf")
        for _ in range(repeat):
            start = time.perf_counter()
            fn(doc)
            best = min(best, time.perf_counter() - start)
        per_doc.append(best * 1000)
    return statistics.median(per_doc)


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--docs", type=int, default=20)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args(argv)
    from dpfusion_chains.core.detect import make_detector

    docs = documents(args.docs)
    print(f"{len(docs)} documents of 500 words, median of best-of-{args.repeat} per document, cpus={os.cpu_count()}")
    build_start = time.perf_counter()
    default = make_detector("presidio")
    print(f"build default detector (once): {time.perf_counter() - build_start:.1f} s")
    assert make_detector("presidio") is default, "the detector must be built once and reused"
    default.detect(docs[0])  # warm-up (lazy loading inside Presidio and spaCy)

    rows: list[tuple[str, float]] = [("presidio (default, general profile)", time_ms(default.detect, docs, args.repeat))]
    for profile in ("health", "legal", "finance"):
        detector = make_detector("presidio", profile=profile)
        rows.append((f"presidio, profile={profile}", time_ms(detector.detect, docs, args.repeat)))
    regex = make_detector("regex")
    rows.append(("regex (general profile)", time_ms(regex.detect, docs, args.repeat)))

    analyzer = default.analyzer  # type: ignore[attr-defined]
    nlp = analyzer.nlp_engine
    rows.append(("  of which: spaCy NER (process_text)", time_ms(lambda d: nlp.process_text(d, "en"), docs, args.repeat)))

    def presidio_patterns(doc: str) -> object:
        artifacts = nlp.process_text(doc, "en")
        start = time.perf_counter()
        analyzer.analyze(doc, language="en", entities=default.presidio_entities, nlp_artifacts=artifacts)  # type: ignore[attr-defined]
        return time.perf_counter() - start

    pattern_ms = statistics.median(1000 * float(presidio_patterns(d)) for d in docs)  # type: ignore[arg-type]
    rows.append(("  of which: Presidio recognizers + analyze", pattern_ms))
    rows.append(("  of which: our recognizers (raw)", time_ms(default.regex.raw_spans, docs, args.repeat)))  # type: ignore[attr-defined]

    width = max(len(name) for name, _ in rows)
    for name, ms in rows:
        print(f"{name:<{width}}  {ms:7.1f} ms / 500 words")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
