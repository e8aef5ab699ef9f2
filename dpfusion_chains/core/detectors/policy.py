"""What every configured detector does after its recognizers ran: keep the profile's entity types
above their thresholds, drop allow-listed terms, add deny-listed terms, merge overlaps."""

from __future__ import annotations

import re
from collections.abc import Iterable
from functools import lru_cache

from dpfusion_chains.core.detect import DetectedSpan, merge_spans
from dpfusion_chains.core.detectors.names import extend_name_lists, propagate_names
from dpfusion_chains.core.detectors.profiles import DetectionProfile


@lru_cache(maxsize=256)
def _terms_regex(terms: tuple[str, ...]) -> re.Pattern[str]:
    body = "|".join(re.escape(t) for t in sorted(terms, key=len, reverse=True))
    return re.compile(rf"(?<!\w)(?:{body})(?!\w)", re.IGNORECASE)


def _occurrences(text: str, terms: Iterable[str]) -> list[tuple[int, int, str]]:
    terms = tuple(terms)
    if not terms:
        return []
    return [(m.start(), m.end(), m.group()) for m in _terms_regex(terms).finditer(text)]


def apply_profile(text: str, spans: Iterable[DetectedSpan], profile: DetectionProfile) -> list[DetectedSpan]:
    kept = [s for s in spans if profile.keeps(s.entity_type) and s.score >= profile.threshold_for(s.entity_type)]
    if profile.allow_list:
        # A span lying inside an allowed term ("Mary" in an allowed "Mary Seacole Ward") is public too.
        allowed = _occurrences(text, profile.allow_list)
        kept = [s for s in kept if not any(a <= s.start and s.end <= b for a, b, _ in allowed)]
    if profile.deny_list:
        lookup = {term.lower(): kind for term, kind in profile.deny_list.items()}
        kept.extend(DetectedSpan(a, b, lookup.get(found.lower(), "PRIVATE"), 1.0) for a, b, found in _occurrences(text, profile.deny_list))
    if profile.propagate_names and profile.keeps("PERSON"):
        kept.extend(extend_name_lists(text, kept))
        kept.extend(propagate_names(text, kept))
        if profile.allow_list:
            kept = [s for s in kept if not any(a <= s.start and s.end <= b for a, b, _ in allowed)]
    return merge_spans(kept, len(text))
