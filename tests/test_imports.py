"""`import dpfusion_chains` (and the lazy adapter packages) import no framework (DESIGN §1)."""

import subprocess
import sys

FRAMEWORKS = ("langchain", "llama_index", "presidio_analyzer", "spacy", "ray", "psycopg", "fastapi")


def _loaded_after(code: str) -> set[str]:
    probe = (f"{code}\nimport sys\nprint(' '.join(sorted({{m.split('.')[0] for m in sys.modules}})))")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    return set(out.stdout.split())


def test_top_level_import_is_framework_free():
    loaded = _loaded_after("import dpfusion_chains")
    assert not loaded & set(FRAMEWORKS)
    assert "torch" not in loaded  # the engine loads torch on first use only


def test_adapter_packages_are_lazy():
    loaded = _loaded_after("import dpfusion_chains.llms, dpfusion_chains.retrievers, dpfusion_chains.callbacks, "
                           "dpfusion_chains.budget, dpfusion_chains.core.engine")
    assert not loaded & set(FRAMEWORKS), loaded & set(FRAMEWORKS)


def test_public_names_resolve():
    import dpfusion_chains
    from dpfusion_chains import DPFusionEngine, GenerationResult, PrivacyBudget, private  # noqa: F401
    from dpfusion_chains.core.accounting import per_step_rdp, rdp_to_epsilon  # noqa: F401
    from dpfusion_chains.core.fusion import renyi_divergence  # noqa: F401

    assert set(dpfusion_chains.__all__) >= {"DPFusionEngine", "GenerationResult", "PrivacyBudget", "private"}
