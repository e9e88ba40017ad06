"""BioLogic EC-Lab binary files (``.mpr``).

The format is undocumented by BioLogic; its layout has been worked out publicly (e.g. the
reverse engineering behind the ``galvani`` package, github.com/echemdata/galvani). This
reader is written from that description of the layout, not from its code:

- file header: ``BIO-LOGIC MODULAR FILE`` + 0x1A, space-padded to 48 bytes, then 4 zero bytes;
- a sequence of modules, each ``MODULE`` + short name (10 bytes, e.g. ``VMP Set``,
  ``VMP data``, ``VMP LOG``) + long name (25 bytes) + either
  ``length:u32 version:u32 date:8 ASCII`` or, from EC-Lab 11.50 on,
  ``0xFFFFFFFF length:u32 version:u32 unknown:u32 date:8`` — then ``length`` bytes of body;
- the ``VMP data`` body: number of points (u32), number of columns (u8), the column-ID table
  (u8 per column in version 0, u16 in versions 2 and 3), zero padding, then one packed
  little-endian record per point whose fields follow the column IDs. Some IDs are bit flags
  that share a single byte.

Impedance columns: 32 freq/Hz, 37 Re(Z)/Ohm, 38 −Im(Z)/Ohm (float32). BioLogic stores −Im(Z),
so the sign is flipped here. Instead of trusting a fixed header size, the record size from
the column table and the point count locate the data at the end of the body, and the two
must agree with the body length.

The file is never read whole: after the size check, module headers are read one by one, each
declared length is checked against the file size before the body is skipped (or, for the
data module only, read), there are at most :data:`MAX_MODULES`, and anything after the last
module that is not another module (zeros, junk) is refused.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import numpy as np

from labctl.importers.errors import SpectrumFileError
from labctl.importers.source import MAX_FILE_BYTES, checked_size
from labctl.importers.spectrum import ImportedSpectrum, finish, iso_datetime
from labctl.importers.validation import temperature_or_none

FORMAT = "biologic-mpr"
MAGIC = b"BIO-LOGIC MODULAR FILE\x1a"
_FILE_HEADER_SIZE = 52

#: Column ID -> (name, little-endian numpy type). Subset relevant to impedance data and the
#: common companions of a PEIS/GEIS record.
COLUMN_TYPES: dict[int, tuple[str, str]] = {
    4: ("time/s", "<f8"),
    5: ("control/V/mA", "<f4"),
    6: ("Ewe/V", "<f4"),
    7: ("dq/mA.h", "<f8"),
    8: ("I/mA", "<f4"),
    9: ("Ece/V", "<f4"),
    11: ("<I>/mA", "<f8"),
    13: ("(Q-Qo)/mA.h", "<f8"),
    19: ("control/V", "<f4"),
    20: ("control/mA", "<f4"),
    23: ("dQ/mA.h", "<f8"),
    24: ("cycle number", "<f8"),
    32: ("freq/Hz", "<f4"),
    33: ("|Ewe|/V", "<f4"),
    34: ("|I|/A", "<f4"),
    35: ("Phase(Z)/deg", "<f4"),
    36: ("|Z|/Ohm", "<f4"),
    37: ("Re(Z)/Ohm", "<f4"),
    38: ("-Im(Z)/Ohm", "<f4"),
    39: ("I Range", "<u2"),
    70: ("P/W", "<f4"),
    76: ("<I>/mA", "<f4"),
    77: ("<Ewe>/V", "<f4"),
    96: ("|Ece|/V", "<f4"),
    98: ("Phase(Zce)/deg", "<f4"),
    99: ("|Zce|/Ohm", "<f4"),
    100: ("Re(Zce)/Ohm", "<f4"),
    101: ("-Im(Zce)/Ohm", "<f4"),
    123: ("Energy charge/W.h", "<f8"),
    124: ("Energy discharge/W.h", "<f8"),
    131: ("Ns", "<u2"),
    169: ("Cs/µF", "<f4"),
    172: ("Cp/µF", "<f4"),
    174: ("<Ewe>/V", "<f4"),
    462: ("Temperature/°C", "<f4"),
}
#: IDs that are bits of one shared flags byte (mode, ox/red, error, control changes,
#: Ns changes, counter inc.).
FLAG_IDS = frozenset({1, 2, 3, 21, 31, 65})

#: Where the records start in the data body when the table has an unknown column, by version.
_DATA_OFFSETS = {0: (100, 1007), 2: (405,), 3: (406,)}


_IMPEDANCE = {"freq": "freq/Hz", "re": "Re(Z)/Ohm", "im": "-Im(Z)/Ohm"}
#: Real files hold 3 to 5 modules (settings, data, log, loop); more means a corrupted file.
MAX_MODULES = 64
_MODULE_TAG = b"MODULE"
_NAMES = 35  # short name (10 bytes) + long name (25 bytes)
_NEW_HEADER = 4 + 4 + 4 + 4 + 8  # 0xFFFFFFFF, length, version, unknown, date (EC-Lab >= 11.50)
_OLD_HEADER = 4 + 4 + 8  # length, version, date


@dataclass(frozen=True)
class _Module:
    short_name: str
    long_name: str
    version: int
    date: str
    length: int
    offset: int  # of the body in the file
    body: bytes | None  # read only for the data module


def _text(raw: bytes) -> str:
    return "".join(c for c in raw.decode("latin-1") if c.isprintable()).strip()


def _modules(path: Path, fh: IO[bytes], size: int) -> list[_Module]:
    """The module headers, reading only what each header declares and checking every
    declared length against the file size before reading or skipping it."""
    head = fh.read(_FILE_HEADER_SIZE)
    if not head.startswith(MAGIC):
        raise SpectrumFileError(path, "signature", "not an EC-Lab binary file", offset=0,
                                found=head[:24].decode("latin-1"), allowed="the 'BIO-LOGIC MODULAR FILE' magic")
    if len(head) < _FILE_HEADER_SIZE:
        raise SpectrumFileError(path, "file header", f"expected {_FILE_HEADER_SIZE} bytes", offset=0,
                                found=f"{len(head)} bytes")
    pos, modules = _FILE_HEADER_SIZE, []
    while pos < size:
        if len(modules) == MAX_MODULES:
            raise SpectrumFileError(path, "modules", f"more than {MAX_MODULES} modules", offset=pos,
                                    allowed=f"at most {MAX_MODULES}")
        header = fh.read(len(_MODULE_TAG) + _NAMES + _NEW_HEADER)
        if not header.startswith(_MODULE_TAG):
            raise SpectrumFileError(path, "module", "expected 'MODULE' at the start of a module header", offset=pos,
                                    found=header[:6].decode("latin-1"))
        names = header[6 : 6 + _NAMES]
        fields = header[6 + _NAMES :]
        if fields[:4] == b"\xff\xff\xff\xff" and len(fields) >= _NEW_HEADER:  # EC-Lab >= 11.50
            length, version = struct.unpack_from("<II", fields, 4)
            date, header_size = fields[16:24], 6 + _NAMES + _NEW_HEADER
        elif len(fields) >= _OLD_HEADER:
            length, version = struct.unpack_from("<II", fields, 0)
            date, header_size = fields[8:16], 6 + _NAMES + _OLD_HEADER
        else:
            raise SpectrumFileError(path, "module", "expected a complete module header", offset=pos,
                                    found=f"{size - pos} bytes left")
        short, long_ = _text(names[:10]), _text(names[10:])
        body_at = pos + header_size
        if body_at + length > size:
            raise SpectrumFileError(path, f"module {short!r}",
                                    f"expected {length} bytes of module {short!r} as its header declares",
                                    offset=body_at, found=f"file ends after {max(size - body_at, 0)}")
        fh.seek(body_at)
        body = None
        if short == "VMP data":
            body = fh.read(length)
            if len(body) != length:  # the file shrank after the size check
                raise SpectrumFileError(path, f"module {short!r}", f"expected {length} bytes", offset=body_at,
                                        found=f"file ends after {len(body)}")
        else:
            fh.seek(body_at + length)
        modules.append(_Module(short, long_, version, _text(date), length, body_at, body))
        pos = body_at + length
    return modules


def _record_dtype(path: Path, ids: list[int], unknown_size: int | None, offset: int) -> np.dtype:
    fields: list[tuple[str, str]] = []
    seen: dict[str, int] = {}
    for cid in ids:
        if cid in FLAG_IDS:
            if "flags" not in seen:
                fields.append(("flags", "u1"))
                seen["flags"] = 1
            continue
        if cid in COLUMN_TYPES:
            name, typ = COLUMN_TYPES[cid]
        elif unknown_size is not None:
            name, typ = f"column {cid}", f"V{unknown_size}"
        else:
            raise SpectrumFileError(path, "column id", f"unknown column id {cid}", offset=offset,
                                    allowed="at most one id outside the known ones")
        seen[name] = seen.get(name, 0) + 1
        fields.append((name if seen[name] == 1 else f"{name} {seen[name]}", typ))
    return np.dtype(fields)


def _data_records(path: Path, mod: _Module) -> np.ndarray:
    body = mod.body or b""
    if len(body) < 5:
        raise SpectrumFileError(path, "data module", "expected a point count and column count", offset=mod.offset)
    n_points, n_cols = struct.unpack_from("<IB", body, 0)
    if n_cols == 0:
        raise SpectrumFileError(path, "data module", "a table of 0 columns", offset=mod.offset + 4,
                                allowed="1 to 255 columns including 32, 37 and 38")
    if mod.version == 0 and len(body) > 5 and body[5] == 0:
        width, fmt = 2, ">u2"  # EC-Lab >= 11.50 writes version-0 ids as 2 bytes, high byte first
    elif mod.version == 0:
        width, fmt = 1, "u1"
    elif mod.version in (2, 3):
        width, fmt = 2, "<u2"
    else:
        raise SpectrumFileError(path, "data module version", f"version {mod.version}", offset=mod.offset,
                                allowed="0, 2 or 3")
    table_end = 5 + width * n_cols
    if len(body) < table_end:
        raise SpectrumFileError(path, "column table", f"expected a table of {n_cols} column ids",
                                offset=mod.offset + 5, found=f"{len(body) - 5} bytes")
    ids = [int(i) for i in np.frombuffer(body, dtype=fmt, count=n_cols, offset=5)]
    unknown = [i for i in ids if i not in COLUMN_TYPES and i not in FLAG_IDS]
    if len(unknown) == 1:
        # one unknown column: its size follows from the body length and the known data offset
        known = _record_dtype(path, [i for i in ids if i != unknown[0]], None, mod.offset).itemsize
        for start in _DATA_OFFSETS.get(mod.version, ()):
            size = (len(body) - start) / max(n_points, 1) - known
            if size in (1, 2, 4, 8):
                dtype = _record_dtype(path, ids, int(size), mod.offset)
                break
        else:
            raise SpectrumFileError(path, "column id", f"unknown column id {unknown[0]} of no size that fits",
                                    offset=mod.offset, allowed="a record layout matching the module length")
    else:
        dtype = _record_dtype(path, ids, None, mod.offset)
    names = dtype.names or ()
    for col in ("freq/Hz", "Re(Z)/Ohm", "-Im(Z)/Ohm"):
        if col not in names:
            raise SpectrumFileError(path, "columns", "no impedance data", offset=mod.offset, found=", ".join(names),
                                    allowed="columns freq/Hz (32), Re(Z)/Ohm (37), -Im(Z)/Ohm (38)")
    start = len(body) - n_points * dtype.itemsize
    if start < table_end:
        raise SpectrumFileError(
            path, "data module", f"expected {n_points} records of {dtype.itemsize} bytes in the data module",
            offset=mod.offset, found=f"{len(body) - table_end} bytes after the column table",
        )
    return np.frombuffer(body, dtype=dtype, count=n_points, offset=start)


def read_mpr(path: str | Path, *, max_bytes: int = MAX_FILE_BYTES) -> ImportedSpectrum:
    path = Path(path)
    size = checked_size(path, max_bytes)
    try:
        with path.open("rb") as fh:
            modules = _modules(path, fh, size)
    except OSError as exc:
        raise SpectrumFileError(path, "file", f"cannot be read ({exc.strerror or exc})") from None
    data_mods = [m for m in modules if m.short_name == "VMP data"]
    if len(data_mods) != 1:
        raise SpectrumFileError(path, "modules", f"{len(data_mods)} 'VMP data' modules",
                                found=", ".join(m.short_name for m in modules) or "no modules",
                                allowed="exactly one 'VMP data' module")
    rec = _data_records(path, data_mods[0])
    names = rec.dtype.names or ()
    metadata: dict[str, Any] = {
        "modules": [m.short_name for m in modules],
        "data_module_version": data_mods[0].version,
        "column_names": list(names),
    }
    settings = [m for m in modules if m.short_name == "VMP Set"]
    if settings:
        raw_date = settings[0].date
        metadata["date"] = iso_datetime(raw_date, ("%m/%d/%y", "%m-%d-%y", "%m.%d.%y")) or raw_date
    # float32 -> float64: a signalling NaN in a corrupted record raises "invalid" on the cast;
    # the NaN itself is refused by the physical checks in finish(), so the flag is not news
    with np.errstate(invalid="ignore"):
        freq = rec["freq/Hz"].astype(float)
        measured = freq != 0.0  # EC-Lab writes f = 0 for the non-impedance parts of a linked technique
        if not np.all(measured):
            metadata["skipped_rows_without_frequency"] = int(np.sum(~measured))
        records = np.flatnonzero(measured) + 1  # 1-based record numbers, for messages
        rec = rec[measured]
        points = {key: rec[name].astype(float) for key, name in _IMPEDANCE.items()}
        columns: dict[str, np.ndarray] = {}
        for name, key, factor in (("time/s", "t", 1.0), ("<Ewe>/V", "E_dc", 1.0), ("<I>/mA", "I_dc", 1e-3)):
            if name in names:
                columns[key] = rec[name].astype(float) * factor
        temperature = rec["Temperature/°C"].astype(float) if "Temperature/°C" in names else None
    if temperature is not None and temperature.size:
        value = temperature_or_none(path, temperature, records, row_name="record")
        if value is not None:
            metadata["temperature_C"] = value
    return finish(path, FORMAT, points["freq"], points["re"], -points["im"], records, metadata, columns,
                  row_name="record")
