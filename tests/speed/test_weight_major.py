"""Weight-major few-row products and packed oneDNN products: the same numbers as nn.Linear inside
the engine, bit-identical stock behaviour outside it (other threads, other libraries sharing the
model), only plain float32 CPU layers swapped (bfloat16 ones packed where oneDNN computes
bfloat16), packed as the setting and the memory check say, and nothing dynamo cannot trace."""

import threading

import pytest
import torch
from torch import nn

from dpfusion_chains.core import matmul
from dpfusion_chains.core.matmul import MAX_ROWS, WeightMajorLinear, active, install, wants_weight_major
from dpfusion_chains.testing import tiny_engine


pytestmark = pytest.mark.usefixtures("own_linear_products")


def swapped(in_features=24, out_features=40, bias=True):
    torch.manual_seed(0)
    layer = nn.Linear(in_features, out_features, bias=bias)
    reference = nn.Linear(in_features, out_features, bias=bias)
    reference.load_state_dict(layer.state_dict())
    assert install(layer, pack=False) == 1 and type(layer) is WeightMajorLinear
    return layer, reference


@pytest.mark.parametrize("shape", [(2, 24), (3, 5, 24), (MAX_ROWS, 24), (1, 7, 24)])
@pytest.mark.parametrize("bias", [True, False])
def test_inside_the_engine_the_products_match_nn_linear(shape, bias):
    layer, reference = swapped(bias=bias)
    x = torch.randn(shape)
    with active():
        out = layer(x)
    assert out.shape == reference(x).shape and out.is_contiguous()
    assert torch.allclose(out, reference(x), atol=1e-5)


def test_outside_the_engine_and_for_one_or_many_rows_the_stock_kernel_runs(monkeypatch):
    layer, reference = swapped()
    calls = []
    monkeypatch.setattr(matmul.torch, "mm", lambda *a: calls.append(a) or torch.matmul(*a))
    for shape in [(4, 24), (1, 24), (MAX_ROWS + 1, 24)]:
        x = torch.randn(shape)
        assert torch.equal(layer(x), reference(x))  # outside active(): bit-identical
        with active():
            if shape[0] == 1 or shape[0] > MAX_ROWS:
                assert torch.equal(layer(x), reference(x))
    assert calls == []
    with active():
        layer(torch.randn(4, 24))
    assert len(calls) == 1


def test_active_is_per_thread_and_restores_the_previous_state():
    layer, reference = swapped()
    x = torch.randn(4, 24)
    seen = []
    with active():
        worker = threading.Thread(target=lambda: seen.append(torch.equal(layer(x), reference(x))))
        worker.start()
        worker.join()
        with active():
            pass
        assert matmul._state.on
    assert seen == [True] and not matmul._state.on


def test_install_swaps_only_plain_float32_cpu_linears_once():
    class Custom(nn.Linear):
        pass

    model = nn.Sequential(nn.Linear(4, 4), Custom(4, 4), nn.Linear(4, 4).to(torch.bfloat16), nn.Embedding(5, 4),
                          nn.Linear(4, 4).to(torch.float16))
    assert install(model, pack=False) == 1  # unpacked, a bfloat16 layer keeps the stock kernel
    assert [type(m).__name__ for m in model] == ["WeightMajorLinear", "Custom", "Linear", "Embedding", "Linear"]
    assert install(model, pack=False) == 0


def test_bfloat16_layers_are_packed_where_onednn_computes_bfloat16(monkeypatch):
    model = nn.Sequential(nn.Linear(4, 4), nn.Linear(4, 4).to(torch.bfloat16), nn.Linear(4, 4).to(torch.float16))
    monkeypatch.setattr(matmul, "packs_bfloat16", lambda: False)
    assert install(model, pack=True) == 1
    assert [type(m).__name__ for m in model] == ["PackedLinear", "Linear", "Linear"]
    monkeypatch.setattr(matmul, "packs_bfloat16", lambda: True)
    assert install(model, pack=True) == 1
    assert [type(m).__name__ for m in model] == ["PackedLinear", "PackedLinear", "Linear"]


