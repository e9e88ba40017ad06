"""The HDF5 run file: round trip, live reading, crash safety, odd corners."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import h5py
import numpy as np
import pytest

from labctl.events import (
    RunEnded,
    RunInfo,
    RunStarted,
    Samples,
    SpectrumPoints,
    StatusChanged,
    StepEnded,
    StepStarted,
    Tick,
)
from labctl.steps import (
    SAMPLE_DTYPE,
    SPECTRUM_DTYPE,
    ConstantCurrent,
    ConstantVoltage,
    EndReason,
    Impedance,
    Limits,
    Rest,
    StepResult,
)
from labctl.storage import (
    Heartbeat,
    RunFileWriter,
    describe_run,
    effective_status,
    finalize_file,
    format_description,
    open_run,
    recover_file,
)
from labctl.storage.recover import lookup3

INFO = RunInfo(
    run_id="run-0001",
    protocol="test_protocol",
    protocol_version="1.2",
    parameters={"current_density_mA_cm2": 0.5, "temperatures_C": [25, 40, 60], "note": "Li‖SE‖Li"},
    cell={"id": "LLZO-7", "type": "Li|SE|Li", "area": 1.0e-4, "thickness": 5e-4},
    instrument={"driver": "sim", "model": "SimPot", "serial": "0001", "firmware": "1.0"},
    software={"labctl": "0.1.0", "python": sys.version.split()[0]},
    operator="Ada",
    started_at="2025-01-02T03:04:05+00:00",
    simulation={"seed": 7, "sigma": 1e-3},
)


def samples(start: int, n: int) -> np.ndarray:
    """Deterministic rows: row r has t = r, so any row's content is checkable."""
    block = np.empty(n, dtype=SAMPLE_DTYPE)
    r = np.arange(start, start + n, dtype=float)
    block["t"], block["E"], block["I"], block["Q"], block["T"] = r, 0.01 * r, 1e-3, 1e-3 * r, 25.0 + r % 3
    return block


def spectrum(n: int, offset: float = 0.0) -> np.ndarray:
    spec = np.zeros(n, dtype=SPECTRUM_DTYPE)
    for name in SPECTRUM_DTYPE.names:
        spec[name] = np.arange(n) + offset
    spec["freq"] = np.logspace(5, -1, n)
    spec["z_im"] = -np.linspace(1, 100, n)
    return spec


RESULTS = {
    "sigma_S_cm": 1.23e-3,
    "ea_eV": 0.42,
    "model": "arrhenius",
    "converged": True,
    "n_points": 3,
    "missing": None,
    "arrhenius": [
        {"T_C": 25.0, "sigma_S_cm": 1.0e-4, "fit": "R0-p(R1,CPE1)"},
        {"T_C": 40.0, "sigma_S_cm": 2.0e-4, "fit": "R0-p(R1,CPE1)"},
        {"T_C": 60.0, "sigma_S_cm": float("nan"), "fit": "failed"},
    ],
    "residuals": [0.1, -0.2, 0.05],
    "fit": {"R0": 10.0, "params": [1.0, 2.0]},
    "units": {"sigma_S_cm": "S/cm", "T_C": "degC", "ea_eV": "eV"},
}


