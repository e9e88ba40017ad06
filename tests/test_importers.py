"""Readers of vendor impedance files, checked against the shared reference data.

Point counts, frequency ranges and first rows come from the files as published (see
shared/reference-data/README.md); signs are normalised to Z = Z' + jZ'' with Z'' < 0 for
capacitive behaviour whatever the vendor's convention.
"""

from __future__ import annotations

import math
import shutil
import struct
from pathlib import Path

import numpy as np
import pytest

from labctl.importers import (
    ImportedSpectrum,
    SpectrumFormatError,
    detect_format,
    load_spectrum,
)
from labctl.steps import SPECTRUM_DTYPE

IMP = "impedance_py"
EFP = "eisfitpython_solid_electrolyte"

# file, format, points, first frequency, last frequency, first Z (after sign normalisation)
REFERENCE_FILES = [
    (f"{IMP}/exampleData.csv", "csv", 66, 3.1623e-3, 1e4, 4.949989776405e-2 - 2.043869854442e-2j),
    (f"{IMP}/exampleDataBioLogic.mpt", "biologic-mpt", 43, 1000.3201, 1.6895540e-2,
     65.470886 - 0.38998979j),
    (f"{IMP}/exampleDataBioLogic.mpr", "biologic-mpr", 43, 1000.3201, 1.6895540e-2,
     65.470886 - 0.38998979j),
    (f"{IMP}/exampleDataGamry.DTA", "gamry", 72, 200015.6, 0.0158898, 825.8584 - 1367.239j),
    (f"{IMP}/exampleDataZPlot.z", "zplot", 21, 3e5, 3e3, 147.77 - 11.335j),
    (f"{IMP}/Circuit1_EIS_1.z", "zplot", 48, 5e4, 1.0, 29.036 + 0.63662j),
    (f"{IMP}/Circuit1_EIS_2.z", "zplot", 48, 5e4, 1.0, 29.001 + 0.59920j),
    (f"{IMP}/Circuit2_EIS_1.z", "zplot", 56, 3e5, 1.0, 147.77 - 11.335j),
    (f"{IMP}/Circuit2_EIS_2.z", "zplot", 56, 3e5, 1.0, 147.68 - 11.662j),
    (f"{IMP}/Circuit3_EIS_1.z", "zplot", 53, 1.5e5, 1.0, 1493.7 + 10.377j),
    (f"{IMP}/Circuit3_EIS_2.z", "zplot", 53, 1.5e5, 1.0, 1492.0 + 11.789j),
    (f"{EFP}/s04147-140deg.txt", "eisfitpython", 42, 1e6, 3.0e-2, 2.21423e4 - 5.43115e4j),
    (f"{EFP}/s04147-170deg.txt", "eisfitpython", 41, 1e6, 4.5773e-2, 2.07915e4 - 3.33040e4j),
    (f"{EFP}/s04147-200deg.txt", "eisfitpython", 40, 1e6, 6.9838e-2, 1.58596e4 - 1.83471e4j),
]


@pytest.mark.parametrize("rel, fmt, n, f_first, f_last, z_first", REFERENCE_FILES)
def test_reference_files(reference_data: Path, rel, fmt, n, f_first, f_last, z_first) -> None:
    path = reference_data / rel
    assert detect_format(path) == fmt
    s = load_spectrum(path)
    assert isinstance(s, ImportedSpectrum)
    assert s.format == fmt and s.source == path
    assert s.n_points == n == s.z.size
    assert s.freq[0] == pytest.approx(f_first, rel=2e-4)
    assert s.freq[-1] == pytest.approx(f_last, rel=2e-4)
    assert s.z[0] == pytest.approx(z_first, rel=1e-5)
    assert s.z.dtype == np.complex128 and s.freq.dtype == np.float64


def test_every_reference_file_parses(reference_data: Path) -> None:
    """Nothing in the shared data is left out of the table above or fails to load."""
    data_files = [
        p for p in sorted(reference_data.rglob("*"))
        if p.is_file() and p.name != "README.md" and not p.name.startswith("LICENSE")
    ]
    assert len(data_files) == 18  # 11 from impedance.py, 7 from EISFitpython
    for p in data_files:
        s = load_spectrum(p)
        assert s.n_points >= 20
        # every file is an electrochemical spectrum: mostly capacitive, i.e. Z'' < 0
        assert np.mean(s.z.imag < 0) > 0.5, p.name
        assert np.all(s.z.real > 0)