@pytest.mark.skipif(not matmul.packs_bfloat16(), reason="oneDNN computes no bfloat16 on this CPU")
def test_a_packed_bfloat16_layer_matches_nn_linear_and_falls_back_to_the_stock_kernel():
    torch.manual_seed(0)
    layer = nn.Linear(64, 96).to(torch.bfloat16)
    reference = nn.Linear(64, 96).to(torch.bfloat16)
    reference.load_state_dict(layer.state_dict())
    assert install(layer, pack=True) == 1 and type(layer) is matmul.PackedLinear
    exact = reference.float()
    for shape in [(1, 64), (2, 64), (16, 64), (3, 300, 64)]:
        x = torch.randn(shape).to(torch.bfloat16)
        with torch.inference_mode(), active():
            out = layer(x)
        assert out.dtype == torch.bfloat16 and out.shape == (*shape[:-1], 96)
        # within bfloat16's rounding of the float32 product (2⁻⁸ relative), as the stock kernel
        torch.testing.assert_close(out.float(), exact(x.float()), atol=2e-2, rtol=2 ** -7)
    assert matmul._packed[layer][1] is not None  # the packed product ran
    key, _ = matmul._packed[layer]
    matmul._packed[layer] = (key, None)  # as if oneDNN had refused it: the stock kernel
    x = torch.randn(4, 64).to(torch.bfloat16)
    with torch.inference_mode(), active():
        assert torch.equal(layer(x), nn.functional.linear(x, layer.weight, layer.bias))


def test_it_traces_under_torch_compile_with_fullgraph():
    layer, reference = swapped()
    compiled = torch.compile(layer, backend="eager", fullgraph=True)
    x = torch.randn(4, 24)
    with active():
        assert torch.allclose(compiled(x), reference(x), atol=1e-6)


def test_the_setting_resolves_per_device_and_refuses_other_values():
    assert wants_weight_major("auto", torch.device("cpu"))
    assert not wants_weight_major("auto", torch.device("cuda"))
    assert wants_weight_major(True, torch.device("cuda")) and not wants_weight_major(False, torch.device("cpu"))
    with pytest.raises(ValueError, match="weight_major must be True, False or 'auto'"):
        wants_weight_major("yes", torch.device("cpu"))


def test_the_engine_swaps_on_cpu_and_keeps_its_tokens():
    on, off = tiny_engine(seed=4), tiny_engine(seed=4, weight_major=False)
    unpacked = tiny_engine(seed=4, packed_weights=False)
    linears = [m for m in on.model.modules() if isinstance(m, nn.Linear)]
    assert linears and all(isinstance(m, matmul.PackedLinear) for m in linears)  # a tiny model: every layer packed
    assert any(type(m) is WeightMajorLinear for m in unpacked.model.modules())
    assert not any(isinstance(m, WeightMajorLinear) for m in off.model.modules())
    assert not any(isinstance(m, matmul.PackedLinear) for m in unpacked.model.modules())
    msgs = [{"role": "user", "content": "Summarise the weather report for Tuesday."}]
    texts = {e.generate(msgs, seed=1, max_new_tokens=8).text for e in (on, off, unpacked)}
    assert len(texts) == 1


def test_the_engine_refuses_an_unknown_packed_weights_setting_even_with_weight_major_off():
    with pytest.raises(ValueError, match="packed_weights must be True, False or 'auto'"):
        tiny_engine(weight_major=False, packed_weights="always")


class TinyLM(nn.Module):
    """A body layer and an output layer, found the way transformers models expose it."""

    def __init__(self, hidden=24, vocab=300):
        super().__init__()
        self.body, self.head = nn.Linear(hidden, hidden), nn.Linear(hidden, vocab, bias=False)

    def get_output_embeddings(self):
        return self.head


def packed_model(pack=True):
    torch.manual_seed(0)
    model, reference = TinyLM(), TinyLM()
    reference.load_state_dict(model.state_dict())
    assert install(model, pack=pack) == 2
    return model, reference


def test_which_layers_are_packed(monkeypatch):
    model, _ = packed_model(pack=True)
    assert type(model.head) is matmul.PackedLinear and type(model.body) is matmul.PackedLinear
    model, _ = packed_model(pack=False)
    assert type(model.head) is WeightMajorLinear and type(model.body) is WeightMajorLinear
    copies = sum(p.numel() * 4 for name, p in TinyLM().named_parameters() if name.endswith("weight"))
    monkeypatch.setattr(matmul, "_physical_memory", lambda: int(copies / matmul.PACK_MEMORY_SHARE))
    model, _ = packed_model(pack="auto")  # the copies fit the share exactly: every layer
    assert type(model.body) is matmul.PackedLinear
    for memory in (lambda: int(copies / matmul.PACK_MEMORY_SHARE) - 1, lambda: None):
        monkeypatch.setattr(matmul, "_physical_memory", memory)
        model, _ = packed_model(pack="auto")  # too little memory, or none known: the output layer alone
        assert type(model.head) is matmul.PackedLinear and type(model.body) is WeightMajorLinear
    with pytest.raises(ValueError, match="packed_weights must be True, False or 'auto'"):
        install(TinyLM(), pack="yes")


