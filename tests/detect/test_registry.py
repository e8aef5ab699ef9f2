"""Detector names, `make_detector`, and build-once reuse (no Presidio here: see test_presidio.py)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from dpfusion_chains.core.detect import Detector, WholeSegmentDetector, available_detectors, make_detector, resolve_detector
from dpfusion_chains.core.detectors import PatternRecognizer, get_profile
from dpfusion_chains.core.detectors.regex import RegexDetector


def test_builtin_names_are_registered() -> None:
    resolve_detector("regex")  # importing the package registers the built-ins
    names = set(available_detectors())
    assert {"regex", "presidio", "whole"} <= names
    assert {f"{kind}:{p}" for kind in ("regex", "presidio") for p in ("general", "health", "legal", "finance")} <= names


def test_resolve_returns_one_shared_instance_per_name() -> None:
    regex = resolve_detector("regex")
    assert isinstance(regex, RegexDetector)
    assert resolve_detector("regex") is regex
    assert make_detector("regex") is regex  # the registry and the factory share instances
    assert isinstance(resolve_detector("whole"), WholeSegmentDetector)
    health = resolve_detector("regex:health")
    assert health.profile.name == "health" and resolve_detector("regex:health") is health
    custom = RegexDetector("legal")
    assert resolve_detector(custom) is custom


def test_make_detector_caches_per_configuration() -> None:
    a = make_detector("regex", profile="finance", deny_list=["Kestrel"])
    assert make_detector("regex", profile="finance", deny_list=["Kestrel"]) is a
    assert make_detector("regex:finance", deny_list=["Kestrel"]) is a
    assert make_detector("regex", profile="finance", deny_list=["Osprey"]) is not a
    assert make_detector("regex", profile="finance") is not a
    recognizer = PatternRecognizer("locker", "LOCKER", r"L-\d+")
    b = make_detector("regex", recognizers=[recognizer])
    assert make_detector("regex", recognizers=[recognizer]) is b
    assert make_detector("regex", profile=get_profile("health")) is make_detector("regex", profile="health")


def test_make_detector_errors_name_the_fix() -> None:
    with pytest.raises(ValueError, match="unknown detector kind"):
        make_detector("spacy")
    with pytest.raises(ValueError, match="takes no options"):
        make_detector("whole", profile="health")
    with pytest.raises(ValueError, match="profile given twice"):
        make_detector("regex:health", profile="legal")
    with pytest.raises(TypeError, match="unexpected options"):
        make_detector("regex", language="de")
    with pytest.raises(ValueError, match="model_path"):
        make_detector("hf")
    with pytest.raises(ValueError, match="unknown detector"):
        resolve_detector("no-such-detector")
    detector = RegexDetector()
    assert make_detector(detector) is detector
    with pytest.raises(ValueError):
        make_detector(detector, profile="health")


def test_regex_detector_refuses_presidio_recognizers() -> None:
    class EntityRecognizer:  # stands in for presidio_analyzer.EntityRecognizer (matched by class name)
        supported_entities = ["X"]

    with pytest.raises(TypeError, match="Presidio recognizers need the Presidio detector"):
        RegexDetector("general", recognizers=[EntityRecognizer()])


def test_whole_segment_detector() -> None:
    whole = make_detector("whole")
    text = "  Jane Roe, 12 Elm Lane  \n"
    (span,) = whole.detect(text)
    assert text[span.start : span.end] == "Jane Roe, 12 Elm Lane" and span.entity_type == "PRIVATE"
    assert isinstance(whole, Detector)


def test_importing_detectors_loads_neither_presidio_nor_spacy() -> None:
    code = (
        "import sys\n"
        "from dpfusion_chains.core.detect import resolve_detector\n"
        "d = resolve_detector('regex'); d.detect('Patient Jane Roe, MRN 443-21')\n"
        "heavy = [m for m in ('presidio_analyzer', 'spacy', 'torch', 'transformers') if m in sys.modules]\n"
        "print(','.join(heavy))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""
