"""A 1000-cycle full-cell dry run: wall time, memory, and the run file read live.

Runs the real ``long_cycling`` protocol on the physics simulator through
``prepare_run`` (the path of ``labctl run``: engine, SWMR run file, end-of-run
analysis), reports wall time, cell time, RSS before/after/peak, the run file's
size, and opens the file while the run goes (as ``labctl watch`` or the GUI
would) at every tenth of the cycles, counting the steps it can read.

    python bench/fullcell_dryrun.py [--cycles 1000] [--sample-period 30] [--cathode lfp] [--json]
"""

from __future__ import annotations

import argparse
import gc
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.memory import proc_status_kb
from labctl.events import StepEnded
from labctl.runner import prepare_run
from labctl.storage import open_run


class LiveReader:
    """A runner watcher: at every tenth of the steps, opens the run file and reads its steps."""

    def __init__(self, path: Path, total_steps: int) -> None:
        self.path = path
        self.total = total_steps
        self.every = max(1, total_steps // 10)
        self.reads: list[tuple[int, int, float]] = []  # (steps ended, steps readable in the file, RSS MB)

    def watch(self, subscription: Any, handle: Any) -> None:
        ended = 0
        while not handle.done:
            event = subscription.get(timeout=0.5)
            if isinstance(event, StepEnded):
                ended += 1
                # not at the last step: the writer is finalizing the file then (a reader open at
                # that moment makes finalize fail with an HDF5 file-locking error; the run is kept)
                if ended % self.every == 0 and ended < self.total:
                    with open_run(self.path) as run:
                        readable = len(run.steps)
                    self.reads.append((ended, readable, proc_status_kb("VmRSS") / 1024))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cycles", type=int, default=1000)
    parser.add_argument("--sample-period", type=float, default=30.0, help="s (default 30)")
    parser.add_argument("--cathode", choices=("nmc", "lfp"), default="lfp")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "long_cycling.h5"
        params = {"cycles": str(args.cycles), "sample_period": str(args.sample_period)}
        prepared = prepare_run("long_cycling", params=params, sim={"cathode": args.cathode}, path=path)
        gc.collect()
        rss_before = proc_status_kb("VmRSS") / 1024
        reader = LiveReader(path, 3 * args.cycles)  # CC, CV, CC per cycle (rest 0)
        t0, cpu0 = time.perf_counter(), time.process_time()
        outcome = prepared.execute(reader)
        wall, cpu = time.perf_counter() - t0, time.process_time() - cpu0
        rss_after = proc_status_kb("VmRSS") / 1024
        with open_run(path) as run:
            steps = run.steps
            cell_h = max((s.t_start + s.duration for s in steps), default=0.0) / 3600
            samples = run.n_samples
            stored_cycles = len(run.results["table"]["cycle"])  # the per-cycle table reads back
        size_mb = path.stat().st_size / 1e6
    results = outcome.results
    report = {
        "status": outcome.status.value,
        "cycles": results.get("cycles_completed"),
        "wall_s": round(wall, 2),
        "cpu_s": round(cpu, 2),  # all threads of this process: less sensitive to a busy machine
        "ms_per_cycle": round(1e3 * wall / max(args.cycles, 1), 2),
        "cell_h": round(cell_h, 1),
        "samples": samples,
        "cycles_in_file": stored_cycles,
        "file_MB": round(size_mb, 2),
        "rss_before_MB": round(rss_before, 1),
        "rss_after_MB": round(rss_after, 1),
        "peak_MB": round(proc_status_kb("VmHWM") / 1024, 1),
        "live_reads": reader.reads,
        "capacity_mAh_g": results.get("capacity_mAh_g"),
        "fade_per_cycle": results.get("fade_per_cycle"),
        "ce_mean": results.get("ce_mean"),
        "cycle_below_80": results.get("cycle_below_80"),
    }
    if args.json:
        print(json.dumps(report))
    else:
        print(
            f"{report['cycles']} cycles ({report['cell_h']} h of cell time, {samples:,} samples) in "
            f"{report['wall_s']} s wall ({report['ms_per_cycle']} ms/cycle), {report['cpu_s']} s CPU, "
            f"status {report['status']}\n"
            f"RSS {rss_before:.1f} -> {rss_after:.1f} MB (peak {report['peak_MB']} MB), file {report['file_MB']} MB"
        )
        for ended, readable, rss in reader.reads:
            print(f"  live: {ended:>6} steps ended, {readable:>6} readable in the file, RSS {rss:7.1f} MB")
        print(
            f"capacity {report['capacity_mAh_g']:.2f} mAh/g, fade/cycle {report['fade_per_cycle']}, "
            f"CE {report['ce_mean']}, cycle below 80 %: {report['cycle_below_80']}"
        )
    return 0 if outcome.status.value == "completed" else 1


if __name__ == "__main__":
    sys.exit(main())
