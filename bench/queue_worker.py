"""End-to-end throughput of the queue worker: N short simulated jobs over M channels.

Each job is a child process running ``lsv`` in virtual time, so this measures what a job
costs the queue beyond the measurement itself: process start and imports, validation,
run-file creation and closing, claim, heartbeats and finish. Reports jobs/s and the mean
wall time per job per channel.

    python bench/queue_worker.py [--json] [--jobs 40] [--channels 8]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from labctl.queue import CellInfo, JobSpec, JobState, open_store

ROOT = Path(__file__).resolve().parent.parent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--jobs", type=int, default=40)
    parser.add_argument("--channels", type=int, default=8)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        store = str(Path(scratch) / "queue.sqlite3")
        with open_store(store) as s:
            s.add_batch([JobSpec("lsv", CellInfo(f"c{i}")) for i in range(args.jobs)])
        command = [sys.executable, "-m", "labctl.cli", "queue", "run", "--until-empty", "--store", store,
                   "--sim-channels", str(args.channels), "--runs", str(Path(scratch) / "runs")]  # fmt: skip
        started = time.perf_counter()
        subprocess.run(command, check=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
        elapsed = time.perf_counter() - started
        with open_store(store) as s:
            completed = sum(j.state == JobState.COMPLETED for j in s.list_jobs())
    report = {
        "jobs": args.jobs,
        "channels": args.channels,
        "completed": completed,
        "wall_s": round(elapsed, 2),
        "jobs_per_s": round(args.jobs / elapsed, 2),
        "wall_s_per_job_per_channel": round(elapsed * args.channels / args.jobs, 2),
        "cpus": os.cpu_count(),
    }
    print(json.dumps(report) if args.json else "\n".join(f"{k:28s} {v}" for k, v in report.items()))


if __name__ == "__main__":
    main()
