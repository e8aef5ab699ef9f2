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
