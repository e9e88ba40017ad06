"""Physical validation, bounded reading and one-line errors of the spectrum importers.

Each test starts from a real reference file and breaks it the way users' files were broken
(issue 7): extreme numbers, NaN or negative frequency rows, a lone 1e-300 Hz point, binary
content after a valid file, files of gigabytes, a fake signature.
"""

from __future__ import annotations

import builtins
import math
import pathlib
import struct
import warnings
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st

from labctl.analyze import analyze_spectrum_file
from labctl.cli import main as cli
from labctl.importers import MAX_FILE_BYTES, SpectrumFileError, SpectrumFormatError, load_spectrum
from tests.importer_fuzz import mpr_records_start

IMP = "impedance_py"
EFP = "eisfitpython_solid_electrolyte"
GIB = 1 << 30

# file, line of the first data row, the first frequency as written there
FIRST_FREQUENCY = {
    "csv": (f"{IMP}/exampleData.csv", 1, b"3.162299999999999833e-03"),
    "biologic-mpt": (f"{IMP}/exampleDataBioLogic.mpt", 62, b"1.0003201E+003"),
    "gamry": (f"{IMP}/exampleDataGamry.DTA", 449, b"200015.6"),
    "zplot": (f"{IMP}/Circuit1_EIS_1.z", 124, b"5.000000E+04"),
    "eisfitpython": (f"{EFP}/s04147-140deg.txt", 4, b"1.00000e+06"),
}


def _with_line_edited(reference_data: Path, tmp_path: Path, fmt: str, old: bytes, new: bytes) -> tuple[Path, int]:
    rel, line_no, _ = FIRST_FREQUENCY[fmt]
    lines = (reference_data / rel).read_bytes().split(b"\n")
    assert old in lines[line_no - 1]
    lines[line_no - 1] = lines[line_no - 1].replace(old, new, 1)
    path = tmp_path / Path(rel).name
    path.write_bytes(b"\n".join(lines))
    return path, line_no


def _refusal(path: Path, **options) -> SpectrumFileError:
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # nothing may be printed before the one-line error
        with pytest.raises(SpectrumFileError) as info:
            load_spectrum(path, **options)
    err = info.value
    assert "\n" not in str(err) and str(err).startswith(str(path))
    return err


# --------------------------------------------------------------------------- the error type


def test_error_is_one_line_with_place_field_reason_and_allowed(tmp_path: Path) -> None:
    err = SpectrumFileError(tmp_path / "a\nb.csv", "freq", "not a finite frequency", line=7,
                            allowed="1e-06 to 1e+08 Hz", found="x\x00" * 100)
    text = str(err)
    assert "\n" not in text and "\x00" not in text
    assert text.startswith(f"{tmp_path}/a\\nb.csv:7: freq: not a finite frequency, found ")
    assert text.endswith(" (allowed: 1e-06 to 1e+08 Hz)")
    assert isinstance(err, ValueError) and SpectrumFormatError is SpectrumFileError
    binary = SpectrumFileError("x.mpr", "module", "too short", offset=2046)
    assert str(binary) == "x.mpr:byte 2046: module: too short"
    import pickle

    again = pickle.loads(pickle.dumps(err))
    assert str(again) == text and again.line == 7 and again.field == "freq"


# --------------------------------------------------------------------------- extreme numbers


@pytest.mark.parametrize("fmt", sorted(FIRST_FREQUENCY))
@pytest.mark.parametrize(
    "value, reason",
    [
        (b"1e-320", "outside any instrument's frequency range"),
        (b"1e-300", "outside any instrument's frequency range"),
        (b"1e308", "outside any instrument's frequency range"),
        (b"1e99999", "not a finite frequency"),
        (b"inf", "not a finite frequency"),
        (b"nan", "not a finite frequency"),
        (b"-1000", "not a positive frequency"),
    ],
)
def test_bad_frequency_is_refused_at_its_line(reference_data, tmp_path, fmt, value, reason) -> None:
    path, line_no = _with_line_edited(reference_data, tmp_path, fmt, FIRST_FREQUENCY[fmt][2], value)
    err = _refusal(path)
    assert (err.line, err.field) == (line_no, "freq")
    assert str(err).startswith(f"{path}:{line_no}: freq: {reason} (")
    assert "(allowed: finite, 1e-06 to 1e+08 Hz)" in str(err)


