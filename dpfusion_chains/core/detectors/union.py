"""Several detectors as one: every span any of them finds is sensitive (recall-first).

    UnionDetector(make_detector("presidio", profile="health"), HFTokenClassifierDetector("/models/ner"))
"""

from __future__ import annotations

from collections.abc import Iterable

from dpfusion_chains.core.detect import DetectedSpan, Detector, merge_spans, resolve_detector
from dpfusion_chains.core.detectors.policy import apply_profile
from dpfusion_chains.core.detectors.profiles import DetectionProfile, get_profile


class UnionDetector(Detector):
    """The union of its members' spans, merged; optionally re-filtered by a profile (allow/deny
    lists, thresholds) so one policy applies to all members."""

    name = "union"

    def __init__(self, *detectors: Detector | str, profile: str | DetectionProfile | None = None) -> None:
        if not detectors:
            raise ValueError("UnionDetector needs at least one detector")
        self.detectors: tuple[Detector, ...] = tuple(resolve_detector(d) for d in detectors)
        self.profile = get_profile(profile) if profile is not None else None

    @classmethod
    def of(cls, detectors: Iterable[Detector | str], profile: str | DetectionProfile | None = None) -> UnionDetector:
        return cls(*detectors, profile=profile)

    def detect(self, text: str) -> list[DetectedSpan]:
        spans = [span for detector in self.detectors for span in detector.detect(text)]
        if self.profile is not None:
            return apply_profile(text, spans, self.profile)
        return merge_spans(spans, len(text))

    def __repr__(self) -> str:
        return f"UnionDetector({', '.join(repr(d) for d in self.detectors)})"