def write_synthetic_run(path: Path, flush_interval: float = 0.5) -> dict:
    """A run with every kind of event; returns what a reader must find."""
    steps = [
        Rest(duration=10.0, sample_period=0.5, label="OCV"),
        ConstantCurrent(current=-5e-5, limits=Limits(max_charge=0.18), label="plate 0.5 mA/cm²"),
        Impedance(f_start=1e5, f_stop=0.1, points_per_decade=5),
        ConstantVoltage(voltage=0.01, vs_ocv=True, limits=Limits(steady_slope=1e-12, max_time=3600)),
    ]
    data = {0: [samples(0, 20)], 1: [samples(20, 7), samples(27, 1), samples(28, 500)], 2: [], 3: [samples(528, 3000)]}
    specs = {2: [spectrum(10), spectrum(16, offset=100.0)]}
    reasons = [EndReason.TIME, EndReason.CHARGE, EndReason.COMPLETED, EndReason.STEADY]
    w = RunFileWriter(path, flush_interval=flush_interval)
    w.handle(Tick(0.0))  # before the run: ignored
    w.handle(RunStarted(INFO))
    t = 0.0
    for i, step in enumerate(steps):
        w.handle(StepStarted(i, step, t))
        for j, block in enumerate(data[i]):
            w.handle(Samples(i, block))
            w.handle(Tick(float(block["t"][-1])))
            if i == 1 and j == 1:
                w.handle(StatusChanged("paused", 27.5, "operator pause"))
                w.handle(StatusChanged("running", 30.0, "resumed"))
        for block in specs.get(i, []):
            w.handle(SpectrumPoints(i, block))
        spec = np.concatenate(specs[i]) if i in specs else None
        w.handle(StepEnded(StepResult(i, step, reasons[i], t, 10.0 + i, 1e-3 * i, spectrum=spec, message=f"m{i}")))
        t += 10.0 + i
    w.handle(RunEnded("completed", results=RESULTS, ended_at="2025-01-02T04:00:00+00:00"))
    assert w.finalize_error is None
    w.close()
    return {"steps": steps, "data": data, "specs": specs, "reasons": reasons}


def same_rows(a: np.ndarray, b: np.ndarray) -> bool:
    """Bit-exact equality (NaN included)."""
    return a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes()


def test_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "run.h5"
    expected = write_synthetic_run(path)
    all_samples = np.concatenate([b for blocks in expected["data"].values() for b in blocks])
    all_spectra = np.concatenate(expected["specs"][2])
    with open_run(path) as run:
        assert run.status == run.stored_status == "completed"
        assert run.finalized
        m = run.meta
        for key in ("run_id", "protocol", "protocol_version", "operator", "started_at"):
            assert m[key] == getattr(INFO, key)
        for key in ("parameters", "cell", "instrument", "software", "simulation"):
            assert m[key] == getattr(INFO, key)
        assert m["writer_pid"] == os.getpid() and m["labctl_version"] and m["format"] == "labctl-run"
        assert run.ended_at == "2025-01-02T04:00:00+00:00" and run.error == ""
        assert json.dumps(run.results, sort_keys=True) == json.dumps(RESULTS, sort_keys=True)  # NaN too
        assert same_rows(run.samples(), all_samples)
        assert same_rows(run.spectra(), all_spectra)
        assert [e["state"] for e in run.events] == ["paused", "running"]
        assert run.events[0]["t_cell"] == 27.5 and run.events[0]["message"] == "operator pause"
        assert len(run.steps) == 4
        for i, rec in enumerate(run.steps):
            assert rec.index == i and rec.step == expected["steps"][i] and rec.kind == rec.step.kind
            assert rec.label == expected["steps"][i].label
            assert rec.end_reason is expected["reasons"][i]
            assert (rec.duration, rec.charge, rec.message) == (10.0 + i, 1e-3 * i, f"m{i}")
            blocks = expected["data"][i]
            want = np.concatenate(blocks) if blocks else np.empty(0, SAMPLE_DTYPE)
            assert same_rows(rec.data, want)
            if i == 2:
                assert same_rows(rec.spectrum, all_spectra)
            else:
                assert rec.spectrum is None
        hb = run.heartbeat
        assert hb is not None and hb.state == "completed" and hb.samples == len(all_samples)

    with h5py.File(path, "r") as f:  # the per-step views and results, for other tools
        names = sorted(f["by_step"])
        assert names == ["0000_Rest", "0001_ConstantCurrent", "0002_Impedance", "0003_ConstantVoltage"]
        g = f["by_step/0001_ConstantCurrent"]
        assert g["data"].is_virtual and g.attrs["end_reason"] == "charge"
        assert same_rows(g["data"][:], np.concatenate(expected["data"][1]))
        assert same_rows(f["by_step/0002_Impedance/spectrum"][:], all_spectra)
        assert "spectrum" not in f["by_step/0000_Rest"]
        res = f["results"]
        assert res.attrs["sigma_S_cm"] == RESULTS["sigma_S_cm"] and res.attrs["model"] == "arrhenius"
        table = res["arrhenius"][:]
        assert list(table["T_C"]) == [25.0, 40.0, 60.0] and np.isnan(table["sigma_S_cm"][2])
        assert json.loads(res["arrhenius"].attrs["units"]) == {"T_C": "degC", "sigma_S_cm": "S/cm"}
        assert list(res["residuals"][:]) == RESULTS["residuals"]
        assert res["fit"].attrs["R0"] == 10.0


