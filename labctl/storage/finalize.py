"""What a run file gets once the run is over (and out of SWMR mode): the final
status, the results, and one group per step whose datasets are virtual views
onto the flat /samples and /spectra tables, so nothing is stored twice.
"""

from __future__ import annotations

import contextlib
import math
import os
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import h5py
import numpy as np

from labctl.steps import SAMPLE_DTYPE, SAMPLE_UNITS, SPECTRUM_DTYPE, SPECTRUM_UNITS
from labctl.storage import guard
from labctl.storage import layout as L


def finalize_file(path: str | os.PathLike[str], interrupted_error: str = "") -> None:
    """Finish a closed run file: root attributes status / error / ended_at /
    results, the /results group and the /by_step views, all from the file's
    own end record and step table (so it can be rerun on a file whose first
    finalization failed). A file without an end record is finalized as
    ``interrupted``.

    Opened without HDF5 file locking: SWMR readers in other processes (the
    GUI, ``labctl watch``) hold shared locks for as long as they keep the file
    open, which would otherwise make this fail. That is safe because the
    writer that just closed the file is its only writer; readers see the final
    state in the heartbeat and reopen. A file left by a killed writer is still
    flagged as open for writing and cannot be opened read-write (OSError).
    ``interrupted_error`` is the error recorded for a file without an end
    record (``labctl recover`` says who stopped and when).
    """
    with h5py.File(path, "r+", locking=False) as f:
        end = read_end_record(f)
        if end is None:
            end = {
                "status": "interrupted",
                "error": interrupted_error or "the writer stopped before the run ended",
                "ended_at": _heartbeat_time(f),
                "results": {},
            }
        results = end.get("results") or {}
        f.attrs["status"] = str(end.get("status", "interrupted"))
        f.attrs["error"] = str(end.get("error", ""))
        f.attrs["ended_at"] = str(end.get("ended_at", ""))
        f.attrs["results"] = L.dumps(results)
        if L.RESULTS in f:
            del f[L.RESULTS]
        units = results.get("units") if isinstance(results, Mapping) else None
        group = f.create_group(L.RESULTS)
        if isinstance(results, Mapping):
            write_results(group, results, units if isinstance(units, Mapping) else {})
        full_steps = {int(k): str(v) for k, v in (end.get("full_steps") or {}).items()}
        write_step_views(f, full_steps)


def read_end_record(f: h5py.File) -> dict[str, Any] | None:
    """The JSON the writer appended at RunEnded, or None (run not ended).

    Bounded and type-checked (``RunFileError``): the file may be hostile."""
    if L.END not in f or f[L.END].shape[0] == 0:
        if L.FAILURE not in f:
            return None
        ds = f[L.FAILURE]  # the storage failed: the writer's fallback record
        if ds.shape[0] > guard.MAX_JSON_BYTES:
            raise guard.RunFileError("/failure", f"{ds.shape[0]} bytes; at most {guard.MAX_JSON_BYTES}")
        raw = ds[:].tobytes().rstrip(b"\0")
        return guard.parse_end_record(raw) if raw else None
    ds = f[L.END]
    if ds.shape[0] > guard.MAX_JSON_BYTES:
        raise guard.RunFileError("/end", f"{ds.shape[0]} bytes; at most {guard.MAX_JSON_BYTES}")
    return guard.parse_end_record(ds[:].tobytes())


def _heartbeat_time(f: h5py.File) -> str:
    hb = f[L.HEARTBEAT][:] if L.HEARTBEAT in f else []
    if not len(hb) or not hb[0]["wall_time"] > 0:
        return ""
    t = datetime.fromtimestamp(float(hb[0]["wall_time"]), UTC).astimezone()
    return t.isoformat(timespec="seconds")


# -- results ------------------------------------------------------------------


def write_results(group: h5py.Group, results: Mapping[str, Any], units: Mapping[str, Any]) -> None:
    """Results as HDF5 objects for tools that do not parse the JSON attribute:
    scalars become attributes, lists of dicts compound tables, arrays datasets,
    nested dicts groups. ``units`` (the results' optional ``units`` entry)
    maps a key or column name to its unit.

    The root ``results`` attribute holds all of it exactly; a value that has
    no natural HDF5 form (an int beyond 64 bits, a clashing name) is stored
    here as a JSON attribute rather than stop the file being finalized.
    """
    for key, value in results.items():
        name = str(key).replace("/", "_") or "_"
        try:
            _write_result(group, name, str(key), value, units)
        except (TypeError, ValueError, OverflowError):
            with contextlib.suppress(Exception):
                group.attrs[name] = L.dumps(value)


def _write_result(group: h5py.Group, name: str, key: str, value: Any, units: Mapping[str, Any]) -> None:
    if isinstance(value, Mapping):
        write_results(group.create_group(name), value, units)
    elif value is None:
        return
    elif _is_scalar(value):
        group.attrs[name] = value.item() if isinstance(value, np.generic) else value
    elif (table := _as_table(value)) is not None:
        ds = group.create_dataset(name, data=table)
        ds.attrs["units"] = L.dumps({c: str(units[c]) for c in table.dtype.names if c in units})
    elif (array := _as_array(value)) is not None:
        ds = group.create_dataset(name, data=array)
        ds.attrs["units"] = L.dumps(str(units.get(key, "")))
    else:
        group.attrs[name] = L.dumps(value)


