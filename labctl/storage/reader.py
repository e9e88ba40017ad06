"""Reading run files: finished ones, and ones still being written.

A file that is being written is in SWMR mode and only opens as an SWMR reader;
``RunFile.refresh()`` picks up what the writer flushed since. The stored
status of a live run is "running" until the writer finalizes it, so whether a
run is really still going is decided from its heartbeat (and, on the same
host, whether the writer process is alive): a writer killed mid-run leaves
"running" in the file and the reader reports it as ``interrupted``. A run that
ended has an end record (/end) even before the writer finalizes the file, and
the reader takes status, error and results from it until then.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import socket
import sys
import threading
import time
import weakref
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

import h5py
import numpy as np

from labctl.steps import SAMPLE_DTYPE, SPECTRUM_DTYPE, EndReason, Step, step_from_dict
from labctl.storage import guard
from labctl.storage import layout as L
from labctl.storage.finalize import read_end_record
from labctl.storage.h5open import lacks_hdf5_signature, open_swmr_reader

#: A heartbeat older than max(STALE_MIN_S, STALE_FLUSHES * flush_interval)
#: means the writer is gone.
STALE_MIN_S = 5.0
STALE_FLUSHES = 5


@dataclass(frozen=True)
class Heartbeat:
    """The writer's last flush: when, at what cell time, in what state."""

    wall_time: float  # unix seconds
    t_cell: float
    state: str  # running / paused / ...; the final status while the writer closes
    samples: int  # rows of /samples flushed
    spectra: int
    steps: int

    @property
    def age(self) -> float:
        """Seconds since the flush (wall clocks of writer and reader)."""
        return time.time() - self.wall_time


@dataclass
class StepRecord:
    """One row of the step table. ``data`` and ``spectrum`` read the file on
    each access; a running step (``running``) reads to the current end."""

    position: int  # row in /steps
    index: int
    kind: str
    label: str
    step: Step | None  # None if the stored step cannot be rebuilt (see step_dict)
    step_dict: dict[str, Any]
    t_start: float
    duration: float  # NaN while running
    charge: float
    end_reason: EndReason | str | None  # None while running
    message: str
    row_start: int
    row_stop: int | None  # None while running: "to the end"
    spec_start: int
    spec_stop: int | None
    _run: RunFile = field(repr=False, compare=False)

    @property
    def running(self) -> bool:
        return self.row_stop is None

    @property
    def n_rows(self) -> int:
        stop = self._run.n_samples if self.row_stop is None else self.row_stop
        return max(stop - self.row_start, 0)

    @property
    def data(self) -> np.ndarray:
        """The step's samples (SAMPLE_DTYPE)."""
        return self._run.samples(self.row_start, self.row_stop)

    @property
    def spectrum(self) -> np.ndarray | None:
        """The step's impedance points (SPECTRUM_DTYPE), None if it has none."""
        spec = self._run.spectra(self.spec_start, self.spec_stop)
        return spec if len(spec) else None