def test_every_dataset_has_units(tmp_path: Path) -> None:
    path = tmp_path / "run.h5"
    write_synthetic_run(path)
    missing: list[str] = []
    with h5py.File(path, "r") as f:
        f.visititems(
            lambda name, obj: (
                missing.append(name) if isinstance(obj, h5py.Dataset) and "units" not in obj.attrs else None
            )
        )
        assert json.loads(f["samples"].attrs["units"]) == {"t": "s", "E": "V", "I": "A", "Q": "C", "T": "degC"}
        assert json.loads(f["spectra"].attrs["units"])["z_re"] == "ohm"
    assert missing == []


def test_moved_file_keeps_its_views(tmp_path: Path) -> None:
    path = tmp_path / "run.h5"
    expected = write_synthetic_run(path)
    (tmp_path / "elsewhere").mkdir()
    moved = tmp_path / "elsewhere" / "renamed.h5"
    shutil.move(path, moved)
    assert not path.exists()
    with h5py.File(moved, "r") as f:
        assert same_rows(f["by_step/0003_ConstantVoltage/data"][:], expected["data"][3][0])
    with open_run(moved) as run:
        assert same_rows(run.steps[3].data, expected["data"][3][0])


def test_describe_run(tmp_path: Path) -> None:
    path = tmp_path / "run.h5"
    write_synthetic_run(path)
    desc = describe_run(path)
    assert desc["status"] == "completed" and desc["protocol"] == "test_protocol"
    assert desc["samples"] == 3528 and desc["spectrum_points"] == 26
    assert [s["end_reason"] for s in desc["steps"]] == ["time", "charge", "completed", "steady"]
    assert [s["rows"] for s in desc["steps"]] == [20, 508, 0, 3000]
    assert desc["steps"][2]["spectrum_points"] == 26
    json.dumps(desc)  # JSON-friendly
    text = format_description(desc)
    assert "ConstantCurrent [plate 0.5 mA/cm²]: charge" in text and "status completed" in text


def test_failed_start_leaves_no_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "run.h5"

    def broken(self: RunFileWriter) -> None:
        raise OSError("disk on fire")

    monkeypatch.setattr(RunFileWriter, "_write_heartbeat", broken)
    with pytest.raises(OSError, match="disk on fire"):
        RunFileWriter(path).handle(RunStarted(INFO))
    assert not path.exists()


def test_existing_file_is_neither_clobbered_nor_removed(tmp_path: Path) -> None:
    path = tmp_path / "run.h5"
    path.write_bytes(b"precious")
    with pytest.raises(FileExistsError):
        RunFileWriter(path).handle(RunStarted(INFO))
    assert path.read_bytes() == b"precious"


def test_close_without_run_ended_is_interrupted(tmp_path: Path) -> None:
    path = tmp_path / "run.h5"
    with RunFileWriter(path) as w:
        w.handle(RunStarted(INFO))
        w.handle(StepStarted(0, Rest(duration=5.0), 0.0))
        w.handle(Samples(0, samples(0, 10)))
    with open_run(path) as run:
        assert run.status == run.stored_status == "interrupted"
        assert "before the run ended" in run.error
        assert run.steps[0].running and same_rows(run.steps[0].data, samples(0, 10))


def test_blocks_are_matched_by_field_name(tmp_path: Path) -> None:
    path = tmp_path / "run.h5"
    odd = np.zeros(3, dtype=[("I", "<f4"), ("t", "<f8"), ("E", "<f8")])  # other order, no Q/T
    odd["t"], odd["E"], odd["I"] = [1, 2, 3], [0.1, 0.2, 0.3], [1e-3, 2e-3, 3e-3]
    with RunFileWriter(path) as w:
        w.handle(RunStarted(INFO))
        w.handle(Samples(0, odd))
        w.handle(RunEnded("completed"))
    with open_run(path) as run:
        got = run.samples()
    assert list(got["t"]) == [1, 2, 3] and list(got["E"]) == [0.1, 0.2, 0.3]
    assert np.allclose(got["I"], [1e-3, 2e-3, 3e-3]) and np.isnan(got["Q"]).all()


