"""Seeded mutation fuzzing of the spectrum importers (used by tests and bench/fuzz_importers.py).

Each case starts from a valid sample file of one format (the shared reference data, plus a
few synthetic variants), applies one to three mutations a corrupted, hand-edited or hostile
file could carry — numbers pushed to extremes (1e-320, 1e308, inf, nan, negative, huge
exponents), lines deleted, duplicated or shuffled, truncation, flipped bytes, changed
headers, zeros or junk appended, fake signatures, other encodings — and calls the importer
in-process. The oracle (:func:`run_case`) accepts exactly two outcomes:

- a spectrum that passes physical checks written here independently of the importer's own
  (finite frequencies in 1 µHz–100 MHz, each once, finite and bounded Z, ≥ 3 points);
- a :class:`SpectrumFileError` whose message is one line starting with the file's path;

and in both cases no warning may be emitted. Anything else is a finding.
"""

from __future__ import annotations

import random
import re
import struct
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from labctl.importers import ImportedSpectrum, SpectrumFileError, load_spectrum

IMP = "impedance_py"
EFP = "eisfitpython_solid_electrolyte"

#: Reference sample per format (relative to the reference-data directory).
SAMPLES: dict[str, tuple[str, ...]] = {
    "zplot": (f"{IMP}/Circuit1_EIS_1.z", f"{IMP}/exampleDataZPlot.z"),
    "biologic-mpt": (f"{IMP}/exampleDataBioLogic.mpt",),
    "biologic-mpr": (f"{IMP}/exampleDataBioLogic.mpr",),
    "gamry": (f"{IMP}/exampleDataGamry.DTA",),
    "csv": (f"{IMP}/exampleData.csv",),
    "eisfitpython": (f"{EFP}/s04147-140deg.txt", f"{EFP}/s04147-200deg.txt"),
}
FORMATS = tuple(SAMPLES)

#: Replacement numbers: extremes, non-finite values, and tokens float() takes but a file should not hold.
EXTREMES = (
    "1e-320", "4.9e-324", "1e-300", "1e308", "1.7976931348623157e308", "1e309", "-1e308", "inf", "-inf",
    "Infinity", "nan", "NaN", "-nan", "0", "-0", "0.0", "-1", "-1000", "1e-7", "2e8", "1e99999", "-1e-99999",
    "9" * 400, "1" + "0" * 5000, "0." + "0" * 400 + "1", "1_000", "0x10", "\u0661\u0662", "1e", ".", "-", "",
    "1,5", "1.5.5", "++1", " 12 ", "1e+0308",
)
FLOAT32_EXTREMES = (np.inf, -np.inf, np.nan, 3.4e38, -3.4e38, 1e-45, 0.0, -0.0, -1.0, 1e-30, 1e30)
SIGNATURES = (
    b"\x89HDF\r\n\x1a\n", b"BIO-LOGIC MODULAR FILE\x1a", b"EXPLAIN\n", b"ZPLOT2 ASCII\n", b"EC-Lab ASCII FILE\n",
    b"\xff\xfe", b"\xfe\xff", b"\xef\xbb\xbf", b"PK\x03\x04", b"%PDF-1.4\n", b"\x00\x00\x00\x00",
)
_NUMBER = re.compile(rb"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?")


@dataclass(frozen=True)
class Case:
    fmt: str
    sample: str
    mutations: tuple[str, ...]
    data: bytes
    suffix: str


@dataclass(frozen=True)
class Outcome:
    case: Case
    kind: str  # "accepted", "refused" or the name of the unexpected exception / failed check
    detail: str
    seconds: float
    warnings: tuple[str, ...]

    @property
    def ok(self) -> bool:
        return self.kind in ("accepted", "refused") and not self.warnings


# --------------------------------------------------------------------------- mutations


def _lines(data: bytes) -> list[bytes]:
    return data.split(b"\n")


def _join(lines: list[bytes]) -> bytes:
    return b"\n".join(lines)