class RunFile:
    """An open run file. Use as a context manager, or call ``close()``.

    Safe to use from one thread while a writer in another thread of the same
    process writes the file: the writer asks this process's readers to let go
    of the file while it finalizes it, and they reopen on their next use.
    """

    def __init__(self, path: Path, h5: h5py.File, timeout: float = 2.0) -> None:
        self.path = path
        self._timeout = timeout
        self._lock = threading.RLock()
        self._h5: h5py.File | None = h5
        self._closed = False
        self._ident = _file_ident(path)
        self._checked_tree: int | None = None  # the HDF5 file number whose links were checked
        self.meta: dict[str, Any] = {}
        self.heartbeat: Heartbeat | None = None
        self._end: dict[str, Any] | None = None
        self._steps: list[StepRecord] | None = None
        self._load(h5)
        with _registry_lock:
            _readers.add(self)

    # -- lifecycle --------------------------------------------------------------

    def close(self) -> None:
        with self._lock:
            self._closed = True
            self._release()
        with _registry_lock:
            _readers.discard(self)

    def __enter__(self) -> RunFile:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def refresh(self) -> None:
        """Catch up with the writer (never blocks on it).

        Once the writer has recorded the end of the run, the file is reopened
        until the finalized version (status, results as attributes) shows.
        """
        with self._lock:
            if self._closed:
                raise ValueError(f"{self.path}: RunFile is closed")
            if self.finalized:
                return  # finished files do not change
            if self._h5 is None:
                if not self._try_open(timeout=0.0):
                    return
            else:
                try:
                    for name in (L.SAMPLES, L.SPECTRA, L.STEPS, L.HEARTBEAT, L.EVENTS, L.END):
                        self._h5[name].refresh()
                    self._load(self._h5)
                except Exception:
                    # The writer finalized the file under our handle (it does
                    # that without SWMR): drop the handle, reopen next time.
                    self._release()
                    return
            if not self.finalized and (
                self._end is not None or (self.heartbeat is not None and self.heartbeat.state in L.FINAL_STATUSES)
            ):
                # The writer is closing: a handle shows the file as it was when
                # opened, so reopen to see the finalized one.
                self._release()
                self._try_open(timeout=0.0)

    def _file(self) -> h5py.File:
        """The open handle, reopening if it was released (caller holds the lock)."""
        if self._h5 is None:
            if self._closed:
                raise ValueError(f"{self.path}: RunFile is closed")
            if not self._try_open(self._timeout):
                raise OSError(f"{self.path}: cannot reopen the run file (is it being finalized?)")
        assert self._h5 is not None
        return self._h5

    def _try_open(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while True:
            with _registry_lock:  # see release_readers: no reopening while a writer finalizes
                if self._ident not in _finalizing:
                    with contextlib.suppress(OSError):
                        self._h5 = _open_h5(self.path, timeout=0.0)
            if self._h5 is not None:
                self._load(self._h5)
                return True
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.02)

    def _release(self) -> None:
        with self._lock:
            if self._h5 is not None:
                with contextlib.suppress(Exception):
                    self._h5.close()
                self._h5 = None

    def _load(self, f: h5py.File) -> None:
        # The file is untrusted input: its format attribute first (so any
        # HDF5 file that is not a run file gets that one answer), then its
        # structure and sizes before any data is read (labctl.storage.guard).
        with guard.untrusted(self.path):
            if L.text(_small_attr(f, "format")) != L.FORMAT_NAME:
                raise guard.RunFileError("format", f"is not {L.FORMAT_NAME!r}: not a labctl run file")
            if self._checked_tree != f.id.fileno:
                guard.check_tree(f)
                self._checked_tree = f.id.fileno
            guard.check_tables(f)
            self._load_checked(f)

    def _load_checked(self, f: h5py.File) -> None:
        self.meta = guard.read_root_attrs(f)
        self.heartbeat = None
        hb = f[L.HEARTBEAT][:] if L.HEARTBEAT in f else None
        if hb is not None and len(hb) and math.isfinite(hb[0]["wall_time"]) and hb[0]["wall_time"] > 0:
            row = hb[0]
            self.heartbeat = Heartbeat(
                wall_time=float(row["wall_time"]),
                t_cell=float(row["t_cell"]),
                state=L.text(row["state"]),
                samples=int(row["samples"]),
                spectra=int(row["spectra"]),
                steps=int(row["steps"]),
            )
        self._end = None if self.finalized else read_end_record(f)
        self._steps = None

    # -- metadata ----------------------------------------------------------------

    @property
    def stored_status(self) -> str:
        """The status attribute as written (``running`` until finalized)."""
        return str(self.meta.get("status", ""))

    @property
    def finalized(self) -> bool:
        """True once the end of the run is written as attributes and groups."""
        return self.stored_status not in ("running", "")

    @property
    def status(self) -> str:
        """completed / aborted / failed / interrupted, or running while the
        writer is alive: a "running" file whose writer is gone is
        ``interrupted``. A run that ended but whose file was not finalized
        (yet) has the status of its end record."""
        if not self.finalized and self._end is not None:
            return str(self._end.get("status", "interrupted"))
        return effective_status(
            self.stored_status,
            self.heartbeat,
            pid=self.meta.get("writer_pid"),
            host=self.meta.get("writer_host"),
            flush_interval=float(self.meta.get("flush_interval", 0.5)),
        )

    def _ended(self, key: str) -> Any:
        if not self.finalized and self._end is not None:
            return self._end.get(key)
        return self.meta.get(key)

    @property
    def results(self) -> dict[str, Any]:
        return self._ended("results") or {}

    @property
    def error(self) -> str:
        return str(self._ended("error") or "")

    @property
    def ended_at(self) -> str:
        return str(self._ended("ended_at") or "")

    @property
    def steps(self) -> list[StepRecord]:
        with self._lock:
            if self._steps is None:
                self._steps = self._read_steps()
            return self._steps

    @property
    def events(self) -> list[dict[str, Any]]:
        """Status changes (pause, resume, abort ...) in order."""
        with self._lock:
            rows = self._file()[L.EVENTS][:]
        return [
            {
                "wall_time": float(r["wall_time"]),
                "t_cell": float(r["t_cell"]),
                "state": L.text(r["state"]),
                "message": L.text(r["message"]),
            }
            for r in rows
        ]

    # -- data ----------------------------------------------------------------------

    @property
    def n_samples(self) -> int:
        with self._lock:
            return int(self._file()[L.SAMPLES].shape[0])

    @property
    def n_spectra(self) -> int:
        with self._lock:
            return int(self._file()[L.SPECTRA].shape[0])

    def samples(self, start: int = 0, stop: int | None = None) -> np.ndarray:
        """Rows ``[start, stop)`` of the run's samples (all by default)."""
        with self._lock:
            return read_rows(self._file()[L.SAMPLES], start, stop, SAMPLE_DTYPE)

    def spectra(self, start: int = 0, stop: int | None = None) -> np.ndarray:
        """Rows ``[start, stop)`` of the run's impedance points (all by default)."""
        with self._lock:
            return read_rows(self._file()[L.SPECTRA], start, stop, SPECTRUM_DTYPE)

    def _read_steps(self) -> list[StepRecord]:
        with guard.untrusted(self.path):
            return self._read_checked_steps()

    def _read_checked_steps(self) -> list[StepRecord]:
        f = self._file()
        ds = f[L.STEPS]
        n_samples, n_spectra = int(f[L.SAMPLES].shape[0]), int(f[L.SPECTRA].shape[0])
        # The full step JSON where the table's had to be shortened.
        end = self._end if self._end is not None else read_end_record(f)
        full = {int(k): str(v) for k, v in ((end or {}).get("full_steps") or {}).items()}
        records = []
        for pos, row in enumerate(_rows_in_slices(ds)):
            step_json = full.get(pos) or L.text(row["step"])
            try:
                step_dict = guard.parse_json(f"steps[{pos}].step", step_json, max_bytes=1 << 20)
            except guard.RunFileError as exc:
                if "not valid JSON" not in exc.why:
                    raise
                step_dict = {}
            if not isinstance(step_dict, dict):
                step_dict = {}
            try:
                step: Step | None = step_from_dict(step_dict)
            except Exception:  # untrusted input: any refusal means "unknown step"
                step = None  # a step kind or field this labctl does not know
            _check_ranges(pos, row, n_samples, n_spectra, strict=self.finalized)
            reason_text = L.text(row["end_reason"])
            reason: EndReason | str | None = None
            if reason_text:
                try:
                    reason = EndReason(reason_text)
                except ValueError:
                    reason = reason_text
            records.append(
                StepRecord(
                    position=pos,
                    index=int(row["index"]),
                    kind=L.text(row["kind"]),
                    label=str(step_dict.get("label", L.text(row["label"])))[: L.MESSAGE_BYTES],
                    step=step,
                    step_dict=step_dict,
                    t_start=float(row["t_start"]),
                    duration=float(row["duration"]),
                    charge=float(row["charge"]),
                    end_reason=reason,
                    message=L.text(row["message"]),
                    row_start=int(row["row_start"]),
                    row_stop=None if row["row_stop"] < 0 else int(row["row_stop"]),
                    spec_start=int(row["spec_start"]),
                    spec_stop=None if row["spec_stop"] < 0 else int(row["spec_stop"]),
                    _run=self,
                )
            )
        return records


