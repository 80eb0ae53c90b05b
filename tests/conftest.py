"""Shared fixtures. Real-data tests use `shared_data`, which skips cleanly where ../shared is absent."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("TEXSCRIBE_SHARED_DATA", REPO.parent / "shared" / "data"))


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """Path to ../shared/data (CROHME, im2latex, formulas); skips the test when it is not there."""
    if not (SHARED_DATA / "crohme" / "crohme_offline.zip").is_file():
        pytest.skip(
            f"real datasets not found at {SHARED_DATA} (set TEXSCRIBE_SHARED_DATA or place ../shared beside the repo)"
        )
    return SHARED_DATA


@pytest.fixture(scope="module")
def one_torch_thread():
    """One torch thread for a module of tiny-tensor tests: CI runs two test workers on two cores, and extra
    intra-op threads only oversubscribe them (10x slower). Use with
    `pytestmark = pytest.mark.usefixtures("one_torch_thread")`."""
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)
