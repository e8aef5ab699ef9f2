"""`dpfusion budget show | reset | export`: inspect and administer a privacy budget ledger.

The ledger stores RDP per unit at its α; ε is shown at the δ the budget last used (``--delta``
overrides it). Limits live in the application's code, so ``--epsilon`` adds a "remaining" column.
"""

from __future__ import annotations

import argparse
import csv
import sys
from collections import Counter
from collections.abc import Iterable
from pathlib import Path
from typing import TextIO

from dpfusion_chains.budget.errors import LedgerError
from dpfusion_chains.budget.ledger import ENV_LEDGER, FIELDS, RESERVED, Ledger, LedgerEntry, UnitState, open_ledger


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "budget",
        help="show, reset or export the privacy budget ledger",
        description=f"Privacy budget ledger. Default ledger: ${ENV_LEDGER}, else a SQLite file in the user data directory.",
    )
    sub = parser.add_subparsers(dest="budget_command", metavar="ACTION", required=True)

    def ledger_option(p: argparse.ArgumentParser) -> None:
        p.add_argument("--ledger", metavar="URL", help="sqlite:///path.db, postgresql://…, or a path (default: see above)")

    show = sub.add_parser("show", help="ε spent per privacy unit (a table; a PNG bar chart with --plot)")
    ledger_option(show)
    show.add_argument("--unit", metavar="U", help="only this unit")
    show.add_argument("--delta", type=float, help="report ε at this δ instead of the one stored with each unit")
    show.add_argument("--epsilon", type=float, help="the units' ε limit: adds a 'remaining' column and a line on the plot")
    show.add_argument("--plot", metavar="OUT.png", help="also write a bar chart of ε per unit to this PNG file")
    show.set_defaults(func=_show)

    reset = sub.add_parser("reset", help="forget one unit's spending (deletes its ledger rows)")
    ledger_option(reset)
    reset.add_argument("--unit", metavar="U", required=True, help="the unit to reset")
    reset.add_argument("--yes", action="store_true", help="confirm: the unit's history is deleted for good")
    reset.set_defaults(func=_reset)

    export = sub.add_parser("export", help="write the ledger rows (ids and numbers, never text) as CSV")
    ledger_option(export)
    export.add_argument("--csv", metavar="FILE", nargs="?", const="-", required=True, help="CSV file (default: stdout)")
    export.add_argument("--unit", metavar="U", help="only this unit's rows")
    export.set_defaults(func=_export)


def _open(args: argparse.Namespace) -> Ledger:
    spec = args.ledger
    if spec and "://" not in spec:  # a bare path on the command line means a SQLite file
        path = Path(spec)
        if not path.is_file():
            raise FileNotFoundError(f"no ledger file at {spec}; give an existing SQLite file or a URL")
        return open_ledger(path)
    return open_ledger(spec)


def _guarded(run):
    """Storage errors become one line on stderr and exit status 2, like bad input."""

    def wrapper(args: argparse.Namespace) -> int:
        try:
            return run(args)
        except LedgerError as exc:
            print(f"dpfusion budget: error: {exc}", file=sys.stderr)
            return 2

    wrapper.__name__ = run.__name__
    return wrapper


def _rows(ledger: Ledger, states: Iterable[UnitState], delta: float | None, limit: float | None) -> list[list[str]]:
    entries = ledger.entries()
    calls = Counter(e.unit for e in entries)
    open_calls = Counter(e.unit for e in entries if e.status == RESERVED)
    rows = []
    for s in states:
        eps = s.epsilon(delta)
        row = [s.unit, f"{s.alpha:g}", f"{s.rdp:.6g}", f"{eps:.4f}", f"{delta if delta is not None else s.delta:g}"]
        row += [str(calls[s.unit]), str(open_calls[s.unit])]
        if limit is not None:
            row.append(f"{max(0.0, limit - eps):.4f}")
        rows.append(row)
    return rows


def _table(header: list[str], rows: list[list[str]], out: TextIO) -> None:
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(header)]
    for line in [header, *rows]:
        print("  ".join(cell.ljust(w) for cell, w in zip(line, widths)).rstrip(), file=out)


@_guarded
def _show(args: argparse.Namespace) -> int:
    with _open(args) as ledger:
        states = ledger.states([args.unit] if args.unit else None)
        if not states:
            what = f"unit {args.unit!r} has spent nothing" if args.unit else "no privacy unit has spent anything"
            print(f"{what} in {ledger.url}")
            return 0
        ordered = sorted(states.values(), key=lambda s: s.unit)
        header = ["unit", "alpha", "rdp", "epsilon", "delta", "calls", "open"]
        if args.epsilon is not None:
            header.append("remaining")
        print(f"ledger: {ledger.url}")
        _table(header, _rows(ledger, ordered, args.delta, args.epsilon), sys.stdout)
        if args.plot:
            _plot(ordered, args.delta, args.epsilon, args.plot, ledger.url)
            print(f"plot written to {args.plot}")
    return 0


def _plot(states: list[UnitState], delta: float | None, limit: float | None, path: str, title: str) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")  # files only: no display needed
        import matplotlib.pyplot as plt
    except ImportError as exc:
        raise ImportError("--plot needs matplotlib: pip install 'dpfusion-chains[plot]'") from exc
    fig, ax = plt.subplots(figsize=(max(4.0, 0.5 * len(states) + 2.0), 3.5))
    ax.bar([s.unit for s in states], [s.epsilon(delta) for s in states], color="#4c72b0")
    if limit is not None:
        ax.axhline(limit, color="#c44e52", linestyle="--", label=f"limit ε = {limit:g}")
        ax.legend()
    ax.set_ylabel("ε spent")
    ax.set_title(f"privacy budget — {title}", fontsize=9)
    ax.tick_params(axis="x", rotation=45)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


@_guarded
def _reset(args: argparse.Namespace) -> int:
    if not args.yes:
        print(
            f"dpfusion budget reset: refusing to reset unit {args.unit!r} without --yes: its spending history would be "
            "deleted and its full budget become available again.",
            file=sys.stderr,
        )
        return 1
    with _open(args) as ledger:
        removed = ledger.reset(args.unit)
        print(f"unit {args.unit!r} reset in {ledger.url}: {removed} ledger row(s) removed")
    return 0


@_guarded
def _export(args: argparse.Namespace) -> int:
    with _open(args) as ledger:
        entries = ledger.entries(args.unit)
    if args.csv == "-":
        _write_csv(entries, sys.stdout)
    else:
        with open(args.csv, "w", newline="", encoding="utf-8") as fh:
            _write_csv(entries, fh)
        print(f"{len(entries)} row(s) written to {args.csv}", file=sys.stderr)
    return 0


def _write_csv(entries: list[LedgerEntry], out: TextIO) -> None:
    writer = csv.DictWriter(out, fieldnames=list(FIELDS), lineterminator="\n")
    writer.writeheader()
    for entry in entries:
        writer.writerow(entry.as_dict())