def test_long_label_survives(tmp_path: Path) -> None:
    path = tmp_path / "run.h5"
    step = Rest(duration=1.0, label="ü" * 5000)
    with RunFileWriter(path) as w:
        w.handle(RunStarted(INFO))
        w.handle(StepStarted(0, step, 0.0))
        w.handle(StepEnded(StepResult(0, step, EndReason.TIME, 0.0, 1.0, 0.0)))
        w.handle(RunEnded("completed"))
    with open_run(path) as run:
        assert run.steps[0].step == step


def test_reader_in_the_writers_process(tmp_path: Path) -> None:
    """HDF5 shares a file between handles of one process: an open reader
    must not keep the writer from finalizing."""
    path = tmp_path / "run.h5"
    w = RunFileWriter(path, flush_interval=0.01)
    w.handle(RunStarted(INFO))
    w.handle(StepStarted(0, Rest(duration=1.0), 0.0))
    w.handle(Samples(0, samples(0, 100)))
    w.flush()
    with open_run(path) as run:
        assert run.status == "running" and run.n_samples == 100
        w.handle(Samples(0, samples(100, 50)))
        w.flush()
        run.refresh()
        assert run.n_samples == 150 and run.steps[0].running
        w.handle(StepEnded(StepResult(0, Rest(duration=1.0), EndReason.TIME, 0.0, 1.0, 0.0)))
        w.handle(RunEnded("aborted", error="operator abort"))
        assert w.finalize_error is None
        run.refresh()
        assert run.finalized and run.status == "aborted" and run.error == "operator abort"
        assert same_rows(run.steps[0].data, samples(0, 150))


def test_ticks_alone_keep_the_heartbeat_going(tmp_path: Path) -> None:
    """A slow EIS point sends no data for seconds; the engine's Ticks must
    still flush, or readers would call the run interrupted."""
    path = tmp_path / "run.h5"
    w = RunFileWriter(path, flush_interval=0.05)
    w.handle(RunStarted(INFO))
    with open_run(path) as run:
        first = run.heartbeat
        assert first is not None and first.state == "running"
        time.sleep(0.06)
        w.handle(Tick(42.0))
        run.refresh()
        hb = run.heartbeat
        assert hb is not None and hb.wall_time > first.wall_time and hb.t_cell == 42.0
        w.handle(StatusChanged("paused", 43.0))
        run.refresh()
        assert run.heartbeat is not None and run.heartbeat.state == "paused" and run.status == "running"
        w.handle(RunEnded("completed"))


def test_syncer() -> None:
    from labctl.storage.syncer import Syncer

    r, wfd = os.pipe()
    try:
        bad = Syncer(r)  # pipes cannot be synced: the error is kept for the writer to raise
        bad.request()
        deadline = time.monotonic() + 5
        while bad.error is None and time.monotonic() < deadline:
            time.sleep(0.005)
        bad.close()
        assert isinstance(bad.error, OSError)
    finally:
        os.close(r)
        os.close(wfd)


def test_fsync_off(tmp_path: Path) -> None:
    path = tmp_path / "run.h5"
    with RunFileWriter(path, fsync=False) as w:
        w.handle(RunStarted(INFO))
        w.handle(Samples(0, samples(0, 5)))
        assert w._syncer is None
        w.handle(RunEnded("completed"))
    with open_run(path) as run:
        assert run.status == "completed" and same_rows(run.samples(), samples(0, 5))