def test_physical_memory_is_read_off_this_machine_and_a_lower_container_limit_wins(tmp_path, monkeypatch):
    memory = matmul._physical_memory()
    assert memory is None or memory > 2**20
    if memory is None:
        return
    v2, v1 = tmp_path / "memory.max", tmp_path / "limit_in_bytes"
    monkeypatch.setattr(matmul, "CGROUP_MEMORY_LIMITS", (str(v2), str(v1)))
    v2.write_text("max\n")  # unlimited: the machine's memory
    assert matmul._physical_memory() == memory
    v1.write_text(f"{2**30}\n")
    assert matmul._physical_memory() == 2**30
    v2.write_text(f"{memory * 2}\n")  # a limit above the machine's memory does not raise it
    assert matmul._physical_memory() == 2**30


def test_a_packed_layer_matches_nn_linear_for_any_number_of_rows():
    model, reference = packed_model()
    for shape in [(1, 24), (2, 24), (16, 24), (3, 5, 24), (MAX_ROWS + 50, 24), (2, 700, 24)]:
        x = torch.randn(shape)
        for layer, stock in ((model.head, reference.head), (model.body, reference.body)):
            with torch.inference_mode():
                assert torch.equal(layer(x), stock(x))  # outside active(): the stock kernel
                with active():
                    out = layer(x)
            assert out.shape == stock(x).shape and out.is_contiguous()
            assert torch.allclose(out, stock(x), atol=1e-5)
    strided = torch.randn(5, 7, 24)[:, 3, :]  # the last position of each row, as logits_to_keep slices it
    with torch.inference_mode(), active():
        assert torch.allclose(model.head(strided), reference.head(strided), atol=1e-5)
    assert matmul._packed[model.head][1] is not None and matmul._packed[model.body][1] is not None  # packed ran


def test_an_output_weight_changed_in_place_or_replaced_is_packed_again():
    model, reference = packed_model()
    x = torch.randn(4, 24)
    with torch.inference_mode(), active():
        model.head(x)
        first = matmul._packed[model.head]
    with torch.no_grad():
        model.head.weight.mul_(2.0)
    with torch.inference_mode(), active():
        assert torch.allclose(model.head(x), 2.0 * reference.head(x), atol=1e-5)
    assert matmul._packed[model.head][0] != first[0]
    model.head.weight = nn.Parameter(torch.randn(300, 24))
    with torch.inference_mode(), active():
        assert torch.allclose(model.head(x), x @ model.head.weight.detach().t(), atol=1e-5)


def test_an_output_weight_made_under_inference_mode_stays_weight_major():
    torch.manual_seed(0)
    with torch.inference_mode():  # its tensors keep no version counter: a change could not be seen
        model, reference = TinyLM(), TinyLM()
        reference.load_state_dict(model.state_dict())
    install(model)
    x = torch.randn(4, 24)
    with torch.inference_mode(), active():
        assert torch.allclose(model.head(x), reference.head(x), atol=1e-5)
    assert model.head not in matmul._packed


def test_an_output_layer_moved_off_the_cpu_is_not_packed():
    model, _ = packed_model()
    model.head.to("meta")
    with torch.inference_mode(), active():
        out = model.head(torch.randn(4, 24, device="meta"))
    assert out.shape == (4, 300) and model.head not in matmul._packed


def test_where_onednn_cannot_pack_the_output_layer_stays_weight_major(monkeypatch, caplog):
    def refuse(weight):
        raise RuntimeError("no oneDNN here")

    monkeypatch.setattr(matmul, "pack_weight", refuse)
    model, reference = packed_model()
    x = torch.randn(4, 24)
    with torch.inference_mode(), active():
        out = model.head(x)
    assert torch.allclose(out, reference.head(x), atol=1e-5) and matmul._packed[model.head][1] is None
    monkeypatch.setattr(matmul, "onednn_available", lambda: False)
    plain = TinyLM()
    install(plain)
    assert type(plain.head) is WeightMajorLinear


def test_with_gradients_on_the_output_layer_takes_the_differentiable_path():
    model, reference = packed_model()
    x = torch.randn(4, 24)
    with active():
        out = model.head(x)
    out.sum().backward()
    assert model.head.weight.grad is not None and torch.allclose(out, reference.head(x), atol=1e-5)
    assert model.head not in matmul._packed


def test_the_output_layer_traces_under_torch_compile_with_fullgraph():
    model, reference = packed_model()
    compiled = torch.compile(model.head, backend="eager", fullgraph=True)
    x = torch.randn(4, 24)
    with torch.inference_mode(), active():
        assert torch.allclose(compiled(x), reference.head(x), atol=1e-6)
