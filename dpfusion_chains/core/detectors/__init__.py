"""Built-in detectors. Importing this package registers them with `core.detect`:

- ``"regex"``: our recognizers only (no spaCy; milliseconds),
- ``"presidio"`` (the default): Presidio + spaCy NER united with our recognizers,
- ``"regex:<profile>"`` / ``"presidio:<profile>"`` for each built-in profile (health, legal, finance, general).

Nothing here imports Presidio or spaCy; the factories do, on first use.
"""

from __future__ import annotations

from dpfusion_chains.core.detect import register_detector
from dpfusion_chains.core.detectors.factory import make_detector, register_builtin_detectors
from dpfusion_chains.core.detectors.names import NameAfterTriggerRecognizer, NameBeforeCueRecognizer
from dpfusion_chains.core.detectors.profiles import (
    BUILTIN_PROFILES,
    DetectionProfile,
    available_profiles,
    get_profile,
    register_profile,
)
from dpfusion_chains.core.detectors.recognizers import (
    KeywordValueRecognizer,
    PatternRecognizer,
    Recognizer,
    TermsRecognizer,
)
from dpfusion_chains.core.detectors.vocab import ENTITY_TYPES

register_builtin_detectors(register_detector)

__all__ = [
    "BUILTIN_PROFILES",
    "ENTITY_TYPES",
    "DetectionProfile",
    "KeywordValueRecognizer",
    "NameAfterTriggerRecognizer",
    "NameBeforeCueRecognizer",
    "PatternRecognizer",
    "Recognizer",
    "TermsRecognizer",
    "available_profiles",
    "get_profile",
    "make_detector",
    "register_profile",
]