def test_effective_status_rules() -> None:
    now = 1000.0
    fresh = Heartbeat(wall_time=now - 1.0, t_cell=0.0, state="running", samples=0, spectra=0, steps=0)
    stale = Heartbeat(wall_time=now - 6.0, t_cell=0.0, state="paused", samples=0, spectra=0, steps=0)
    assert effective_status("completed", stale, now=now) == "completed"
    assert effective_status("running", fresh, now=now) == "running"
    assert effective_status("running", stale, now=now) == "interrupted"
    assert effective_status("running", stale, flush_interval=2.0, now=now) == "running"  # 5 flushes: 10 s
    assert effective_status("running", None, now=now) == "interrupted"
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    host = __import__("socket").gethostname()
    assert effective_status("running", fresh, pid=dead.pid, host=host, now=now) == "interrupted"
    assert effective_status("running", fresh, pid=dead.pid, host="elsewhere", now=now) == "running"
    assert effective_status("running", fresh, pid=os.getpid(), host=host, now=now) == "running"


# -- with a writer in another process ------------------------------------------------------

CHILD = textwrap.dedent(
    """
    import sys, time
    import numpy as np
    from labctl.events import RunEnded, RunInfo, RunStarted, Samples, StepStarted, Tick
    from labctl.steps import SAMPLE_DTYPE, Rest
    from labctl.storage import RunFileWriter

    path, mode, n_blocks = sys.argv[1], sys.argv[2], int(sys.argv[3])
    info = RunInfo(run_id="child", protocol="p", protocol_version="1", parameters={}, cell={},
                   instrument={}, software={})
    w = RunFileWriter(path, flush_interval=0.02)
    w.handle(RunStarted(info))
    w.handle(StepStarted(0, Rest(duration=1e9), 0.0))
    print("started", flush=True)
    row, reported = 0, -1
    for i in range(n_blocks):
        block = np.empty(250, dtype=SAMPLE_DTYPE)
        for name in SAMPLE_DTYPE.names:
            block[name] = np.arange(row, row + 250)
        w.handle(Samples(0, block))
        row += 250
        w.handle(Tick(float(row)))
        if w.rows_flushed != reported:
            reported = w.rows_flushed
            print("flushed", reported, flush=True)
        time.sleep(0.002)
    if mode == "hang":  # rows buffered but (normally) not flushed, then wait to be killed
        w.flush()
        block = np.empty(7, dtype=SAMPLE_DTYPE)
        for name in SAMPLE_DTYPE.names:
            block[name] = np.arange(row, row + 7)
        w.handle(Samples(0, block))
        print("hanging", w.rows_flushed, flush=True)
        time.sleep(60)
    w.handle(RunEnded("completed", results={"rows": row}))
    print("done", row, flush=True)
    """
)


def start_child(tmp_path: Path, mode: str, n_blocks: int) -> tuple[subprocess.Popen[str], Path]:
    script = tmp_path / "child.py"
    script.write_text(CHILD)
    path = tmp_path / "live.h5"
    child = subprocess.Popen(
        [sys.executable, str(script), str(path), mode, str(n_blocks)], stdout=subprocess.PIPE, text=True
    )
    assert child.stdout is not None
    assert child.stdout.readline().strip() == "started"
    return child, path


def check_rows(data: np.ndarray) -> None:
    assert np.array_equal(data["t"], np.arange(len(data), dtype=float))
    assert np.array_equal(data["E"], data["t"])


def test_read_while_writing(tmp_path: Path) -> None:
    child, path = start_child(tmp_path, "finish", n_blocks=400)
    seen = []
    try:
        with open_run(path, timeout=5) as run:
            while True:
                run.refresh()
                seen.append(run.n_samples)
                if run.status != "running":
                    break
                assert run.heartbeat is not None and run.heartbeat.age < 2.0
                if run.steps:  # the first step row shows within a flush
                    check_rows(run.steps[0].data)  # a running step reads to the current end
                time.sleep(0.03)
            assert run.status == "completed"  # from the end record, maybe before finalization
            deadline = time.monotonic() + 10
            while not run.finalized and time.monotonic() < deadline:
                time.sleep(0.02)
                run.refresh()
            assert run.finalized and run.status == run.stored_status == "completed"
            assert run.results == {"rows": 100_000} and run.n_samples == 100_000
            check_rows(run.samples())
    finally:
        child.wait(timeout=20)
    growth = sorted(set(seen))
    assert len(growth) >= 4, growth  # saw the file grow, not just the end
    assert seen == sorted(seen)