def test_biologic_text_and_binary_agree(reference_data: Path) -> None:
    mpt = load_spectrum(reference_data / IMP / "exampleDataBioLogic.mpt")
    mpr = load_spectrum(reference_data / IMP / "exampleDataBioLogic.mpr")
    assert mpt.n_points == mpr.n_points == 43
    # float32 in the binary vs 8 significant digits in the text export
    np.testing.assert_allclose(mpr.freq, mpt.freq, rtol=1e-6)
    np.testing.assert_allclose(mpr.z.real, mpt.z.real, rtol=1e-6)
    np.testing.assert_allclose(mpr.z.imag, mpt.z.imag, rtol=1e-6, atol=1e-6)
    for key in ("t", "E_dc", "I_dc"):
        np.testing.assert_allclose(mpr.columns[key], mpt.columns[key], rtol=1e-6, atol=1e-12)
    # BioLogic stores -Im(Z): at 16.9 mHz the file says -Im = +2.3458567 ohm
    assert mpt.z[-1].imag == pytest.approx(-2.3458567)
    assert mpt.columns["I_dc"][0] == pytest.approx(-4.8041187e-5)  # mA in the file -> A
    assert mpt.metadata["amplitude_V"] == pytest.approx(0.020)
    assert mpt.metadata["area_cm2"] == pytest.approx(0.001)
    assert mpt.metadata["date"] == mpr.metadata["date"][:10] + "T10:02:46"


def test_metadata(reference_data: Path) -> None:
    gamry = load_spectrum(reference_data / IMP / "exampleDataGamry.DTA")
    assert gamry.metadata["amplitude_V"] == pytest.approx(0.010)  # VAC 10 mV rms
    assert gamry.metadata["dc_bias_V"] == pytest.approx(-0.05)
    assert gamry.metadata["date"] == "2018-04-23T16:43:15"
    assert "temperature_C" not in gamry.metadata  # the file has no sensor (-327.67)

    zplot = load_spectrum(reference_data / IMP / "Circuit1_EIS_1.z")
    assert zplot.metadata["amplitude_V"] == pytest.approx(0.010)
    assert zplot.metadata["date"] == "2018-10-12T12:32:21"
    partial = load_spectrum(reference_data / IMP / "exampleDataZPlot.z")
    assert "56" in partial.metadata["note"]  # the header planned 56 points, 21 were saved

    temps = []
    for p in sorted((reference_data / EFP).glob("s04147-*deg.txt")):
        s = load_spectrum(p)
        assert s.metadata["amplitude_V_rms"] == pytest.approx(0.035)
        temps.append(s.metadata["temperature_C"])
    assert temps == [140.0, 150.0, 160.0, 170.0, 180.0, 190.0, 200.0]


def test_zplot_example_is_the_start_of_circuit2(reference_data: Path) -> None:
    """exampleDataZPlot.z is the first 21 points of the Circuit2_EIS_1 measurement (same
    start time): a cross-check that the reader's column mapping is stable."""
    part = load_spectrum(reference_data / IMP / "exampleDataZPlot.z")
    full = load_spectrum(reference_data / IMP / "Circuit2_EIS_1.z")
    np.testing.assert_array_equal(part.freq, full.freq[:21])
    np.testing.assert_array_equal(part.z, full.z[:21])


def test_as_spectrum_block(reference_data: Path) -> None:
    s = load_spectrum(reference_data / IMP / "exampleDataGamry.DTA")
    block = s.as_spectrum_block()
    assert block.dtype == SPECTRUM_DTYPE and block.size == 72
    np.testing.assert_array_equal(block["z_im"], s.z.imag)
    np.testing.assert_array_equal(block["I_dc"], s.columns["I_dc"])
    csv = load_spectrum(reference_data / IMP / "exampleData.csv").as_spectrum_block()
    assert np.all(np.isnan(csv["E_dc"]))


# --------------------------------------------------------------------------- CSV variants


