"""Job-store overhead under contention, SQLite and PostgreSQL.

1000 trivial jobs over 8 channels; 8 worker processes each claim from all 8 channels and
finish each job at once, so the store is the only work. Reports the per-job overhead
(the successful claim_next call plus the finish call, as the worker sees it, median and 95th
percentile), the empty claims (nothing free), and the throughput in jobs/s. SQLite uses
synchronous=FULL on a temporary file; PostgreSQL is a throwaway cluster with fsync on
(tests/pg_cluster.py), unless --pg gives a URL.

    python bench/queue_store.py [--json] [--jobs 1000] [--workers 8] [--backends sqlite,postgres] [--pg URL]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from labctl.queue import CellInfo, JobSpec, JobState, open_store

CHANNELS = [f"ch{i}" for i in range(8)]
SPAWN = multiprocessing.get_context("spawn")
HANG_GUARD_S = 600.0


def _worker(location: str, name: str, ready: Any, start: Any, results: Any) -> None:
    overheads: list[float] = []
    empty = 0
    with open_store(location) as store:
        ready.put(name)
        start.wait(HANG_GUARD_S)
        while True:
            t0 = time.perf_counter()
            job = store.claim_next(name, CHANNELS)
            if job is None:
                empty += 1
                if not store.list_jobs(states=[JobState.QUEUED]):
                    break
                continue
            store.finish(job.id, name, JobState.COMPLETED, results={"ok": True})
            overheads.append(time.perf_counter() - t0)
    results.put((name, overheads, empty, time.perf_counter()))


def measure(location: str, jobs: int, workers: int) -> dict[str, float]:
    with open_store(location) as store:
        store.add_batch([JobSpec("eis", CellInfo(f"c{i}"), channel=CHANNELS[i % 8]) for i in range(jobs)])
    ready, results, start = SPAWN.Queue(), SPAWN.Queue(), SPAWN.Event()
    procs = [SPAWN.Process(target=_worker, args=(location, f"w{i}", ready, start, results)) for i in range(workers)]
    for p in procs:
        p.start()
    for _ in procs:
        ready.get(timeout=HANG_GUARD_S)
    t_start = time.perf_counter()
    start.set()
    outcomes = [results.get(timeout=HANG_GUARD_S) for _ in procs]
    for p in procs:
        p.join(HANG_GUARD_S)
    wall = max(o[3] for o in outcomes) - t_start
    overheads = sorted(x for o in outcomes for x in o[1])
    with open_store(location) as store:
        done = len(store.list_jobs(states=[JobState.COMPLETED]))
    if done != jobs or len(overheads) != jobs:
        raise SystemExit(f"{location}: {done} of {jobs} jobs completed ({len(overheads)} claims)")
    return {
        "jobs": jobs,
        "workers": workers,
        "wall_s": wall,
        "jobs_per_s": jobs / wall,
        "overhead_median_ms": 1e3 * statistics.median(overheads),
        "overhead_p95_ms": 1e3 * overheads[int(0.95 * (len(overheads) - 1))],
        "empty_claims": sum(o[2] for o in outcomes),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--json", action="store_true", help="one JSON object keyed by backend")
    parser.add_argument("--jobs", type=int, default=1000)
    parser.add_argument("--workers", type=int, default=8)
    parser.add_argument("--backends", default="sqlite,postgres")
    parser.add_argument("--pg", help="postgresql:// URL of an empty database (default: a throwaway cluster)")
    args = parser.parse_args(argv)
    report: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for backend in [b for b in args.backends.split(",") if b]:
            if backend == "sqlite":
                report[backend] = measure(str(Path(tmp) / "queue.sqlite3"), args.jobs, args.workers)
            elif backend == "postgres" and args.pg:
                report[backend] = measure(args.pg, args.jobs, args.workers)
            elif backend == "postgres":
                sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
                from tests.pg_cluster import PgCluster

                with PgCluster(durable=True) as cluster:
                    report[backend] = measure(cluster.create_database("bench"), args.jobs, args.workers)
            else:
                parser.error(f"--backends: {backend!r} is not one of sqlite, postgres")
            if not args.json:
                r = report[backend]
                print(f"{backend:9s} {r['jobs']:.0f} jobs, {r['workers']:.0f} workers: {r['jobs_per_s']:7.1f} jobs/s  "
                      f"claim+finish median {r['overhead_median_ms']:6.2f} ms  p95 {r['overhead_p95_ms']:6.2f} ms  "
                      f"empty claims {r['empty_claims']:.0f}")
    if args.json:
        print(json.dumps(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