def extreme_number(rng: random.Random, data: bytes) -> bytes:
    """Replace one number (mostly in the data rows, the last two thirds of a text file)."""
    spans = [m.span() for m in _NUMBER.finditer(data)]
    if not spans:
        return data
    if rng.random() < 0.8:
        spans = spans[len(spans) // 3 :] or spans
    a, b = rng.choice(spans)
    return data[:a] + rng.choice(EXTREMES).encode("utf-8") + data[b:]


def outlier_frequency(rng: random.Random, data: bytes) -> bytes:
    """A single absurd frequency in a data row: the point that alone moved σ by 50 %."""
    lines = _lines(data)
    rows = [i for i, line in enumerate(lines) if _NUMBER.match(line.strip())]
    if not rows:
        return data
    i = rng.choice(rows)
    stripped = lines[i].lstrip()
    m = _NUMBER.match(stripped)
    assert m is not None
    lead = lines[i][: len(lines[i]) - len(stripped)]
    lines[i] = lead + rng.choice((b"1e-300", b"1e-320", b"-1000", b"nan", b"3e9")) + stripped[m.end() :]
    return _join(lines)


def delete_lines(rng: random.Random, data: bytes) -> bytes:
    lines = _lines(data)
    a = rng.randrange(len(lines))
    return _join(lines[:a] + lines[a + rng.randint(1, 5) :])


def duplicate_lines(rng: random.Random, data: bytes) -> bytes:
    lines = _lines(data)
    a = rng.randrange(len(lines))
    block = lines[a : a + rng.randint(1, 8)]
    at = rng.randrange(len(lines) + 1)
    return _join(lines[:at] + block + lines[at:])


def shuffle_lines(rng: random.Random, data: bytes) -> bytes:
    lines = _lines(data)
    a = rng.randrange(len(lines))
    window = lines[a : a + rng.randint(2, 12)]
    rng.shuffle(window)
    return _join(lines[:a] + window + lines[a + len(window) :])


def truncate(rng: random.Random, data: bytes) -> bytes:
    return data[: rng.randrange(len(data) + 1)]


def flip_bytes(rng: random.Random, data: bytes) -> bytes:
    raw = bytearray(data)
    for _ in range(rng.randint(1, 8)):
        if raw:
            raw[rng.randrange(len(raw))] = rng.randrange(256)
    return bytes(raw)


def change_header(rng: random.Random, data: bytes) -> bytes:
    """Edit the first lines: a word replaced, a line dropped, or a number made extreme."""
    lines = _lines(data)
    head = min(len(lines), 12)
    i = rng.randrange(head)
    choice = rng.randrange(3)
    if choice == 0:
        words = lines[i].split(b"\t") if b"\t" in lines[i] else lines[i].split(b" ")
        j = rng.randrange(len(words))
        words[j] = rng.choice((b"", b"Zim", b"freq", b"Nb header lines : 99999999", b"TABLE", b"x" * 300))
        lines[i] = (b"\t" if b"\t" in lines[i] else b" ").join(words)
    elif choice == 1:
        del lines[i]
    else:
        lines[i] = extreme_number(rng, lines[i])
    return _join(lines)


def append_junk(rng: random.Random, data: bytes) -> bytes:
    n = rng.choice((1, 16, 512, 4096))
    tail = rng.choice((b"\x00" * n, bytes(rng.randrange(256) for _ in range(n)), data, b"\n" + data, b"\x1a"))
    return data + tail


def fake_signature(rng: random.Random, data: bytes) -> bytes:
    sig = rng.choice(SIGNATURES)
    return sig + data if rng.random() < 0.5 else sig + data[len(sig) :]


def reencode(rng: random.Random, data: bytes) -> bytes:
    text = data.decode("latin-1")
    choice = rng.randrange(4)
    if choice == 0:
        return text.encode("utf-16")
    if choice == 1:
        return data.replace(b"\n", b"\r")  # old Mac line endings
    if choice == 2:
        return data.replace(b"\n", b"\r\n")
    return data[: len(data) // 2] + b"\xc3\x28" + b"x" * rng.choice((10, 20000)) + data[len(data) // 2 :]


TEXT_MUTATIONS: dict[str, Callable[[random.Random, bytes], bytes]] = {
    "extreme_number": extreme_number,
    "outlier_frequency": outlier_frequency,
    "delete_lines": delete_lines,
    "duplicate_lines": duplicate_lines,
    "shuffle_lines": shuffle_lines,
    "truncate": truncate,
    "flip_bytes": flip_bytes,
    "change_header": change_header,
    "append_junk": append_junk,
    "fake_signature": fake_signature,
    "reencode": reencode,
}

# --------------------------------------------------------------------------- .mpr (binary)

_MPR_DATA_BODY = 2046  # the data module's body in exampleDataBioLogic.mpr
_MPR_RECORD = 62
_MPR_COLUMNS = 14
_MPR_POINTS = 43


def mpr_records_start(data: bytes) -> int | None:
    """Where the records of the reference .mpr's data module start (they end its body), or
    None when a previous mutation broke the module header."""
    at = data.find(b"MODULEVMP data")
    if at < 0 or at + 45 > len(data):
        return None
    length = struct.unpack_from("<I", data, at + 41)[0]  # pre-11.50 header: length, version, date
    start = at + 57 + length - _MPR_POINTS * _MPR_RECORD
    return start if 0 <= start < len(data) else None


def mpr_extreme_value(rng: random.Random, data: bytes) -> bytes:
    """An extreme float32 in one record field (freq, Re(Z), −Im(Z) or a companion)."""
    start = mpr_records_start(data)
    if start is None:
        return flip_bytes(rng, data)
    raw = bytearray(data)
    record = rng.randrange(_MPR_POINTS)
    pos = start + record * _MPR_RECORD + rng.choice((0, 4, 8, 4 * rng.randrange(_MPR_RECORD // 4)))
    if pos + 4 <= len(raw):
        struct.pack_into("<f", raw, pos, rng.choice(FLOAT32_EXTREMES))
    return bytes(raw)


def mpr_header_field(rng: random.Random, data: bytes) -> bytes:
    """A random 32-bit value in the point count, column count, a module length or version."""
    raw = bytearray(data)
    targets = [_MPR_DATA_BODY, _MPR_DATA_BODY + 4]
    for m in re.finditer(rb"MODULE", data):
        targets += [m.start() + 6 + 35 + 4, m.start() + 6 + 35 + 8, m.start() + 6 + 35]
    pos = rng.choice(targets)
    value = rng.choice((0, 1, 2, 3, 0xFF, 0xFFFF, 0x7FFFFFFF, 0xFFFFFFFF, rng.randrange(1 << 32)))
    if pos + 4 <= len(raw):
        struct.pack_into("<I", raw, pos, value)
    return bytes(raw)


def mpr_column_ids(rng: random.Random, data: bytes) -> bytes:
    raw = bytearray(data)
    pos = _MPR_DATA_BODY + 5 + 2 * rng.randrange(_MPR_COLUMNS)
    if pos + 2 <= len(raw):
        struct.pack_into("<H", raw, pos, rng.choice((0, 1, 32, 37, 38, 999, 0xFFFF, rng.randrange(1 << 16))))
    return bytes(raw)


def mpr_duplicate_module(rng: random.Random, data: bytes) -> bytes:
    starts = [m.start() for m in re.finditer(rb"MODULE", data)] + [len(data)]
    k = rng.randrange(len(starts) - 1)
    return data + data[starts[k] : starts[k + 1]]


BINARY_MUTATIONS: dict[str, Callable[[random.Random, bytes], bytes]] = {
    "mpr_extreme_value": mpr_extreme_value,
    "mpr_header_field": mpr_header_field,
    "mpr_column_ids": mpr_column_ids,
    "mpr_duplicate_module": mpr_duplicate_module,
    "truncate": truncate,
    "flip_bytes": flip_bytes,
    "append_junk": append_junk,
    "fake_signature": fake_signature,
}

# --------------------------------------------------------------------------- cases


def load_samples(reference_data: Path) -> dict[str, list[tuple[str, bytes]]]:
    """Sample bytes per format; the CSV list gains a headered, decimal-comma variant."""
    samples = {fmt: [(rel, (reference_data / rel).read_bytes()) for rel in rels] for fmt, rels in SAMPLES.items()}
    csv_rows = [line.split(b",") for line in samples["csv"][0][1].splitlines() if line.strip()]
    semicolon = b"f;Z';Z''\n" + b"\n".join(b";".join(f.replace(b".", b",") for f in row) for row in csv_rows)
    samples["csv"].append(("synthetic/semicolon_decimal_comma.csv", semicolon + b"\n"))
    return samples


def generate(samples: dict[str, list[tuple[str, bytes]]], n: int, seed: int) -> list[Case]:
    """``n`` cases spread evenly over the formats, reproducible from ``seed``."""
    rng = random.Random(seed)
    cases = []
    for k in range(n):
        fmt = FORMATS[k % len(FORMATS)]
        rel, data = rng.choice(samples[fmt])
        table = BINARY_MUTATIONS if fmt == "biologic-mpr" else TEXT_MUTATIONS
        names = tuple(rng.choice(sorted(table)) for _ in range(rng.choice((1, 1, 2, 3))))
        for name in names:
            data = table[name](rng, data) if data else data
        cases.append(Case(fmt, rel, names, data, Path(rel).suffix))
    return cases


# --------------------------------------------------------------------------- oracle

FREQ_LIMITS = (1e-6, 1e8)
Z_LIMIT = 1e15


def physical_problem(s: ImportedSpectrum) -> str | None:
    """What is unphysical about an accepted spectrum (None if nothing): the checks of the
    brief, written out here rather than imported from the code under test."""
    f, z = s.freq, s.z
    if f.dtype != np.float64 or z.dtype != np.complex128 or f.shape != z.shape or f.ndim != 1:
        return f"arrays {f.dtype}{f.shape} / {z.dtype}{z.shape}"
    if f.size < 3:
        return f"{f.size} points"
    if not (np.all(np.isfinite(f)) and np.all(np.isfinite(z.real)) and np.all(np.isfinite(z.imag))):
        return "non-finite values"
    if f.min() < FREQ_LIMITS[0] or f.max() > FREQ_LIMITS[1]:
        return f"frequency {f.min():g}..{f.max():g} Hz"
    if len(set(f.tolist())) != f.size:
        return "repeated frequency"
    if np.max(np.abs(z.real)) > Z_LIMIT or np.max(np.abs(z.imag)) > Z_LIMIT or np.min(np.abs(z)) == 0:
        return "impedance out of range"
    for key, values in s.columns.items():
        if values.shape != f.shape or not np.all(np.isfinite(values)):
            return f"column {key}"
    t = s.metadata.get("temperature_C")
    if t is not None and not (-273.15 < t <= 2000):
        return f"temperature {t}"
    return None


def run_case(case: Case, directory: Path, index: int) -> Outcome:
    path = directory / f"case{index:05d}{case.suffix}"
    path.write_bytes(case.data)
    start = time.perf_counter()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            spectrum = load_spectrum(path)
        except SpectrumFileError as exc:
            kind, detail = "refused", str(exc)
            if "\n" in detail or "\r" in detail or not detail.startswith(f"{path}"):
                kind = "malformed message"
        except Exception as exc:  # every other exception is the finding
            kind, detail = type(exc).__name__, f"{exc}"[:300]
        else:
            problem = physical_problem(spectrum)
            kind, detail = ("accepted", "") if problem is None else ("unphysical spectrum", problem)
    seconds = time.perf_counter() - start
    path.unlink()
    return Outcome(case, kind, detail, seconds, tuple(f"{w.category.__name__}: {w.message}" for w in caught))
