"""Resident memory over a long simulated run: does it stay flat?

Runs the physics simulator in virtual time through the engine and the run
file writer for ``--samples`` points. RSS is read from /proc/self/status
(VmRSS now, VmHWM the peak) before the run, at every tenth of it, and after
it; the growth is what the run kept.

``--protocol steps`` (default): half-cycles of 10⁵ points of alternating sign
sampled every 10 ms, each followed by a one-point rest, in a plan that keeps
every StepResult and reads the first step's data. ``--protocol cycling``: the
real symmetric cycling protocol through ``prepare_run`` (the path of
``labctl run``, end-of-run analysis of every half-cycle included), 1 h
half-cycles sampled every 0.36 s.

``--runs N`` runs it N times in the same process, as a queue worker would,
and reports RSS after each run: what one run leaves behind (HDF5 keeps the
memory it used finalizing a file in its free lists) is reused by the next.

    python bench/memory.py [--samples 1e7] [--protocol steps|cycling] [--runs 1] [--json]

The issue's target: less than 50 MB of growth over 10⁷ samples.
"""

from __future__ import annotations

import argparse
import gc
import json
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from drivers.sim import SimChannel, SimParams
from labctl.clock import VirtualClock
from labctl.engine import Engine
from labctl.events import StepEnded
from labctl.params import Param
from labctl.protocol import Cell, Protocol
from labctl.runner import prepare_run
from labctl.steps import ConstantCurrent, Limits, Rest
from labctl.storage import RunFileWriter, open_run

SAMPLE_PERIOD = 0.01  # s of cell time between points
STEP_SAMPLES = 100_000  # points per half-cycle
CURRENT = 1e-5  # A: a gentle current the Li|Li simulator sustains indefinitely


