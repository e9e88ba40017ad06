"""The run-file sink: writes one run's event stream into one HDF5 file.

The file is in SWMR mode while the run goes, so the GUI, ``labctl watch`` and
analysis can read it as it grows, and so a killed process leaves a file that
opens with everything up to the last flush. SWMR forbids creating objects or
attributes once switched on, hence the split:

* at RunStarted every dataset the run will append to is created, the metadata
  goes into root attributes, then SWMR is switched on;
* during the run only appends and in-place row updates happen; the live status
  goes to the one-row ``/heartbeat`` dataset at every flush;
* at RunEnded the end of the run (status, error, results) is appended to
  ``/end`` while still in SWMR mode, which makes the file whole; then the file
  is closed and reopened normally to write the same as root attributes, the
  /results group and the per-step views (``finalize_file``).

When the storage fails under a running writer (disk full, I/O error, file too
big), HDF5's state may be inconsistent and touching it again can crash the
process. So the writer stops at once: it raises ``SinkFailure`` (the engine
ends the run failed), points HDF5's file descriptor at ``/dev/null`` (which
takes any write, even past a file-size limit) so releasing the library's
handles can neither fail nor write garbage into the file, and records the
run's end in the pre-allocated ``/failure`` block with a plain ``pwrite``.
"""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import math
import os
import re
import socket
import threading
import time
import weakref
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType

import h5py
import numpy as np

import labctl
from labctl.events import (
    Event,
    RunEnded,
    RunInfo,
    RunStarted,
    Samples,
    SinkFailure,
    SpectrumPoints,
    StateChanged,
    StatusChanged,
    StepEnded,
    StepStarted,
    Tick,
)
from labctl.steps import SAMPLE_DTYPE, SAMPLE_UNITS, SPECTRUM_DTYPE, SPECTRUM_UNITS, Step, StepResult, StepRows
from labctl.storage import layout as L
from labctl.storage.appender import Appender, write_rows
from labctl.storage.finalize import finalize_file
from labctl.storage.reader import SampleRowsFromFile, read_rows, readers_released
from labctl.storage.recover import clear_status_flags
from labctl.storage.syncer import Syncer, sync_path

log = logging.getLogger(__name__)

#: HDF5 1.10 file format: the oldest that has SWMR and virtual datasets, so
#: the files stay readable by HDF5 1.10+ tools (MATLAB, HDFView, older h5py)
#: rather than whatever the newest library writes by default.
LIBVER = ("v110", "v110")

#: No raw-data chunk cache: appends go straight to the file (the OS caches
#: them), so a flush writes only what changed instead of whole cached chunks.
RDCC_NBYTES = 0

#: How soon after a step starts or ends the writer flushes (see _flush_soon).
STEP_FLUSH_DELAY = 0.02


_STEP_ROW_TYPE = h5py.h5t.py_create(L.STEP_ROW_DTYPE)
_HEARTBEAT_TYPE = h5py.h5t.py_create(L.HEARTBEAT_DTYPE)


def _now_iso() -> str:
    return datetime.now(UTC).astimezone().isoformat(timespec="seconds")


