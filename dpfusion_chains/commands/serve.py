"""`dpfusion serve`: the OpenAI-compatible private endpoint, on Ray Serve or in this process."""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any

from dpfusion_chains.core.params import DTYPE_HELP, DTYPE_NAMES


def register(sub: argparse._SubParsersAction) -> None:
    from dpfusion_chains.core.prefix_cache import DEFAULT_TOKENS as PREFIX_CACHE_TOKENS  # torch-free

    p = sub.add_parser("serve", help="serve DP-Fusion as an OpenAI-compatible endpoint (Ray Serve or in-process)",
                       description="Serve POST /v1/chat/completions, GET /v1/budget/{unit} and GET /healthz. Needs "
                                   "the 'serve' extra: pip install 'dpfusion-chains[serve]'.")
    p.add_argument("--model", default="default",
                   help="'default' (embedded SmolLM2), a Hugging Face id or directory, or module:factory")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    p.add_argument("--dtype", choices=DTYPE_NAMES, default="auto", help=DTYPE_HELP)
    p.add_argument("--detector", default="presidio", help="default detector: presidio | regex | whole")
    p.add_argument("--replicas", type=int, default=1, help="model replicas (Ray); >1 needs a PostgreSQL ledger")
    p.add_argument("--replica-cpus", type=float, default=1.0, help="CPUs Ray reserves per replica")
    p.add_argument("--torch-threads", type=int, default=None, help="torch threads per replica (default: torch's)")
    p.add_argument("--compile", choices=["auto", "on", "off"], default="auto",
                   help="compiled decode steps: auto (CUDA only), on (also on CPU: minutes to compile), off")
    p.add_argument("--prefix-cache-tokens", type=int, default=PREFIX_CACHE_TOKENS,
                   help="KV of recent public views reused by requests that open alike (0: off; a hit is faster, "
                        "so tenants who must not learn that the same public text was sent recently need 0)")
    p.add_argument("--ledger", default=None, help="postgresql://… (shared by all replicas), sqlite:///… or memory://")
    p.add_argument("--budget-epsilon", type=float, default=10.0, help="ε limit per privacy unit")
    p.add_argument("--budget-delta", type=float, default=1e-5)
    p.add_argument("--budget-alpha", type=float, default=8.0, help="Rényi order the ledger composes at")
    p.add_argument("--max-new-tokens", type=int, default=64, help="default max tokens per completion")
    p.add_argument("--epsilon", type=float, default=None, help="default target ε per call (requests may override)")
    p.add_argument("--max-batch-size", type=int, default=8)
    p.add_argument("--batch-wait-ms", type=float, default=10.0)
    p.add_argument("--max-body-bytes", type=int, default=1 << 20)
    p.add_argument("--host", default="127.0.0.1", help="bind address (default loopback only)")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--api-keys-file", default=None,
                   help="'tenant:key' or 'tenant:sha256$<hex>' entries, one per line (also $DPFUSION_API_KEYS)")
    p.add_argument("--ray-address", default=None, help="join this Ray cluster (e.g. 'auto') instead of starting one")
    p.add_argument("--in-process", action="store_true", help="no Ray: one engine in this process, served by uvicorn")
    p.add_argument("--hash-key", metavar="TENANT:KEY", default=None,
                   help="print the hashed form of an API key for the keys file, and exit")
    p.set_defaults(func=run)


def config_from(args: argparse.Namespace) -> Any:
    from dpfusion_chains.core.compiled import COMPILE_FLAGS
    from dpfusion_chains.serve.config import ServeConfig

    defaults: dict[str, Any] = {"max_new_tokens": args.max_new_tokens}
    if args.epsilon is not None:
        defaults["epsilon"] = args.epsilon
    return ServeConfig(model=args.model, device=args.device, dtype=args.dtype, detector=args.detector,
                       ledger=args.ledger,
                       budget_epsilon=args.budget_epsilon, budget_delta=args.budget_delta,
                       budget_alpha=args.budget_alpha, defaults=defaults, replicas=args.replicas,
                       replica_cpus=args.replica_cpus, torch_threads=args.torch_threads,
                       compile=COMPILE_FLAGS[args.compile], prefix_cache_tokens=args.prefix_cache_tokens,
                       max_batch_size=args.max_batch_size, batch_wait_s=args.batch_wait_ms / 1000.0,
                       max_body_bytes=args.max_body_bytes, host=args.host, port=args.port)


def run(args: argparse.Namespace) -> int:
    from pydantic import ValidationError

    from dpfusion_chains.serve.auth import KeyStore, hash_key

    if args.hash_key is not None:
        tenant, sep, key = args.hash_key.partition(":")
        if not sep or not key:
            raise ValueError("--hash-key takes TENANT:KEY")
        KeyStore.parse(args.hash_key)  # same checks as at start-up
        print(f"{tenant}:{hash_key(key)}")
        return 0
    try:
        config = config_from(args)
    except ValidationError as exc:
        first = exc.errors()[0]
        raise ValueError(f"--{'-'.join(map(str, first['loc'])).replace('_', '-')}: {first['msg']}") from None
    keys = KeyStore.load(args.api_keys_file)
    if args.in_process:
        if args.replicas != 1:
            raise ValueError("--in-process runs one engine; drop --replicas or use Ray")
        return _serve_in_process(config, keys)
    config.check_for_ray()  # refuse an unshareable ledger before starting anything
    try:
        from dpfusion_chains.serve import deployment
    except ImportError as exc:
        raise ImportError(f"Ray Serve is not installed ({exc}); pip install 'dpfusion-chains[serve]' "
                          "or run with --in-process") from None
    url = deployment.run(config, keys, address=args.ray_address)
    print(f"dpfusion serve: {config.replicas} replica(s) of {config.model} at {url} "
          f"(ledger: {config.ledger_scheme()}); Ctrl-C stops", file=sys.stderr, flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        from ray import serve

        serve.shutdown()
    return 0


def _serve_in_process(config: Any, keys: Any) -> int:
    from dpfusion_chains._optional import require

    uvicorn = require("uvicorn", "serve", "dpfusion serve --in-process")

    from dpfusion_chains.serve.app import create_app
    from dpfusion_chains.serve.local import LocalBackend
    from dpfusion_chains.serve.worker import EngineWorker

    app = create_app(LocalBackend(EngineWorker(config)), keys, config)
    print(f"dpfusion serve: {config.model} in-process at http://{config.host}:{config.port}", file=sys.stderr, flush=True)
    uvicorn.run(app, host=config.host, port=config.port, log_level="info")
    return 0
