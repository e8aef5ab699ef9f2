"""Domain profiles: which entity types count as sensitive, score thresholds, which extra
recognizers run, and the user's always-/never-sensitive terms.

    from dpfusion_chains.core.detectors import get_profile
    mine = get_profile("health").extend(deny_list={"Ward 7B": "LOCATION"}, allow_list=["Macmillan"])
    detector = make_detector("presidio", profile=mine)
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from dpfusion_chains.core.detect import WHOLE_SEGMENT_TYPE
from dpfusion_chains.core.detectors.vocab import ENTITY_TYPES

GENERAL_ENTITIES: frozenset[str] = frozenset(ENTITY_TYPES) - {"ORGANIZATION"}
RECOGNIZER_SET_NAMES = ("health", "legal", "finance")


class DetectionProfile(BaseModel):
    """A named detection configuration. Immutable; `extend` returns a modified copy."""

    model_config = ConfigDict(frozen=True, arbitrary_types_allowed=True, extra="forbid")

    name: str = Field(min_length=1)
    description: str = ""
    entities: frozenset[str] = Field(default=GENERAL_ENTITIES, description="types kept; types outside the vocabulary (a user's own) always pass")
    score_threshold: float = Field(default=0.4, ge=0.0, le=1.0, description="spans scoring below are dropped")
    thresholds: dict[str, float] = Field(default_factory=dict, description="per-type thresholds overriding score_threshold")
    recognizer_sets: tuple[str, ...] = Field(default=(), description="built-in extra recognizer sets: health, legal, finance")
    recognizers: tuple[Any, ...] = Field(default=(), description="user recognizers: objects with name and find(text)")
    allow_list: tuple[str, ...] = Field(default=(), description="terms never sensitive (exact, case-insensitive)")
    deny_list: dict[str, str] = Field(default_factory=dict, description="terms always sensitive -> their type")
    propagate_names: bool = Field(default=True, description="also mark other mentions of names found (full name, and its words)")

    @field_validator("entities", mode="before")
    @classmethod
    def _upper_entities(cls, value: Iterable[str]) -> frozenset[str]:
        if isinstance(value, str):
            value = [value]
        return frozenset(str(v).upper() for v in value)

    @field_validator("thresholds")
    @classmethod
    def _check_thresholds(cls, value: dict[str, float]) -> dict[str, float]:
        for key, threshold in value.items():
            if not 0.0 <= threshold <= 1.0:
                raise ValueError(f"threshold for {key} must be in [0, 1], got {threshold}")
        return {k.upper(): float(v) for k, v in value.items()}

    @field_validator("recognizer_sets", mode="before")
    @classmethod
    def _check_sets(cls, value: Iterable[str]) -> tuple[str, ...]:
        names = (value,) if isinstance(value, str) else tuple(value)
        unknown = [n for n in names if n not in RECOGNIZER_SET_NAMES]
        if unknown:
            raise ValueError(f"unknown recognizer set(s) {unknown}; choose from {list(RECOGNIZER_SET_NAMES)}")
        return names

    @field_validator("recognizers", mode="before")
    @classmethod
    def _check_recognizers(cls, value: Iterable[Any]) -> tuple[Any, ...]:
        items = tuple(value)
        for item in items:
            if not callable(getattr(item, "find", None)) and not _is_presidio_recognizer(item):
                raise ValueError(
                    f"a recognizer needs a find(text) method returning DetectedSpans (or be a Presidio EntityRecognizer), got {type(item).__name__}"
                )
        return items

    @field_validator("allow_list", mode="before")
    @classmethod
    def _clean_allow(cls, value: Iterable[str]) -> tuple[str, ...]:
        if isinstance(value, str):
            value = [value]
        return tuple(dict.fromkeys(t.strip() for t in value if t and t.strip()))

    @field_validator("deny_list", mode="before")
    @classmethod
    def _clean_deny(cls, value: Iterable[str] | Mapping[str, str]) -> dict[str, str]:
        if isinstance(value, str):
            value = [value]
        pairs = value.items() if isinstance(value, Mapping) else ((term, WHOLE_SEGMENT_TYPE) for term in value)
        return {t.strip(): (kind or WHOLE_SEGMENT_TYPE).upper() for t, kind in pairs if t and t.strip()}

    @model_validator(mode="after")
    def _no_conflicting_terms(self) -> DetectionProfile:
        clash = {t.lower() for t in self.allow_list} & {t.lower() for t in self.deny_list}
        if clash:
            raise ValueError(f"terms both allowed and denied: {sorted(clash)}")
        return self

    def threshold_for(self, entity_type: str) -> float:
        return self.thresholds.get(entity_type, self.score_threshold)

    def keeps(self, entity_type: str) -> bool:
        return entity_type in self.entities or entity_type not in ENTITY_TYPES

    def extend(
        self,
        *,
        name: str | None = None,
        entities: Iterable[str] | None = None,
        score_threshold: float | None = None,
        thresholds: Mapping[str, float] | None = None,
        recognizers: Iterable[Any] = (),
        allow_list: Iterable[str] = (),
        deny_list: Iterable[str] | Mapping[str, str] = (),
        recognizer_sets: Iterable[str] = (),
    ) -> DetectionProfile:
        """A copy with terms/recognizers added and entities/thresholds replaced where given."""
        deny = self._clean_deny(deny_list)
        data: dict[str, Any] = {
            "name": name or self.name,
            "description": self.description,
            "entities": self.entities if entities is None else entities,
            "score_threshold": self.score_threshold if score_threshold is None else score_threshold,
            # An explicit global threshold replaces the inherited per-type ones (the user means "this").
            "thresholds": {**({} if score_threshold is not None else self.thresholds), **(dict(thresholds) if thresholds else {})},
            "recognizer_sets": tuple(dict.fromkeys((*self.recognizer_sets, *recognizer_sets))),
            "recognizers": (*self.recognizers, *recognizers),
            "allow_list": (*self.allow_list, *([allow_list] if isinstance(allow_list, str) else allow_list)),
            "deny_list": {**self.deny_list, **deny},
            "propagate_names": self.propagate_names,
        }
        return DetectionProfile(**data)

    def cache_key(self) -> tuple[Any, ...]:
        """Hashable identity of this configuration (user recognizers by object identity)."""
        return (
            self.name,
            self.entities,
            self.score_threshold,
            tuple(sorted(self.thresholds.items())),
            self.recognizer_sets,
            tuple(id(r) for r in self.recognizers),
            self.allow_list,
            tuple(sorted(self.deny_list.items())),
            self.propagate_names,
        )


def _is_presidio_recognizer(obj: Any) -> bool:
    return any(cls.__name__ == "EntityRecognizer" for cls in type(obj).__mro__)


_ID_SETS = RECOGNIZER_SET_NAMES
BUILTIN_PROFILES: dict[str, DetectionProfile] = {
    "general": DetectionProfile(
        name="general",
        description="Any text: people, places, dates, contact details, identifiers, money, payment data. "
        "Runs every identifier recognizer (MRN, case, account numbers) but keeps organisations public.",
        recognizer_sets=_ID_SETS,
    ),
    "health": DetectionProfile(
        name="health",
        description="Patient records: adds care facilities (ORGANIZATION), MRN, NHS-style and insurance numbers.",
        entities=GENERAL_ENTITIES | {"ORGANIZATION"},
        recognizer_sets=("health",),
        thresholds={"PERSON": 0.3, "ID": 0.3},
    ),
    "legal": DetectionProfile(
        name="legal",
        description="Case files: adds courts, tribunals and law firms (ORGANIZATION), case/application numbers, neutral citations.",
        entities=GENERAL_ENTITIES | {"ORGANIZATION"},
        recognizer_sets=("legal",),
        thresholds={"PERSON": 0.3, "ID": 0.3},
    ),
    "finance": DetectionProfile(
        name="finance",
        description="Bank statements: adds banks and employers (ORGANIZATION), SWIFT/BIC, sort codes, account and card references.",
        entities=GENERAL_ENTITIES | {"ORGANIZATION"},
        recognizer_sets=("finance",),
        thresholds={"ID": 0.3, "MONEY": 0.3},
    ),
}
_USER_PROFILES: dict[str, DetectionProfile] = {}
_LOCK = threading.Lock()


def register_profile(profile: DetectionProfile) -> None:
    """Make `profile=<name>` (and `detector="presidio:<name>"` after re-registration) find it."""
    with _LOCK:
        _USER_PROFILES[profile.name] = profile


def available_profiles() -> list[str]:
    return sorted({*BUILTIN_PROFILES, *_USER_PROFILES})


def get_profile(profile: str | DetectionProfile | None = None) -> DetectionProfile:
    if isinstance(profile, DetectionProfile):
        return profile
    name = profile or "general"
    found = _USER_PROFILES.get(name) or BUILTIN_PROFILES.get(name)
    if found is None:
        raise ValueError(f"unknown detection profile {name!r}; choose one of {available_profiles()} or pass a DetectionProfile")
    return found


def resolve_profile(
    profile: str | DetectionProfile | None = None,
    *,
    entities: Iterable[str] | None = None,
    score_threshold: float | None = None,
    allow_list: Iterable[str] = (),
    deny_list: Iterable[str] | Mapping[str, str] = (),
    recognizers: Iterable[Any] = (),
) -> DetectionProfile:
    """The profile with the per-detector overrides applied (unchanged when none are given)."""
    base = get_profile(profile)
    recognizers = tuple(recognizers)
    if entities is None and score_threshold is None and not allow_list and not deny_list and not recognizers:
        return base
    return base.extend(entities=entities, score_threshold=score_threshold, allow_list=allow_list, deny_list=deny_list, recognizers=recognizers)
