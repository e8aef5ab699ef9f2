"""benchmarks.goals: every goal judged on the figure a benchmark saved, never on one it did not."""

import json

import pytest

from benchmarks import goals


def save(directory, name, report):
    (directory / f"{name}.json").write_text(json.dumps(report))


def engine(ratios, shares):
    return {"rows": [{"groups": g, "ratio": r, "lambda_share_of_step_time": s}
                     for g, r, s in zip((1, 2, 4), ratios, shares)]}


def batch(tokens, speedup):
    return {"tokens": tokens, "rows": [{"way": "sequential", "speedup": 1.0}, {"way": "batch", "speedup": speedup}]}


def by_goal(rows):
    return {(r["goal"], r["label"]): r for r in rows}


def test_figures_are_judged_against_their_own_goals(tmp_path):
    save(tmp_path, "engine_bench", engine([0.7, 0.5, 0.4], [0.02, 0.049, 0.051]))
    save(tmp_path, "batch_bench", batch(24, 2.7))
    save(tmp_path, "batch_bench_128tokens", batch(128, 3.4))
    save(tmp_path, "reference_bench", {"requests": 8, "speedup_one": 1.6, "speedup_many": 3.9})
    rows = by_goal(goals.collect("cpu", results=tmp_path))
    ratio = "DP-Fusion ÷ plain generate, tokens/s"
    assert rows[(ratio, "G=1")]["met"] is True and rows[(ratio, "G=1")]["target"] == 0.65
    assert rows[(ratio, "G=2")]["met"] is None  # the goal is for one group: shown, not judged
    share = "λ search + mixing, share of step time"
    assert [rows[(share, f"G={g}")]["met"] for g in (1, 2, 4)] == [True, True, False]
    assert rows[(share, "G=4")]["value"] == pytest.approx(5.1)
    batched = "8 requests batched ÷ 8 sequential"
    assert rows[(batched, "24 tokens")]["met"] is False and rows[(batched, "128 tokens")]["met"] is True
    reference = "÷ dp-fusion-lib 0.1.0, tokens/s"
    assert (rows[(reference, "1 request")]["target"], rows[(reference, "1 request")]["met"]) == (1.5, True)
    assert (rows[(reference, "8 requests")]["target"], rows[(reference, "8 requests")]["met"]) == (4.0, False)
    assert "NOT met" in goals.describe(rows[(reference, "8 requests")])


def test_a_missing_result_reads_not_measured_and_a_gpu_has_its_own_goals(tmp_path):
    save(tmp_path, "engine_bench_compile-on_cuda", engine([0.85, 1.0, 1.0], [0.01, 0.01, 0.01]))
    rows = goals.collect("cuda", "_compile-on", results=tmp_path)
    assert not any(r["goal"].startswith("8 requests") for r in rows)  # a CPU goal
    gpu = by_goal(rows)[("DP-Fusion ÷ plain generate, tokens/s", "G=1")]
    assert (gpu["target"], gpu["met"]) == (0.90, False)
    missing = [r for r in rows if r["value"] is None]
    assert [r["source"] for r in missing] == ["reference_bench_compile-on_cuda.json"]
    assert goals.describe(missing[0]).endswith("not measured (reference_bench_compile-on_cuda.json missing)")


def test_the_plot_is_written_where_matplotlib_is(tmp_path):
    pytest.importorskip("matplotlib")
    save(tmp_path, "batch_bench", batch(24, 2.7))
    assert goals.plot(goals.collect("cpu", results=tmp_path), tmp_path / "goals.png")
    assert (tmp_path / "goals.png").stat().st_size > 0
    assert not goals.plot([], tmp_path / "none.png")  # nothing measured, nothing drawn
