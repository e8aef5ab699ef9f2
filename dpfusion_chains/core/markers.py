"""In-band markers: private text that travels through a framework's prompt templates as a string.

Retrievers and tools wrap private text with `mark(...)`; whatever template stuffs it into a
prompt, the LLM adapter recovers the segments with `parse_marked(...)`. Markers use Unicode
private-use characters and carry the privacy unit, the optional group and detector name, and
a keyed digest of the text, so that a marker that was split, truncated or whose text was
altered on the way is detected and the call fails closed (MarkerError) instead of generating
from private text without the mechanism.
"""

from __future__ import annotations

import hashlib
import os
from urllib.parse import quote, unquote

from dpfusion_chains.core.detect import Detector
from dpfusion_chains.core.errors import MarkerError
from dpfusion_chains.core.spans import DEFAULT_UNIT, Part, PrivateSegment

START, SEP, END = "\ue000", "\ue001", "\ue002"
MARKER_CHARS = (START, SEP, END)
# Per-process key: digests prove integrity inside this process and reveal nothing about the text.
_KEY = os.urandom(16)
_DETECTORS: dict[str, Detector] = {}


def _digest(text: str) -> str:
    return hashlib.blake2b(text.encode("utf-8"), key=_KEY, digest_size=8).hexdigest()


def _detector_ref(detector: str | Detector | None) -> str:
    if detector is None:
        return ""
    if isinstance(detector, str):
        return quote(detector, safe="")
    ref = f"@{id(detector)}"
    _DETECTORS[ref] = detector  # objects cannot travel as text: keep them here, send a reference
    return quote(ref, safe="")


def mark(text: str, unit: str = DEFAULT_UNIT, group: str | None = None,
         detector: str | Detector | None = None) -> str:
    """`text` wrapped in a private marker for privacy unit `unit`."""
    if not isinstance(text, str):
        raise TypeError(f"mark() takes text as str, got {type(text).__name__}")
    if any(c in text for c in MARKER_CHARS):
        raise MarkerError("text to mark private already contains marker characters (U+E000–U+E002); "
                          "mark each piece once")
    if not isinstance(unit, str) or not unit:
        raise ValueError("mark(..., unit=...) needs a non-empty string unit id")
    header = "|".join([quote(unit, safe=""), quote(group or "", safe=""), _detector_ref(detector), _digest(text)])
    return f"{START}{header}{SEP}{text}{END}"


def has_markers(text: str) -> bool:
    return any(c in text for c in MARKER_CHARS)


def strip_markers(text: str) -> str:
    """The text with markers removed and private text kept (for display to the data owner only)."""
    return "".join(p.text if isinstance(p, PrivateSegment) else p for p in parse_marked(text))


def parse_marked(text: str) -> list[Part]:
    """Split text into public strings and PrivateSegments. Raises MarkerError (without quoting any
    text) if a marker is unbalanced, nested or its text no longer matches its digest."""
    parts: list[Part] = []
    i = 0
    while i < len(text):
        start = text.find(START, i)
        stray = _first_of(text, (SEP, END), i, start if start >= 0 else len(text))
        if stray >= 0:
            raise MarkerError("found the end of a private marker without its start: text marked private was split "
                              "or truncated (e.g. by a text splitter or a context-window limit); fail closed")
        if start < 0:
            parts.append(text[i:])
            break
        if start > i:
            parts.append(text[i:start])
        sep = text.find(SEP, start + 1)
        end = text.find(END, start + 1)
        nested = text.find(START, start + 1)
        if sep < 0 or end < 0 or sep > end or (0 <= nested < end):
            raise MarkerError("a private marker was opened but not closed: text marked private was split or "
                              "truncated on its way to the model; fail closed")
        fields = text[start + 1:sep].split("|")
        if len(fields) != 4:
            raise MarkerError("a private marker header is malformed; do not edit marked text")
        unit, group, detector_ref, digest = (unquote(f) for f in fields)
        body = text[sep + 1:end]
        if _digest(body) != digest:
            raise MarkerError(f"text marked private for unit {unit!r} was altered on its way to the model (a template "
                              "or transform changed it); pass marked text through unchanged")
        parts.append(PrivateSegment(body, unit=unit or DEFAULT_UNIT, group=group or None,
                                    detector=_DETECTORS.get(detector_ref, detector_ref or None)))
        i = end + 1
    return [p for p in parts if p != ""]


def _first_of(text: str, chars: tuple[str, ...], lo: int, hi: int) -> int:
    hits = [text.find(c, lo, hi) for c in chars]
    hits = [h for h in hits if h >= 0]
    return min(hits) if hits else -1


def to_parts(text: str, *, private: bool = False, unit: str = DEFAULT_UNIT) -> list[Part]:
    """A message's content as parts: marked segments where markers are present; otherwise the whole
    text as one private segment of `unit` if `private`, else public."""
    if has_markers(text):
        return parse_marked(text)
    if private and text:
        return [PrivateSegment(text, unit=unit)]
    return [text] if text else []
