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
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from labctl.importers.spectrum import ImportedSpectrum, SpectrumFormatError, finish, iso_datetime

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


@dataclass
class _Module:
    short_name: str
    long_name: str
    version: int
    date: str
    body: bytes
    offset: int  # of the body in the file


def _modules(path: Path, raw: bytes) -> list[_Module]:
    if not raw.startswith(MAGIC):
        raise SpectrumFormatError(path, "the 'BIO-LOGIC MODULAR FILE' magic of an EC-Lab .mpr file",
                                  offset=0, found=raw[:24].decode("latin-1"))
    pos, modules = _FILE_HEADER_SIZE, []
    while pos < len(raw):
        if raw[pos : pos + 6] != b"MODULE":
            raise SpectrumFormatError(path, "'MODULE' at the start of a module header", offset=pos,
                                      found=raw[pos : pos + 6].decode("latin-1"))
        head = raw[pos + 6 : pos + 6 + 35 + 24]
        if len(head) < 35 + 16:
            raise SpectrumFormatError(path, "a complete module header", offset=pos,
                                      found=f"{len(raw) - pos} bytes left")
        short, long_ = head[:10].decode("latin-1").strip(), head[10:35].decode("latin-1").strip()
        if head[35:39] == b"\xff\xff\xff\xff":  # EC-Lab >= 11.50
            length, version = struct.unpack_from("<II", head, 39)
            date, body_at = head[51:59], pos + 6 + 59
        else:
            length, version = struct.unpack_from("<II", head, 35)
            date, body_at = head[43:51], pos + 6 + 51
        body = raw[body_at : body_at + length]
        if len(body) != length:
            raise SpectrumFormatError(
                path, f"{length} bytes of module {short!r} as its header declares", offset=body_at,
                found=f"file ends after {len(body)}",
            )
        modules.append(_Module(short, long_, version, date.decode("latin-1"), body, body_at))
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
            raise SpectrumFormatError(path, f"known column ids ({sorted(COLUMN_TYPES)})", offset=offset,
                                      found=f"column id {cid}")
        seen[name] = seen.get(name, 0) + 1
        fields.append((name if seen[name] == 1 else f"{name} {seen[name]}", typ))
    return np.dtype(fields)


def _data_records(path: Path, mod: _Module) -> np.ndarray:
    body = mod.body
    if len(body) < 5:
        raise SpectrumFormatError(path, "a point count and column count in the data module", offset=mod.offset)
    n_points, n_cols = struct.unpack_from("<IB", body, 0)
    if mod.version == 0 and len(body) > 5 and body[5] == 0:
        width, fmt = 2, ">u2"  # EC-Lab >= 11.50 writes version-0 ids as 2 bytes, high byte first
    elif mod.version == 0:
        width, fmt = 1, "u1"
    elif mod.version in (2, 3):
        width, fmt = 2, "<u2"
    else:
        raise SpectrumFormatError(path, "data module version 0, 2 or 3", offset=mod.offset,
                                  found=f"version {mod.version}")
    table_end = 5 + width * n_cols
    if len(body) < table_end:
        raise SpectrumFormatError(path, f"a table of {n_cols} column ids", offset=mod.offset + 5,
                                  found=f"{len(body) - 5} bytes")
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
            raise SpectrumFormatError(path, "a record layout matching the module length", offset=mod.offset,
                                      found=f"unknown column id {unknown[0]}")
    else:
        dtype = _record_dtype(path, ids, None, mod.offset)
    start = len(body) - n_points * dtype.itemsize
    if start < table_end:
        raise SpectrumFormatError(
            path, f"{n_points} records of {dtype.itemsize} bytes in the data module", offset=mod.offset,
            found=f"{len(body) - table_end} bytes after the column table",
        )
    return np.frombuffer(body, dtype=dtype, count=n_points, offset=start)


def read_mpr(path: str | Path) -> ImportedSpectrum:
    path = Path(path)
    raw = path.read_bytes()
    modules = _modules(path, raw)
    data_mods = [m for m in modules if m.short_name == "VMP data"]
    if len(data_mods) != 1:
        raise SpectrumFormatError(path, "exactly one 'VMP data' module",
                                  found=", ".join(m.short_name for m in modules) or "no modules")
    rec = _data_records(path, data_mods[0])
    names = rec.dtype.names or ()
    for col in ("freq/Hz", "Re(Z)/Ohm", "-Im(Z)/Ohm"):
        if col not in names:
            raise SpectrumFormatError(path, "impedance columns freq/Hz (32), Re(Z)/Ohm (37), -Im(Z)/Ohm (38)",
                                      offset=data_mods[0].offset, found=", ".join(names))
    freq = rec["freq/Hz"].astype(float)
    z = rec["Re(Z)/Ohm"].astype(float) - 1j * rec["-Im(Z)/Ohm"].astype(float)
    metadata: dict[str, Any] = {
        "modules": [m.short_name for m in modules],
        "data_module_version": data_mods[0].version,
        "column_names": list(names),
    }
    settings = [m for m in modules if m.short_name == "VMP Set"]
    if settings:
        raw_date = settings[0].date.strip()
        metadata["date"] = iso_datetime(raw_date, ("%m/%d/%y", "%m-%d-%y", "%m.%d.%y")) or raw_date
    columns: dict[str, np.ndarray] = {}
    for name, key, factor in (("time/s", "t", 1.0), ("<Ewe>/V", "E_dc", 1.0), ("<I>/mA", "I_dc", 1e-3)):
        if name in names:
            columns[key] = rec[name].astype(float) * factor
    if "Temperature/°C" in names and rec.size:
        metadata["temperature_C"] = float(np.mean(rec["Temperature/°C"]))
    keep = freq > 0
    if not np.all(keep):
        metadata["skipped_rows_without_frequency"] = int(np.sum(~keep))
        freq, z = freq[keep], z[keep]
        columns = {k: v[keep] for k, v in columns.items()}
    return finish(path, FORMAT, freq, z, None, metadata, columns)
