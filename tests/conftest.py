"""Shared test fixtures: the published datasets beside the repository (``../shared/datasets``)."""

import os
from pathlib import Path

# The suite is dominated by XLA compilation on 2 CPU cores: LLVM's backend optimisation is
# switched off for tests (same HLO and numerics, slower steady state; ~25% less suite time).
os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "")
                           + " --xla_backend_optimization_level=0").strip()

import pytest

SHARED_DATASETS = Path(__file__).resolve().parents[2] / "shared" / "datasets"


@pytest.fixture(scope="session")
def shared_datasets() -> Path:
    """Path of ../shared/datasets; skipped only outside CI when the folder is absent."""
    if not SHARED_DATASETS.is_dir():
        if os.environ.get("CI"):
            pytest.fail(f"{SHARED_DATASETS} is missing: CI must run with ../shared beside the repo")
        pytest.skip(f"the published datasets are not at {SHARED_DATASETS} (../shared is absent)")
    return SHARED_DATASETS


@pytest.fixture(scope="session", autouse=True)
def compilation_cache(tmp_path_factory):
    """One JAX persistent compilation cache for the whole run, so that a function a later
    module needs again is reloaded from disk rather than recompiled after ``release_compiled``
    (all of them, however quick to compile, as ``reaxopt fit`` keeps them)."""
    import jax

    jax.config.update("jax_compilation_cache_dir", str(tmp_path_factory.mktemp("jax_cache")))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    yield


@pytest.fixture(scope="module", autouse=True)
def release_compiled():
    """Drop every compiled executable after each test module.

    Each XLA CPU executable holds thousands of memory maps and Linux caps a process at
    vm.max_map_count (65530 by default); the whole suite in one process compiles more than
    that allows and would abort ("LLVM ERROR: Unable to allocate section memory").
    """
    yield
    import gc

    import jax

    jax.clear_caches()
    gc.collect()
