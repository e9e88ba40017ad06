"""The engine keeps no samples: a step's data is read back from the run file.

What is checked: the rows a StepResult's ``data`` gives (inside the protocol
mid-run, from a watcher thread mid-run, after the run) are exactly the rows
the channel produced; the step statistics agree with those rows; and the
memory the engine and the results retain does not grow with the number of
samples (tracemalloc, which numpy reports its buffers to).
"""

from __future__ import annotations

import gc
import threading
import tracemalloc
from pathlib import Path

import numpy as np
import pytest

from labctl.engine import Engine, RunState
from labctl.events import Samples, StepEnded
from labctl.params import Param
from labctl.protocol import Cell, Protocol
from labctl.steps import SAMPLE_DTYPE, ConstantCurrent, Limits, Rest, SampleStats, StepRows
from labctl.storage import RunFileWriter, open_run
from tests.resistor_channel import ResistorChannel

CELL = Cell(type="test", area_cm2=1.0, thickness_um=100.0)


def make_protocol(plan) -> Protocol:
    return Protocol(
        name="test",
        version="1",
        title="test",
        cell_type="test",
        params=(Param("x", 1.0),),
        plan=plan,
        step_kinds=frozenset({"Rest", "ConstantCurrent", "ConstantVoltage"}),
    )


class Recorder:
    """Keeps every streamed sample block, per step: the truth to compare with."""

    def __init__(self) -> None:
        self.blocks: dict[int, list[np.ndarray]] = {}

    def handle(self, event) -> None:
        if isinstance(event, Samples):
            self.blocks.setdefault(event.index, []).append(event.block.copy())

    def rows(self, index: int) -> np.ndarray:
        return np.concatenate(self.blocks.get(index, [])) if index in self.blocks else np.empty(0, SAMPLE_DTYPE)


def same(a: np.ndarray, b: np.ndarray) -> bool:
    return len(a) == len(b) and all(np.array_equal(a[n], b[n], equal_nan=True) for n in SAMPLE_DTYPE.names)


def test_step_data_is_read_back_from_the_run_file(tmp_path: Path):
    seen = {}

    def plan(params, cell):
        first = yield ConstantCurrent(current=1e-3, limits=Limits(max_time=300.0), sample_period=1.0)
        # Mid-run, in the engine thread: the rows come through the writer's own handle.
        seen["mid_run"] = np.asarray(first.data).copy()
        seen["mid_run_E_max"] = float(first.data["E"].max())
        second = yield Rest(duration=120.0, sample_period=0.5)
        third = yield ConstantCurrent(current=-2e-3, limits=Limits(max_time=50.0), sample_period=1.0)
        seen["results"] = (first, second, third)
        return {}

    recorder = Recorder()
    engine = Engine(ResistorChannel(resistance=100.0, chunk=7), sinks=[recorder, RunFileWriter(tmp_path / "r.h5")])
    outcome = engine.run(make_protocol(plan), {"x": 1.0}, CELL)
    assert outcome.status == RunState.COMPLETED, outcome.error
    results = seen["results"]
    for result in results:
        assert isinstance(result.data, StepRows)  # nothing kept in memory by the engine
    assert same(seen["mid_run"], recorder.rows(0)) and len(seen["mid_run"]) == 300
    assert seen["mid_run_E_max"] == pytest.approx(0.1)
    # After the run (the file closed and finalized): read through a reader.
    for result in results:
        assert same(np.asarray(result.data), recorder.rows(result.index))
        assert len(result.data) == result.n_samples == len(recorder.rows(result.index))
    assert results[2].data[-1]["Q"] == pytest.approx(results[2].charge)
    with open_run(tmp_path / "r.h5") as run:
        assert same(run.steps[1].data, np.asarray(results[1].data))


def test_step_data_from_a_watcher_thread_while_the_run_goes(tmp_path: Path):
    """A GUI-like watcher reads each ended step's rows while the engine writes."""
    release = threading.Event()
    read_back: dict[int, np.ndarray] = {}
    errors: list[BaseException] = []

    def plan(params, cell):
        for k in range(3):
            yield ConstantCurrent(current=(k + 1) * 1e-3, limits=Limits(max_time=200.0), sample_period=1.0)
        # Hold the run open until the watcher has read every step mid-run.
        assert release.wait(60), "watcher never finished (hang guard)"
        yield Rest(duration=10.0, sample_period=1.0)
        return {}

    recorder = Recorder()
    engine = Engine(ResistorChannel(chunk=13), sinks=[recorder, RunFileWriter(tmp_path / "w.h5")])
    subscription = engine.bus.subscribe()

    def watch() -> None:
        try:
            while len(read_back) < 3:
                event = subscription.get(timeout=60)
                assert event is not None, "no event within 60 s (hang guard)"
                if isinstance(event, StepEnded):
                    read_back[event.result.index] = np.asarray(event.result.data).copy()
        except BaseException as exc:
            errors.append(exc)
        finally:
            release.set()

    watcher = threading.Thread(target=watch)
    watcher.start()
    outcome = engine.run(make_protocol(plan), {"x": 1.0}, CELL)
    watcher.join(60)
    assert not errors, errors
    assert outcome.status == RunState.COMPLETED, outcome.error
    for index in range(3):
        assert len(read_back[index]) == 200
        assert same(read_back[index], recorder.rows(index))


