"""`make bench`'s last word: each speed goal of the project beside the figures its benchmark saved.

    python -m benchmarks.goals [--device cpu|cuda] [--suffix _compile-on]

Reads what the last runs saved under benchmarks/results/ (engine_bench, batch_bench at 24 and
at 128 tokens, reference_bench: what `make bench` runs; `--suffix` picks results run with changed
engine flags, as their file names say), prints one line per figure with its goal and whether it
is met, and draws them as benchmarks/results/goals.png (goals_cuda.png from a GPU's results): a
bar per figure, green where it meets its goal, red where not (grey: no goal), its goal dashed
across it. A figure whose benchmark has not been run reads "not measured". Nothing is measured
here: a figure is only ever one a benchmark printed.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results"  # every benchmark saves here


def result_name(stem: str, device: str, extension: str) -> str:
    """A saved result's file name (speed_common.save's too): a GPU's results beside the CPU's."""
    return stem + ("" if device == "cpu" else f"_{device}") + extension


Figure = tuple[str, float, float | None]  # label, value, the goal it must meet (None: shown, not judged)


@dataclass(frozen=True)
class Goal:
    title: str
    result: str                 # benchmark result name, before the flags suffix and the device
    figures: Callable[[dict[str, Any]], list[Figure]]
    at_least: bool              # a figure must reach its goal (else stay under it)
    unit: str = "×"
    cpu_only: bool = False


def _batch_speedup(report: dict[str, Any]) -> list[Figure]:
    batch = next(r for r in report["rows"] if r["way"] == "batch")
    return [(f"{report['tokens']} tokens", batch["speedup"], 3.0)]


def goals(device: str) -> list[Goal]:
    """The goals of the speed issue (docs: README's speed table), as figures of saved reports."""
    plain = 0.65 if device == "cpu" else 0.90
    return [
        Goal("DP-Fusion ÷ plain generate, tokens/s", "engine_bench",  # the goal is for one group
             lambda r: [(f"G={x['groups']}", x["ratio"], plain if x["groups"] == 1 else None) for x in r["rows"]],
             at_least=True),
        Goal("λ search + mixing, share of step time", "engine_bench",
             lambda r: [(f"G={x['groups']}", 100 * x["lambda_share_of_step_time"], 5.0) for x in r["rows"]],
             at_least=False, unit=" %"),
        Goal("8 requests batched ÷ 8 sequential", "batch_bench", _batch_speedup, at_least=True, cpu_only=True),
        Goal("8 requests batched ÷ 8 sequential", "batch_bench_128tokens", _batch_speedup, at_least=True,
             cpu_only=True),
        Goal("÷ dp-fusion-lib 0.1.0, tokens/s", "reference_bench",
             lambda r: [("1 request", r["speedup_one"], 1.5), (f"{r['requests']} requests", r["speedup_many"], 4.0)],
             at_least=True),
    ]


def collect(device: str = "cpu", suffix: str = "", results: Path = RESULTS) -> list[dict[str, Any]]:
    """One row per figure: goal, label, value (None where not measured), target (None where not
    judged), met (None likewise), source file."""
    rows = []
    for goal in goals(device):
        if goal.cpu_only and device != "cpu":
            continue
        path = results / result_name(goal.result + suffix, device, ".json")
        common = {"goal": goal.title, "at_least": goal.at_least, "unit": goal.unit, "source": path.name}
        if not path.exists():
            rows.append({**common, "label": "", "value": None, "target": None, "met": None})
            continue
        for label, value, target in goal.figures(json.loads(path.read_text())):
            met = None if target is None else value >= target if goal.at_least else value <= target
            rows.append({**common, "label": label, "value": value, "target": target, "met": met})
    return rows


def describe(row: dict[str, Any]) -> str:
    if row["value"] is None:
        return f"{row['goal']}: not measured ({row['source']} missing)"
    figure = f"{row['value']:.2f}{row['unit']}"
    if row["met"] is None:
        return f"{row['goal']}, {row['label']}: {figure} (no goal for this figure; {row['source']})"
    sign = "≥" if row["at_least"] else "≤"
    verdict = "met" if row["met"] else "NOT met"
    return f"{row['goal']}, {row['label']}: {figure}, goal {sign} {row['target']:g}{row['unit']}: {verdict} ({row['source']})"


def plot(rows: list[dict[str, Any]], path: Path) -> bool:
    """The measured figures as bars beside their goals; False where matplotlib is missing."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    titles = list(dict.fromkeys(r["goal"] for r in rows if r["value"] is not None))
    if not titles:
        return False
    fig, axes = plt.subplots(1, len(titles), figsize=(3.6 * len(titles), 3.6), squeeze=False)
    for ax, title in zip(axes[0], titles):
        mine = [r for r in rows if r["goal"] == title and r["value"] is not None]
        colors = ["tab:gray" if r["met"] is None else "tab:green" if r["met"] else "tab:red" for r in mine]
        ax.bar(range(len(mine)), [r["value"] for r in mine], color=colors)
        ax.set_xticks(range(len(mine)), [r["label"] for r in mine])
        for x, r in enumerate(mine):  # each figure's own goal, across its bar
            if r["target"] is not None:
                ax.hlines(r["target"], x - 0.45, x + 0.45, linestyles="--", colors="black", linewidth=1.2)
        ax.set_title(title, fontsize=9)
        ax.set_ylabel(mine[0]["unit"].strip())
        ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    return True


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu", help="whose results to read")
    parser.add_argument("--suffix", default="", help="the engine flags' suffix of the result files, e.g. _compile-on")
    args = parser.parse_args(argv)
    rows = collect(args.device, args.suffix)
    for row in rows:
        print(describe(row))
    png = RESULTS / result_name("goals" + args.suffix, args.device, ".png")
    if plot(rows, png):
        print(f"plot: {png.relative_to(RESULTS.parent.parent)}")
    return rows


if __name__ == "__main__":
    main()
