"""API keys (hashed at rest), the ledger rules for replicas, and `dpfusion serve`'s refusals."""

from __future__ import annotations

import pickle

import pytest

from dpfusion_chains.cli import main
from dpfusion_chains.serve.auth import ENV_KEYS, KeyStore, hash_key, key_from_headers
from dpfusion_chains.serve.config import ServeConfig

KEY = "k3y-0123456789abcdef"


def test_keys_are_kept_only_as_hashes():
    store = KeyStore.parse(f"acme:{KEY}\n# a comment\nglobex:{hash_key('globex-0123456789abcdef')}")
    assert store.tenant_for(KEY) == "acme" and store.tenant_for("globex-0123456789abcdef") == "globex"
    assert store.tenant_for("nope") is None and store.tenant_for(None) is None
    assert KeyStore.parse(f"a:b:{KEY}").tenant_for(f"b:{KEY}") == "a"  # the first ':' ends the tenant
    assert KEY not in repr(store) and KEY.encode() not in pickle.dumps(store)  # what Ray ships to replicas


def test_keys_load_from_a_file_and_the_environment(tmp_path):
    path = tmp_path / "keys.txt"
    path.write_text(f"acme:{KEY}\n")
    store = KeyStore.load(path, env={ENV_KEYS: "globex:other-0123456789abcdef, initech:third-0123456789abcdef"})
    assert store.tenants == {"acme", "globex", "initech"}
    with pytest.raises(ValueError, match="no API keys"):
        KeyStore.load(None, env={})


@pytest.mark.parametrize("text, fragment", [
    ("acme", "expected 'tenant:key'"),
    ("acme:short", "shorter than 16"),
    (f"bad tenant:{KEY}", "tenant"),
    ("acme:sha256$xyz", "64 lowercase hex"),
    (f"acme:{KEY},globex:{KEY}", "two tenants"),
])
def test_malformed_key_entries_are_refused(text, fragment):
    with pytest.raises(ValueError, match=fragment):
        KeyStore.parse(text)


def test_key_headers():
    assert key_from_headers("Bearer abc", None) == "abc"
    assert key_from_headers("bearer  abc ", None) == "abc"
    assert key_from_headers(None, "xyz") == "xyz"
    assert key_from_headers("Basic abc", None) is None


def test_ray_needs_a_shared_ledger_for_several_replicas():
    ServeConfig(replicas=2, ledger="postgresql://u@127.0.0.1/db").check_for_ray()
    ServeConfig(replicas=1, ledger="sqlite:///budget.db").check_for_ray()  # one replica on one machine
    with pytest.raises(ValueError, match="sqlite ledger is refused"):
        ServeConfig(replicas=2, ledger="sqlite:///budget.db").check_for_ray()
    with pytest.raises(ValueError, match="sqlite ledger is refused"):
        ServeConfig(replicas=3).check_for_ray()  # the default ledger is a SQLite file
    with pytest.raises(ValueError, match="memory:// ledger"):
        ServeConfig(replicas=1, ledger="memory://").check_for_ray()


def test_bad_default_settings_fail_at_start_up():
    with pytest.raises(ValueError, match="temperature"):
        ServeConfig(defaults={"temperature": 0.0})


def test_cli_hash_key_prints_an_entry_the_server_accepts(capsys):
    assert main(["serve", "--hash-key", f"acme:{KEY}"]) == 0
    line = capsys.readouterr().out.strip()
    assert KEY not in line and KeyStore.parse(line).tenant_for(KEY) == "acme"


def test_cli_refuses_sqlite_for_replicas_before_starting_anything(capsys, monkeypatch):
    monkeypatch.setenv(ENV_KEYS, f"acme:{KEY}")
    assert main(["serve", "--replicas", "2", "--ledger", "sqlite:///budget.db", "--port", "0"]) == 2
    assert "PostgreSQL" in capsys.readouterr().err


def test_cli_refuses_to_start_without_keys(capsys, monkeypatch):
    monkeypatch.delenv(ENV_KEYS, raising=False)
    assert main(["serve", "--in-process", "--model", "tiny"]) == 2
    assert "no API keys" in capsys.readouterr().err


@pytest.mark.parametrize(("flag", "value"), [("auto", "auto"), ("on", True), ("off", False)])
def test_cli_compile_flag_reaches_the_config(flag, value):
    import argparse

    from dpfusion_chains.commands import serve

    parser = argparse.ArgumentParser()
    serve.register(parser.add_subparsers())
    args = parser.parse_args(["serve", "--compile", flag])
    assert serve.config_from(args).compile == value


def test_unknown_compile_setting_is_refused():
    with pytest.raises(ValueError, match="compile"):
        ServeConfig(compile="fast")


@pytest.mark.parametrize("model", ["default", "/models/any"])
def test_cli_dtype_flag_reaches_the_model_loader(model, monkeypatch):
    import argparse

    from dpfusion_chains.commands import serve
    from dpfusion_chains.core.engine import DPFusionEngine
    from dpfusion_chains.serve.config import build_engine

    loaded = []
    monkeypatch.setattr(DPFusionEngine, "from_default", classmethod(lambda cls, **kw: loaded.append(kw["dtype"])))
    monkeypatch.setattr(DPFusionEngine, "from_pretrained",
                        classmethod(lambda cls, path, **kw: loaded.append(kw["dtype"])))
    parser = argparse.ArgumentParser()
    serve.register(parser.add_subparsers())
    build_engine(serve.config_from(parser.parse_args(["serve", "--model", model, "--dtype", "bfloat16"])))
    build_engine(serve.config_from(parser.parse_args(["serve", "--model", model])))
    assert loaded == ["bfloat16", "auto"]
    with pytest.raises(ValueError, match="dtype"):
        ServeConfig(dtype="int8")


def test_cli_prefix_cache_flag_reaches_the_engine():
    import argparse

    from dpfusion_chains.commands import serve
    from dpfusion_chains.serve.config import build_engine

    parser = argparse.ArgumentParser()
    serve.register(parser.add_subparsers())
    config = serve.config_from(parser.parse_args(["serve", "--model", "tiny", "--prefix-cache-tokens", "0"]))
    assert config.prefix_cache_tokens == 0 and build_engine(config).prefixes is None
    assert build_engine(config.model_copy(update={"prefix_cache_tokens": 64})).prefixes.max_tokens == 64
    with pytest.raises(ValueError, match="prefix_cache_tokens"):
        ServeConfig(prefix_cache_tokens=-1)
