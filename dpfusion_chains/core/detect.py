"""Sensitive-span detectors behind one small interface (text -> typed character spans).

A detector sees one private segment's text at a time and returns the character spans
that must not appear in the public view. Detectors are built once and reused; the
registry maps the names accepted by ``detector=`` to factories.
"""

from __future__ import annotations

import threading
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable
from dataclasses import dataclass

WHOLE_SEGMENT_TYPE = "PRIVATE"


@dataclass(frozen=True, order=True)
class DetectedSpan:
    """A sensitive span [start, end) of a segment's text, with its entity type and score."""

    start: int
    end: int
    entity_type: str = WHOLE_SEGMENT_TYPE
    score: float = 1.0

    def __post_init__(self) -> None:
        if not (0 <= self.start < self.end):
            raise ValueError(f"a detected span needs 0 <= start < end, got [{self.start}, {self.end})")


class Detector(ABC):
    """Finds sensitive spans in a text. Implementations must be thread-safe for `detect`."""

    name: str = "detector"

    @abstractmethod
    def detect(self, text: str) -> list[DetectedSpan]:
        """Spans of `text` that are sensitive, in any order (they are merged by the caller)."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class WholeSegmentDetector(Detector):
    """The whole private segment is sensitive: the strongest setting (public view shows none of it)."""

    name = "whole"

    def detect(self, text: str) -> list[DetectedSpan]:
        # Leading/trailing whitespace is kept public so the layout of the prompt is stable.
        stripped = text.strip()
        if not stripped:
            return []
        start = text.index(stripped[0])
        return [DetectedSpan(start, start + len(stripped), WHOLE_SEGMENT_TYPE, 1.0)]


def merge_spans(spans: Iterable[DetectedSpan], text_length: int | None = None) -> list[DetectedSpan]:
    """Sorted, non-overlapping spans. Overlapping or touching spans merge; the merged span keeps
    the type of its highest-scoring (then longest) member. Spans are clipped to the text."""
    # On plain tuples, in DetectedSpan's own order (start, end, type, score): comparing and building
    # frozen dataclasses cost ~2 ms for the few hundred spans of a page.
    ordered = sorted(
        (s.start, s.end if text_length is None else min(s.end, text_length), s.entity_type, s.score)
        for s in spans
        if text_length is None or s.start < text_length
    )
    merged: list[list] = []  # [start, end, type, score]
    for start, end, kind, score in ordered:
        if merged and start <= merged[-1][1]:
            last = merged[-1]
            # The type of the highest-scoring, then longest, member (the merged span so far on a tie).
            if (score, end - start) > (last[3], last[1] - last[0]):
                last[2] = kind
            last[1], last[3] = max(last[1], end), max(last[3], score)
        else:
            merged.append([start, end, kind, score])
    return [DetectedSpan(*span) for span in merged]


_FACTORIES: dict[str, Callable[[], Detector]] = {"whole": WholeSegmentDetector}
_INSTANCES: dict[str, Detector] = {}
_LOCK = threading.Lock()


def register_detector(name: str, factory: Callable[[], Detector]) -> None:
    """Make `detector=name` resolve to a shared instance built (once, lazily) by `factory`."""
    with _LOCK:
        _FACTORIES[name] = factory
        _INSTANCES.pop(name, None)


def available_detectors() -> list[str]:
    """Every registered detector name, the built-in ones included."""
    _ensure_builtin_registered()
    return sorted(_FACTORIES)


def resolve_detector(spec: str | Detector | None, default: str = "presidio") -> Detector:
    """A Detector object, or the shared instance registered under a name."""
    if isinstance(spec, Detector):
        return spec
    name = default if spec is None else spec
    if not isinstance(name, str):
        raise TypeError(f"detector must be a name ({', '.join(available_detectors())}) or a Detector, got {type(spec).__name__}")
    _ensure_builtin_registered()
    with _LOCK:
        if name not in _INSTANCES:
            if name not in _FACTORIES:
                raise ValueError(f"unknown detector {name!r}; choose one of {available_detectors()} or pass a Detector object")
            _INSTANCES[name] = _FACTORIES[name]()
        return _INSTANCES[name]


def _ensure_builtin_registered() -> None:
    # Importing the recognizer modules registers "regex" and "presidio" (kept out of import time:
    # the Presidio detector loads spaCy).
    from dpfusion_chains.core import detectors  # noqa: F401


def make_detector(spec: str | Detector = "presidio", /, **options: object) -> Detector:
    """A configured detector, built once per configuration and shared afterwards.

    ``spec``: ``"presidio"`` (default), ``"regex"``, ``"whole"``, ``"hf"``, or ``"<kind>:<profile>"``;
    options: ``profile`` ("health" | "legal" | "finance" | "general" | a DetectionProfile), ``entities``,
    ``score_threshold``, ``allow_list``, ``deny_list``, ``recognizers``, and per kind ``language``,
    ``spacy_model`` (Presidio) or ``model_path`` (Hugging Face token classifier).
    A Detector object is returned as is.
    """
    if isinstance(spec, Detector):
        if options:
            raise ValueError("options apply to detector names, not to a Detector object")
        return spec
    if not isinstance(spec, str):
        raise TypeError(f"make_detector takes a detector name ('presidio', 'regex', 'whole', 'hf', optionally "
                        f"'<kind>:<profile>') or a Detector, got {type(spec).__name__}")
    from dpfusion_chains.core.detectors.factory import make_detector as build

    return build(spec, **options)  # type: ignore[arg-type]
