"""Milliseconds per 500-word document for the detectors (built once, then timed).

    .venv/bin/python -m benchmarks.detect_speed [--docs 20] [--repeat 3]

Documents are 500-word stretches of the labelled evaluation set's texts (records joined by blank
lines), so they are as dense in names, dates and identifiers as real records. Reports the median
over documents (best of `--repeat` runs each) and, for the default Presidio pipeline, where the time
goes (spaCy NER on a whole document and on the few words the default sends it, our recognizers).
Goal on the 2-core dev CPU: default pipeline <= 50 ms per document. ``--cpu-time`` measures process
CPU time instead of wall time, which is steadier when other jobs share the machine.
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


CLOCK = time.perf_counter


def time_ms(fn: Callable[[str], object], docs: list[str], repeat: int) -> float:
    per_doc = []
    for doc in docs:
        best = float("inf")
        for _ in range(repeat):
            start = CLOCK()
            fn(doc)
            best = min(best, CLOCK() - start)
        per_doc.append(best * 1000)
    return statistics.median(per_doc)


def ner_part(detector: object, docs: list[str]) -> Callable[[str], object]:
    """spaCy's NER on what the default pipeline sends it for a document: the words around the
    candidates (`ner_windows`), joined as it joins them (worked out before the clock starts)."""
    from dpfusion_chains.core.detectors.presidio import _WINDOW_SEPARATOR, ner_windows

    engine = detector.analyzer.nlp_engine  # type: ignore[attr-defined]
    sent = {}
    for doc in docs:
        windows = ner_windows(doc, detector._covered(doc, detector.regex.raw_spans(doc)))  # type: ignore[attr-defined]
        sent[doc] = _WINDOW_SEPARATOR.join(doc[a:b] for a, b in windows)
    return lambda doc: engine.process_text(sent[doc], "en")


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--docs", type=int, default=20)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--cpu-time", action="store_true", help="time with process CPU time (steadier when the machine is busy)")
    args = parser.parse_args(argv)
    global CLOCK
    if args.cpu_time:
        CLOCK = time.process_time
    from dpfusion_chains.core.detect import make_detector

    docs = documents(args.docs)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    clock = "process CPU time" if args.cpu_time else "wall time"
    print(f"{len(docs)} documents of 500 words, median of best-of-{args.repeat} per document ({clock}), cpus={os.cpu_count()}, load={load:.1f}")
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
    everything = make_detector("presidio", ner_scope="all")
    rows.append(("presidio, ner_scope='all' (NER on the whole text)", time_ms(everything.detect, docs, args.repeat)))
    rows.append(("  spaCy NER on a whole document (reference)", time_ms(lambda d: nlp.process_text(d, "en"), docs, args.repeat)))
    rows.append(("  spaCy NER on what the default sends it", time_ms(ner_part(default, docs), docs, args.repeat)))
    rows.append(("  our recognizers alone (raw spans)", time_ms(default.regex.raw_spans, docs, args.repeat)))  # type: ignore[attr-defined]

    width = max(len(name) for name, _ in rows)
    for name, ms in rows:
        print(f"{name:<{width}}  {ms:7.1f} ms / 500 words")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
