"""The run file's layout: dataset names, table dtypes and the encodings both
the writer and the reader rely on. Kept in one place so the two cannot drift.

Layout (``FORMAT_VERSION`` 1)::

    /                 root attrs: format, format_version, labctl/h5py/hdf5 versions,
                      run_id, protocol, protocol_version, operator, started_at,
                      parameters/cell/instrument/software/simulation (JSON),
                      status ("running" until finalized), writer_pid,
                      writer_host, flush_interval; at the end also error,
                      ended_at, results (JSON)
    /samples          SAMPLE_DTYPE rows of the whole run, in arrival order
    /spectra          SPECTRUM_DTYPE rows of the whole run
    /steps            STEP_ROW_DTYPE, one row per StepStarted (rows of a running
                      step have row_stop = spec_stop = -1: "to the end")
    /heartbeat        one HEARTBEAT_DTYPE row, rewritten in place at every flush
    /events           EVENT_DTYPE rows: run states entered (StateChanged: running, pausing,
                      paused, aborting, ...) and cell records (StatusChanged: safe)
    /end              uint8: UTF-8 JSON {status, error, ended_at, results, full_steps}
                      appended (an SWMR-safe operation) when the run ends, so
                      the file is complete even if finalization never happens
    /failure          uint8[FAILURE_BYTES], zeros; the end JSON when /end could not be
                      written because the storage failed (see the writer)
    --- written by finalize_file(), out of SWMR mode, from /end and /steps ---
    /results          analysis results: scalars as attrs, tables/arrays as datasets
    /by_step/0003_ConstantCurrent   attrs: step (JSON), end_reason, t_start,
                      duration, charge (+ message); ``data`` (and ``spectrum``)
                      are virtual datasets onto /samples and /spectra (no copy)

(/steps is the table because it must exist while the file is in SWMR mode,
where groups cannot be created; the per-step groups of DESIGN §7 therefore
live under /by_step and are only present in finalized files.)

Every dataset that holds numbers carries a ``units`` attribute: a JSON object
mapping field name to unit (or a single unit string for plain arrays).
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import enum
import json
from pathlib import PurePath
from typing import Any

import numpy as np

FORMAT_NAME = "labctl-run"
FORMAT_VERSION = 1

SAMPLES = "samples"
SPECTRA = "spectra"
STEPS = "steps"
HEARTBEAT = "heartbeat"
EVENTS = "events"
END = "end"
#: A fixed, pre-allocated block (contiguous, written with zeros at creation) for
#: the end record when the file layer fails (disk full, I/O error): the writer
#: puts its JSON there with a plain pwrite, which needs no new space and no HDF5.
FAILURE = "failure"
FAILURE_BYTES = 4096
RESULTS = "results"
BY_STEP = "by_step"

#: Root attributes holding JSON text (decoded by the reader).
JSON_ATTRS = ("parameters", "cell", "instrument", "software", "simulation", "results")

#: Statuses a run can end with (stored in the root ``status`` attribute).
FINAL_STATUSES = ("completed", "aborted", "failed", "interrupted")

# 640 KiB chunks for samples: big enough that block appends run at disk speed,
# small enough that a slow run does not pre-allocate much (a chunk is allocated
# whole on its first write).
SAMPLE_CHUNK_ROWS = 16384
SPECTRUM_CHUNK_ROWS = 1024
STEP_CHUNK_ROWS = 16
EVENT_CHUNK_ROWS = 64

STEP_JSON_BYTES = 4096
MESSAGE_BYTES = 512

STEP_ROW_DTYPE = np.dtype(
    [
        ("index", "<i4"),
        ("kind", "S32"),
        ("label", "S128"),
        ("t_start", "<f8"),
        ("duration", "<f8"),
        ("charge", "<f8"),
        ("end_reason", "S32"),  # empty while the step runs
        ("row_start", "<i8"),  # [row_start, row_stop) of /samples
        ("row_stop", "<i8"),  # -1 while the step runs
        ("spec_start", "<i8"),  # [spec_start, spec_stop) of /spectra
        ("spec_stop", "<i8"),
        ("step", f"S{STEP_JSON_BYTES}"),  # Step.to_json()
        ("message", f"S{MESSAGE_BYTES}"),
    ]
)
STEP_ROW_UNITS = {"t_start": "s", "duration": "s", "charge": "C"}

HEARTBEAT_DTYPE = np.dtype(
    [
        ("wall_time", "<f8"),  # unix time of the flush
        ("t_cell", "<f8"),  # cell time of the last event seen
        ("state", "S16"),  # running / paused / ... / the final status while closing
        ("samples", "<i8"),  # rows of /samples flushed
        ("spectra", "<i8"),
        ("steps", "<i8"),
    ]
)
HEARTBEAT_UNITS = {"wall_time": "s (unix)", "t_cell": "s"}

EVENT_DTYPE = np.dtype([("wall_time", "<f8"), ("t_cell", "<f8"), ("state", "S16"), ("message", f"S{MESSAGE_BYTES}")])
EVENT_UNITS = {"wall_time": "s (unix)", "t_cell": "s"}


def fixed_bytes(text: str, size: int) -> bytes:
    """UTF-8 ``text`` cut to at most ``size`` bytes without splitting a character
    (numpy would cut mid-character and the reader would fail to decode)."""
    raw = text.encode("utf-8")
    if len(raw) <= size:
        return raw
    return raw[:size].decode("utf-8", errors="ignore").encode("utf-8")


def text(value: Any) -> str:
    """Decode a fixed-length bytes field or an attribute to str."""
    if isinstance(value, bytes | np.bytes_):
        return bytes(value).decode("utf-8", errors="replace")
    return str(value)


def _default(obj: Any) -> Any:
    if isinstance(obj, np.ndarray):
        if obj.dtype.names:
            return [{name: row[name] for name in obj.dtype.names} for row in obj.tolist()]
        return obj.tolist()
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, enum.Enum):
        return obj.value
    if isinstance(obj, _dt.datetime | _dt.date):
        return obj.isoformat()
    if isinstance(obj, PurePath):
        return str(obj)
    if isinstance(obj, complex):
        return {"re": obj.real, "im": obj.imag}
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return dataclasses.asdict(obj)
    if isinstance(obj, set | frozenset):
        return sorted(obj, key=repr)
    # A run file must get written even if a protocol returns something odd:
    # keep its repr rather than lose the whole results attribute.
    return repr(obj)


def dumps(value: Any) -> str:
    """JSON for attributes. NaN/inf stay as JSON's NaN/Infinity extension,
    which Python reads back exactly (results often contain NaN). Values JSON
    does not know are converted (numpy, enums, dates, paths) or kept as repr."""
    return json.dumps(value, default=_default)


def loads(raw: Any) -> Any:
    s = text(raw)
    return json.loads(s) if s else None
