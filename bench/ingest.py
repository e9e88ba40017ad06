"""Sustained ingest into the run file, against raw h5py, with a live reader.

    python bench/ingest.py [--rows N] [--block N] [--repeat R] [--dir DIR] [--json]

labctl: SAMPLE_DTYPE blocks through the real sink path (RunFileWriter.handle:
RunStarted, StepStarted, Samples x N/block, StepEnded, RunEnded, so the file
creation, SWMR flushes, heartbeats, fsyncs and the end-of-run finalization
are all timed) while a separate process opens the file as an SWMR reader and
polls it, refreshing as a GUI would. Also with fsync=False, since raw h5py
never fsyncs (it leaves the data in the OS cache).

h5py: the same blocks appended by hand to a dataset with the same dtype,
chunking and file format, resize + write per block, no SWMR and no reader
(the fastest honest thing h5py does). ``h5py_swmr_rows_per_s`` is the same
with SWMR on and a flush every 0.5 s, for context. Each variant runs
``--repeat`` times, interleaved; the best run of each is reported (disk
write-back makes single runs noisy).

PyMeasure: its CSV Results writer (Recorder.handle per point, the path a
Procedure's ``emit('results', ...)`` takes) on ``--pymeasure-rows`` rows.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import h5py
import numpy as np

from labctl.events import RunEnded, RunInfo, RunStarted, Samples, StepEnded, StepStarted
from labctl.steps import SAMPLE_DTYPE, ConstantCurrent, EndReason, Limits, StepResult
from labctl.storage import RunFileWriter, open_run
from labctl.storage.layout import SAMPLE_CHUNK_ROWS
from labctl.storage.writer import LIBVER

POOL_ROWS = 1 << 20  # distinct rows cycled through (40 MiB), so data is not one cached block


def make_pool(rows: int) -> np.ndarray:
    rng = np.random.default_rng(1)
    pool = np.empty(rows, dtype=SAMPLE_DTYPE)
    pool["t"] = np.arange(rows) * 1e-3
    pool["E"] = rng.normal(0.05, 0.001, rows)
    pool["I"] = 1e-3
    pool["Q"] = pool["t"] * 1e-3
    pool["T"] = 25.0
    return pool


def blocks(pool: np.ndarray, rows: int, block: int):
    """Views of ``block`` rows cycling through the pool, ``rows`` in all."""
    done, pos = 0, 0
    while done < rows:
        k = min(block, rows - done)
        if pos + k > len(pool):
            pos = 0
        yield pool[pos : pos + k]
        pos += k
        done += k


# -- the reader process -------------------------------------------------------------


def reader_main(path: str, poll: float) -> None:
    """Poll the file like a GUI: refresh, read the newest rows. Print JSON."""
    print("ready", flush=True)
    p = Path(path)
    while not p.exists():
        time.sleep(0.005)
    run = open_run(p, timeout=30)
    polls, seen, growth, errors, max_lag_s = 0, 0, 0, 0, 0.0
    try:
        while True:
            try:
                run.refresh()
            except Exception:
                errors += 1
            n = run.n_samples
            if n > seen:
                tail = run.samples(max(n - 100, 0), n)  # what a live plot reads
                assert len(tail) == min(n, 100)
                seen = n
                growth += 1
            hb = run.heartbeat
            if hb is not None and run.stored_status == "running":
                max_lag_s = max(max_lag_s, hb.age)
            polls += 1
            if run.status != "running":
                break
            time.sleep(poll)
        status = run.status
    finally:
        run.close()
    print(
        json.dumps(
            {
                "polls": polls,
                "polls_with_new_rows": growth,
                "rows_seen": seen,
                "errors": errors,
                "status": status,
                "max_heartbeat_age_s": round(max_lag_s, 3),
            }
        ),
        flush=True,
    )


# -- the variants --------------------------------------------------------------------------


def run_labctl(path: Path, pool: np.ndarray, rows: int, block: int, with_reader: bool, fsync: bool = True) -> dict:
    reader = None
    if with_reader:
        reader = subprocess.Popen([sys.executable, __file__, "--reader", str(path)], stdout=subprocess.PIPE, text=True)
        assert reader.stdout is not None
        reader.stdout.readline()  # imported and waiting for the file
    info = RunInfo(
        run_id="bench",
        protocol="bench",
        protocol_version="0",
        parameters={"rows": rows, "block": block},
        cell={},
        instrument={"driver": "bench"},
        software={},
        started_at="",
    )
    step = ConstantCurrent(current=1e-3, limits=Limits(max_time=1e9))
    t0 = time.perf_counter()
    w = RunFileWriter(path, flush_interval=0.5, fsync=fsync)
    w.handle(RunStarted(info))
    w.handle(StepStarted(0, step, 0.0))
    for b in blocks(pool, rows, block):
        w.handle(Samples(0, b))
    w.handle(StepEnded(StepResult(0, step, EndReason.TIME, 0.0, 1.0, 0.0)))
    w.handle(RunEnded("completed"))
    elapsed = time.perf_counter() - t0
    out = {"rows_per_s": rows / elapsed, "seconds": elapsed}
    if reader is not None:
        stdout, _ = reader.communicate(timeout=60)
        out["reader"] = json.loads(stdout.strip().splitlines()[-1])
    with open_run(path) as run:
        assert run.n_samples == rows, (run.n_samples, rows)
        assert run.status == "completed"
    return out


def run_h5py(path: Path, pool: np.ndarray, rows: int, block: int, swmr: bool) -> dict:
    t0 = time.perf_counter()
    f = h5py.File(path, "w", libver=LIBVER)
    ds = f.create_dataset("samples", shape=(0,), maxshape=(None,), dtype=SAMPLE_DTYPE, chunks=(SAMPLE_CHUNK_ROWS,))
    if swmr:
        f.swmr_mode = True
    n, next_flush = 0, time.monotonic() + 0.5
    for b in blocks(pool, rows, block):
        ds.resize((n + len(b),))
        ds[n : n + len(b)] = b
        n += len(b)
        if swmr and time.monotonic() >= next_flush:
            f.flush()
            next_flush = time.monotonic() + 0.5
    f.close()
    elapsed = time.perf_counter() - t0
    return {"rows_per_s": rows / elapsed, "seconds": elapsed}


def run_pymeasure(path: Path, pool: np.ndarray, rows: int) -> float | None:
    try:
        from pymeasure.experiment import Procedure, Results
        from pymeasure.experiment.listeners import Recorder
    except ImportError:
        return None
    import queue

    class Ingest(Procedure):
        DATA_COLUMNS = ["t (s)", "E (V)", "I (A)", "Q (C)", "T (degC)"]  # noqa: RUF012

    data = pool[:rows]
    records = [dict(zip(Ingest.DATA_COLUMNS, row, strict=True)) for row in data.tolist()]
    results = Results(Ingest(), str(path))
    recorder = Recorder(results, queue.Queue())
    t0 = time.perf_counter()
    for rec in records:
        recorder.handle(rec)  # what Worker.emit("results", rec) does per point
    for handler in recorder.handlers:  # never started as a thread: close the files directly
        handler.close()
    return rows / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=20_000_000)
    ap.add_argument("--block", type=int, default=100_000)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--dir", default=None, help="where to write (default: a temporary directory)")
    ap.add_argument("--no-reader", action="store_true", help="no concurrent SWMR reader")
    ap.add_argument("--pymeasure-rows", type=int, default=50_000, help="0 to skip")
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--reader", metavar="PATH", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.reader:
        reader_main(args.reader, poll=0.05)
        return

    pool = make_pool(min(args.rows, POOL_ROWS))
    with tempfile.TemporaryDirectory(dir=args.dir, prefix="labctl-bench-") as tmp:
        labctl_runs, nofsync_runs, h5py_runs, swmr_runs = [], [], [], []
        reader = not args.no_reader
        for i in range(args.repeat):
            for name, runs, fn in (
                ("labctl", labctl_runs, lambda p: run_labctl(p, pool, args.rows, args.block, reader)),
                ("h5py", h5py_runs, lambda p: run_h5py(p, pool, args.rows, args.block, swmr=False)),
                (
                    "labctl_nofsync",
                    nofsync_runs,
                    lambda p: run_labctl(p, pool, args.rows, args.block, reader, fsync=False),
                ),
                ("h5py_swmr", swmr_runs, lambda p: run_h5py(p, pool, args.rows, args.block, swmr=True)),
            ):
                path = Path(tmp) / f"{name}-{i}.h5"
                runs.append(fn(path))
                path.unlink()
        pym = None
        if args.pymeasure_rows:
            pym = run_pymeasure(Path(tmp) / "pymeasure.csv", make_pool(args.pymeasure_rows), args.pymeasure_rows)

    best_labctl = max(labctl_runs, key=lambda r: r["rows_per_s"])
    best_h5py = max(r["rows_per_s"] for r in h5py_runs)
    best_nofsync = max(r["rows_per_s"] for r in nofsync_runs)
    # Each labctl run against the h5py run right after it (same machine load).
    pair_ratios = [a["rows_per_s"] / b["rows_per_s"] for a, b in zip(labctl_runs, h5py_runs, strict=True)]
    result = {
        "rows": args.rows,
        "block": args.block,
        "repeat": args.repeat,
        "labctl_rows_per_s": round(best_labctl["rows_per_s"]),
        "h5py_rows_per_s": round(best_h5py),
        "ratio": round(best_labctl["rows_per_s"] / best_h5py, 3),
        "ratio_median_of_pairs": round(statistics.median(pair_ratios), 3),
        "labctl_nofsync_rows_per_s": round(best_nofsync),
        "ratio_nofsync": round(best_nofsync / best_h5py, 3),
        "h5py_swmr_rows_per_s": round(max(r["rows_per_s"] for r in swmr_runs)),
        "labctl_runs_rows_per_s": [round(r["rows_per_s"]) for r in labctl_runs],
        "h5py_runs_rows_per_s": [round(r["rows_per_s"]) for r in h5py_runs],
        "reader_rows_seen": best_labctl.get("reader", {}).get("rows_seen"),
        "reader": best_labctl.get("reader"),
        "pymeasure_csv_rows_per_s": None if pym is None else round(pym),
        "pymeasure_rows": args.pymeasure_rows,
        "cpus": os.cpu_count(),
        "h5py": h5py.version.version,
        "hdf5": h5py.version.hdf5_version,
    }
    if args.json:
        print(json.dumps(result))
        return
    print(f"rows {args.rows:,} in blocks of {args.block:,}, best of {args.repeat}")
    print(f"  labctl RunFileWriter (SWMR, fsync, live reader): {result['labctl_rows_per_s'] / 1e6:8.2f} M rows/s")
    print(f"  labctl RunFileWriter, fsync=False:               {best_nofsync / 1e6:8.2f} M rows/s")
    print(f"  raw h5py block append (no SWMR):                 {result['h5py_rows_per_s'] / 1e6:8.2f} M rows/s")
    print(f"  raw h5py block append (SWMR, flushes):           {result['h5py_swmr_rows_per_s'] / 1e6:8.2f} M rows/s")
    print(f"  ratio labctl / h5py (best / best):               {result['ratio']:8.3f}")
    print(f"  ratio labctl / h5py (median of paired runs):     {result['ratio_median_of_pairs']:8.3f}")
    print(f"  ratio labctl fsync=False / h5py:                 {result['ratio_nofsync']:8.3f}")
    if result["reader"]:
        r = result["reader"]
        print(
            f"  reader: {r['polls']} polls ({r['polls_with_new_rows']} with new rows), saw {r['rows_seen']:,} rows, "
            f"{r['errors']} errors, final status {r['status']}"
        )
    if pym is not None:
        print(f"  PyMeasure CSV Results ({args.pymeasure_rows:,} rows):         {pym / 1e6:8.4f} M rows/s")


if __name__ == "__main__":
    main()