@pytest.mark.parametrize("fmt", sorted(FIRST_FREQUENCY))
def test_absurd_impedance_is_refused(reference_data, tmp_path, fmt) -> None:
    """Z' of 1e308 Ω: finite, but no instrument measures it."""
    rel, line_no, token = FIRST_FREQUENCY[fmt]
    row = (reference_data / rel).read_bytes().split(b"\n")[line_no - 1]
    fields = row.replace(b",", b"\t").split()
    z_re = fields[fields.index(token) + (4 if fmt == "zplot" else 1)]  # ZPlot: Freq, Ampl, Bias, Time, Z'(a)
    path, _ = _with_line_edited(reference_data, tmp_path, fmt, z_re, b"1e308")
    err = _refusal(path)
    assert (err.line, err.field) == (line_no, "Z'") and "beyond any instrument's range" in err.reason


def test_lone_outlier_point_is_refused_not_analysed(reference_data, tmp_path) -> None:
    """One 1e-300 Hz point appended to a good spectrum used to move σ by half; now the file is refused."""
    good = reference_data / EFP / "s04147-140deg.txt"
    params = {"thickness": "2100", "area": "0.503"}
    sigma = analyze_spectrum_file(good, params)["results"]["sigma_S_cm"]
    assert math.isfinite(sigma) and sigma > 0
    bad = tmp_path / "s04147-140deg.txt"
    bad.write_bytes(good.read_bytes().rstrip(b"\n") + b"\n 1.00000e-300\t 2.21423e+04\t-5.43115e+04\n")
    with pytest.raises(SpectrumFileError, match=r"s04147-140deg.txt:46: freq: outside any instrument's"):
        analyze_spectrum_file(bad, params)


def test_bad_rows_are_listed_not_dropped(reference_data, tmp_path) -> None:
    """EC-Lab rows with NaN or negative frequency were skipped silently; now the first few are named."""
    src = (reference_data / IMP / "exampleDataBioLogic.mpt").read_bytes().split(b"\n")
    for line_no, value in ((64, b"nan"), (70, b"nan"), (75, b"NaN"), (80, b"nan"), (90, b"nan"), (95, b"-5.0")):
        fields = src[line_no - 1].split(b"\t")
        fields[0] = value
        src[line_no - 1] = b"\t".join(fields)
    path = tmp_path / "rows.mpt"
    path.write_bytes(b"\n".join(src))
    err = _refusal(path)
    assert err.line == 64
    assert "not a finite frequency (nan) at lines 64, 70, 75, 80 and 1 more" in str(err)
    # rows of exactly 0 Hz are EC-Lab's non-impedance technique parts: skipped and counted
    src = (reference_data / IMP / "exampleDataBioLogic.mpt").read_bytes().split(b"\n")
    src.insert(61, b"0\t" + b"\t".join(src[61].split(b"\t")[1:]))
    path.write_bytes(b"\n".join(src))
    s = load_spectrum(path)
    assert s.n_points == 43 and s.metadata["skipped_rows_without_frequency"] == 1


def test_inf_in_the_cycle_column(reference_data, tmp_path) -> None:
    src = (reference_data / IMP / "exampleDataBioLogic.mpt").read_bytes().split(b"\n")
    fields = src[69].split(b"\t")
    assert fields[10] == b"1.000000000000000E+000"  # the cycle number column
    fields[10] = b"inf"
    src[69] = b"\t".join(fields)
    path = tmp_path / "cycle.mpt"
    path.write_bytes(b"\n".join(src))
    err = _refusal(path)
    assert (err.line, err.field) == (70, "cycle number") and "(allowed: finite, 0 to 1e+09)" in str(err)


def test_companion_columns_and_temperatures_are_checked(reference_data, tmp_path) -> None:
    rel, line_no, _ = FIRST_FREQUENCY["gamry"]
    lines = (reference_data / rel).read_bytes().split(b"\n")
    fields = lines[line_no - 1].split(b"\t")
    fields[2] = b"inf"  # Time
    lines[line_no - 1] = b"\t".join(fields)
    path = tmp_path / "t.DTA"
    path.write_bytes(b"\n".join(lines))
    assert (_refusal(path).field, _refusal(path).line) == ("t", line_no)

    title = tmp_path / "hot.txt"
    src = (reference_data / EFP / "s04147-140deg.txt").read_bytes()
    title.write_bytes(src.replace(b"s04147-140deg", b"s04147-99999deg", 1))
    assert "99999 °C from the sample title" in str(_refusal(title))


# --------------------------------------------------------------------------- structure


