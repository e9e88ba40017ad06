"""A long full-cell run keeps memory flat: one row per cycle, never the traces.

Two runs of the real ``long_cycling`` protocol through the engine and the run
file (10 and 60 cycles, CC only, 5 s sampling: ~57 kB of samples per cycle).
tracemalloc (which numpy reports its buffers to) measures what the extra 50
cycles add to the peak and to what is held at the end, against the bytes of
samples they produced; and what the full-cell code itself (protocol +
analysis) holds, results included: a row of numbers per cycle.
"""

from __future__ import annotations

import gc
import tracemalloc
from pathlib import Path

from drivers.sim import SimChannel, SimParams
from labctl.clock import VirtualClock
from labctl.engine import Engine, RunState
from labctl.registry import get_protocol
from labctl.steps import SAMPLE_DTYPE
from labctl.storage import RunFileWriter

MINE = ("*/protocols/_fullcell.py", "*/protocols/long_cycling.py", "*/labctl/analysis/fullcell.py")


def _measure(cycles: int, path: Path) -> dict[str, int]:
    protocol = get_protocol("long_cycling")
    channel = SimChannel(SimParams(cathode="lfp"), "full", VirtualClock())
    values = protocol.validate({"cycles": cycles, "sample_period": 5, "cv_cutoff": 0, "dqdv_cycles": "1"})
    cell = protocol.resolve_cell(values, channel.cell_info())
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        outcome = Engine(channel, sinks=[RunFileWriter(path, fsync=False)]).run(protocol, values, cell)
        gc.collect()
        held, peak = tracemalloc.get_traced_memory()
        snapshot = tracemalloc.take_snapshot()
    finally:
        tracemalloc.stop()
    assert outcome.status == RunState.COMPLETED, outcome.error
    assert outcome.results["cycles_completed"] == cycles
    mine = snapshot.filter_traces([tracemalloc.Filter(True, pattern) for pattern in MINE])
    return {
        "held": held - before,
        "peak": peak - before,
        "mine": sum(stat.size for stat in mine.statistics("filename")),
        "samples": sum(step.n_samples for step in outcome.steps),
    }


def test_memory_stays_flat_over_cycles(tmp_path: Path):
    small = _measure(10, tmp_path / "small.h5")
    large = _measure(60, tmp_path / "large.h5")
    sample_bytes = (large["samples"] - small["samples"]) * SAMPLE_DTYPE.itemsize
    assert sample_bytes > 2_000_000  # the 50 extra cycles produced ~2.7 MB of samples
    assert large["peak"] - small["peak"] < sample_bytes / 5, (small, large)
    assert large["held"] - small["held"] < sample_bytes / 8, (small, large)
    # The full-cell code holds a row of numbers per cycle (and its results), nothing per sample.
    assert (large["mine"] - small["mine"]) / 50 < 1_500, (small, large)
