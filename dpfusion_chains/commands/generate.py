"""`dpfusion generate`: one DP-Fusion call from the command line."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from dpfusion_chains.commands._common import add_engine_options, add_privacy_options, build_engine, settings_from


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("generate", help="answer a prompt about a private text with DP-Fusion")
    add_engine_options(p)
    add_privacy_options(p)
    p.add_argument("--private-file", type=Path, help="file with the private text ('-' for stdin)")
    p.add_argument("--private", dest="private_text", help="the private text itself")
    p.add_argument("--unit", default="document", help="privacy unit charged for the private text")
    p.add_argument("--system", default="Answer using only the document. Be brief.")
    p.add_argument("--ledger", help="budget ledger URL (sqlite:///…, postgresql://…, memory://)")
    p.add_argument("--budget-epsilon", type=float, help="ε limit per unit when --ledger is given")
    p.add_argument("--json", action="store_true", help="print the result's metadata as JSON")
    p.add_argument("prompt", help="the (public) question or instruction")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from dpfusion_chains.core.spans import private

    if args.private_file is not None:
        text = sys.stdin.read() if str(args.private_file) == "-" else args.private_file.read_text(encoding="utf-8")
    elif args.private_text is not None:
        text = args.private_text
    else:
        raise ValueError("give the private text with --private-file FILE or --private TEXT")
    budget = None
    if args.ledger:
        from dpfusion_chains.budget import PrivacyBudget

        if args.budget_epsilon is None:
            raise ValueError("--ledger needs --budget-epsilon (the ε limit per unit)")
        budget = PrivacyBudget(epsilon=args.budget_epsilon, delta=args.delta, alpha=args.alpha or 8.0, ledger=args.ledger)
    engine = build_engine(args)
    messages = [{"role": "system", "content": args.system},
                {"role": "user", "content": ["Document:\n", private(text, unit=args.unit), f"\n\n{args.prompt}"]}]
    result = engine.generate(messages, budget=budget, **settings_from(args))
    print(result.text.strip())
    summary = f"ε = {result.epsilon:.3f} (δ={result.delta:g}, α={result.alpha:g}), T = {result.tokens}"
    print(json.dumps(result.metadata(), indent=2) if args.json else summary, file=sys.stderr)
    return 0
