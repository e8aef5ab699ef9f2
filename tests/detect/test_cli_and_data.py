"""`dpfusion detect`, the bundled records and the labelled sets (exact labels, reproducible)."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from dpfusion_chains.cli import main
from dpfusion_chains.data import builder, make_records

ROOT = Path(__file__).resolve().parents[2]
RECORD = "Patient Jane Roe, aged 54, MRN 443-21, was admitted on 3 March 2024 with pneumonia.\n"


@pytest.fixture()
def record_file(tmp_path: Path) -> Path:
    path = tmp_path / "record.txt"
    path.write_text(RECORD, encoding="utf-8")
    return path


def test_detect_prints_brackets_public_view_and_table(record_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["detect", str(record_file), "--profile", "health", "--detector", "regex"]) == 0
    out = capsys.readouterr().out
    assert "[[Jane Roe|PERSON]]" in out and "[[443-21|ID]]" in out
    public = out.split("== public view ==")[1].split("== spans ==")[0]
    assert "Patient [PERSON], aged [AGE], MRN [ID], was admitted on [DATE_TIME] with pneumonia." in public
    assert "Jane" not in public and "\x1b[" not in out  # not a terminal: no ANSI codes
    assert "PERSON" in out.split("== spans ==")[1]


def test_detect_default_presidio_with_health_profile(record_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("presidio_analyzer")
    assert main(["detect", str(record_file), "--profile", "health"]) == 0
    out = capsys.readouterr().out
    assert "PresidioDetector(profile='health'" in out
    assert "Patient [PERSON], aged [AGE], MRN [ID]" in out


def test_detect_colour_lists_and_stdin(record_file: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    assert main(["detect", str(record_file), "--detector", "regex", "--color", "always", "--no-table", "--allow", "Jane Roe", "--deny", "pneumonia"]) == 0
    out = capsys.readouterr().out
    assert "\x1b[" in out and "== spans ==" not in out
    public = out.split("== public view ==")[1]
    assert "Patient Jane Roe" in public and "with [PRIVATE]." in public
    monkeypatch.setattr("sys.stdin", io.StringIO("Call 0161 496 0123."))
    assert main(["detect", "-", "--detector", "regex", "--entities", "phone_number"]) == 0
    assert "Call [PHONE_NUMBER]." in capsys.readouterr().out
    assert main(["detect", str(record_file), "--detector", "whole", "--no-table"]) == 0
    assert "[PRIVATE]\n" in capsys.readouterr().out


def test_detect_errors_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["detect", str(tmp_path / "missing.txt")]) == 2
    assert "no such file" in capsys.readouterr().err
    (tmp_path / "x.txt").write_text("x")
    assert main(["detect", str(tmp_path / "x.txt"), "--profile", "astrology", "--detector", "regex"]) == 2
    assert main(["detect", str(tmp_path / "x.txt"), "--detector", "hf"]) == 2
    assert "--model-path" in capsys.readouterr().err


def _check_labels(record: dict[str, object]) -> None:
    text = str(record["text"])
    last = 0
    for span in record["spans"]:  # type: ignore[union-attr]
        start, end = span["start"], span["end"]
        piece = text[start:end]
        assert piece and piece == piece.strip() and start >= last, (record["id"], piece)
        last = end


def test_bundled_records() -> None:
    records = json.loads((ROOT / "dpfusion_chains" / "data" / "records.json").read_text(encoding="utf-8"))
    assert len(records) >= 60
    assert {r["domain"] for r in records} == {"health", "legal", "finance"}
    assert len({r["id"] for r in records}) == len(records)
    for record in records:
        assert set(record) == {"id", "domain", "title", "text", "spans", "questions"}
        _check_labels(record)
        assert record["questions"] and {q["answer_in"] for q in record["questions"]} <= {"public", "private"}
        public = builder.public_text(record["text"], record["spans"])
        for q in record["questions"]:
            assert q["answer"] in record["text"]
            assert (q["answer"] in public) == (q["answer_in"] == "public"), (record["id"], q)
    assert sum(q["answer_in"] == "public" for r in records for q in r["questions"]) >= 60


@pytest.mark.parametrize(("name", "minimum"), [("detect_eval.jsonl", 200), ("detect_holdout.jsonl", 100), ("detect_holdout2.jsonl", 60)])
def test_labelled_sets(name: str, minimum: int) -> None:
    records = [json.loads(line) for line in (ROOT / "tests" / "data" / name).read_text(encoding="utf-8").splitlines()]
    assert len(records) >= minimum
    assert {r["domain"] for r in records} == {"health", "legal", "finance"}
    kinds = set()
    for record in records:
        _check_labels(record)
        kinds |= {s["type"] for s in record["spans"]}
    assert {"PERSON", "DATE_TIME", "ID", "ADDRESS", "ORGANIZATION", "MONEY"} <= kinds


def test_generator_is_deterministic_and_files_are_current() -> None:
    first = make_records.generate()
    second = make_records.generate()
    assert first == second
    assert make_records.main(["--check"]) == 0
    # the bundled records and the evaluation set share no person name
    def names(records: list[dict[str, object]]) -> set[str]:
        return {str(r["text"])[s["start"] : s["end"]] for r in records for s in r["spans"] if s["type"] == "PERSON"}  # type: ignore[index,union-attr]

    assert not names(first[make_records.RECORDS_PATH]) & names(first[make_records.EVAL_PATH])
