"""`dpfusion budget show | reset | export` on a temp SQLite ledger (and PostgreSQL for show)."""

from __future__ import annotations

import csv
import io

import pytest

from dpfusion_chains.budget import PrivacyBudget
from dpfusion_chains.cli import main
from dpfusion_chains.core.accounting import rdp_to_epsilon

ALPHA, DELTA = 8.0, 1e-5


@pytest.fixture
def filled(tmp_path) -> str:
    url = f"sqlite:///{tmp_path / 'budget.db'}"
    budget = PrivacyBudget(epsilon=10.0, delta=DELTA, alpha=ALPHA, ledger=url)
    with budget.reserve({"rec-7", "rec-9"}, rdp=1.0, call_id="c-1", model="smollm2") as r:
        r.settle(rdp=0.5, tokens=20)
    budget.reserve({"rec-7"}, rdp=0.25, call_id="c-2", model="smollm2")  # still open
    budget.close()
    return url


def test_show_table(filled, capsys):
    assert main(["budget", "show", "--ledger", filled, "--epsilon", "10"]) == 0
    out = capsys.readouterr().out
    lines = [line.split() for line in out.splitlines()]
    assert lines[1] == ["unit", "alpha", "rdp", "epsilon", "delta", "calls", "open", "remaining"]
    rec7 = next(line for line in lines if line[0] == "rec-7")
    eps7 = rdp_to_epsilon(0.75, ALPHA, DELTA)
    assert rec7 == ["rec-7", "8", "0.75", f"{eps7:.4f}", "1e-05", "2", "1", f"{10 - eps7:.4f}"]
    assert any(line[0] == "rec-9" for line in lines)


def test_show_one_unit_and_unknown_unit(filled, capsys):
    assert main(["budget", "show", "--ledger", filled, "--unit", "rec-9", "--delta", "1e-6"]) == 0
    out = capsys.readouterr().out
    assert "rec-9" in out and "rec-7" not in out and f"{rdp_to_epsilon(0.5, ALPHA, 1e-6):.4f}" in out
    assert main(["budget", "show", "--ledger", filled, "--unit", "nobody"]) == 0
    assert "'nobody' has spent nothing" in capsys.readouterr().out


def test_show_plot_writes_a_png(filled, tmp_path, capsys):
    png = tmp_path / "budget.png"
    assert main(["budget", "show", "--ledger", filled, "--epsilon", "10", "--plot", str(png)]) == 0
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 1000
    assert f"plot written to {png}" in capsys.readouterr().out


def test_reset_needs_yes(filled, capsys):
    assert main(["budget", "reset", "--ledger", filled, "--unit", "rec-7"]) == 1
    assert "without --yes" in capsys.readouterr().err
    budget = PrivacyBudget(epsilon=10.0, delta=DELTA, alpha=ALPHA, ledger=filled)
    assert budget.spent_rdp("rec-7") == pytest.approx(0.75)
    assert main(["budget", "reset", "--ledger", filled, "--unit", "rec-7", "--yes"]) == 0
    assert "2 ledger row(s) removed" in capsys.readouterr().out
    assert budget.spent("rec-7") == 0.0 and budget.spent_rdp("rec-9") == pytest.approx(0.5)


def test_export_csv_to_stdout_and_file(filled, tmp_path, capsys):
    assert main(["budget", "export", "--ledger", filled, "--csv"]) == 0
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert [(r["call_id"], r["unit"], r["status"]) for r in rows] == [
        ("c-1", "rec-7", "settled"),
        ("c-1", "rec-9", "settled"),
        ("c-2", "rec-7", "reserved"),
    ]
    assert rows[0]["rdp"] == "0.5" and rows[0]["reserved_rdp"] == "1.0" and rows[0]["tokens"] == "20"
    assert rows[0]["model"] == "smollm2" and rows[2]["tokens"] == ""
    out = tmp_path / "ledger.csv"
    assert main(["budget", "export", "--ledger", filled, "--csv", str(out), "--unit", "rec-9"]) == 0
    with out.open() as fh:
        assert [r["unit"] for r in csv.DictReader(fh)] == ["rec-9"]


def test_bare_path_and_default_ledger(filled, tmp_path, monkeypatch, capsys):
    path = filled[len("sqlite:///") :]
    assert main(["budget", "show", "--ledger", path]) == 0
    assert "rec-7" in capsys.readouterr().out
    monkeypatch.setenv("DPFUSION_LEDGER", filled)
    assert main(["budget", "show"]) == 0
    assert "rec-7" in capsys.readouterr().out


def test_errors_are_one_line_and_exit_2(tmp_path, capsys):
    assert main(["budget", "show", "--ledger", "mysql://x"]) == 2
    assert "unknown ledger" in capsys.readouterr().err
    assert main(["budget", "show", "--ledger", str(tmp_path / "missing.db")]) == 2
    assert "no ledger file" in capsys.readouterr().err
    bad = tmp_path / "bad.db"
    bad.write_bytes(b"garbage" * 1000)
    assert main(["budget", "show", "--ledger", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "not a readable dpfusion ledger" in err and "Traceback" not in err
    with pytest.raises(SystemExit):
        main(["budget"])  # an action is required


@pytest.mark.postgres
def test_show_on_postgres(pg_url, capsys):
    budget = PrivacyBudget(epsilon=10.0, delta=DELTA, alpha=ALPHA, ledger=pg_url)
    budget.reserve({"tenant-a"}, rdp=0.5)
    assert main(["budget", "show", "--ledger", pg_url]) == 0
    assert "tenant-a" in capsys.readouterr().out