def test_sigkill_keeps_everything_flushed(tmp_path: Path) -> None:
    child, path = start_child(tmp_path, "hang", n_blocks=60)
    assert child.stdout is not None
    flushed = None
    for line in child.stdout:
        if line.startswith("hanging"):
            flushed = int(line.split()[1])
            break
    assert flushed is not None and flushed > 0
    child.send_signal(signal.SIGKILL)
    child.wait(timeout=10)
    with open_run(path) as run:
        assert run.stored_status == "running"
        assert run.status == "interrupted"  # writer pid gone
        assert run.n_samples == flushed
        check_rows(run.samples())
        assert run.steps[0].running and run.steps[0].n_rows == flushed
    assert describe_run(path)["status"] == "interrupted"


def test_sigkill_while_writing_hard(tmp_path: Path) -> None:
    child, path = start_child(tmp_path, "finish", n_blocks=100_000)
    assert child.stdout is not None
    last = 0
    for line in child.stdout:
        if line.startswith("flushed"):
            last = int(line.split()[1])
            if last >= 20_000:
                break
    child.send_signal(signal.SIGKILL)
    child.wait(timeout=10)
    with open_run(path) as run:
        assert run.status == "interrupted"
        assert run.n_samples >= last  # everything up to the last flush, maybe a bit more
        check_rows(run.samples())
    with pytest.raises(OSError):
        h5py.File(path, "r")  # still flagged as open by the dead writer: only SWMR readers get in
    with pytest.raises(OSError):
        finalize_file(path)
    assert recover_file(path) == "interrupted"  # h5clear -s, then finalize as interrupted
    with h5py.File(path, "r") as f:
        assert f.attrs["status"] == "interrupted"
        n = f["samples"].shape[0]
        assert n >= last and f["by_step/0000_Rest/data"].shape == (n,)
        check_rows(f["by_step/0000_Rest/data"][:])
    assert recover_file(path) == "interrupted"  # idempotent


def test_recover_after_death_while_finalizing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The end record makes a run whole even if the process dies while
    finalizing (outside SWMR mode, where even SWMR readers are locked out)."""
    path = tmp_path / "run.h5"

    def die(p: Path) -> None:
        raise OSError("simulated")

    monkeypatch.setattr("labctl.storage.writer.finalize_file", die)
    w = RunFileWriter(path)
    w.handle(RunStarted(INFO))
    w.handle(Samples(0, samples(0, 10)))
    w.handle(RunEnded("failed", error="instrument fault", results={"x": 1}))
    assert isinstance(w.finalize_error, OSError)
    with open_run(path) as run:  # whole already, just not finalized
        assert run.status == "failed" and not run.finalized and run.results == {"x": 1}
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            f"import h5py, time; f = h5py.File({str(path)!r}, 'r+'); print(1, flush=True); time.sleep(60)",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert holder.stdout is not None and holder.stdout.readline().strip() == "1"
    with pytest.raises(RuntimeError, match="another process"):
        recover_file(path)  # never under a live process
    holder.send_signal(signal.SIGKILL)
    holder.wait(timeout=10)
    with pytest.raises(OSError, match="recover_file"):
        open_run(path, timeout=0.1)
    assert recover_file(path) == "failed"
    with open_run(path) as run:
        assert run.finalized and run.error == "instrument fault" and run.results == {"x": 1}
        assert same_rows(run.samples(), samples(0, 10))


def test_recover_refuses_a_live_run(tmp_path: Path) -> None:
    path = tmp_path / "run.h5"
    with RunFileWriter(path) as w:
        w.handle(RunStarted(INFO))
        with pytest.raises(RuntimeError, match="alive"):
            recover_file(path)
        w.handle(RunEnded("completed"))
    assert recover_file(path) == "completed"


def test_lookup3_reference_values() -> None:
    """Known answers from lookup3.c's self-test (HDF5's metadata checksum)."""
    assert lookup3(b"") == 0xDEADBEEF
    assert lookup3(b"", 0xDEADBEEF) == 0xBD5B7DDE
    assert lookup3(b"Four score and seven years ago") == 0x17770551
    assert lookup3(b"Four score and seven years ago", 1) == 0xCD628161
