"""Shared test fixtures: the published datasets beside the repository (``../shared/datasets``)."""

import os
from pathlib import Path

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
