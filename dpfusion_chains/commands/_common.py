"""Options and helpers shared by the generation subcommands."""

from __future__ import annotations

import argparse
from typing import Any

from dpfusion_chains.core.params import DTYPE_HELP, DTYPE_NAMES


def add_engine_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", default=None, help="HF model id or local directory (default: embedded SmolLM2-135M)")
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    parser.add_argument("--dtype", default="auto", choices=DTYPE_NAMES, help=DTYPE_HELP)
    parser.add_argument("--detector", default="presidio", help="presidio | regex | whole")


def add_privacy_options(parser: argparse.ArgumentParser, epsilon: float | None = 8.0) -> None:
    parser.add_argument("--epsilon", type=float, default=epsilon, help="target ε per call (b is calibrated)")
    parser.add_argument("--beta", type=float, default=None, help="raw β (b = α·β) instead of --epsilon")
    parser.add_argument("--alpha", type=float, default=None, help="Rényi order (default: chosen for --epsilon, 2 for --beta)")
    parser.add_argument("--delta", type=float, default=1e-5)
    parser.add_argument("--max-new-tokens", type=int, default=48)
    parser.add_argument("--temperature", type=float, default=0.7)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--accounting", choices=["sound", "paper"], default="sound")


def settings_from(args: argparse.Namespace) -> dict[str, Any]:
    settings: dict[str, Any] = {"delta": args.delta, "max_new_tokens": args.max_new_tokens,
                                "temperature": args.temperature, "seed": args.seed, "accounting": args.accounting}
    if args.beta is not None:
        settings["beta"] = args.beta
    elif args.epsilon is not None:
        settings["epsilon"] = args.epsilon
    if args.alpha is not None:
        settings["alpha"] = args.alpha
    return settings


def build_engine(args: argparse.Namespace) -> Any:
    from dpfusion_chains.core.detect import available_detectors
    from dpfusion_chains.core.engine import DPFusionEngine
    from dpfusion_chains.core.params import make_settings

    # Bad settings or detector names fail before the (slow) model load.
    make_settings(**settings_from(args))
    if args.detector not in available_detectors():
        raise ValueError(f"unknown --detector {args.detector!r}; choose one of {available_detectors()}")
    if args.model:
        return DPFusionEngine.from_pretrained(args.model, device=args.device, dtype=args.dtype, detector=args.detector)
    return DPFusionEngine.from_default(device=args.device, dtype=args.dtype, detector=args.detector)
