"""benchmarks.run_all (`make bench`): every benchmark with its arguments, one failure not hiding
the others, then the goals read from what they saved."""

from types import SimpleNamespace

from benchmarks import goals, run_all


def test_every_benchmark_runs_then_the_goals_and_a_failure_is_reported(monkeypatch, capsys):
    calls = []

    def module(name):
        def main(argv):
            calls.append((name, argv))
            if name == "benchmarks.reference_bench":
                raise RuntimeError("dp-fusion-lib could not be fetched")
        return SimpleNamespace(main=main)

    monkeypatch.setattr(run_all.importlib, "import_module", module)
    monkeypatch.setattr(goals, "main", lambda argv: calls.append(("benchmarks.goals", argv)))
    assert run_all.main() == 1
    assert calls[:-1] == run_all.BENCHMARKS  # in order, each with its arguments, past the failure
    assert ("benchmarks.batch_bench", ["--tokens", "128"]) in calls  # the goals read batching at 128 tokens too
    assert calls[-1][0] == "benchmarks.goals" and calls[-1][1][:1] == ["--device"]
    assert "benchmarks.reference_bench failed: RuntimeError: dp-fusion-lib could not be fetched" in capsys.readouterr().err
