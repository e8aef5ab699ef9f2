"""The compiled few-row linear product (core.native_linear): nn.Linear's numbers for 1..MAX_ROWS
rows of any output size, with or without bias, rows apart by a stride; what it does not take
handed back to the layer's own product; switched by the environment and for a block; taken by
every swapped layer inside the engine, and the engine samples the same tokens through it."""

import logging

import pytest
import torch
from torch import nn

from dpfusion_chains.core import fused_linear, native_library, native_linear
from dpfusion_chains.core.fused_linear import FusedLinear
from dpfusion_chains.core.matmul import PackedLinear, WeightMajorLinear, active, install
from dpfusion_chains.testing import tiny_engine


@pytest.fixture
def kernel(monkeypatch):
    monkeypatch.setenv(native_linear.ENVIRONMENT, "1")  # either build: these tests are about its numbers
    if not native_linear.available():
        pytest.skip(f"no native kernels here: {native_library.reason()}; the layers keep their own products, "
                    "tested in test_weight_major.py and test_fused_linear.py")


@pytest.fixture
def calls(monkeypatch):
    """The row counts of the kernel's calls."""
    seen: list[int] = []
    original = native_linear._kernel()

    def recording(x, rows, *args):
        seen.append(rows)
        return original(x, rows, *args)

    monkeypatch.setattr(native_linear, "_kernel", lambda: recording)
    return seen


@pytest.mark.parametrize("rows", [1, 2, 3, 4, 7, 12, 16, 24])
@pytest.mark.parametrize("out_features, in_features", [(1, 16), (3, 32), (5, 48), (963, 576), (64, 1536)])
@pytest.mark.parametrize("bias", [True, False])
def test_it_computes_nn_linears_product(kernel, rows, out_features, in_features, bias):
    torch.manual_seed(rows * 1000 + out_features)
    layer = nn.Linear(in_features, out_features, bias=bias)
    x = torch.randn(rows, in_features)
    with torch.no_grad():
        out = native_linear.few_row_linear(x, layer.weight, layer.bias)
        assert out is not None and out.shape == (rows, out_features) and out.dtype == torch.float32
        assert torch.allclose(out, layer(x), atol=1e-4, rtol=1e-5)


def test_rows_apart_by_a_stride_and_leading_dims(kernel):
    torch.manual_seed(1)
    weight, bias = torch.randn(40, 32), torch.randn(40)
    wide = torch.randn(5, 48)
    x = wide[:, 8:40]                                                # rows 48 floats apart
    assert x.stride() == (48, 1)
    out = native_linear.few_row_linear(x, weight, bias)
    assert torch.allclose(out, x @ weight.t() + bias, atol=1e-5)
    batched = torch.randn(2, 3, 32)
    out = native_linear.few_row_linear(batched, weight)
    assert out.shape == (2, 3, 40) and torch.allclose(out, batched @ weight.t(), atol=1e-5)
    columns = torch.randn(32, 4).t()                                 # last dim strided: copied first
    assert torch.allclose(native_linear.few_row_linear(columns, weight), columns @ weight.t(), atol=1e-5)


def test_what_it_does_not_take_is_handed_back(kernel):
    weight, x = torch.randn(8, 32), torch.randn(2, 32)

    def answer(x=x, weight=weight, bias=None):
        return native_linear.few_row_linear(x, weight, bias)

    assert answer() is not None
    assert answer(x=torch.randn(native_linear.MAX_ROWS + 1, 32)) is None
    assert answer(x=torch.randn(0, 32)) is None
    odd = native_library.lanes() + 4                                 # no whole number of vectors
    assert answer(x=torch.randn(2, odd), weight=torch.randn(8, odd)) is None
    assert answer(x=x.double(), weight=weight.double()) is None
    assert answer(x=x.bfloat16(), weight=weight.bfloat16()) is None
    assert answer(weight=torch.randn(32, 8).t()) is None             # not contiguous
    assert answer(weight=torch.randn(8, 16)) is None                 # sizes disagree
    assert answer(bias=torch.randn(7)) is None
    assert answer(bias=torch.randn(16)[::2]) is None                 # a strided bias
    assert answer(x=x.to("meta"), weight=weight.to("meta")) is None
    grad = weight.clone().requires_grad_()
    assert answer(weight=grad) is None
    with torch.no_grad():
        assert answer(weight=grad) is not None


