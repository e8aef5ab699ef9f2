"""Score a detector against labelled spans (for `make eval-detect`, tests, and users checking their
own profile on their own labelled texts).

Rules, chosen for privacy (what reaches the public view) rather than for NER bookkeeping:
- a labelled span is *recalled* when every letter and digit in it lies inside some detected span
  (several detected spans may share the cover; spaces and punctuation between them may show).
  Partial cover counts as a miss: half a name in clear is a leak;
- a detected span is *correct* when it overlaps a labelled span; span precision is the share of
  detected spans that are correct. Character precision is the share of detected letters/digits
  that are inside labels (over-redaction costs utility, not privacy);
- *type agreement*: among recalled labels, the share whose covering detection has the same type
  (it decides the typed placeholder, not the protection).
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dpfusion_chains.core.detect import DetectedSpan, Detector


@dataclass
class Counts:
    labels: int = 0
    recalled: int = 0
    typed: int = 0
    detected: int = 0
    correct: int = 0

    def add(self, other: Counts) -> None:
        self.labels += other.labels
        self.recalled += other.recalled
        self.typed += other.typed
        self.detected += other.detected
        self.correct += other.correct

    @property
    def recall(self) -> float:
        return self.recalled / self.labels if self.labels else float("nan")

    @property
    def precision(self) -> float:
        return self.correct / self.detected if self.detected else float("nan")

    @property
    def type_agreement(self) -> float:
        return self.typed / self.recalled if self.recalled else float("nan")


@dataclass
class Report:
    by_type: dict[str, Counts] = field(default_factory=lambda: defaultdict(Counts))
    total: Counts = field(default_factory=Counts)
    chars_detected: int = 0
    chars_in_labels: int = 0
    misses: list[tuple[str, str, str]] = field(default_factory=list)  # (record id, type, text)
    false_positives: list[tuple[str, str, str]] = field(default_factory=list)

    @property
    def char_precision(self) -> float:
        return self.chars_in_labels / self.chars_detected if self.chars_detected else float("nan")


def _alnum_positions(text: str, start: int, end: int) -> list[int]:
    return [i for i in range(start, end) if text[i].isalnum()]


def score_record(text: str, labels: Sequence[Mapping[str, Any]], detected: Sequence[DetectedSpan], report: Report, record_id: str = "") -> None:
    covered = bytearray(len(text))
    for span in detected:
        covered[span.start : span.end] = b"\x01" * (span.end - span.start)
    in_label = bytearray(len(text))
    for label in labels:
        in_label[int(label["start"]) : int(label["end"])] = b"\x01" * (int(label["end"]) - int(label["start"]))

    for label in labels:
        start, end, kind = int(label["start"]), int(label["end"]), str(label["type"])
        counts = report.by_type[kind]
        counts.labels += 1
        report.total.labels += 1
        positions = _alnum_positions(text, start, end)
        if positions and all(covered[i] for i in positions):
            counts.recalled += 1
            report.total.recalled += 1
            # The detection covering most of the label decides its placeholder.
            best = max(detected, key=lambda s: min(s.end, end) - max(s.start, start))
            if best.entity_type == kind:
                counts.typed += 1
                report.total.typed += 1
        else:
            report.misses.append((record_id, kind, text[start:end]))

    for span in detected:
        counts = report.by_type[span.entity_type]
        counts.detected += 1
        report.total.detected += 1
        chars = _alnum_positions(text, span.start, span.end)
        report.chars_detected += len(chars)
        report.chars_in_labels += sum(in_label[i] for i in chars)
        if any(in_label[span.start : span.end]):
            counts.correct += 1
            report.total.correct += 1
        else:
            report.false_positives.append((record_id, span.entity_type, text[span.start : span.end]))


def evaluate(detector: Detector, records: Iterable[Mapping[str, Any]]) -> Report:
    report = Report()
    for record in records:
        text = str(record["text"])
        score_record(text, record["spans"], detector.detect(text), report, str(record.get("id", "")))
    return report


def load_labelled(path: str | Path) -> list[dict[str, Any]]:
    """Records from a JSONL file (one {"text", "spans", "domain"...} object a line) or a JSON list."""
    file = Path(path)
    content = file.read_text(encoding="utf-8")
    if file.suffix == ".jsonl":
        return [json.loads(line) for line in content.splitlines() if line.strip()]
    data = json.loads(content)
    return list(data["records"] if isinstance(data, dict) else data)


def format_table(rows: Sequence[tuple[str, Counts]], title: str, extra: str = "") -> str:
    lines = [title, f"{'':<16}{'labels':>8}{'recall':>9}{'detected':>10}{'precision':>11}{'type ok':>9}"]
    for name, c in rows:
        recall = f"{c.recall:.3f}" if c.labels else "-"
        precision = f"{c.precision:.3f}" if c.detected else "-"
        typed = f"{c.type_agreement:.2f}" if c.recalled else "-"
        lines.append(f"{name:<16}{c.labels:>8}{recall:>9}{c.detected:>10}{precision:>11}{typed:>9}")
    if extra:
        lines.append(extra)
    return "\n".join(lines)