def _is_scalar(value: Any) -> bool:
    return isinstance(value, bool | int | float | str | np.bool_ | np.number)


def _as_table(value: Any) -> np.ndarray | None:
    """A list of dicts (one per row) as a structured array, else None."""
    if isinstance(value, np.ndarray) and value.dtype.names:
        return value
    if not isinstance(value, Sequence) or isinstance(value, str) or not value:
        return None
    if not all(isinstance(row, Mapping) for row in value):
        return None
    columns: dict[str, None] = {}
    for row in value:
        columns.update(dict.fromkeys(map(str, row)))
    fields, data = [], []
    for col in columns:
        values = [row.get(col) for row in value]
        dtype, column = _column(values)
        fields.append((col.replace("/", "_"), dtype))
        data.append(column)
    table = np.empty(len(value), dtype=fields)
    for (name, _), column in zip(fields, data, strict=True):
        table[name] = column
    return table


def _column(values: list[Any]) -> tuple[Any, list[Any]]:
    present = [v for v in values if v is not None]
    if present and all(isinstance(v, bool | np.bool_) for v in values):
        return "?", values
    if present and all(isinstance(v, int | np.integer) and not isinstance(v, bool) for v in values):
        return "<i8", values
    if all(isinstance(v, int | float | np.number) and not isinstance(v, bool) for v in present):
        return "<f8", [math.nan if v is None else float(v) for v in values]
    if all(isinstance(v, str) for v in present):
        return h5py.string_dtype(), ["" if v is None else v for v in values]
    return h5py.string_dtype(), [L.dumps(v) if v is not None else "" for v in values]


def _as_array(value: Any) -> np.ndarray | None:
    if isinstance(value, Mapping):
        return None
    try:
        array = np.asarray(value)
    except (ValueError, TypeError):  # ragged
        return None
    if array.dtype.kind in "biufc" and array.ndim >= 1:
        return array
    if array.dtype.kind == "U" and array.ndim >= 1:
        return array.astype(h5py.string_dtype())
    return None


# -- per-step views --------------------------------------------------------------


def write_step_views(f: h5py.File, full_steps: Mapping[int, str]) -> None:
    """``/by_step/NNNN_Kind`` groups: the step's attributes, and ``data`` /
    ``spectrum`` as virtual datasets selecting its rows of the flat tables.

    The virtual source file is ``"."`` (this file), so the views survive the
    file being moved or renamed. A step index that occurs twice (a step cut
    into segments) gets ``_2``, ``_3`` ... suffixes. Attributes are kept few
    (each costs ~45 us; runs can have 10^4 steps): the step JSON holds the rest.
    """
    if L.BY_STEP in f:
        del f[L.BY_STEP]
    root = f.create_group(L.BY_STEP)
    table = f[L.STEPS][:]
    n_samples = f[L.SAMPLES].shape[0]
    n_spectra = f[L.SPECTRA].shape[0]
    sample_type = h5py.h5t.py_create(SAMPLE_DTYPE)
    spectrum_type = h5py.h5t.py_create(SPECTRUM_DTYPE)
    sample_units, spectrum_units = L.dumps(SAMPLE_UNITS), L.dumps(SPECTRUM_UNITS)
    for pos, row in enumerate(table):
        name = base = f"{int(row['index']):04d}_{L.text(row['kind'])}"
        k = 1
        while name in root:
            k += 1
            name = f"{base}_{k}"
        g = root.create_group(name)
        step_json = full_steps.get(pos) or L.text(row["step"])
        g.attrs["step"] = step_json
        g.attrs["end_reason"] = L.text(row["end_reason"])
        for field in ("t_start", "duration", "charge"):  # s, s, C
            g.attrs[field] = float(row[field])
        if row["message"]:
            g.attrs["message"] = L.text(row["message"])
        start = int(row["row_start"])
        stop = int(row["row_stop"]) if row["row_stop"] >= 0 else n_samples
        _view(g, "data", L.SAMPLES, n_samples, sample_type, start, stop, sample_units)
        spec_start = int(row["spec_start"])
        spec_stop = int(row["spec_stop"]) if row["spec_stop"] >= 0 else n_spectra
        if spec_stop > spec_start:
            _view(g, "spectrum", L.SPECTRA, n_spectra, spectrum_type, spec_start, spec_stop, spectrum_units)


def _view(
    group: h5py.Group,
    name: str,
    source: str,
    source_len: int,
    h5type: h5py.h5t.TypeID,
    start: int,
    stop: int,
    units: str,
) -> None:
    """A virtual dataset of rows [start, stop) of ``source`` in this file.

    Made with the low-level API: h5py's VirtualLayout path costs ~4x more
    (it deep-copies its source list), which adds up over thousands of steps.
    """
    vspace = h5py.h5s.create_simple((stop - start,))
    dcpl = h5py.h5p.create(h5py.h5p.DATASET_CREATE)
    if stop > start:
        sspace = h5py.h5s.create_simple((source_len,))
        sspace.select_hyperslab((start,), (stop - start,))
        dcpl.set_virtual(vspace, b".", f"/{source}".encode(), sspace)
    dsid = h5py.h5d.create(group.id, name.encode(), h5type, vspace, dcpl=dcpl)
    h5py.Dataset(dsid).attrs["units"] = units