# -- this process's readers -----------------------------------------------------------
#
# HDF5 opens a file once per process and shares it between handles, so a
# reader's handle keeps the writer's file open (still in SWMR state) after the
# writer closes it, and finalization cannot reopen it. The writer therefore
# makes this process's readers let go while it finalizes.

_registry_lock = threading.Lock()
_readers: weakref.WeakSet[RunFile] = weakref.WeakSet()
_finalizing: set[tuple[int, int] | None] = set()


def _file_ident(path: Path) -> tuple[int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_dev, st.st_ino)


@contextlib.contextmanager
def readers_released(path: str | os.PathLike[str]) -> Iterator[None]:
    """Close this process's RunFile handles on ``path`` and keep them from
    reopening it until the block ends (they reopen on their next use)."""
    ident = _file_ident(Path(path))
    with _registry_lock:
        _finalizing.add(ident)
        readers = [r for r in _readers if r._ident == ident]
    try:
        for reader in readers:
            reader._release()
        yield
    finally:
        with _registry_lock:
            _finalizing.discard(ident)


def _rows_in_slices(ds: h5py.Dataset, rows: int = 1024) -> Iterator[np.void]:
    """The table's rows, read a slice at a time (a step row is ~4.7 kB)."""
    n = int(ds.shape[0])
    for start in range(0, n, rows):
        yield from ds[start : min(start + rows, n)]


