"""A seeded sample of the importer fuzz harness (the full run: bench/fuzz_importers.py).

Every mutated file must give either a physically valid spectrum or a one-line
SpectrumFileError, never another exception and never a warning.
"""

from __future__ import annotations

import collections
from pathlib import Path

import numpy as np
import pytest

from labctl.importers import ImportedSpectrum
from tests.importer_fuzz import (
    BINARY_MUTATIONS,
    FORMATS,
    TEXT_MUTATIONS,
    Case,
    generate,
    load_samples,
    physical_problem,
    run_case,
)

N_CASES = 480  # 80 per format: about a second


@pytest.mark.parametrize("seed", [20261204, 7])
def test_fuzz_sample(reference_data: Path, tmp_path: Path, seed: int) -> None:
    cases = generate(load_samples(reference_data), N_CASES, seed)
    outcomes = [run_case(case, tmp_path, i) for i, case in enumerate(cases)]
    failures = [(o.case.fmt, o.case.mutations, o.kind, o.detail[:200], o.warnings) for o in outcomes if not o.ok]
    assert failures == []
    # the sample is not vacuous: every format is both accepted and refused, every mutation is used
    kinds = collections.Counter((o.case.fmt, o.kind) for o in outcomes)
    for fmt in FORMATS:
        assert kinds[(fmt, "accepted")] > 0 and kinds[(fmt, "refused")] > 0, fmt
    used = {name for case in cases for name in case.mutations}
    assert used == set(TEXT_MUTATIONS) | set(BINARY_MUTATIONS)


def test_oracle_flags_what_it_must(reference_data: Path, tmp_path: Path) -> None:
    """The oracle can fail: unphysical spectra and foreign exceptions are findings."""
    good = ImportedSpectrum(np.array([1e3, 1e2, 1e1]), np.array([1 - 1j, 2 - 2j, 3 - 3j]), tmp_path, "csv")
    assert physical_problem(good) is None
    for freq in ([1e3, 1e2, 1e-300], [1e3, 1e2, np.nan], [1e3, 1e2, 1e2], [1e3, 1e2, 2e8]):
        bad = ImportedSpectrum(np.array(freq), good.z, tmp_path, "csv")
        assert physical_problem(bad) is not None, freq
    huge = ImportedSpectrum(good.freq, np.array([1e308 + 0j, 1, 1]), tmp_path, "csv")
    assert physical_problem(huge) is not None
    # and run_case tells an accepted file from a refused one
    outcome = run_case(Case("csv", "x", (), b"1000,1,-1\n100,2,-2\n10,3,-3\n", ".csv"), tmp_path, 0)
    assert outcome.kind == "accepted" and outcome.ok
    outcome = run_case(Case("csv", "x", (), b"1000,1,-1\n", ".csv"), tmp_path, 1)
    assert outcome.kind == "refused" and "at least 3" in outcome.detail
