"""Running protocols on the cycler drivers against their wire emulators (shared by the
Neware, Maccor and Arbin end-to-end tests).

Each labctl channel runs in its own thread with its own Engine and run file, as the
queue runs one job per channel. Lockstep: every emulated channel has its own
``VirtualClock``, shared with that channel's driver only (``channel_clocks``), so a
channel's cell time passes exactly while its driver waits, whatever the other
channel's thread does, and the runs do not depend on the host's speed.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from labctl.clock import VirtualClock
from labctl.engine import Engine, RunOutcome
from labctl.params import Param
from labctl.protocol import Cell, Protocol
from labctl.steps import ConstantCurrent, ConstantVoltage, Limits, Rest
from labctl.storage import RunFileWriter

#: A C/2 formation-like cycle on the emulated full cell (2 mAh at 1 cm²): CC charge
#: 1 mA to 4.2 V, CV to 0.2 mA, rest, CC discharge 1 mA to 3.0 V.
CHARGE_A, CUTOFF_A, V_HIGH, V_LOW = 1e-3, 2e-4, 4.2, 3.0


def cycle_protocol(sample_period: float = 30.0, rest: float = 300.0) -> Protocol:
    def plan(values: Mapping[str, Any], cell: Cell):  # a protocol generator
        yield Rest(duration=60.0, sample_period=sample_period)
        cc = yield ConstantCurrent(
            current=CHARGE_A, limits=Limits(voltage_above=V_HIGH, max_time=5 * 3600), sample_period=sample_period
        )
        cv = yield ConstantVoltage(
            voltage=V_HIGH, limits=Limits(current_below=CUTOFF_A, max_time=3 * 3600), sample_period=sample_period
        )
        yield Rest(duration=rest, sample_period=sample_period)
        dis = yield ConstantCurrent(
            current=-CHARGE_A, limits=Limits(voltage_below=V_LOW, max_time=5 * 3600), sample_period=sample_period
        )
        return {
            "charge_C": cc.charge + cv.charge,
            "discharge_C": -dis.charge,
            "ends": [cc.end_reason.value, cv.end_reason.value, dis.end_reason.value],
        }

    return Protocol(
        name="cycler_cycle",
        version="1",
        title="one CC-CV cycle",
        cell_type="full",
        params=(Param("x", 1.0),),
        plan=plan,
        step_kinds=frozenset({"Rest", "ConstantCurrent", "ConstantVoltage"}),
    )


class BlockCounter:
    """A sink counting the sample blocks of each step (a run file fills live when
    a step's samples arrive in many blocks, not at its end)."""

    def __init__(self) -> None:
        self.blocks: dict[int, int] = {}

    def handle(self, event: Any) -> None:
        from labctl.events import Samples

        if isinstance(event, Samples):
            self.blocks[event.index] = self.blocks.get(event.index, 0) + 1


@dataclass
class ChannelRun:
    name: str
    outcome: RunOutcome
    path: Path
    channel: Any


def run_channels(
    make_channel: Callable[[str, VirtualClock], Any],
    names: list[str],
    clocks: Mapping[str, VirtualClock],
    tmp_path: Path,
    protocol: Protocol | None = None,
    sinks: Callable[[str], list[Any]] | None = None,
) -> dict[str, ChannelRun]:
    """Run ``protocol`` on every channel in ``names`` at once, one thread each."""
    proto = protocol or cycle_protocol()
    out: dict[str, ChannelRun] = {}
    errors: list[BaseException] = []

    def one(name: str) -> None:
        try:
            channel = make_channel(name, clocks[name])
            path = tmp_path / f"{name}.h5"
            writer = RunFileWriter(path)
            try:
                extra = sinks(name) if sinks is not None else []
                outcome = Engine(channel, sinks=[*extra, writer]).run(proto, {"x": 1.0}, Cell("full", 1.0, 100.0))
            finally:
                writer.close()
            out[name] = ChannelRun(name, outcome, path, channel)
        except BaseException as exc:  # reported by the test thread
            errors.append(exc)

    threads = [threading.Thread(target=one, args=(n,), daemon=True) for n in names]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    if errors:
        raise errors[0]
    assert set(out) == set(names), "a channel's run did not finish"
    return out


def fault_ends_only_its_channel(
    server: Any,
    make_channel: Callable[[str, VirtualClock], Any],
    clocks: Mapping[str, VirtualClock],
    tmp_path: Path,
    *,
    kind: str,
    reason: str,
    after: int,
    check_other: Callable[[str, Path], Any],
) -> None:
    """Channel 1 (wire 0) gets fault ``kind`` after ``after`` replies about it (a dropped link
    twice more, longer than the drivers' 2 reconnections); its run fails with ``reason`` in
    the outcome and the file, its output off, while channel 2 completes untouched."""
    import re

    from labctl.engine import RunState
    from labctl.storage import open_run

    faulty, other = sorted(clocks)
    server.inject(0, kind, after=after)
    if kind == "drop-link":
        for _ in range(2):
            server.inject(0, kind)
    runs = run_channels(make_channel, [faulty, other], clocks, tmp_path)
    failed = runs[faulty].outcome
    assert failed.status == RunState.FAILED
    assert failed.error is not None and re.search(reason, failed.error), failed.error
    cell = server.cell(0)
    assert cell.status in ("finish", "protect") and not cell.output_on, "the faulty channel must be off"
    with open_run(runs[faulty].path) as rf:
        assert rf.status == "failed" and re.search(reason, rf.error)
    assert runs[other].outcome.status == RunState.COMPLETED, runs[other].outcome.error
    check_other(other, runs[other].path)
