import pytest


@pytest.fixture(scope="module")
def engine():
    from dpfusion_chains.testing import tiny_engine

    return tiny_engine(seed=0)


@pytest.fixture
def decode_with_joins():
    """Run named DecodeRequests to the end in one DecodeBatch, `joins` being (steps to take first,
    names joining then); `watch(batch)` is called after each join and each later step."""
    import torch

    from dpfusion_chains.core.decode import DecodeBatch

    def run(engine, requests, joins, watch=lambda batch: None):
        with torch.inference_mode():
            batch = DecodeBatch(engine.model, engine.tokenizer, engine.device)
            for steps, names in joins:
                for _ in range(steps):
                    batch.step()
                batch.add([requests[name] for name in names])
                watch(batch)
            while batch.requests:
                batch.step()
                watch(batch)

    return run


@pytest.fixture
def torch_attention():
    """Decode attention through torch's ops for the test (core.native_attention off)."""
    from dpfusion_chains.core import native_attention

    with native_attention.disabled():
        yield


@pytest.fixture
def own_linear_products():
    """Each swapped layer's own product for the test (core.native_linear off): for tests of those
    products, whose few-row calls the compiled kernel would take where it is available."""
    from dpfusion_chains.core import native_linear

    with native_linear.disabled():
        yield


@pytest.fixture(params=["torch ops", "native kernel"])
def attention_path(request, monkeypatch):
    """Decode attention over a shared opening through torch's ops (core.native_attention off), or
    through the compiled kernel, which must then answer every call (skipped, with the reason,
    where this machine cannot build or run it)."""
    from decode_attention_cases import kernel_answers

    from dpfusion_chains.core import native_attention

    if request.param == "torch ops":
        with native_attention.disabled():
            yield request.param
        return
    if not native_attention.available():
        pytest.skip(f"no native decode attention kernel: {native_attention.unavailable_reason()}; "
                    "its torch-ops twin of this test ran")
    answers = kernel_answers(monkeypatch)
    yield request.param
    assert answers and all(answers), "the kernel declined a call it should have computed"