def test_points_span_and_duplicates(tmp_path) -> None:
    two = tmp_path / "two.csv"
    two.write_text("1000,1,-1\n100,2,-2\n")
    assert "2 impedance points (allowed: at least 3" in str(_refusal(two))
    narrow = tmp_path / "narrow.csv"
    narrow.write_text("1000,1,-1\n900,2,-2\n800,3,-3\n")
    assert "a factor 1.25" in str(_refusal(narrow))
    twice = tmp_path / "twice.csv"
    twice.write_text("1000,1,-1\n100,2,-2\n10,3,-3\n100,2,-2\n")
    err = _refusal(twice)
    assert err.line == 4 and "100 Hz measured twice (lines 2, 4)" in str(err)
    zero = tmp_path / "zero.csv"
    zero.write_text("1000,1,-1\n100,0,0\n10,3,-3\n")
    assert _refusal(zero).field == "|Z|"


@pytest.mark.parametrize("tail", [b"\x00" * 4096, b"\x1a", bytes(range(256)) * 4])
def test_valid_file_followed_by_binary_content_is_refused(reference_data, tmp_path, tail) -> None:
    src = (reference_data / IMP / "exampleDataGamry.DTA").read_bytes()
    assert src.count(b"\n") == 520 and src.endswith(b"\n")
    path = tmp_path / "tail.DTA"
    path.write_bytes(src + tail)
    err = _refusal(path)
    assert (err.line, err.field) == (521, "content") and "binary byte" in err.reason


def test_valid_file_followed_by_itself_is_refused(reference_data, tmp_path) -> None:
    for rel in (f"{IMP}/exampleDataGamry.DTA", f"{IMP}/exampleData.csv", f"{IMP}/exampleDataBioLogic.mpr",
                f"{IMP}/Circuit1_EIS_1.z", f"{EFP}/s04147-140deg.txt", f"{IMP}/exampleDataBioLogic.mpt"):
        src = (reference_data / rel).read_bytes()
        path = tmp_path / Path(rel).name
        path.write_bytes(src + src)
        _refusal(path)


def test_text_encodings_and_line_endings(reference_data, tmp_path) -> None:
    src = (reference_data / EFP / "s04147-140deg.txt").read_bytes()
    ref = load_spectrum(reference_data / EFP / "s04147-140deg.txt")
    for name, data in (("cr.txt", src.replace(b"\n", b"\r")), ("crlf.txt", src.replace(b"\n", b"\r\n")),
                       ("bom.txt", b"\xef\xbb\xbf" + src)):
        path = tmp_path / name
        path.write_bytes(data)
        s = load_spectrum(path, fmt="eisfitpython")
        np.testing.assert_array_equal(s.z, ref.z)
        assert s.metadata["temperature_C"] == 140.0
    utf16 = tmp_path / "utf16.txt"
    utf16.write_bytes(src.decode("latin-1").encode("utf-16"))
    assert _refusal(utf16).field == "encoding"
    long_line = tmp_path / "long.csv"
    long_line.write_bytes(b"1000,1,-1\n" + b"1" * 100_000 + b"\n")
    err = _refusal(long_line)
    assert (err.line, err.field) == (2, "line")


def test_fake_signatures(reference_data, tmp_path) -> None:
    src = (reference_data / IMP / "Circuit1_EIS_1.z").read_bytes()
    hdf5 = tmp_path / "fake_hdf5.z"
    hdf5.write_bytes(b"\x89HDF\r\n\x1a\n" + src)
    assert "an HDF5 file is not an impedance spectrum" in str(_refusal(hdf5))
    mpr = tmp_path / "fake.mpr"
    mpr.write_bytes(b"BIO-LOGIC MODULAR FILE\x1a" + src)
    assert _refusal(mpr).field == "module"
    truncated_module = tmp_path / "short.mpr"
    truncated_module.write_bytes((reference_data / IMP / "exampleDataBioLogic.mpr").read_bytes()[:2046 + 30])
    err = _refusal(truncated_module)
    assert err.offset == 2046 and "file ends after 30" in str(err)


def test_mpr_values_are_checked_by_record(reference_data, tmp_path) -> None:
    raw = bytearray((reference_data / IMP / "exampleDataBioLogic.mpr").read_bytes())
    first = mpr_records_start(bytes(raw))
    assert first is not None and struct.unpack_from("<f", raw, first)[0] == pytest.approx(1000.3201)
    struct.pack_into("<f", raw, first + 62 * 4, float("nan"))  # the frequency of record 5
    path = tmp_path / "nan.mpr"
    path.write_bytes(bytes(raw))
    err = _refusal(path)
    assert err.line is None and "not a finite frequency (nan) at record 5 " in str(err)
    signalling = bytearray(raw)
    struct.pack_into("<I", signalling, first + 62 * 4, 0x7F800001)  # a signalling NaN: no warning either
    path.write_bytes(bytes(signalling))
    assert "at record 5 " in str(_refusal(path))