@pytest.mark.parametrize(
    "text, imag_sign",
    [
        ("1000,10.5,-2.5\n100,12,-4\n10,15,-8\n", "signed"),
        ("f;Z';Z''\n1000;10,5;-2,5\n100;12;-4\n10;15;-8\n", "signed"),  # decimal comma
        ("freq/Hz\tRe(Z)/Ohm\t-Im(Z)/Ohm\n1000\t10.5\t2.5\n100\t12\t4\n10\t15\t8\n", "negated"),
        ("# measured 2024\nfrequency  Zreal  Zimag\n1e3 10.5 -2.5\n1e2 12 -4\n1e1 15 -8\n", "signed"),
        ('"Frequency (Hz)","Z\' (ohm)","-Z\'\' (ohm)"\n1000,10.5,2.5\n100,12,4\n10,15,8\n', "negated"),
    ],
)
def test_csv_variants(tmp_path: Path, text: str, imag_sign: str) -> None:
    path = tmp_path / "spectrum.csv"
    path.write_text(text, encoding="utf-8")
    s = load_spectrum(path)
    np.testing.assert_allclose(s.freq, [1000, 100, 10])
    np.testing.assert_allclose(s.z, [10.5 - 2.5j, 12 - 4j, 15 - 8j])
    assert s.metadata["imag_column"].startswith("-Im") == (imag_sign == "negated")


def test_headerless_negated_imaginary_needs_to_be_said(tmp_path: Path) -> None:
    path = tmp_path / "minus_z.txt"
    path.write_text("1000 10.5 2.5\n100 12 4\n10 15 8\n", encoding="utf-8")
    assert load_spectrum(path).z[0] == 10.5 + 2.5j  # no header: taken as signed Z''
    assert load_spectrum(path, imag_sign="negated").z[0] == 10.5 - 2.5j


# --------------------------------------------------------------------------- bad files


def _copy(reference_data: Path, rel: str, tmp_path: Path) -> Path:
    dst = tmp_path / Path(rel).name
    shutil.copyfile(reference_data / rel, dst)
    dst.chmod(0o644)
    return dst


