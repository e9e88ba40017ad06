"""Run files of every protocol for the report and export tests: each protocol
run once per session on the simulator (virtual clock), with parameters
shortened so all of them together take a few seconds; plus a run cut short
(interrupted) and one still being written, copied step by step from a real run."""

from __future__ import annotations

from pathlib import Path

from labctl.events import RunStarted, Samples, StepEnded, StepStarted
from labctl.runner import prepare_run
from labctl.steps import StepResult
from labctl.storage import RunFileWriter, open_run

CELL_ID = "LLZO-42"

#: protocol -> (parameters, simulated truth). Shortened, never changed in kind.
CASES: dict[str, tuple[dict[str, str], dict[str, str]]] = {
    "eis": ({"f_start": "1e5", "points_per_decade": "6"}, {"sigma": "2e-4", "thickness": "300"}),
    "arrhenius": ({"temperatures": "20,40,60,80", "settle_time": "60", "points_per_decade": "5"}, {"ea": "0.4"}),
    "transference": ({"points_per_decade": "5"}, {"t_plus": "0.4"}),
    "lsv": ({"upper": "5.0", "rate": "5"}, {"esw": "4.3"}),
    "ccd": ({"max": "1.0"}, {"ccd": "0.35"}),
    "li_cu_ce": ({"n": "4", "q_t": "2", "q_c": "0.5"}, {"ce": "0.97"}),
    "cycling": ({"cycles": "3", "half_cycle": "0.25"}, {}),
    "leads": ({"points_per_decade": "4"}, {}),
    "formation": ({"cycles": "2"}, {}),
    "rate_capability": ({"rates": "0.5,1", "cycles": "1", "return_cycles": "1"}, {}),
    "long_cycling": ({"cycles": "3"}, {}),
}


def make_runs(out: Path) -> dict[str, Path]:
    paths = {}
    for name, (params, sim) in CASES.items():
        prepared = prepare_run(name, params=params, sim=sim, out_dir=out / name, cell_id=CELL_ID, operator="Ada")
        outcome = prepared.execute()
        assert outcome.status.value == "completed", (name, outcome.error)
        paths[name] = prepared.path
    return paths


def partial_copy(source: Path, target: Path, completed: int) -> RunFileWriter:
    """A writer holding the first ``completed`` steps of ``source`` and half of the
    next one (started, not ended). Close it for an interrupted run; keep it open
    for a running one."""
    from labctl.events import RunInfo

    with open_run(source) as run:
        meta = run.meta
        info = RunInfo(
            run_id="partial-" + str(meta["run_id"]),
            protocol=str(meta["protocol"]),
            protocol_version=str(meta["protocol_version"]),
            parameters=dict(meta["parameters"]),
            cell=dict(meta["cell"]),
            instrument=dict(meta["instrument"]),
            software=dict(meta.get("software") or {}),
            operator="Ada",
            started_at=str(meta["started_at"]),
        )
        records = run.steps[: completed + 1]
        steps = [(r, r.data) for r in records]
    writer = RunFileWriter(target, flush_interval=0.01)
    writer.handle(RunStarted(info))
    for k, (rec, data) in enumerate(steps):
        writer.handle(StepStarted(rec.index, rec.step, rec.t_start))
        if k < completed:
            writer.handle(Samples(rec.index, data))
            writer.handle(
                StepEnded(StepResult(rec.index, rec.step, rec.end_reason, rec.t_start, rec.duration, rec.charge))
            )
        else:
            writer.handle(Samples(rec.index, data[: len(data) // 2]))
    writer.flush()
    return writer


_RUNS: dict[str, Path] = {}


def shared_runs(tmp_path_factory) -> dict[str, Path]:  # type: ignore[no-untyped-def]
    """The run of every protocol, made once per session (both report and export tests use it)."""
    if not _RUNS:
        _RUNS.update(make_runs(tmp_path_factory.mktemp("protocol_runs")))
    return dict(_RUNS)


_REPLAYED: dict[Path, dict] = {}  # type: ignore[type-arg]


def replayed(path: Path) -> dict:  # type: ignore[type-arg]
    """``labctl analyze``'s results for a run file (computed once: EIS fits take a moment)."""
    from labctl.analyze import replay_run

    if path not in _REPLAYED:
        _REPLAYED[path] = replay_run(path, {})["results"]
    return _REPLAYED[path]