def test_it_is_switched_by_the_environment_and_for_a_block(kernel, monkeypatch):
    with native_linear.disabled():
        assert not native_linear.available()
        assert native_linear.few_row_linear(torch.randn(2, 32), torch.randn(8, 32)) is None
    assert native_linear.available()
    monkeypatch.setenv(native_linear.ENVIRONMENT, "0")
    assert not native_linear.available()
    monkeypatch.setenv(native_linear.ENVIRONMENT, "auto")            # measured faster with AVX2's build only
    assert native_linear.available() == (native_library.lanes() == 8)
    monkeypatch.delenv(native_linear.ENVIRONMENT)
    assert native_linear.available() == (native_library.lanes() == 8)


def test_an_unknown_setting_is_logged_once_and_taken_as_auto(kernel, monkeypatch, caplog):
    monkeypatch.setenv(native_linear.ENVIRONMENT, "yes please")
    with caplog.at_level(logging.WARNING, logger=native_linear.__name__):
        assert native_linear.available() == (native_library.lanes() == 8)
        native_linear.available()
    assert caplog.text.count("DPFUSION_NATIVE_LINEAR='yes please' is not one of auto, 1") == 1


@pytest.mark.parametrize("pack", [False, True])
def test_swapped_layers_take_it_for_few_rows_inside_the_engine_only(kernel, calls, pack):
    torch.manual_seed(0)
    layer, reference = nn.Linear(32, 24), nn.Linear(32, 24)
    reference.load_state_dict(layer.state_dict())
    install(layer, pack=pack)
    assert type(layer) is (PackedLinear if pack else WeightMajorLinear)
    with torch.inference_mode():
        few, many = torch.randn(4, 32), torch.randn(native_linear.MAX_ROWS + 1, 32)
        assert torch.equal(layer(few), reference(few)) and calls == []           # outside: stock
        with active():
            assert torch.allclose(layer(few), reference(few), atol=1e-5)
            assert torch.allclose(layer(many), reference(many), atol=1e-5)
    assert calls == [4]


def test_whether_layers_take_it_is_decided_once_per_engine_block(kernel, calls, monkeypatch):
    """`active()` reads the switches at its entry (a forward's ~200 calls then pay no environment
    read), and restores the outer block's choice at its exit."""
    layer = nn.Linear(32, 8)
    install(layer, pack=True)
    x = torch.randn(2, 32)
    with torch.inference_mode():
        with active():
            with native_linear.disabled():
                layer(x)                                  # decided at entry: the kernel
                with active():
                    layer(x)                              # a block entered while off: its own product
                layer(x)                                  # the outer block's choice again
            monkeypatch.setenv(native_linear.ENVIRONMENT, "0")
            layer(x)
            with active():
                layer(x)
        assert calls == [2, 2, 2]
        monkeypatch.setenv(native_linear.ENVIRONMENT, "1")
        with active():
            layer(x)
    assert calls == [2, 2, 2, 2]


def test_grouped_siblings_each_take_it_for_few_rows(kernel, calls):
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                         num_attention_heads=4, num_key_value_heads=2)
    torch.manual_seed(0)
    model = LlamaForCausalLM(config).eval()
    reference = LlamaForCausalLM(config).eval()
    reference.load_state_dict(model.state_dict())
    install(model, pack=True)
    assert fused_linear.install(model) == 2 and any(type(m) is FusedLinear for m in model.modules())
    ids = torch.tensor([[3, 5, 7]])
    with torch.inference_mode():
        expected = reference(ids).logits
        with active():
            assert torch.allclose(model(ids).logits, expected, atol=1e-4)
    assert len(calls) == 8 and set(calls) == {3}      # q, k, v, o, gate, up, down and the output layer


def test_the_engine_samples_the_same_tokens_through_it(kernel, calls, draws):
    engine = tiny_engine(seed=3)
    msgs = [{"role": "user", "content": "Summarise the weather report for Tuesday."}]
    requests = [{"messages": msgs, "seed": s, "max_new_tokens": 8} for s in range(3)]
    with draws.run("kernel"):
        through = [r.token_ids for r in engine.generate_batch(requests)]
    assert calls and max(calls) <= native_linear.MAX_ROWS
    with native_linear.disabled(), draws.run("own"):
        assert [r.token_ids for r in engine.generate_batch(requests)] == through
    draws.assert_close("kernel", "own")