class RunFileWriter:
    """A Sink (``handle(event)``) that writes a run to ``path``.

    ``flush_interval`` (wall seconds) bounds what a crash can lose: the writer
    flushes and updates the heartbeat on the first event after it elapses (the
    engine's Tick events come at least every 0.5 s), at every status change,
    and within ``STEP_FLUSH_DELAY`` of a step starting or ending.

    A flush hands the data to the OS, which is enough to survive the process
    dying. With ``fsync`` (the default) each flush is also forced to disk,
    against power cuts and OS crashes, by a background thread so the engine
    thread never waits for the disk (see ``syncer``).

    Not thread-safe: call it from the engine thread.
    """

    def __init__(self, path: str | os.PathLike[str], flush_interval: float = 0.5, *, fsync: bool = True) -> None:
        if not (flush_interval > 0 and math.isfinite(flush_interval)):
            raise ValueError(f"flush_interval must be a positive number of seconds, got {flush_interval!r}")
        self.path = Path(path)
        self.flush_interval = float(flush_interval)
        self.fsync = fsync
        self._syncer: Syncer | None = None
        self._file: h5py.File | None = None
        self._phase = "new"  # new -> running -> closed
        self._samples: Appender | None = None
        self._spectra: Appender | None = None
        self._steps_ds: h5py.Dataset | None = None
        self._heartbeat_ds: h5py.Dataset | None = None
        self._events_ds: h5py.Dataset | None = None
        self._end_ds: h5py.Dataset | None = None
        #: Why finalization failed, if it did (the run itself is recorded).
        self.finalize_error: Exception | None = None
        self._n_steps = 0
        self._open_row: np.ndarray | None = None  # the running step's table row
        self._open_pos = -1  # its position in /steps
        self._state = "running"
        self._t_cell = math.nan
        self._next_flush = math.inf
        self._flushed_samples = 0
        self._full_steps: dict[int, str] = {}  # table row -> step JSON too long for the table
        self._failure_offset: int | None = None  # file offset of the /failure block
        #: The storage error that stopped this writer (it then touches HDF5 no more).
        self.storage_error: BaseException | None = None
        self._owner: int | None = None  # the thread that writes (the engine's)
        self._handlers = {
            RunStarted: self._on_run_started,
            StepStarted: self._on_step_started,
            Samples: self._on_samples,
            SpectrumPoints: self._on_spectrum,
            StepEnded: self._on_step_ended,
            StatusChanged: self._on_status,
            StateChanged: self._on_state,
            Tick: self._on_tick,
            RunEnded: self._on_run_ended,
        }

    # -- Sink ---------------------------------------------------------------

    def handle(self, event: Event) -> None:
        handler = self._handlers.get(type(event))
        if handler is None:
            return  # an event kind this writer does not know: not its business
        if self._phase == "failed":
            if isinstance(event, RunEnded):
                self._record_failure(event)
            return  # the storage failed: HDF5 is not touched again
        if self._phase != "running" and not isinstance(event, RunStarted):
            if isinstance(event, Tick):
                return
            raise RuntimeError(f"RunFileWriter({self.path}): {type(event).__name__} outside a run")
        try:
            handler(event)  # type: ignore[operator]
            if self._file is not None and time.monotonic() >= self._next_flush:
                self.flush()
        except (SinkFailure, FileExistsError):
            raise  # FileExistsError: 'w-' refused to clobber a file (nothing was touched)
        except Exception as exc:
            if isinstance(event, RunStarted):
                # Nothing was recorded (the file was not created or is removed again).
                raise SinkFailure(describe_storage_error(exc, self.path)) from exc
            self._stop_writing(exc)
            if isinstance(event, RunEnded):
                self._record_failure(event)
            raise SinkFailure(describe_storage_error(exc, self.path)) from exc

    def flush(self) -> None:
        """Write buffered rows and the heartbeat, and make them visible to
        SWMR readers (and durable against a crash of this process)."""
        if self._file is None:
            return
        assert self._samples is not None and self._spectra is not None
        self._samples.drain()
        self._spectra.drain()
        self._write_heartbeat()
        self._file.flush()
        if self._syncer is not None:
            if self._syncer.error is not None:
                error, self._syncer.error = self._syncer.error, None
                raise error  # the disk failed a sync: the engine must know
            self._syncer.request()
        self._next_flush = time.monotonic() + self.flush_interval

    def close(self) -> None:
        """End the file. A run that never got its RunEnded is closed with
        status ``interrupted``, so the file says what happened.

        Only the thread that writes may close a running file: closing it
        under a writing engine is how a run record gets corrupted.
        """
        if self._phase == "running":
            if self._owner is not None and self._owner != threading.get_ident():
                raise RuntimeError(
                    f"RunFileWriter({self.path}): closed from another thread while its run is writing; "
                    "the engine closes its sinks when the run ends"
                )
            self.handle(RunEnded(status="interrupted", error="the writer was closed before the run ended"))
        if self._phase != "failed":
            self._phase = "closed"

    def __enter__(self) -> RunFileWriter:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def step_rows(self, index: int) -> StepRows | None:
        """A lazy view of the samples of step ``index``, which must be the
        step now running (the engine asks just before it ends the step).

        The view reads the rows back when first used: through this writer's
        own handle in the engine thread while the run goes (SWMR allows the
        writer to read), through a reader otherwise (another thread, or after
        the file was closed). It holds the writer only weakly.
        """
        row = self._open_row
        if self._phase != "running" or self._samples is None or row is None or int(row["index"][0]) != index:
            return None
        return StepRows(int(row["row_start"][0]), self._samples.total, _SampleRows(self))

    def own_rows(self, start: int, stop: int) -> np.ndarray | None:
        """Rows ``[start, stop)`` of /samples read through this writer's
        handle, or None unless called in the writing thread of a running file
        (HDF5 handles are not for sharing between threads)."""
        if self._phase != "running" or self._samples is None or self._owner != threading.get_ident():
            return None
        self._samples.drain()
        return read_rows(self._samples.ds, start, stop, SAMPLE_DTYPE)

    @property
    def rows_flushed(self) -> int:
        """Rows of /samples that are on disk (what a crash now would keep)."""
        return self._flushed_samples

    # -- events ---------------------------------------------------------------

    def _on_run_started(self, event: RunStarted) -> None:
        if self._phase != "new":
            raise RuntimeError(f"RunFileWriter({self.path}): a writer takes one run only")
        self._owner = threading.get_ident()
        created = False
        try:
            # 'w-': never clobber an existing run file.
            self._file = h5py.File(self.path, "w-", libver=LIBVER, rdcc_nbytes=RDCC_NBYTES)
            created = True
            self._create_layout(event.info)
            self._write_heartbeat()
            self._file.swmr_mode = True
            self._file.flush()
            if self.fsync:
                self._syncer = Syncer(self._file.id.get_vfd_handle())
                self._syncer.request()
        except BaseException:
            if self._file is not None:
                with contextlib.suppress(Exception):
                    self._file.close()
                self._file = None
            if created:
                with contextlib.suppress(OSError):
                    self.path.unlink()
            raise
        self._phase = "running"
        self._next_flush = time.monotonic() + self.flush_interval

    def _on_step_started(self, event: StepStarted) -> None:
        self._open_step(event.index, event.step, event.t_start)
        self._t_cell = event.t_start
        self._flush_soon()

    def _on_samples(self, event: Samples) -> None:
        assert self._samples is not None
        block = event.block
        self._samples.append(block)
        if len(block) and "t" in (block.dtype.names or ()):
            self._t_cell = float(block["t"][-1])

    def _on_spectrum(self, event: SpectrumPoints) -> None:
        assert self._spectra is not None
        self._spectra.append(event.block)

    def _on_step_ended(self, event: StepEnded) -> None:
        self._close_step(event.result)
        self._flush_soon()

    def _flush_soon(self) -> None:
        """Step boundaries are worth showing watchers at once, but a dry run
        on a virtual clock passes thousands per second: flush within 20 ms."""
        self._next_flush = min(self._next_flush, time.monotonic() + STEP_FLUSH_DELAY)

    def _on_status(self, event: StatusChanged) -> None:
        assert self._events_ds is not None
        self._state = event.state
        self._t_cell = event.t_cell
        row = np.zeros(1, dtype=L.EVENT_DTYPE)
        row["wall_time"] = time.time()
        row["t_cell"] = event.t_cell
        row["state"] = L.fixed_bytes(event.state, L.EVENT_DTYPE["state"].itemsize)
        row["message"] = L.fixed_bytes(event.message, L.MESSAGE_BYTES)
        n = self._events_ds.shape[0]
        self._events_ds.resize((n + 1,))
        write_rows(self._events_ds, n, row)
        self.flush()

    def _on_state(self, event: StateChanged) -> None:
        """A run-state change is an /events row like a status change: the
        state entered, and why."""
        self._on_status(StatusChanged(event.new, event.t_cell, event.reason))

    def _on_tick(self, event: Tick) -> None:
        self._t_cell = event.t_cell

    def _on_run_ended(self, event: RunEnded) -> None:
        self._finish(event)

    # -- internals ------------------------------------------------------------

    def _create_layout(self, info: RunInfo) -> None:
        f = self._file
        assert f is not None
        attrs = f.attrs
        attrs["format"] = L.FORMAT_NAME
        attrs["format_version"] = L.FORMAT_VERSION
        attrs["labctl_version"] = labctl.__version__
        attrs["h5py_version"] = h5py.version.version
        attrs["hdf5_version"] = h5py.version.hdf5_version
        attrs["run_id"] = info.run_id
        attrs["protocol"] = info.protocol
        attrs["protocol_version"] = info.protocol_version
        attrs["operator"] = info.operator
        attrs["started_at"] = info.started_at or _now_iso()
        attrs["parameters"] = L.dumps(info.parameters)
        attrs["cell"] = L.dumps(info.cell)
        attrs["instrument"] = L.dumps(info.instrument)
        attrs["software"] = L.dumps(info.software)
        attrs["simulation"] = L.dumps(info.simulation)
        attrs["status"] = "running"
        attrs["writer_pid"] = os.getpid()
        attrs["writer_host"] = socket.gethostname()
        attrs["flush_interval"] = self.flush_interval

        samples = self._table(L.SAMPLES, SAMPLE_DTYPE, L.SAMPLE_CHUNK_ROWS, SAMPLE_UNITS)
        spectra = self._table(L.SPECTRA, SPECTRUM_DTYPE, L.SPECTRUM_CHUNK_ROWS, SPECTRUM_UNITS)
        # The step table is mostly padding (fixed-length JSON): gzip makes it ~50x smaller.
        self._steps_ds = self._table(L.STEPS, L.STEP_ROW_DTYPE, L.STEP_CHUNK_ROWS, L.STEP_ROW_UNITS, compressed=True)
        self._events_ds = self._table(L.EVENTS, L.EVENT_DTYPE, L.EVENT_CHUNK_ROWS, L.EVENT_UNITS, compressed=True)
        self._end_ds = f.create_dataset(L.END, shape=(0,), maxshape=(None,), dtype=np.uint8, chunks=(65536,))
        self._end_ds.attrs["units"] = L.dumps("")
        self._failure_offset = _preallocated_block(f, L.FAILURE, L.FAILURE_BYTES)
        f[L.FAILURE].attrs["units"] = L.dumps("")
        hb = f.create_dataset(L.HEARTBEAT, shape=(1,), maxshape=(1,), dtype=L.HEARTBEAT_DTYPE, chunks=(1,))
        hb.attrs["units"] = L.dumps(L.HEARTBEAT_UNITS)
        self._heartbeat_ds = hb
        self._samples = Appender(samples, L.SAMPLE_CHUNK_ROWS)
        self._spectra = Appender(spectra, 256)

    def _table(
        self,
        name: str,
        dtype: np.dtype,
        chunk_rows: int,
        units: dict[str, str],
        compressed: bool = False,
    ) -> h5py.Dataset:
        assert self._file is not None
        extra = {}
        if compressed:
            # Rows are rewritten in place (a step's row at its start and end):
            # a chunk cache keeps that from recompressing the chunk each time.
            extra = {"compression": "gzip", "compression_opts": 1, "rdcc_nbytes": 1 << 20}
        ds = self._file.create_dataset(name, shape=(0,), maxshape=(None,), dtype=dtype, chunks=(chunk_rows,), **extra)
        ds.attrs["units"] = L.dumps(units)
        return ds

    def _write_heartbeat(self) -> None:
        assert self._heartbeat_ds is not None and self._samples is not None and self._spectra is not None
        row = np.zeros(1, dtype=L.HEARTBEAT_DTYPE)
        row["wall_time"] = time.time()
        row["t_cell"] = self._t_cell
        row["state"] = L.fixed_bytes(self._state, L.HEARTBEAT_DTYPE["state"].itemsize)
        row["samples"] = self._samples.on_disk
        row["spectra"] = self._spectra.on_disk
        row["steps"] = self._n_steps
        write_rows(self._heartbeat_ds, 0, row, _HEARTBEAT_TYPE)
        self._flushed_samples = self._samples.on_disk

    def _open_step(self, index: int, step: Step, t_start: float) -> None:
        assert self._steps_ds is not None and self._samples is not None and self._spectra is not None
        if self._open_row is not None:
            # No StepEnded for the previous step: end its row ranges here so
            # the ranges never overlap; its end_reason stays empty.
            self._open_row["row_stop"] = self._samples.total
            self._open_row["spec_stop"] = self._spectra.total
            self._write_step_row()
        row = np.zeros(1, dtype=L.STEP_ROW_DTYPE)
        row["index"] = index
        row["kind"] = L.fixed_bytes(step.kind, L.STEP_ROW_DTYPE["kind"].itemsize)
        row["label"] = L.fixed_bytes(step.label, L.STEP_ROW_DTYPE["label"].itemsize)
        row["t_start"] = t_start
        row["duration"] = math.nan
        row["charge"] = math.nan
        row["row_start"] = self._samples.total
        row["row_stop"] = -1
        row["spec_start"] = self._spectra.total
        row["spec_stop"] = -1
        row["step"], full = _step_json(step)
        n = self._steps_ds.shape[0]
        self._steps_ds.resize((n + 1,))
        self._open_row, self._open_pos = row, n
        self._n_steps = n + 1
        if full is not None:
            self._full_steps[n] = full
        self._write_step_row()

    def _close_step(self, result: StepResult) -> None:
        assert self._samples is not None and self._spectra is not None
        row = self._open_row
        if row is None or int(row["index"][0]) != result.index:
            self._open_step(result.index, result.step, result.t_start)
            row = self._open_row
            assert row is not None
        # Engines stream samples; one that only hands them over in the result
        # still gets them stored (never both: only when nothing was streamed).
        if self._samples.total == row["row_start"][0] and result.data is not None and len(result.data):
            self._samples.append(result.data)
        if self._spectra.total == row["spec_start"][0] and result.spectrum is not None:
            self._spectra.append(result.spectrum)
        row["duration"] = result.duration
        row["charge"] = result.charge
        row["end_reason"] = L.fixed_bytes(result.end_reason.value, L.STEP_ROW_DTYPE["end_reason"].itemsize)
        row["row_stop"] = self._samples.total
        row["spec_stop"] = self._spectra.total
        row["message"] = L.fixed_bytes(result.message, L.MESSAGE_BYTES)
        self._write_step_row()
        self._open_row, self._open_pos = None, -1
        # A finished step's rows go into the dataset now (not only at the next
        # flush), so a reader in another thread of this process finds them.
        self._samples.drain()

    def _write_step_row(self) -> None:
        assert self._steps_ds is not None and self._open_row is not None
        write_rows(self._steps_ds, self._open_pos, self._open_row, _STEP_ROW_TYPE)

    def _finish(self, event: RunEnded) -> None:
        """Record the end (SWMR-safe), leave SWMR, then finalize the file.

        The end record makes the file complete by itself; finalization only
        re-expresses it as attributes and groups for other tools. If that
        fails (say another handle in this process keeps the file open), the
        file is still whole and ``finalize_file`` can be run on it later.
        """
        assert self._file is not None and self._end_ds is not None
        self._state = event.status  # readers see the final status in the heartbeat
        end = {
            "status": event.status,
            "error": event.error,
            "ended_at": event.ended_at or _now_iso(),
            "results": event.results,
            "full_steps": {str(k): v for k, v in self._full_steps.items()},
        }
        if event.error_detail:
            end["error_detail"] = event.error_detail
        raw = np.frombuffer(L.dumps(end).encode("utf-8"), dtype=np.uint8)
        self._end_ds.resize((len(raw),))
        write_rows(self._end_ds, 0, raw)
        self.flush()  # a failure here is a storage failure (see handle)
        with readers_released(self.path):  # this process's readers would keep the file open
            self._close_file()
            try:
                finalize_file(self.path)
            except Exception as exc:
                # The run is recorded either way; do not fail it for this.
                self.finalize_error = exc
                log.warning(
                    "%s: run recorded, but finalizing the file failed (%r); "
                    "labctl.storage.finalize_file() can finish it later",
                    self.path,
                    exc,
                )
        if self.fsync:
            sync_path(self.path)

    def _stop_writing(self, exc: BaseException) -> None:
        """The storage failed: let go of HDF5 without letting it write again.

        Closing an HDF5 file flushes its metadata; after a failed write that
        flush fails too and, on h5py 3.x, can end in a segfault at exit. With
        the descriptor pointed at /dev/null the close succeeds and the file on
        disk keeps what the last good flush left (which SWMR readers can
        open). Not a memory file: RLIMIT_FSIZE (EFBIG) limits its writes too.
        """
        self.storage_error = exc
        self._phase = "failed"
        file, self._file = self._file, None
        if file is not None:
            # First of all: any HDF5 object released from here on (a dataset
            # dropped below flushes its metadata as it closes) writes to /dev/null.
            with contextlib.suppress(Exception):
                fd = file.id.get_vfd_handle()
                scratch = os.open(os.devnull, os.O_RDWR)
                try:
                    os.dup2(scratch, fd)
                finally:
                    os.close(scratch)
        if self._syncer is not None:
            with contextlib.suppress(Exception):
                self._syncer.close()
            self._syncer = None
        self._samples = self._spectra = None
        self._steps_ds = self._events_ds = self._end_ds = self._heartbeat_ds = None
        if file is None:
            return
        try:
            file.close()
        except Exception as close_exc:
            log.debug("closing the abandoned HDF5 handle: %s", close_exc)

    def _record_failure(self, event: RunEnded) -> None:
        """Write the run's end into the pre-allocated /failure block, without HDF5."""
        if self._failure_offset is None:
            return
        storage = describe_storage_error(self.storage_error, self.path) if self.storage_error else ""
        error = event.error or f"storage error: {storage}"
        record = {
            "status": "failed" if event.status == "completed" else event.status,
            "error": error if storage in error else f"{error}; storage error: {storage}",
            "ended_at": event.ended_at or _now_iso(),
            "results": {},
            "storage_error": storage,
            "error_detail": event.error_detail,
        }
        raw = _fit_json(record, L.FAILURE_BYTES)
        try:
            fd = os.open(self.path, os.O_WRONLY)
            try:
                os.pwrite(fd, raw, self._failure_offset)
                with contextlib.suppress(OSError):
                    os.fsync(fd)
            finally:
                os.close(fd)
        except OSError as exc:
            log.warning("%s: could not record the run's end after the storage failed: %s", self.path, exc)
            return
        # Plain HDF5 tools may open it now (no writer holds it any more).
        with contextlib.suppress(Exception):
            clear_status_flags(self.path)
        self._failure_offset = None

    def _close_file(self) -> None:
        self._phase = "closed"
        if self._syncer is not None:
            self._syncer.close()  # before HDF5 closes the descriptor it syncs
            self._syncer = None
        if self._file is not None:
            self._file.close()
            self._file = None


