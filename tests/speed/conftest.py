import pytest


@pytest.fixture(scope="module")
def engine():
    from dpfusion_chains.testing import tiny_engine

    return tiny_engine(seed=0)
