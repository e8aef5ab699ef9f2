"""`dpfusion detect FILE [--profile health] [--detector presidio]`: show what a profile would hide.

Prints the text with every detected span highlighted (ANSI colours on a terminal, `[[text|TYPE]]`
brackets otherwise), then the public view (each span replaced by `[TYPE]`), then a span table,
so users can tune their profile's entities, thresholds and allow/deny lists.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TextIO

from dpfusion_chains.core.detect import DetectedSpan

_COLOURS = {
    "PERSON": "1;31",
    "LOCATION": "1;32",
    "ADDRESS": "1;32",
    "ORGANIZATION": "1;36",
    "DATE_TIME": "1;33",
    "AGE": "1;33",
    "ID": "1;35",
    "MONEY": "1;34",
}
_DEFAULT_COLOUR = "1;37;41"


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "detect",
        help="highlight the sensitive spans a detector finds in a text file, and show its public view",
        description="Run a detector over a text file (or '-' for stdin) and show the spans it marks sensitive.",
    )
    parser.add_argument("file", help="text file to scan ('-' reads standard input)")
    parser.add_argument("--profile", default="general", help="detection profile: general, health, legal, finance (default: general)")
    parser.add_argument("--detector", default="presidio", help="presidio (default), regex, whole, or hf (with --model-path)")
    parser.add_argument("--model-path", help="local token-classification model directory for --detector hf")
    parser.add_argument("--entities", help="comma-separated entity types to keep (default: the profile's)")
    parser.add_argument("--threshold", type=float, help="minimum score for a span (default: the profile's)")
    parser.add_argument("--deny", action="append", default=[], metavar="TERM", help="a term that is always sensitive (repeatable)")
    parser.add_argument("--allow", action="append", default=[], metavar="TERM", help="a term that is never sensitive (repeatable)")
    parser.add_argument("--color", choices=("auto", "always", "never"), default="auto", help="ANSI highlighting (default: when stdout is a terminal)")
    parser.add_argument("--no-table", action="store_true", help="do not print the span table")
    parser.set_defaults(func=run)


def _read(path: str) -> str:
    if path == "-":
        return sys.stdin.read()
    file = Path(path)
    if not file.is_file():
        raise FileNotFoundError(f"no such file: {path}")
    return file.read_text(encoding="utf-8")


def build_detector(args: argparse.Namespace) -> Any:
    from dpfusion_chains.core.detect import make_detector

    kind = args.detector.lower()
    if kind == "whole":
        return make_detector("whole")
    options: dict[str, Any] = {"profile": args.profile}
    if args.entities:
        options["entities"] = [e.strip().upper() for e in args.entities.split(",") if e.strip()]
    if args.threshold is not None:
        options["score_threshold"] = args.threshold
    if args.deny:
        options["deny_list"] = args.deny
    if args.allow:
        options["allow_list"] = args.allow
    if kind == "hf":
        if not args.model_path:
            raise ValueError("--detector hf needs --model-path DIR")
        options["model_path"] = args.model_path
    return make_detector(kind, **options)


def highlight(text: str, spans: Sequence[DetectedSpan], colour: bool) -> str:
    out: list[str] = []
    pos = 0
    for span in spans:
        out.append(text[pos : span.start])
        piece = text[span.start : span.end]
        if colour:
            code = _COLOURS.get(span.entity_type, _DEFAULT_COLOUR)
            out.append(f"\x1b[{code}m{piece}\x1b[0m\x1b[2m[{span.entity_type}]\x1b[0m")
        else:
            out.append(f"[[{piece}|{span.entity_type}]]")
        pos = span.end
    out.append(text[pos:])
    return "".join(out)


def public_view(text: str, spans: Sequence[DetectedSpan]) -> str:
    """Each span replaced by `[TYPE]`, as the typed placeholders of the public view do."""
    out: list[str] = []
    pos = 0
    for span in spans:
        out.append(text[pos : span.start])
        out.append(f"[{span.entity_type}]")
        pos = span.end
    out.append(text[pos:])
    return "".join(out)


def _table(text: str, spans: Sequence[DetectedSpan], stream: TextIO) -> None:
    print(f"{'start':>6} {'end':>6}  {'type':<14} {'score':>5}  text", file=stream)
    for s in spans:
        snippet = text[s.start : s.end].replace("\n", "⏎")
        print(f"{s.start:>6} {s.end:>6}  {s.entity_type:<14} {s.score:>5.2f}  {snippet}", file=stream)


def run(args: argparse.Namespace) -> int:
    from dpfusion_chains.core.detect import merge_spans

    text = _read(args.file)
    detector = build_detector(args)
    spans = merge_spans(detector.detect(text), len(text))
    stream = sys.stdout
    colour = args.color == "always" or (args.color == "auto" and stream.isatty())
    title = f"{detector!r}"
    print(f"== detected spans ({len(spans)}) by {title} ==", file=stream)
    print(highlight(text, spans, colour), file=stream)
    print("\n== public view ==", file=stream)
    print(public_view(text, spans), file=stream)
    if not args.no_table:
        print("\n== spans ==", file=stream)
        _table(text, spans, stream)
    return 0
