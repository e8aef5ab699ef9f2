"""A Llama decode step without the module machinery: the same ops, a fraction of the dispatch.

A CPU decode step of a small model spends much of its time outside arithmetic. transformers'
Llama forward calls some 400 modules per step (each `nn.Module.__call__` with its hook checks),
builds a causal mask, threads keyword arguments through every layer and makes each RMSNorm,
rotary embedding and residual a chain of small tensor ops. With SmolLM2-135M's 30 layers made
tiny (hidden size 64, so the arithmetic is nil), one request's forward still took 18–32 ms on
the project's 2-core Zen 3 (medians of runs), against 66–78 ms for the real model's.

`LeanDecoder.forward` computes exactly what `LlamaForCausalLM.forward` computes for one decode
step of the engine, op for op: the same RMSNorm expression, transformers' own rotary functions,
the cache's own `update`, the engine's attention over the shared opening (core.shared_prefix,
as core.packing's attention would call it), each projection through core.native_linear's kernel
where it takes it and through the layer itself otherwise (so packed and joint sibling products
apply as before), and the output layer on the last position. Same inputs, same kernels, same
order: the logits are equal, bit for bit (tested), so sampling, the λ search and the privacy
accounting see the same numbers.

It applies (`for_model`) only to transformers' `LlamaForCausalLM` (SmolLM2, Llama 2/3 and their
fine-tunes) in eval mode, whose decoder layers are all stock `LlamaDecoderLayer`s with a SiLU
MLP, running with core.packing's attention, with no forward hooks on any of its modules (they
would be skipped) and no accelerate dispatch hook; and per step (`DecodeBatch`) only where the
cache is the engine's ReservedCache and the step's attention is planned (core.shared_prefix,
always on a CPU where core.native_attention takes the model). Every other model and step runs
transformers' forward as before. Set DPFUSION_LEAN_DECODE=0 to always run transformers' forward
(`disabled()` for a block). Because it repeats transformers' ops rather than calling them, a
probe step at the first use (two rows, three tokens) must give transformers' logits bit for bit,
else (or if the probe raises) the model keeps transformers' forward (a transformers version
whose Llama computes otherwise).

On the Zen 3, decode step medians, transformers' forward against this, alternating in one
process (7 runs each, the same tokens; `/tmp` script): one request 73.9 → 69.5 ms (the paired
runs' median difference 5.5 ms), eight requests 138.3 → 128.0 ms (13 ms); the tiny 30-layer
model above 27.5 → 24.6 ms (10 runs each). `python -m benchmarks.batch_bench --repeats 3`:
eight requests one after another 1.23× faster, batched 1.11× (its `hf-forward` ways).
"""

from __future__ import annotations

import logging
import os
import weakref
from typing import Any

import torch
from torch import nn

from dpfusion_chains.core import native_library, packing
from dpfusion_chains.core.kvcache import new_cache
from dpfusion_chains.core.matmul import WeightMajorLinear, active, native_product
from dpfusion_chains.core.shared_prefix import SharedPrefix

ENVIRONMENT = "DPFUSION_LEAN_DECODE"  # "0": transformers' forward for every step
PROBE_TOKENS = 3  # the probe step's shared prompt (`_agrees`)

logger = logging.getLogger(__name__)
_switch = native_library.BlockSwitch()
disabled = _switch.disabled  # a block with transformers' forward for every step (benchmarks and tests compare)

# model → its LeanDecoder, or None where it does not apply (decided once per model object)
_decoders: weakref.WeakKeyDictionary[nn.Module, LeanDecoder | None] = weakref.WeakKeyDictionary()


class LeanDecoder:
    """One decode step of a `LlamaForCausalLM` as its ops alone (see the module docstring)."""

    def __init__(self, model: nn.Module) -> None:
        from transformers.models.llama.modeling_llama import apply_rotary_pos_emb

        self._model = weakref.ref(model)
        self._rotary = apply_rotary_pos_emb
        self.modules = tuple(model.modules())  # whose hooks it would skip (checked at every call)
        self.agrees: bool | None = None        # with transformers' forward on the probe step (`_agrees`)

    def forward(self, ids: torch.Tensor, positions: torch.Tensor, cache: Any,
                shared: SharedPrefix) -> torch.Tensor:
        """Next-token logits [rows, V] for `ids` ([rows, 1]) at `positions` ([rows, 1]), the
        cache updated in place, attention read as `shared` plans it."""
        model = self._model()
        if model is None:
            raise RuntimeError("the model this LeanDecoder was made for is gone")
        body = model.model
        with active():
            hidden = body.embed_tokens(ids)                                   # [rows, 1, hidden]
            cos, sin = body.rotary_emb(hidden, position_ids=positions)
            for index, layer in enumerate(body.layers):
                attention = layer.self_attn
                residual = hidden
                normed = _rms_norm(hidden, layer.input_layernorm)
                shape = (*normed.shape[:-1], -1, attention.head_dim)
                query = _project(attention.q_proj, normed).view(shape).transpose(1, 2)
                key = _project(attention.k_proj, normed).view(shape).transpose(1, 2)
                value = _project(attention.v_proj, normed).view(shape).transpose(1, 2)
                query, key = self._rotary(query, key, cos, sin)
                key, value = cache.update(key, value, index)
                out = shared.attention(query, key, value, attention.scaling).transpose(1, 2).contiguous()
                out = out.reshape(*normed.shape[:-1], -1).contiguous()
                hidden = residual + _project(attention.o_proj, out)
                residual = hidden
                normed = _rms_norm(hidden, layer.post_attention_layernorm)
                mlp = layer.mlp
                gated = mlp.act_fn(_project(mlp.gate_proj, normed)) * _project(mlp.up_proj, normed)
                hidden = residual + _project(mlp.down_proj, gated)
            hidden = _rms_norm(hidden, body.norm)
            return _project(model.lm_head, hidden[:, -1:, :])[:, -1, :]


