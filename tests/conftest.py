"""Shared pytest fixtures."""

from __future__ import annotations

from pathlib import Path

import pytest

#: Real measurements from public repositories (see its README.md). The tests run from a clone
#: at <somewhere>/main with shared/ beside it.
REFERENCE_DATA = Path(__file__).resolve().parents[2] / "shared" / "reference-data"


@pytest.fixture(scope="session")
def reference_data() -> Path:
    """Directory of the shared reference data (impedance_py/, eisfitpython_solid_electrolyte/)."""
    assert REFERENCE_DATA.is_dir(), f"reference data not found at {REFERENCE_DATA}"
    return REFERENCE_DATA
