"""Profiles (entity sets, thresholds, extra recognizers) and what every detector does after its
recognizers ran: thresholds, allow/deny lists, merging, name propagation. Regex detector only: fast."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from dpfusion_chains.core.detect import DetectedSpan, merge_spans
from dpfusion_chains.core.detectors import BUILTIN_PROFILES, DetectionProfile, PatternRecognizer, get_profile, register_profile
from dpfusion_chains.core.detectors.policy import apply_profile
from dpfusion_chains.core.detectors.regex import RegexDetector

RECORD = "Patient Jane Roe, MRN 443-21, was seen at Riverside Clinic on 3 March 2024. Roe lives at 12 Elm Lane."


def spans_text(text: str, spans: list[DetectedSpan]) -> list[tuple[str, str]]:
    return [(text[s.start : s.end], s.entity_type) for s in spans]


def test_builtin_profiles_and_their_entity_sets() -> None:
    assert set(BUILTIN_PROFILES) == {"general", "health", "legal", "finance"}
    assert "ORGANIZATION" not in get_profile("general").entities
    for name in ("health", "legal", "finance"):
        assert "ORGANIZATION" in get_profile(name).entities
        assert name in get_profile(name).recognizer_sets
    with pytest.raises(ValueError, match="unknown detection profile"):
        get_profile("astrology")


def test_organisations_only_where_the_profile_asks() -> None:
    general = spans_text(RECORD, RegexDetector("general").detect(RECORD))
    health = spans_text(RECORD, RegexDetector("health").detect(RECORD))
    assert ("Riverside Clinic", "ORGANIZATION") in health
    assert not any(kind == "ORGANIZATION" for _, kind in general)
    assert "Riverside Clinic" not in [t for t, _ in general]


def test_detector_finds_the_issue_examples_and_merges_overlaps() -> None:
    spans = RegexDetector("health").detect(RECORD)
    found = spans_text(RECORD, spans)
    assert ("Jane Roe", "PERSON") in found
    assert ("443-21", "ID") in found
    assert ("12 Elm Lane", "ADDRESS") in found
    assert spans == merge_spans(spans, len(RECORD))  # sorted, non-overlapping


def test_names_are_propagated_to_other_mentions() -> None:
    found = spans_text(RECORD, RegexDetector("health").detect(RECORD))
    assert ("Roe", "PERSON") in found  # "Roe lives at ...": no cue, but the name was found before
    off = RegexDetector(get_profile("health").model_copy(update={"propagate_names": False})).detect(RECORD)
    assert ("Roe", "PERSON") not in spans_text(RECORD, off)


def test_names_listed_after_a_found_name() -> None:
    text = "Custody of the children, Benedetta, Farai and Tom, is shared."
    found = [t for t, kind in spans_text(text, RegexDetector("legal").detect(text)) if kind == "PERSON"]
    assert found == ["Benedetta", "Farai", "Tom"]


def test_allow_list_drops_exact_terms_and_spans_inside_them() -> None:
    text = "Dr Mary Seacole reviewed her on Mary Seacole Ward with Dr Ann Lee."
    allowed = RegexDetector("health", allow_list=["Mary Seacole Ward", "ann lee"]).detect(text)
    found = [t for t, _ in spans_text(text, allowed)]
    assert "Mary Seacole" in found  # the first mention is not inside the allowed ward name
    assert text.index("Mary Seacole Ward") not in [s.start for s in allowed]
    assert "Ann Lee" not in found


def test_deny_list_marks_terms_with_their_type() -> None:
    text = "The Falcon project and project falcon, not Falconry; see Ward 7B."
    spans = RegexDetector("general", deny_list={"Falcon": "ORGANIZATION", "Ward 7B": "LOCATION"}).detect(text)
    found = spans_text(text, spans)
    assert ("Falcon", "ORGANIZATION") in found and ("falcon", "ORGANIZATION") in found
    assert ("Ward 7B", "LOCATION") in found
    assert not any(t.startswith("Falconry") for t, _ in found)
    untyped = RegexDetector("general", deny_list=["Falcon"]).detect(text)
    assert ("Falcon", "PRIVATE") in spans_text(text, untyped)


def test_terms_both_allowed_and_denied_are_refused() -> None:
    with pytest.raises(ValidationError, match="both allowed and denied"):
        get_profile("general").extend(allow_list=["Acme"], deny_list=["acme"])


def test_thresholds_global_and_per_type() -> None:
    text = "Ref ZX-99120 and 443-21"
    weak = PatternRecognizer("weak", "CODE", r"ZX", 0.2)
    low = RegexDetector("general", recognizers=[weak], score_threshold=0.1).detect(text)
    assert ("ZX-99120", "ID") in spans_text(text, low) or any(t.startswith("ZX") for t, _ in spans_text(text, low))
    high = RegexDetector("general", recognizers=[weak], score_threshold=0.95).detect(text)
    assert high == []  # every pattern here scores below 0.95
    per_type = get_profile("general").extend(thresholds={"ID": 0.99})
    assert RegexDetector(per_type).detect(text) == []
    # an explicit global threshold replaces inherited per-type ones
    assert get_profile("health").extend(score_threshold=0.5).thresholds == {}


def test_entities_allow_list_and_user_types() -> None:
    text = "Jane Roe paid £40 on 3 March 2024; locker L-17."
    only_money = RegexDetector("general", entities=["money"]).detect(text)
    assert spans_text(text, only_money) == [("£40", "MONEY")]
    locker = PatternRecognizer("locker", "LOCKER", r"L-\d+", 0.9)
    with_user_type = RegexDetector("general", entities=["MONEY"], recognizers=[locker]).detect(text)
    assert ("L-17", "LOCKER") in spans_text(text, with_user_type)  # a user's own type always passes


def test_profile_validation_and_registration() -> None:
    with pytest.raises(ValidationError):
        DetectionProfile(name="bad", score_threshold=1.5)
    with pytest.raises(ValidationError):
        DetectionProfile(name="bad", recognizer_sets=("astrology",))
    with pytest.raises(ValidationError, match="find"):
        DetectionProfile(name="bad", recognizers=[object()])
    mine = get_profile("finance").extend(name="my-bank", deny_list=["Project Kestrel"])
    register_profile(mine)
    assert get_profile("my-bank") is mine
    assert mine.deny_list == {"Project Kestrel": "PRIVATE"}
    assert get_profile("finance").deny_list == {}  # the built-in is unchanged (profiles are immutable)


def test_apply_profile_clips_and_merges() -> None:
    text = "abcdefghij"
    spans = [DetectedSpan(0, 4, "PERSON", 0.9), DetectedSpan(3, 6, "ID", 0.95), DetectedSpan(8, 20, "ID", 0.9)]
    out = apply_profile(text, spans, get_profile("general").model_copy(update={"propagate_names": False}))
    assert out == [DetectedSpan(0, 6, "ID", 0.95), DetectedSpan(8, 10, "ID", 0.9)]


def test_merge_spans_matches_the_span_by_span_definition() -> None:
    import random

    def reference(spans: list[DetectedSpan], length: int | None) -> list[DetectedSpan]:
        ordered = sorted(s if length is None else DetectedSpan(s.start, min(s.end, length), s.entity_type, s.score) for s in spans if length is None or s.start < length)
        merged: list[DetectedSpan] = []
        for span in ordered:
            if merged and span.start <= merged[-1].end:
                last = merged[-1]
                winner = max((last, span), key=lambda s: (s.score, s.end - s.start))
                merged[-1] = DetectedSpan(last.start, max(last.end, span.end), winner.entity_type, max(last.score, span.score))
            else:
                merged.append(span)
        return merged

    rng = random.Random(3)
    for _ in range(3000):
        spans = []
        for _ in range(rng.randint(0, 10)):
            start = rng.randint(0, 30)
            spans.append(DetectedSpan(start, start + rng.randint(1, 8), rng.choice("ABC"), rng.choice([0.5, 0.85, 0.9, 1.0])))
        length = rng.choice([None, 10, 40])
        assert merge_spans(spans, length) == reference(spans, length), (spans, length)
