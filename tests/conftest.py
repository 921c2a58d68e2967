"""Shared fixtures: where the repository and the machine's shared real data live."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.pop("SNSDATA_SPECS", None)  # the tests' catalogue is the shipped one, whatever the developer's shell says

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The real data beside the checkout; tests that need it skip cleanly where it is absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip("../shared/data is not present on this machine")
    return SHARED_DATA
