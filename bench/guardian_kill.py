"""The issue's dead-man acceptance, repeated: SIGKILL of ``labctl run`` mid-step on the
Keithley 2450 and EmStat4 wire emulators, at a random moment, and the time until the
emulated output is off (must be < 5 s). Also the cost of arming a guardian (the
extra start-up of every hardware run).

    PYTHONPATH=$PWD python bench/guardian_kill.py [--trials 10] [--seed 7] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from labctl.guardian import Guardian
from tests.test_guardian import (
    MODELS,
    _guarded_2450,
    serve_bench,
    start_run,
    wait_for,
    writer_pid_mid_step,
)

GIVE_UP_S = 30.0


def kill_trial(model: str, workdir: Path, delay: float) -> float:
    """Seconds from SIGKILL to the output off (inf if it stayed on for GIVE_UP_S)."""
    bench = serve_bench(model, workdir)
    try:
        proc = start_run(bench, "-p", "half_cycle=1")
        try:
            pid = wait_for(lambda: writer_pid_mid_step(bench), "a step driving the cell", proc)
            time.sleep(delay)  # the moment varies; the result must not
            os.kill(pid, signal.SIGKILL)
            killed = time.monotonic()
            while bench.output_on() and time.monotonic() - killed < GIVE_UP_S:
                time.sleep(0.005)
            return time.monotonic() - killed if not bench.output_on() else float("inf")
        finally:
            if proc.poll() is None:
                proc.kill()
            proc.wait()
    finally:
        bench.server.stop()


def arm_seconds(workdir: Path) -> float:
    bench = serve_bench("keithley2450", workdir)
    try:
        start = time.monotonic()
        guardian = Guardian.start((_guarded_2450(bench),), workdir / "run.h5")
        armed = time.monotonic() - start
        guardian.stand_down()
        return armed
    finally:
        bench.server.stop()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=10)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    rng = random.Random(args.seed)
    report: dict[str, object] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for model in MODELS:
            times = []
            for trial in range(args.trials):
                workdir = Path(tmp) / f"{model}-{trial}"
                workdir.mkdir()
                times.append(kill_trial(model, workdir, rng.uniform(0.0, 1.5)))
            report[model] = {"trials": len(times), "off_after_s_median": sorted(times)[len(times) // 2],
                             "off_after_s_max": max(times), "all_within_5_s": max(times) < 5.0}
        arms = []
        for trial in range(args.trials):
            workdir = Path(tmp) / f"arm-{trial}"
            workdir.mkdir()
            arms.append(arm_seconds(workdir))
        report["arm_s_median"] = sorted(arms)[len(arms) // 2]
        report["arm_s_max"] = max(arms)
    if args.json:
        print(json.dumps(report))
    else:
        for key, value in report.items():
            print(f"{key:14s} {value}")
    ok = all(isinstance(v, dict) and v["all_within_5_s"] for k, v in report.items() if k in MODELS)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