def proc_status_kb(field: str) -> int:
    """A ``VmRSS``/``VmHWM`` style line of /proc/self/status, in kB."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"/proc/self/status has no {field} (Linux only)")


def cycling_protocol(total_samples: int, on_step: Callable[[int], None]) -> Protocol:
    """Half-cycles of STEP_SAMPLES points until ``total_samples`` were asked for.

    Like the real protocols it keeps every StepResult and looks at each one's
    summary, and reads the data of the first step (a nucleation-style look).
    """

    def plan(params: Any, cell: Cell):  # type: ignore[no-untyped-def]
        kept = []
        asked = 0
        sign = -1
        while asked < total_samples:
            n = min(STEP_SAMPLES, total_samples - asked)
            result = yield ConstantCurrent(
                current=sign * CURRENT,
                sample_period=SAMPLE_PERIOD,
                limits=Limits(max_time=n * SAMPLE_PERIOD, voltage_above=1.0, voltage_below=-1.0),
            )
            if not kept:
                first_trace = result.data["E"]  # a protocol that reads a step's arrays
                assert len(first_trace) == len(result.data)
            kept.append(result)
            asked += n
            sign = -sign
            on_step(asked)
            yield Rest(duration=SAMPLE_PERIOD, sample_period=SAMPLE_PERIOD)
        return {"steps": len(kept), "charge_C": sum(abs(r.charge) for r in kept)}

    return Protocol(
        name="memory_bench",
        version="1",
        title="memory benchmark",
        cell_type="li_li",
        params=(Param("x", 1.0),),
        plan=plan,
        step_kinds=frozenset({"ConstantCurrent", "Rest"}),
    )


class RssTrace:
    """VmRSS at every tenth of the run (called at each step end)."""

    def __init__(self, total_samples: int) -> None:
        self.total = total_samples
        self.marks: list[tuple[int, int]] = []
        self._next = total_samples // 10

    def at(self, samples_so_far: int) -> None:
        if samples_so_far >= self._next:
            self.marks.append((samples_so_far, proc_status_kb("VmRSS")))
            self._next += self.total // 10

    def watch(self, subscription: Any, handle: Any) -> None:
        """A runner watcher: follows the step ends until the run is done."""
        samples = 0
        while not handle.done:
            event = subscription.get(timeout=0.5)
            if isinstance(event, StepEnded):
                result = event.result
                # (len(data) for the engine before StepResult.n_samples, to compare with it)
                samples += result.n_samples if hasattr(result, "n_samples") else len(result.data)
                self.at(samples)


def run_steps(total_samples: int, path: Path, trace: RssTrace) -> Any:
    channel = SimChannel(SimParams(), "li_li", VirtualClock())
    engine = Engine(channel, sinks=[RunFileWriter(path, fsync=False)])
    cell = Cell(type="li_li", area_cm2=1.0, thickness_um=100.0)
    return engine.run(cycling_protocol(total_samples, trace.at), {"x": 1.0}, cell)


CYCLING_PERIOD = 0.36  # s: 10⁴ points per 1 h half-cycle


def run_cycling(total_samples: int, path: Path, trace: RssTrace) -> Any:
    half_cycle_points = round(3600 / CYCLING_PERIOD)
    cycles = max(1, round(total_samples / (2 * half_cycle_points)))
    params = {"cycles": str(cycles), "half_cycle": "1", "sample_period": str(CYCLING_PERIOD), "rates": "0.1"}
    prepared = prepare_run("cycling", params=params, instrument="sim", speed="max", path=path)
    return prepared.execute(trace)


def measure(total_samples: int, out_dir: Path, protocol: str = "steps") -> dict[str, Any]:
    gc.collect()
    rss_before = proc_status_kb("VmRSS")
    tracer = RssTrace(total_samples)
    path = out_dir / "memory.h5"
    t0 = time.perf_counter()
    run = run_cycling if protocol == "cycling" else run_steps
    outcome = run(total_samples, path, tracer)
    wall = time.perf_counter() - t0
    trace = tracer.marks
    rss_end = proc_status_kb("VmRSS")
    peak = proc_status_kb("VmHWM")
    with open_run(path) as run:
        stored = run.n_samples
    return {
        "protocol": protocol,
        "status": outcome.status.value,
        "error": outcome.error,
        "samples_stored": stored,
        "steps": len(outcome.steps),
        "wall_s": round(wall, 1),
        "rss_before_MB": rss_before / 1024,
        "rss_after_MB": rss_end / 1024,
        "rss_growth_MB": (rss_end - rss_before) / 1024,
        "peak_growth_MB": (peak - rss_before) / 1024,
        "rss_trace_MB": [(n, kb / 1024) for n, kb in trace],
        "bytes_per_sample": (rss_end - rss_before) * 1024 / max(stored, 1),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--samples", type=float, default=1e7, help="points to acquire (default 1e7)")
    parser.add_argument("--protocol", choices=("steps", "cycling"), default="steps", help="what to run (see above)")
    parser.add_argument("--runs", type=int, default=1, help="runs in sequence in this process (default 1)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args(argv)
    total = int(args.samples)
    if total < 10:
        parser.error("--samples must be at least 10")
    if args.runs < 1:
        parser.error("--runs must be at least 1")
    gc.collect()
    rss_start = proc_status_kb("VmRSS")
    after_each: list[float] = []
    for _ in range(args.runs):
        with tempfile.TemporaryDirectory() as tmp:
            report = measure(total, Path(tmp), args.protocol)
        after_each.append(report["rss_after_MB"])
        if report["status"] != "completed":
            break
    report["rss_after_each_run_MB"] = after_each
    report["growth_over_all_runs_MB"] = after_each[-1] - rss_start / 1024
    if args.json:
        print(json.dumps(report))
    else:
        print(
            f"{report['samples_stored']:,} samples in {report['steps']} steps, {report['wall_s']} s wall, "
            f"status {report['status']}\n"
            f"RSS {report['rss_before_MB']:.1f} MB -> {report['rss_after_MB']:.1f} MB: "
            f"growth {report['rss_growth_MB']:.1f} MB ({report['bytes_per_sample']:.1f} B/sample), "
            f"peak growth {report['peak_growth_MB']:.1f} MB"
        )
        for n, mb in report["rss_trace_MB"]:
            print(f"  after {n:>12,} samples: RSS {mb:8.1f} MB")
        if len(after_each) > 1:
            runs = ", ".join(f"{mb:.1f}" for mb in after_each)
            print(f"RSS after each of {len(after_each)} runs: {runs} MB")
    return 0 if report["status"] == "completed" else 1


if __name__ == "__main__":
    sys.exit(main())