def _truncate_mid_line(path: Path, line_no: int) -> None:
    """Cut the file in the middle of line ``line_no`` (1-based), as a crash would."""
    raw = path.read_bytes()
    lines = raw.split(b"\n")
    keep = b"\n".join(lines[: line_no - 1]) + b"\n" + lines[line_no - 1][: len(lines[line_no - 1]) // 3]
    path.write_bytes(keep)


@pytest.mark.parametrize(
    "rel, line_no, words",
    [
        (f"{IMP}/exampleDataGamry.DTA", 500, ["ZCURVE"]),
        (f"{IMP}/Circuit1_EIS_1.z", 150, ["ZPlot"]),
        (f"{IMP}/exampleDataBioLogic.mpt", 80, ["tab-separated"]),
        (f"{EFP}/s04147-140deg.txt", 20, ["f, Z', Z''"]),
        (f"{IMP}/exampleData.csv", 40, ["numbers"]),
    ],
)
def test_truncated_text_files(reference_data: Path, tmp_path: Path, rel: str, line_no: int, words) -> None:
    path = _copy(reference_data, rel, tmp_path)
    _truncate_mid_line(path, line_no)
    with pytest.raises(SpectrumFormatError) as info:
        load_spectrum(path)
    err = info.value
    assert err.path == path and err.line == line_no
    msg = str(err)
    assert msg.startswith(f"{path}:{line_no}: ") and "expected" in msg and "\n" not in msg
    for w in words:
        assert w in msg


def test_garbled_values_point_at_the_line(reference_data: Path, tmp_path: Path) -> None:
    path = _copy(reference_data, f"{IMP}/exampleDataGamry.DTA", tmp_path)
    lines = path.read_bytes().split(b"\n")
    lines[460] = lines[460].replace(b".", b"#", 1)
    path.write_bytes(b"\n".join(lines))
    with pytest.raises(SpectrumFormatError, match=r":461: ZCURVE row: expected 11 numbers"):
        load_spectrum(path)


def test_bad_headers(reference_data: Path, tmp_path: Path) -> None:
    mpt = _copy(reference_data, f"{IMP}/exampleDataBioLogic.mpt", tmp_path)
    mpt.write_bytes(mpt.read_bytes().replace(b"Nb header lines : 61", b"Nb header lines : six"))
    with pytest.raises(SpectrumFormatError, match=r":2: Nb header lines: expected 'Nb header lines"):
        load_spectrum(mpt)

    z = _copy(reference_data, f"{IMP}/Circuit1_EIS_1.z", tmp_path)
    z.write_bytes(z.read_bytes().replace(b"Z''(b)", b"Zim"))
    with pytest.raises(SpectrumFormatError, match=r":122: column header: expected columns Freq\(Hz\)"):
        load_spectrum(z)

    dta = _copy(reference_data, f"{IMP}/exampleDataGamry.DTA", tmp_path)
    dta.write_bytes(dta.read_bytes().replace(b"ZCURVE\tTABLE", b"ZCURVE\tLABEL"))
    with pytest.raises(SpectrumFormatError, match="ZCURVE"):
        load_spectrum(dta)

    fake = tmp_path / "fake.mpr"
    fake.write_bytes(b"not a biologic file")
    with pytest.raises(SpectrumFormatError, match="BIO-LOGIC MODULAR FILE"):
        load_spectrum(fake)


def test_truncated_mpr(reference_data: Path, tmp_path: Path) -> None:
    path = _copy(reference_data, f"{IMP}/exampleDataBioLogic.mpr", tmp_path)
    raw = path.read_bytes()
    path.write_bytes(raw[:3000])  # inside the data module (which starts at byte 2046)
    with pytest.raises(SpectrumFormatError) as info:
        load_spectrum(path)
    assert info.value.offset == 2046
    assert "'VMP data'" in str(info.value) and "file ends after 954" in str(info.value)


def test_mpr_record_size_is_checked(reference_data: Path, tmp_path: Path) -> None:
    """A column table that does not match the module length is an error, not garbage."""
    path = _copy(reference_data, f"{IMP}/exampleDataBioLogic.mpr", tmp_path)
    raw = bytearray(path.read_bytes())
    body = 2046
    n_points, n_cols = struct.unpack_from("<IB", raw, body)
    assert (n_points, n_cols) == (43, 14)
    struct.pack_into("<I", raw, body, 4000)  # claim far more points than the module holds
    path.write_bytes(bytes(raw))
    with pytest.raises(SpectrumFormatError, match="4000 records of 62 bytes"):
        load_spectrum(path)


def test_mpr_single_unknown_column_is_sized_from_the_module(reference_data: Path, tmp_path: Path) -> None:
    path = _copy(reference_data, f"{IMP}/exampleDataBioLogic.mpr", tmp_path)
    raw = bytearray(path.read_bytes())
    ids_at = 2046 + 5
    ids = list(struct.unpack_from("<14H", raw, ids_at))
    assert ids[8] == 169  # Cs/µF, float32
    struct.pack_into("<H", raw, ids_at + 2 * 8, 999)  # an id this reader does not know
    path.write_bytes(bytes(raw))
    s = load_spectrum(path)
    ref = load_spectrum(reference_data / IMP / "exampleDataBioLogic.mpr")
    np.testing.assert_array_equal(s.z, ref.z)
    assert "column 999" in s.metadata["column_names"]


def test_no_data_and_unknown_content(tmp_path: Path) -> None:
    header_only = tmp_path / "empty.csv"
    header_only.write_text("freq,zre,zim\n", encoding="utf-8")
    with pytest.raises(SpectrumFormatError, match="rows of numbers"):
        load_spectrum(header_only)
    zero_freq = tmp_path / "zero.csv"
    zero_freq.write_text("1000,1,-1\n0,1,-1\n", encoding="utf-8")
    with pytest.raises(SpectrumFormatError, match=r"zero.csv:2: freq: not a positive frequency \(0\) at line 2 "
                       r"\(allowed: finite, 1e-06 to 1e\+08 Hz\)"):
        load_spectrum(zero_freq)
    binary = tmp_path / "blob.bin"
    binary.write_bytes(b"\x00\x01\x02" * 10)
    with pytest.raises(SpectrumFormatError, match="known impedance format"):
        load_spectrum(binary)
    with pytest.raises(FileNotFoundError):
        load_spectrum(tmp_path / "missing.z")
    with pytest.raises(ValueError, match="unknown impedance format"):
        load_spectrum(header_only, fmt="excel")


def test_format_override_and_detection_by_content(reference_data: Path, tmp_path: Path) -> None:
    """A vendor file with a wrong extension is still recognised by its first line/bytes."""
    for rel, fmt in [(f"{IMP}/exampleDataGamry.DTA", "gamry"), (f"{IMP}/exampleDataBioLogic.mpr", "biologic-mpr"),
                     (f"{IMP}/exampleDataBioLogic.mpt", "biologic-mpt"), (f"{IMP}/Circuit1_EIS_1.z", "zplot")]:
        renamed = tmp_path / (Path(rel).stem + ".dat")
        shutil.copyfile(reference_data / rel, renamed)
        assert detect_format(renamed) == fmt
        assert load_spectrum(renamed).n_points == load_spectrum(reference_data / rel).n_points
    s = load_spectrum(reference_data / EFP / "s04147-140deg.txt", fmt="eisfitpython")
    assert math.isclose(s.metadata["temperature_C"], 140.0)
