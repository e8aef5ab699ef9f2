import pytest



@pytest.fixture(scope="session")
def engine():
    from dpfusion_chains.testing import tiny_engine

    return tiny_engine(seed=0)


@pytest.fixture(scope="session")
def tokenizer(engine):
    return engine.tokenizer