def test_without_a_run_file_the_samples_stay_in_memory():
    seen = {}

    def plan(params, cell):
        seen["r"] = yield ConstantCurrent(current=1e-3, limits=Limits(max_time=100.0), sample_period=1.0)
        return {}

    recorder = Recorder()
    Engine(ResistorChannel(chunk=9), sinks=[recorder]).run(make_protocol(plan), {"x": 1.0}, CELL)
    assert isinstance(seen["r"].data, np.ndarray) and same(seen["r"].data, recorder.rows(0))
    with pytest.raises(ValueError, match="keep_samples=False"):
        Engine(ResistorChannel(), sinks=[recorder], keep_samples=False)


def test_keep_samples_true_keeps_arrays_even_with_a_run_file(tmp_path: Path):
    seen = {}

    def plan(params, cell):
        seen["r"] = yield Rest(duration=30.0, sample_period=1.0)
        return {}

    engine = Engine(ResistorChannel(), sinks=[RunFileWriter(tmp_path / "k.h5")], keep_samples=True)
    engine.run(make_protocol(plan), {"x": 1.0}, CELL)
    assert isinstance(seen["r"].data, np.ndarray) and len(seen["r"].data) == 30


@pytest.mark.parametrize("seed", range(5))
def test_step_stats_match_the_rows(tmp_path: Path, seed: int):
    """Statistics built block by block equal those of the whole step, for
    random currents, durations, block sizes and a pause in the middle."""
    rng = np.random.default_rng(seed)
    current = float(rng.uniform(-5e-3, 5e-3))
    n = int(rng.integers(50, 400))
    seen = {}

    def plan(params, cell):
        seen["r"] = yield ConstantCurrent(current=current, limits=Limits(max_time=float(n)), sample_period=1.0)
        return {}

    channel = ResistorChannel(resistance=float(rng.uniform(10, 1000)), chunk=int(rng.integers(1, 40)))
    Engine(channel, sinks=[RunFileWriter(tmp_path / "s.h5")]).run(make_protocol(plan), {"x": 1.0}, CELL)
    result = seen["r"]
    rows = np.asarray(result.data)
    stats = result.stats
    assert stats is not None and stats.n == len(rows) == n
    for name in ("t", "E", "I", "Q"):
        assert stats.minimum[name] == pytest.approx(float(rows[name].min()))
        assert stats.maximum[name] == pytest.approx(float(rows[name].max()))
        assert stats.first[name] == pytest.approx(float(rows[name][0]))
        assert stats.last[name] == result.last[name] == pytest.approx(float(rows[name][-1]))
    assert np.isnan(stats.minimum["T"])  # nobody measured T: NaN, not a made-up number
    whole = SampleStats.of(rows)  # the same reduction over the whole step at once
    for part in ("first", "last", "minimum", "maximum"):
        np.testing.assert_array_equal(list(getattr(whole, part).values()), list(getattr(stats, part).values()))


def _retained_bytes(n_samples: int, out: Path) -> tuple[int, int]:
    """Python/numpy memory still held after a run of ``n_samples`` (engine,
    outcome and a protocol that kept every StepResult still alive), and the
    number of samples the run stored."""
    kept = []

    def plan(params, cell):
        per_step = 10_000
        for k in range(n_samples // per_step):
            result = yield ConstantCurrent(
                current=1e-3 if k % 2 else -1e-3, limits=Limits(max_time=float(per_step)), sample_period=1.0
            )
            kept.append(result)
        return {"steps": len(kept)}

    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        engine = Engine(ResistorChannel(chunk=500), sinks=[RunFileWriter(out, fsync=False)])
        outcome = engine.run(make_protocol(plan), {"x": 1.0}, CELL)
        gc.collect()
        retained = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert outcome.status == RunState.COMPLETED, outcome.error
    assert len(kept) == len(outcome.steps) == n_samples // 10_000
    with open_run(out) as run:
        stored = run.n_samples

    return retained, stored


def test_retained_memory_does_not_grow_with_the_samples(tmp_path: Path):
    small, n_small = _retained_bytes(100_000, tmp_path / "small.h5")
    large, n_large = _retained_bytes(1_000_000, tmp_path / "large.h5")
    assert (n_small, n_large) == (100_000, 1_000_000)
    sample_bytes = (n_large - n_small) * SAMPLE_DTYPE.itemsize  # 36 MB if the samples were kept
    # 90 more steps keep 90 more small StepResults (a few kB each), never their samples.
    assert large - small < 2_000_000, f"retained {small} B at 1e5 samples, {large} B at 1e6"
    assert large - small < sample_bytes / 15


def test_a_watcher_that_stops_reading_holds_a_bounded_number_of_rows():
    """The bus bounds a subscription by queued sample rows, not only by events:
    a watcher that never reads must not end up holding the run's samples."""
    steps = 6

    def plan(params, cell):
        for _ in range(steps):
            yield Rest(duration=20_000.0, sample_period=1.0)
        return {}

    engine = Engine(ResistorChannel(chunk=1000))
    idle = engine.bus.subscribe(max_rows=5_000)  # never read during the run
    outcome = engine.run(make_protocol(plan), {"x": 1.0}, CELL)
    assert outcome.status == RunState.COMPLETED
    events = idle.drain()
    held = sum(len(e.block) for e in events if isinstance(e, Samples))
    assert 0 < held <= 5_000 and idle.queued_rows == 0
    assert idle.dropped >= (steps * 20_000 - 5_000) // 1000
    # Control events are never dropped for data.
    assert sum(isinstance(e, StepEnded) for e in events) == steps
