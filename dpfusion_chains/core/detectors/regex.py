"""The regex-only detector: our recognizers, no spaCy, a few milliseconds per page.

It finds identifiers, contact details, dates, money, addresses and names that follow a title or a
role. Names and places mentioned bare ("... seen by Amara Okonkwo in Leeds") need NER: use the
Presidio detector (the default) when those matter.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from dpfusion_chains.core.detect import DetectedSpan, Detector
from dpfusion_chains.core.detectors.domain_patterns import RECOGNIZER_SETS
from dpfusion_chains.core.detectors.patterns import CORE_RECOGNIZERS
from dpfusion_chains.core.detectors.policy import apply_profile
from dpfusion_chains.core.detectors.profiles import DetectionProfile, resolve_profile
from dpfusion_chains.core.detectors.recognizers import Recognizer, run_recognizers
from dpfusion_chains.core.detectors.vocab import to_vocab


def recognizers_for(profile: DetectionProfile) -> tuple[Recognizer, ...]:
    """Core recognizers, the profile's built-in sets, then the user's own (non-Presidio) ones."""
    extra = [r for name in profile.recognizer_sets for r in RECOGNIZER_SETS[name]]
    own = [r for r in profile.recognizers if callable(getattr(r, "find", None))]
    # Sets share some recognizers (companies): run each once.
    return tuple({id(r): r for r in (*CORE_RECOGNIZERS, *extra, *own)}.values())


class RegexDetector(Detector):
    """Pattern recognizers only. Thread-safe: holds compiled patterns and no per-call state."""

    name = "regex"

    def __init__(
        self,
        profile: str | DetectionProfile | None = "general",
        *,
        entities: Iterable[str] | None = None,
        score_threshold: float | None = None,
        allow_list: Iterable[str] = (),
        deny_list: Iterable[str] | Mapping[str, str] = (),
        recognizers: Iterable[Any] = (),
    ) -> None:
        self.profile = resolve_profile(
            profile, entities=entities, score_threshold=score_threshold, allow_list=allow_list, deny_list=deny_list, recognizers=recognizers
        )
        presidio_only = [r for r in self.profile.recognizers if not callable(getattr(r, "find", None))]
        if presidio_only:
            raise TypeError("Presidio recognizers need the Presidio detector; the regex detector takes objects with find(text)")
        self.recognizers = recognizers_for(self.profile)

    def raw_spans(self, text: str) -> list[DetectedSpan]:
        """All recognizer hits before the profile's filters (for diagnostics and the union)."""
        return [
            s if s.entity_type == (kind := to_vocab(s.entity_type)) else DetectedSpan(s.start, s.end, kind, s.score)
            for s in run_recognizers(self.recognizers, text)
        ]

    def detect(self, text: str) -> list[DetectedSpan]:
        if not text:
            return []
        return apply_profile(text, self.raw_spans(text), self.profile)

    def __repr__(self) -> str:
        return f"RegexDetector(profile={self.profile.name!r})"