def for_model(model: Any) -> LeanDecoder | None:
    """The model's LeanDecoder, or None where it does not apply. Its classes and configuration
    are checked once per model object; eval mode, the engine's attention and the absence of hooks
    at every call (a hook added later is not skipped); the probe step (`_agrees`) runs once, at
    the first call that would use it."""
    if _switch.off or os.environ.get(ENVIRONMENT, "1") == "0" or _hooked():
        return None
    try:
        decoder = _decoders[model]
    except (KeyError, TypeError):  # TypeError: not weak-referenceable, so not an nn.Module
        if not isinstance(model, nn.Module):
            return None
        decoder = _decoders[model] = LeanDecoder(model) if _applies(model) else None
    if (decoder is None or model.training or model.config._attn_implementation != packing.ATTENTION
            or any(m._forward_hooks or m._forward_pre_hooks for m in decoder.modules)):
        return None
    if decoder.agrees is None:
        try:
            decoder.agrees = _agrees(model, decoder)
        except Exception as exc:  # a speed-up must never fail a request: the step takes transformers' forward
            logger.info("core.lean_decode's probe step failed (%s); decode steps keep transformers' forward",
                        type(exc).__name__)
            decoder.agrees = False
        else:
            if not decoder.agrees:
                logger.info("transformers' Llama forward and core.lean_decode's ops disagree on a probe step "
                            "(another transformers version?); decode steps keep transformers' forward")
    return decoder if decoder.agrees else None


def _applies(model: Any) -> bool:
    from transformers.models.llama.modeling_llama import LlamaDecoderLayer, LlamaForCausalLM

    if type(model) is not LlamaForCausalLM or model.device.type != "cpu":
        return False
    config = model.config
    layers = model.model.layers
    if (config._attn_implementation != packing.ATTENTION or config.hidden_act != "silu"
            or len(layers) != config.num_hidden_layers
            or any(type(layer) is not LlamaDecoderLayer for layer in layers)):
        return False
    return not any(hasattr(m, "_hf_hook") for m in model.modules())  # accelerate's dispatch (offloading)


def _agrees(model: nn.Module, decoder: LeanDecoder) -> bool:
    """One decode step of two rows through transformers' forward and through `decoder`, from
    equal caches, gives equal logits, bit for bit. This module repeats transformers' Llama ops;
    a transformers version whose Llama computes otherwise would differ here, and keep its own
    forward. About four forwards of a few tokens, once per model."""
    from dpfusion_chains.core.prefill import forward_last

    vocab = model.config.vocab_size
    prompt = (torch.arange(1, PROBE_TOKENS + 1) % vocab).expand(2, PROBE_TOKENS)
    ids, positions = torch.tensor([[PROBE_TOKENS + 1], [PROBE_TOKENS + 2]]) % vocab, torch.full((2, 1), PROBE_TOKENS)
    plan = SharedPrefix.plan([0, 0], PROBE_TOKENS, torch.ones(2, PROBE_TOKENS + 1, dtype=torch.bool), model.dtype,
                             compiled=True)
    caches = [new_cache(model, reserve=1) for _ in range(2)]
    if plan is None or caches[0] is None or caches[1] is None:
        return False
    with torch.inference_mode():
        for cache in caches:
            model(input_ids=prompt, past_key_values=cache, use_cache=True, logits_to_keep=1)
        expected, _ = forward_last(model, ids, None, positions, caches[0], shared_prefix=plan)
        return torch.equal(decoder.forward(ids, positions, caches[1], plan), expected)


def _hooked() -> bool:
    """Whether hooks for every module are registered (torch's global ones), which it would skip."""
    modules = nn.modules.module
    return bool(modules._global_forward_hooks or modules._global_forward_pre_hooks)


def _rms_norm(hidden: torch.Tensor, norm: nn.Module) -> torch.Tensor:
    """LlamaRMSNorm.forward's expression, without the module call."""
    dtype = hidden.dtype
    states = hidden.to(torch.float32)
    variance = states.pow(2).mean(-1, keepdim=True)
    states = states * torch.rsqrt(variance + norm.variance_epsilon)
    return norm.weight * states.to(dtype)


def _project(layer: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The layer's product as its forward would choose it: a layer swapped by core.matmul.install
    asks the compiled kernel first (as its forward does), without the module call; anything the
    kernel does not take, and any other layer, is the layer's own call (packed, joint with its
    siblings, or stock)."""
    if isinstance(layer, WeightMajorLinear):
        out = native_product(x, layer.weight, layer.bias)
        if out is not None:
            return out
    return layer(x)


__all__ = ["ENVIRONMENT", "LeanDecoder", "disabled", "for_model"]
