"""Bad-input sweep (issue 9): Callback handlers, the `dpfusion` command line (exit status 1/2, one
helpful line, no traceback) and missing optional dependencies (the ImportError names the pip extra).
Every case must pass tests/helpers/audit_cases.py's `expect_error`: the expected error, a message
that says what to change, nothing charged, nothing private in the error or the logs."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from dpfusion_chains import PrivacyBudget
from dpfusion_chains.cli import main as cli_main

from audit_cases import Call, Ctx, NO_GPU, REPO, case, expect_error, no_gpu_only


# -- callback handlers --------------------------------------------------------------------------------

def _handler(name: str, *args: Any, **kw: Any) -> Any:
    pytest.importorskip("llama_index.core" if "Event" in name else "langchain_core")
    import dpfusion_chains.callbacks as cb

    return getattr(cb, name)(*args, **kw)


CALLBACKS = [
    case(lambda c: _handler("PrivacyBudgetCallbackHandler", on_limit="stop"), ValueError,
         r"on_limit must be 'warn', 'raise' or 'ignore'", "spend-on_limit"),
    case(lambda c: _handler("PrivacyBudgetCallbackHandler", limit=-1.0), ValueError, r"limit must be an ε >= 0",
         "spend-limit<0"),
    case(lambda c: _handler("LeakGuardCallbackHandler", []), ValueError, r"at least one non-empty canary",
         "leak-guard-no-canary"),
    case(lambda c: _handler("LeakGuardCallbackHandler", [c.canary], mode="log"), ValueError,
         r"mode must be 'raise' or 'record'", "leak-guard-mode"),
    case(lambda c: _handler("PrivacyBudgetEventHandler", on_limit="raise"), ValueError,
         r"dispatcher swallows errors", "llamaindex-on_limit=raise"),
    case(lambda c: _handler("PrivacyBudgetEventHandler", on_limit="stop"), ValueError, r"on_limit",
         "llamaindex-on_limit"),
]


@pytest.mark.parametrize("call,exc,match", CALLBACKS)
def test_callbacks(ctx: Ctx, call: Call, exc: Any, match: str) -> None:
    expect_error(ctx, call, exc, match)


# -- the `dpfusion` command line: exit status 1/2, one helpful line, no traceback ----------------------

def _gen(c: Ctx, *extra: str) -> list[str]:
    return ["generate", "--private", c.doc, *extra, "What was the diagnosis?"]


def _file(c: Ctx) -> str:
    path = c.tmp / "record.txt"
    path.write_text(c.doc, encoding="utf-8")
    return str(path)


CLI = [
    pytest.param(lambda c: [], 2, r"usage: dpfusion", id="no-command"),
    pytest.param(lambda c: ["frobnicate"], 2, r"invalid choice: 'frobnicate'", id="unknown-command"),
    pytest.param(lambda c: ["generate", "--private", c.doc], 2, r"required: prompt", id="generate-no-prompt"),
    pytest.param(lambda c: ["generate", "Diagnosis?"], 2, r"give the private text with --private-file FILE",
                 id="generate-no-private-text"),
    pytest.param(lambda c: _gen(c, "--epsilon", "lots"), 2, r"argument --epsilon: invalid float value",
                 id="epsilon=str"),
    pytest.param(lambda c: _gen(c, "--max-new-tokens", "0"), 2, r"max_new_tokens must be >= 1",
                 id="max-new-tokens=0"),
    pytest.param(lambda c: _gen(c, "--temperature", "0"), 2, r"greedy decoding", id="temperature=0"),
    pytest.param(lambda c: _gen(c, "--beta", "0.1", "--alpha", "1"), 2, r"alpha must be a finite number > 1",
                 id="alpha=1"),
    pytest.param(lambda c: _gen(c, "--delta", "2"), 2, r"delta must lie in \(0, 1\)", id="delta=2"),
    pytest.param(lambda c: _gen(c, "--detector", "nope"), 2, r"unknown --detector 'nope'; choose one of",
                 id="detector=unknown"),
    pytest.param(lambda c: _gen(c, "--model", "/nonexistent/model-dir", "--device", "cpu"), 2,
                 r"could not load model '/nonexistent/model-dir'", id="model=missing"),
    pytest.param(lambda c: _gen(c, "--model", "/nonexistent/model-dir", "--device", "tpu9"), 2,
                 r"unknown device 'tpu9'", id="device=unknown"),
    pytest.param(lambda c: _gen(c, "--model", "/nonexistent/model-dir", "--device", "cuda"), 2, NO_GPU,
                 id="device=cuda", marks=no_gpu_only),
    pytest.param(lambda c: _gen(c, "--device", "cuda"), 2, NO_GPU, id="default-model-device=cuda",
                 marks=no_gpu_only),
    pytest.param(lambda c: _gen(c, "--ledger", "memory://"), 2, r"--ledger needs --budget-epsilon",
                 id="ledger-without-limit"),
    pytest.param(lambda c: _gen(c, "--ledger", "ftp://host/b", "--budget-epsilon", "5"), 2, r"unknown ledger",
                 id="ledger=ftp"),
    pytest.param(lambda c: _gen(c, "--ledger", f"sqlite:///{c.tmp}/no/dir/b.db", "--budget-epsilon", "5"), 2,
                 r"Check that its directory exists", id="ledger=missing-dir"),
    pytest.param(lambda c: _gen(c, "--ledger", "memory://", "--budget-epsilon", "-5"), 2,
                 r"epsilon must be a finite number >= 0", id="budget-epsilon<0"),
    pytest.param(lambda c: _gen(c, "--ledger", "memory://", "--budget-epsilon", "0.01"), 2, r"admits no release",
                 id="budget-epsilon-too-small"),
    pytest.param(lambda c: ["generate", "--private-file", str(c.tmp / "missing.txt"), "Diagnosis?"], 2,
                 r"No such file or directory", id="private-file-missing"),
    pytest.param(lambda c: ["demo", "--records", "x"], 2, r"argument --records: invalid int value", id="demo-records"),
    pytest.param(lambda c: ["demo", "--device", "cuda"], 2, NO_GPU, id="demo-device=cuda", marks=no_gpu_only),
    pytest.param(lambda c: ["demo", "--dtype", "int8"], 2, r"argument --dtype: invalid choice: 'int8'",
                 id="demo-dtype=int8"),
    pytest.param(lambda c: ["budget"], 2, r"required: ACTION", id="budget-no-action"),
    pytest.param(lambda c: ["budget", "show", "--ledger", "ftp://host/b"], 2, r"unknown ledger", id="show-ftp"),
    pytest.param(lambda c: ["budget", "show", "--ledger", str(c.tmp / "missing.db")], 2, r"no ledger file at",
                 id="show-missing-file"),
    pytest.param(lambda c: ["budget", "show", "--ledger", f"sqlite:///{c.tmp}/no/dir/b.db"], 2,
                 r"Check that its directory exists", id="show-missing-dir"),
    pytest.param(lambda c: ["budget", "show", "--delta", "x"], 2, r"argument --delta: invalid float value",
                 id="show-delta=str"),
    pytest.param(lambda c: ["budget", "reset", "--ledger", "memory://"], 2, r"required: --unit", id="reset-no-unit"),
    pytest.param(lambda c: ["budget", "reset", "--ledger", "memory://", "--unit", "doc-1"], 1,
                 r"refusing to reset unit 'doc-1' without --yes", id="reset-without-yes"),
    pytest.param(lambda c: ["budget", "export", "--ledger", "memory://"], 2, r"required: --csv", id="export-no-csv"),
    pytest.param(lambda c: ["detect", str(c.tmp / "missing.txt")], 2, r"no such file", id="detect-missing-file"),
    pytest.param(lambda c: ["detect", _file(c), "--detector", "nope"], 2, r"unknown detector kind 'nope'",
                 id="detect-kind"),
    pytest.param(lambda c: ["detect", _file(c), "--detector", "regex", "--profile", "nope"], 2,
                 r"unknown detection profile 'nope'", id="detect-profile"),
    pytest.param(lambda c: ["detect", _file(c), "--detector", "hf"], 2, r"needs --model-path", id="detect-hf"),
    pytest.param(lambda c: ["serve", "--in-process", "--replicas", "0"], 2, r"--replicas: .*greater than or equal to 1",
                 id="serve-replicas=0"),
    pytest.param(lambda c: ["serve", "--hash-key", "no-colon"], 2, r"--hash-key takes TENANT:KEY",
                 id="serve-hash-key"),
]


@pytest.mark.parametrize("argv,rc,match", CLI)
def test_cli(ctx: Ctx, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
             argv: Callable[[Ctx], list[str]], rc: int, match: str) -> None:
    monkeypatch.delenv("DPFUSION_LEDGER", raising=False)
    try:
        code = cli_main(argv(ctx))
    except SystemExit as exit_:  # argparse's own usage errors
        code = exit_.code
    out, err = capsys.readouterr()
    assert code == rc, (code, out, err)
    assert re.search(match, out + err), out + err
    assert "Traceback" not in out + err
    assert ctx.canary not in out + err, "the private text was echoed"


# -- missing optional dependencies: the ImportError names the pip extra -------------------------------

SERVE_KEYS = "tenant-1:k-" + "0123456789abcdef" * 2

# (modules made unimportable, code run in a fresh interpreter, the extra the message must name)
EXTRAS = [
    pytest.param(["langchain_core"], "from dpfusion_chains.llms import ChatDPFusion", "langchain", id="ChatDPFusion"),
    pytest.param(["langchain_core"], "from dpfusion_chains.llms.langchain_llm import DPFusionLLM", "langchain",
                 id="DPFusionLLM"),
    pytest.param(["langchain_core"], "from dpfusion_chains.callbacks import PrivacyBudgetCallbackHandler", "langchain",
                 id="langchain-callbacks"),
    pytest.param(["langchain_core"], "from dpfusion_chains.retrievers import PrivateRetriever", "langchain",
                 id="PrivateRetriever"),
    pytest.param(["langchain_core"], "from dpfusion_chains.retrievers import DPDocumentPrivatizer", "langchain",
                 id="DPDocumentPrivatizer"),
    pytest.param(["llama_index"], "from dpfusion_chains.llms.llama_index import DPFusionLlamaLLM", "llamaindex",
                 id="DPFusionLlamaLLM"),
    pytest.param(["llama_index"], "from dpfusion_chains.callbacks import PrivacyBudgetEventHandler", "llamaindex",
                 id="llamaindex-callbacks"),
    pytest.param(["llama_index"], "from dpfusion_chains.retrievers import PrivateNodePostprocessor", "llamaindex",
                 id="PrivateNodePostprocessor"),
    pytest.param(["llama_index"], "from dpfusion_chains.retrievers.llama_index_privatizer import DPNodePrivatizer",
                 "llamaindex", id="DPNodePrivatizer"),
    pytest.param(["spacy", "presidio_analyzer"], "from dpfusion_chains.core.detect import make_detector\n"
                 "make_detector('presidio')", "presidio", id="presidio-detector"),
    pytest.param(["psycopg"], "from dpfusion_chains import PrivacyBudget\n"
                 "PrivacyBudget(10.0, ledger='postgresql://app@127.0.0.1:1/db')", "postgres", id="postgres-ledger"),
    pytest.param(["fastapi"], "from dpfusion_chains.serve import create_app", "serve", id="serve-app"),
    pytest.param(["httpx"], "from dpfusion_chains.serve import RemoteEngine", "serve", id="RemoteEngine"),
    pytest.param(["ray"], "from dpfusion_chains.serve.deployment import run", "serve", id="ray-deployment"),
    # through the CLI: exit status 2 and one line, no traceback
    pytest.param(["uvicorn"], "cli serve --in-process --device cpu --api-keys-file {keys}", "serve",
                 id="cli-serve-in-process"),
    pytest.param(["fastapi"], "cli serve --in-process --device cpu --api-keys-file {keys}", "serve",
                 id="cli-serve-fastapi"),
    pytest.param(["ray"], "cli serve --device cpu --ledger sqlite:///{tmp}/b.db --api-keys-file {keys}", "serve",
                 id="cli-serve-ray"),
    pytest.param(["matplotlib"], "cli budget show --ledger sqlite:///{tmp}/b.db --plot {tmp}/plot.png", "plot",
                 id="cli-budget-plot"),
]


@pytest.mark.parametrize("blocked,code,extra", EXTRAS)
def test_missing_extra(tmp_path: Path, blocked: list[str], code: str, extra: str) -> None:
    keys = tmp_path / "keys.txt"
    keys.write_text(SERVE_KEYS + "\n")
    PrivacyBudget(10.0, ledger=f"sqlite:///{tmp_path}/b.db").reserve({"doc-1"}, rdp=0.1)  # something to plot
    is_cli = code.startswith("cli ")
    if is_cli:
        argv = code.removeprefix("cli ").format(keys=keys, tmp=tmp_path).split()
        code = f"from dpfusion_chains.cli import main\nraise SystemExit(main({argv!r}))"
    # None in sys.modules makes `import name` (and its submodules) fail as if it were not installed.
    program = "import sys\n" + "".join(f"sys.modules[{m!r}] = None\n" for m in blocked) + textwrap.dedent(code)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    env.pop("DPFUSION_LEDGER", None)
    done = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True, cwd=REPO, env=env,
                          timeout=120)
    last = done.stderr.strip().splitlines()[-1] if done.stderr.strip() else ""
    assert done.returncode == (2 if is_cli else 1), done.stderr
    assert f"pip install 'dpfusion-chains[{extra}]'" in last, done.stderr
    if is_cli:
        assert "Traceback" not in done.stderr and last.startswith("dpfusion "), done.stderr
    else:
        assert last.startswith("ImportError: "), last


def test_missing_presidio_through_the_engine(ctx: Ctx, monkeypatch: pytest.MonkeyPatch) -> None:
    """The default detector is Presidio: without the extra, a call names it and charges nothing."""
    from dpfusion_chains.core import detect
    from dpfusion_chains.core.detectors import factory

    for name in ("spacy", "presidio_analyzer"):
        monkeypatch.setitem(sys.modules, name, None)
    monkeypatch.setattr(detect, "_INSTANCES", {})  # no Presidio detector built earlier in this process
    monkeypatch.setattr(factory, "_CACHE", {})
    expect_error(ctx, lambda c: c.engine.generate(c.ask(), detector="presidio", budget=c.budget), ImportError,
                 r"optional dependency 'spacy' \(for the Presidio detector; detector='regex' needs no extra\) is not "
                 r"installed; install it with: pip install 'dpfusion-chains\[presidio\]'")


@pytest.mark.parametrize("module,expected", [
    ("dpfusion_no_such_module_4c1e", r"'dpfusion_no_such_module_4c1e' \(for X\) is not installed"),
    ("dpfusion_no_such_pkg_4c1e.core", r"'dpfusion_no_such_pkg_4c1e.core' \(for X\) is not installed"),
])
def test_require_names_the_extra(module: str, expected: str) -> None:
    from dpfusion_chains._optional import require

    with pytest.raises(ImportError, match=expected) as err:
        require(module, "langchain", "X")
    assert "pip install 'dpfusion-chains[langchain]'" in str(err.value) and err.value.name == module


def test_require_tells_a_broken_install_from_a_missing_one(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "dpf_broken_pkg_4c1e.py").write_text("import dpf_missing_dependency_4c1e\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    from dpfusion_chains._optional import require

    with pytest.raises(ImportError, match=r"could not be imported \(ModuleNotFoundError: .*dpf_missing_dependency"):
        require("dpf_broken_pkg_4c1e", "presidio")