def _check_ranges(pos: int, row: np.void, n_samples: int, n_spectra: int, strict: bool) -> None:
    """A step's row ranges must lie within /samples and /spectra (a live
    file may list rows not flushed yet, so only finished files are held to
    the end of the tables)."""
    for first, last, total in (("row_start", "row_stop", n_samples), ("spec_start", "spec_stop", n_spectra)):
        start, stop = int(row[first]), int(row[last])
        if start < 0 or (strict and start > total):
            raise guard.RunFileError(f"steps[{pos}].{first}", f"is {start}; expected 0..{total}")
        if stop >= 0 and (stop < start or (strict and stop > total)):
            raise guard.RunFileError(f"steps[{pos}].{last}", f"is {stop}; expected {start}..{total} (or -1)")
        if stop < -1:
            raise guard.RunFileError(f"steps[{pos}].{last}", f"is {stop}; expected {start}..{total} (or -1)")


def _small_attr(f: h5py.File, name: str) -> Any:
    """One root attribute, read only if it is small (the format check runs
    before the full attribute checks)."""
    if not h5py.h5a.exists(f.id, name.encode()):
        return ""
    attr = h5py.h5a.open(f.id, name.encode())
    if attr.shape != () or attr.get_storage_size() > 4096 or attr.dtype.kind not in "SOU":
        return ""
    return f.attrs[name]


class SampleRowsFromFile:
    """Reads rows ``[start, stop)`` of the run file's /samples, opening the
    file for each read: the reader behind a ``StepRows`` view that outlives
    the handle it came from (a finished run, a replayed file)."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)

    def __call__(self, start: int, stop: int) -> np.ndarray:
        with open_run(self.path) as run:
            return run.samples(start, stop)


def read_rows(ds: h5py.Dataset, start: int, stop: int | None, dtype: np.dtype) -> np.ndarray:
    """Rows ``[start, stop)`` of a 1-D dataset (clipped to its extent), in one read."""
    n = ds.shape[0]
    stop = n if stop is None else min(stop, n)
    start = min(max(start, 0), stop)
    if stop == start:
        return np.empty(0, dtype=dtype)
    out = np.empty(stop - start, dtype=ds.dtype)
    ds.read_direct(out, np.s_[start:stop])
    return out


# -- status -----------------------------------------------------------------------


def effective_status(
    stored: str,
    heartbeat: Heartbeat | None,
    *,
    pid: Any = None,
    host: Any = None,
    flush_interval: float = 0.5,
    now: float | None = None,
) -> str:
    """The status to show: the stored one, except that a "running" run whose
    heartbeat is stale or whose writer process is gone is "interrupted"."""
    if stored != "running":
        return stored
    if heartbeat is None:
        return "interrupted"
    if host == socket.gethostname() and pid is not None and pid_alive(int(pid)) is False:
        return "interrupted"
    now = time.time() if now is None else now
    if now - heartbeat.wall_time > max(STALE_MIN_S, STALE_FLUSHES * flush_interval):
        return "interrupted"
    return "running"


def pid_alive(pid: int) -> bool | None:
    """Whether process ``pid`` runs on this host; None when it cannot be told.

    A zombie (killed, not yet reaped by its parent) counts as dead.
    """
    if sys.platform == "win32":
        return None  # os.kill(pid, 0) would terminate the process on Windows
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, belongs to someone else
    except OSError:
        return None
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as fh:
            state = fh.read().rsplit(")", 1)[1].split()[0]
        return state not in ("Z", "X")
    except (OSError, IndexError):
        return True


# -- opening ------------------------------------------------------------------------


def _open_h5(path: Path, timeout: float) -> h5py.File:
    """Open for reading, as an SWMR reader when possible (a file being written
    opens no other way), retrying while the writer holds it exclusively (the
    moments while it creates or finalizes the file)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return open_swmr_reader(path)
        except FileNotFoundError:
            raise
        except OSError as swmr_error:
            try:
                return h5py.File(path, "r")  # e.g. not an SWMR-capable (old format) file
            except OSError:
                pass
            if time.monotonic() >= deadline:
                raise OSError(
                    f"{path}: cannot open ({swmr_error}). If the process writing it died, "
                    "'labctl recover FILE' (labctl.storage.recover_file) closes it as interrupted."
                ) from swmr_error
        time.sleep(0.05)


def open_run(path: str | os.PathLike[str], timeout: float = 2.0) -> RunFile:
    """Open a run file for reading (finished or being written).

    ``timeout`` is how long to keep retrying while the writer holds the file
    exclusively, which it does only for moments (creating and finalizing).
    """
    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"no run file at {p}")
    if lacks_hdf5_signature(p):
        raise guard.RunFileError("file", "not an HDF5 file (so not a labctl run file)", str(p))
    h5 = _open_h5(p, timeout)
    try:
        return RunFile(p, h5, timeout)
    except BaseException:
        h5.close()
        raise