class _SampleRows:
    """Reads rows of a run's /samples for ``StepRows``: through the writer
    while it writes (in its thread), by opening the file otherwise."""

    def __init__(self, writer: RunFileWriter) -> None:
        self._writer = weakref.ref(writer)
        self._from_file = SampleRowsFromFile(writer.path)

    def __call__(self, start: int, stop: int) -> np.ndarray:
        writer = self._writer()
        rows = writer.own_rows(start, stop) if writer is not None else None
        if rows is not None:
            return rows
        return self._from_file(start, stop)


def _step_json(step: Step) -> tuple[bytes, str | None]:
    """The step as JSON that fits the table's fixed-length field, and the full
    JSON when it did not fit (it then goes to /by_step at the end of the run).

    A label is the only unbounded part of a step, so it is what gets shortened.
    """
    data = step.to_dict()
    full = L.dumps(data)
    raw = full.encode("utf-8")
    if len(raw) <= L.STEP_JSON_BYTES:
        return raw, None
    label = str(data.get("label", ""))
    while len(raw) > L.STEP_JSON_BYTES and label:
        label = label[: len(label) // 2]
        data["label"] = label + "…"
        raw = L.dumps(data).encode("utf-8")
    if len(raw) > L.STEP_JSON_BYTES:
        raw = L.dumps({"kind": step.kind, "truncated": True}).encode("utf-8")
    return raw, full


def _preallocated_block(f: h5py.File, name: str, size: int) -> int:
    """A contiguous uint8 dataset, allocated and zero-filled now; its file offset."""
    dcpl = h5py.h5p.create(h5py.h5p.DATASET_CREATE)
    dcpl.set_alloc_time(h5py.h5d.ALLOC_TIME_EARLY)
    dcpl.set_fill_time(h5py.h5d.FILL_TIME_ALLOC)
    dcpl.set_fill_value(np.zeros(1, dtype=np.uint8))
    space = h5py.h5s.create_simple((size,))
    dsid = h5py.h5d.create(f.id, name.encode(), h5py.h5t.NATIVE_UINT8, space, dcpl=dcpl)
    offset = dsid.get_offset()
    dsid.close()
    if offset is None:
        raise RuntimeError(f"HDF5 did not allocate /{name}")
    return int(offset)


def _fit_json(record: dict[str, object], size: int) -> bytes:
    """``record`` as UTF-8 JSON of at most ``size`` bytes, shortening the
    traceback first and the error text next."""
    record = dict(record)
    for key in ("error_detail", "error", "storage_error"):
        raw = json.dumps(record).encode("utf-8")
        if len(raw) <= size:
            return raw
        text = str(record.get(key) or "")
        excess = len(raw) - size
        record[key] = text[: max(len(text) - excess - 8, 0)]
    raw = json.dumps({"status": record.get("status", "failed"), "error": "storage error"}).encode("utf-8")
    return raw[:size]


_ERRNO_IN_TEXT = re.compile(r"errno = (\d+)")


def describe_storage_error(exc: BaseException | None, path: Path) -> str:
    """One line for a failed write: the OS reason and its errno name.

    HDF5's messages run over several lines (time stamps, buffers, offsets);
    what a user needs is "No space left on device (ENOSPC) writing FILE".
    """
    if exc is None:
        return ""
    code = getattr(exc, "errno", None)
    if not isinstance(code, int):
        found = _ERRNO_IN_TEXT.search(str(exc))
        code = int(found.group(1)) if found else None
    if isinstance(code, int) and code in errno.errorcode:
        return f"{os.strerror(code)} ({errno.errorcode[code]}) writing {path}"
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text[:300]} (writing {path})"
