"""`make_detector`: one entry point that builds (once) a configured detector.

    make_detector("presidio", profile="health", deny_list=["Ward 7B"], score_threshold=0.3)
    make_detector("regex:finance")
    make_detector("hf", model_path="/models/my-ner")

The same configuration returns the same object, so engines and callers can ask for a detector per
call without rebuilding Presidio's AnalyzerEngine or re-reading a model.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Hashable
from typing import Any

from dpfusion_chains.core.detect import Detector, WholeSegmentDetector
from dpfusion_chains.core.detectors.profiles import BUILTIN_PROFILES, DetectionProfile, resolve_profile

KINDS = ("presidio", "regex", "whole", "hf")
_PROFILE_OPTIONS = ("entities", "score_threshold", "allow_list", "deny_list", "recognizers")
_CACHE: dict[Hashable, Detector] = {}
_LOCK = threading.RLock()


def _split(spec: str) -> tuple[str, str | None]:
    kind, _, profile = spec.partition(":")
    return kind.strip().lower(), (profile.strip() or None)


def _freeze(value: Any) -> Hashable:
    if isinstance(value, dict):
        return tuple(sorted((k, _freeze(v)) for k, v in value.items()))
    if isinstance(value, (list, tuple, set, frozenset)):
        items = [_freeze(v) for v in value]
        return tuple(sorted(items, key=repr)) if isinstance(value, (set, frozenset)) else tuple(items)
    try:
        hash(value)
    except TypeError:
        return ("id", id(value))
    return value


def make_detector(spec: str = "presidio", /, *, profile: str | DetectionProfile | None = None, **options: Any) -> Detector:
    """A configured detector, built on first request and shared afterwards.

    ``spec``: ``"presidio"`` (default), ``"regex"``, ``"whole"``, ``"hf"``, optionally with a profile
    (``"presidio:health"``). Options: ``profile``, ``entities``, ``score_threshold``, ``allow_list``,
    ``deny_list``, ``recognizers``; Presidio also ``language``, ``spacy_model``, ``ner_scope``; ``hf`` takes
    ``model_path`` and the options of `HFTokenClassifierDetector`.
    """
    kind, spec_profile = _split(spec)
    if kind not in KINDS:
        raise ValueError(f"unknown detector kind {kind!r}; choose one of {list(KINDS)}, e.g. 'presidio:health'")
    if spec_profile and profile is not None:
        raise ValueError(f"profile given twice: in {spec!r} and profile={profile!r}")
    if kind == "whole":
        if options or profile or spec_profile:
            raise ValueError("the whole-segment detector takes no options: the whole private segment is sensitive")
        return _cached(("whole",), WholeSegmentDetector)

    profile_options = {k: options.pop(k) for k in _PROFILE_OPTIONS if k in options}
    resolved = resolve_profile(profile if profile is not None else spec_profile, **profile_options)
    key = (kind, resolved.cache_key(), _freeze(options))

    if kind == "regex":
        if options:
            raise TypeError(f"unexpected options for the regex detector: {sorted(options)}")
        from dpfusion_chains.core.detectors.regex import RegexDetector

        return _cached(key, lambda: RegexDetector(resolved))
    if kind == "presidio":
        unknown = set(options) - {"language", "spacy_model", "ner_scope"}
        if unknown:
            raise TypeError(f"unexpected options for the Presidio detector: {sorted(unknown)}")
        from dpfusion_chains.core.detectors.presidio import PresidioDetector

        return _cached(key, lambda: PresidioDetector(resolved, **options))
    if "model_path" not in options:
        raise ValueError("the 'hf' detector needs model_path=<local directory of a token-classification model>")
    from dpfusion_chains.core.detectors.hf_tagger import HFTokenClassifierDetector

    return _cached(key, lambda: HFTokenClassifierDetector(profile=resolved, **options))


def _cached(key: Hashable, build: Callable[[], Detector]) -> Detector:
    with _LOCK:
        detector = _CACHE.get(key)
        if detector is None:
            detector = _CACHE[key] = build()
        return detector


def register_builtin_detectors(register: Callable[[str, Callable[[], Detector]], None]) -> None:
    """Register "regex", "presidio" and their "<kind>:<profile>" variants with the core registry."""
    for kind in ("regex", "presidio"):
        register(kind, lambda kind=kind: make_detector(kind))
        for name in BUILTIN_PROFILES:
            register(f"{kind}:{name}", lambda kind=kind, name=name: make_detector(kind, profile=name))