# -- summaries --------------------------------------------------------------------------


def describe_run(path: str | os.PathLike[str]) -> dict[str, Any]:
    """A JSON-friendly summary of a run file (what ``labctl show`` prints).

    Reads only counts and the small tables (steps, events), never samples."""
    with open_run(path) as run, guard.untrusted(path):
        meta = run.meta
        steps = []
        status = run.status
        for rec in run.steps:
            reason = rec.end_reason
            cut = rec.running and status != "running"  # the step the interruption cut
            steps.append(
                {
                    "index": rec.index,
                    "kind": rec.kind,
                    "label": rec.label,
                    "t_start": _num(rec.t_start),
                    "duration": _num(rec.duration),
                    "charge": _num(rec.charge),
                    "end_reason": "interrupted" if cut else reason.value if isinstance(reason, EndReason) else reason,
                    "running": rec.running and not cut,
                    "rows": rec.n_rows,
                    "spectrum_points": (run.n_spectra if rec.spec_stop is None else rec.spec_stop) - rec.spec_start,
                    "message": rec.message,
                }
            )
        hb = run.heartbeat
        return {
            "path": str(run.path),
            "run_id": meta.get("run_id", ""),
            "protocol": meta.get("protocol", ""),
            "protocol_version": meta.get("protocol_version", ""),
            "status": status,
            "stored_status": run.stored_status,
            "started_at": meta.get("started_at", ""),
            "ended_at": run.ended_at,
            "operator": meta.get("operator", ""),
            "error": run.error,
            "parameters": meta.get("parameters"),
            "cell": meta.get("cell"),
            "instrument": meta.get("instrument"),
            "software": meta.get("software"),
            "simulation": meta.get("simulation"),
            "labctl_version": meta.get("labctl_version", ""),
            "samples": run.n_samples,
            "spectrum_points": run.n_spectra,
            "heartbeat": None
            if hb is None
            else {"wall_time": hb.wall_time, "age_s": round(hb.age, 3), "t_cell": _num(hb.t_cell), "state": hb.state},
            "events": run.events,
            "steps": steps,
            "results": run.results,
            "note": _interruption_note(run, steps),
        }


def _interruption_note(run: RunFile, steps: list[dict[str, Any]]) -> str:
    """For an interrupted run: how far it got, and (if the file is still
    flagged open by the dead writer) how to close it for other tools."""
    if run.status != "interrupted":
        return ""
    completed = [s for s in steps if s["end_reason"] not in (None, "interrupted")]
    where = f"after step {completed[-1]['index']}" if completed else "before its first step completed"
    note = f"run interrupted {where}; {len(completed)} of {len(steps)} steps completed"
    if not run.finalized:
        note += f"; 'labctl recover {run.path}' closes the file so any HDF5 tool opens it"
    return note


def _num(x: float) -> float | None:
    return x if math.isfinite(x) else None


def format_description(desc: dict[str, Any]) -> str:
    """``describe_run``'s dict as plain text for a terminal."""
    lines = [
        f"{desc['path']}",
        f"  run {desc['run_id']}  protocol {desc['protocol']} {desc['protocol_version']}"
        f"  status {desc['status']}"
        + (f" (stored: {desc['stored_status']})" if desc["stored_status"] != desc["status"] else ""),
        f"  started {desc['started_at']}  ended {desc['ended_at'] or '-'}  operator {desc['operator'] or '-'}",
        f"  cell {json.dumps(desc['cell'])}",
        f"  instrument {json.dumps(desc['instrument'])}",
        f"  {desc['samples']} samples, {desc['spectrum_points']} impedance points, {len(desc['steps'])} steps",
    ]
    if desc["error"]:
        lines.append(f"  error: {desc['error']}")
    for s in desc["steps"]:
        reason = "running" if s["running"] else (s["end_reason"] or "-")
        dur = "-" if s["duration"] is None else f"{s['duration']:.6g} s"
        extra = f", {s['spectrum_points']} pts" if s["spectrum_points"] else ""
        label = f" [{s['label']}]" if s["label"] else ""
        lines.append(f"  {s['index']:4d} {s['kind']}{label}: {reason}, {dur}, {s['rows']} rows{extra}")
    if desc["results"]:
        lines.append("  results:")
        for key, value in desc["results"].items():
            shown = json.dumps(value, default=str)
            lines.append(f"    {key}: {shown if len(shown) <= 100 else shown[:97] + '...'}")
    return "\n".join(lines)