# --------------------------------------------------------------------------- size limits


@pytest.fixture
def no_reading(monkeypatch):
    """Any attempt to open a file for reading fails the test: a refusal must come from stat."""

    def refuse(*args, **kwargs):
        raise AssertionError(f"the importer opened a file: {args[:1]}")

    monkeypatch.setattr(pathlib.Path, "open", refuse)
    monkeypatch.setattr(builtins, "open", refuse)


@pytest.mark.parametrize("suffix", [".z", ".mpt", ".mpr", ".DTA", ".csv", ".txt", ""])
def test_huge_sparse_file_is_refused_unread(tmp_path, suffix, request) -> None:
    path = tmp_path / f"huge{suffix}"
    with path.open("wb") as fh:
        fh.truncate(2 * GIB)
    request.getfixturevalue("no_reading")
    with pytest.raises(SpectrumFileError) as info:
        load_spectrum(path)
    assert info.value.field == "size"
    assert str(info.value) == (f"{path}: size: 2147483648 bytes is far more than an impedance spectrum holds "
                               f"(allowed: at most {MAX_FILE_BYTES} bytes (max_bytes))")


def test_valid_dta_followed_by_2gb_of_zeros_is_refused_unread(reference_data, tmp_path, request) -> None:
    src = (reference_data / IMP / "exampleDataGamry.DTA").read_bytes()
    path = tmp_path / "zeros.DTA"
    with path.open("wb") as fh:
        fh.write(src)
        fh.truncate(len(src) + 2 * GIB)
    request.getfixturevalue("no_reading")
    with pytest.raises(SpectrumFileError) as info:
        load_spectrum(path)
    assert info.value.field == "size"


def test_size_limit_can_be_changed(reference_data, tmp_path) -> None:
    path = reference_data / IMP / "exampleDataGamry.DTA"
    size = path.stat().st_size
    assert _refusal(path, max_bytes=size - 1).field == "size"
    assert load_spectrum(path, max_bytes=size).n_points == 72


# --------------------------------------------------------------------------- CLI


@pytest.mark.parametrize("content", [b"1000,1,-1\n100,1e-320,-1\n", b"\x00" * 64, b"1e-320,1,1\n" * 5])
def test_cli_prints_one_line_and_exits_2(tmp_path, content) -> None:
    path = tmp_path / "bad.csv"
    path.write_bytes(content)
    result = CliRunner().invoke(cli, ["analyze", str(path), "-p", "thickness=100", "-p", "area=1"])
    assert result.exit_code == 2
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {path}") and "Traceback" not in result.output


# --------------------------------------------------------------------------- property


@settings(max_examples=300, derandomize=True, deadline=None, database=None)
@given(st.floats(allow_nan=True, allow_infinity=True, allow_subnormal=True) | st.sampled_from([1e-6, 1e8, 1e-320]))
def test_any_first_frequency_is_accepted_exactly_when_physical(tmp_path_factory, value: float) -> None:
    """Replace the first frequency of a real CSV by any float: the file imports with that
    value iff it is finite, in 1 µHz–100 MHz and not already in the file; otherwise it is
    refused at line 1, field freq."""
    from tests.conftest import REFERENCE_DATA

    src = (REFERENCE_DATA / IMP / "exampleData.csv").read_text().split("\n")
    others = {float(row.split(",")[0]) for row in src[1:] if row}
    src[0] = ",".join([repr(value), *src[0].split(",")[1:]])
    path = tmp_path_factory.mktemp("prop") / "spectrum.csv"
    path.write_text("\n".join(src))
    physical = math.isfinite(value) and 1e-6 <= value <= 1e8
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        if physical and value not in others:
            assert load_spectrum(path).freq[0] == value
            return
        with pytest.raises(SpectrumFileError) as info:
            load_spectrum(path)
    assert info.value.field == "freq"
    assert info.value.line == (1 if not physical else next(i + 1 for i, r in enumerate(src)
                                                          if i and r and float(r.split(",")[0]) == value))


def test_arrhenius_names_the_bad_file(reference_data, tmp_path) -> None:
    good = [reference_data / EFP / f"s04147-{t}deg.txt" for t in (140, 150, 160)]
    bad = tmp_path / "s04147-170deg.txt"
    bad.write_bytes((reference_data / EFP / "s04147-170deg.txt").read_bytes() + b"\x00" * 16)  # 44 lines, then zeros
    args = ["analyze", "arrhenius", *map(str, good), str(bad), "-p", "thickness=2100", "-p", "area=0.503"]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 2
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {bad}:45: content: binary byte 0x00 at column 1")
