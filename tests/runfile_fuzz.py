"""Hostile variants of real run files, and a check of what ``labctl show`` and
``labctl analyze`` do with them (used by tests/test_runfile_fuzz.py and
bench/fuzz_runfiles.py).

Each case copies a real run file and applies one or more seeded mutations:
attributes and JSON of wrong types, huge or deeply nested JSON, external raw
storage / external links / virtual datasets pointing at *canary* files,
huge declared shapes, hostile step rows, truncation and byte flips. The
canary files carry a unique token and have their access time wound back
before each case, so a read of them is seen two ways: the token in the
output, and the file's access time moving (ext4/tmpfs ``relatime`` updates
it on the first read after a modification).
"""

from __future__ import annotations

import json
import os
import random
import resource
import shutil
import subprocess
import sys
import tempfile
import time
import traceback
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import h5py
import numpy as np
from click.testing import CliRunner

from labctl.steps import SAMPLE_DTYPE
from labctl.storage import layout as L

EXIT_OK = {0, 1, 2}


# -- corpus ---------------------------------------------------------------------------


def build_corpus(folder: Path) -> list[Path]:
    """Real run files: an EIS run (spectra) and a short cycling run, both
    completed, plus an unfinalized copy of each (status "running", no end
    record, last step cut, writer pid that is not alive): what a killed
    writer leaves, as far as the reader is concerned."""
    from labctl.runner import prepare_run

    folder.mkdir(parents=True, exist_ok=True)
    bases = []
    for protocol, params in (
        ("eis", {}),
        ("cycling", {"cycles": "2", "half_cycle": "0.05", "sample_period": "30"}),
    ):
        prepared = prepare_run(protocol, params=params, sim={}, out_dir=folder / protocol)
        outcome = prepared.execute()
        assert outcome.status.value == "completed", outcome.error
        bases.append(prepared.path)
    for path in list(bases):
        cut = path.with_name(path.stem + "_cut.h5")
        shutil.copy(path, cut)
        _unfinalize(cut)
        bases.append(cut)
    return bases


def _unfinalize(path: Path) -> None:
    with h5py.File(path, "r+") as f:
        f.attrs["status"] = "running"
        f.attrs["writer_pid"] = _dead_pid()
        for name in (L.RESULTS, L.BY_STEP):
            if name in f:
                del f[name]
        f[L.END].resize((0,))
        steps = f[L.STEPS]
        row = steps[-1]
        row["row_stop"] = row["spec_stop"] = -1
        row["end_reason"] = b""
        steps[-1] = row


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


# -- canaries --------------------------------------------------------------------------


@dataclass
class Canaries:
    """Files outside the run file that a hostile run file points at."""

    token: str
    raw_end: Path  # bytes of an end record whose results carry the token
    raw_steps: Path  # STEP_ROW_DTYPE rows labelled with the token
    raw_samples: Path
    h5: Path  # an HDF5 file with /steps, /end, /samples, /spectra as above

    @property
    def paths(self) -> list[Path]:
        return [self.raw_end, self.raw_steps, self.raw_samples, self.h5]

    def arm(self) -> dict[Path, float]:
        """Wind the access times back so the next read of any shows."""
        times = {}
        for p in self.paths:
            st = os.stat(p)
            os.utime(p, (st.st_mtime - 1000.0, st.st_mtime))
            times[p] = os.stat(p).st_atime
        return times

    def touched(self, armed: dict[Path, float]) -> list[str]:
        return [p.name for p, t in armed.items() if os.stat(p).st_atime != t]


def make_canaries(folder: Path) -> Canaries:
    folder.mkdir(parents=True, exist_ok=True)
    token = f"CANARY-{uuid.uuid4().hex}"
    end = json.dumps({"status": "completed", "error": token, "results": {"leak": token}}).encode()
    steps = np.zeros(4, dtype=L.STEP_ROW_DTYPE)
    steps["label"] = token.encode()
    steps["kind"] = b"Rest"
    steps["message"] = token.encode()
    steps["step"] = json.dumps({"kind": "Rest", "duration": 1.0, "label": token}).encode()
    samples = np.full(64, np.nan, dtype=SAMPLE_DTYPE)
    paths = Canaries(token, folder / "end.json", folder / "steps.bin", folder / "samples.bin", folder / "canary.h5")
    paths.raw_end.write_bytes(end)
    paths.raw_steps.write_bytes(steps.tobytes())
    paths.raw_samples.write_bytes(samples.tobytes())
    with h5py.File(paths.h5, "w") as f:
        f[L.STEPS] = steps
        f[L.END] = np.frombuffer(end, dtype=np.uint8)
        f[L.SAMPLES] = samples
        f.attrs["secret"] = token
    return paths


# -- mutations -------------------------------------------------------------------------

Mutation = Callable[[random.Random, h5py.File, Canaries], str]

_JSON_KEYS = ("cell", "parameters", "instrument", "results", "software", "simulation")
_TEXT_KEYS = ("format", "status", "protocol", "run_id", "operator", "started_at", "ended_at", "error")
_OTHER_KEYS = ("format_version", "writer_pid", "writer_host", "flush_interval")


def _deep(rng: random.Random) -> str:
    depth = rng.choice([65, 200, 1000, 5000, 100_000])
    if rng.random() < 0.5:
        return "[" * depth + "]" * depth
    return '{"a":' * depth + "1" + "}" * depth


def _hostile_json(rng: random.Random) -> str:
    return rng.choice(
        [
            "null",
            "[]",
            "[1, 2, 3]",
            '"text"',
            "1e999",
            "NaN",
            "-Infinity",
            "{",
            "",
            "\x00\x01",
            '{"area_cm2": null, "thickness_um": 100}',
            '{"area_cm2": "x", "thickness_um": 100}',
            '{"area_cm2": -1, "thickness_um": 100}',
            '{"area_cm2": NaN, "thickness_um": 100}',
            '{"area_cm2": 1e308, "thickness_um": 1e-308}',
            '{"area_cm2": [1], "thickness_um": {"x": 1}}',
            '{"id": [1], "type": {"a": 1}, "area_cm2": 1, "thickness_um": 100}',
            '{"ocv_V": "high", "area_cm2": 1, "thickness_um": 100}',
            '{"rates": "fast", "cycles": -5, "half_cycle": "NaN"}',
            '{"label": "[/bold][red]x[/]"}',
            json.dumps({"x": "y" * (2 << 20)}),
            json.dumps(list(range(200_000))),
            "9" * 5000,
            _deep(rng),
            json.dumps({"area_cm2": 1, "thickness_um": 100, "nested": json.loads("[" * 60 + "]" * 60)}),
        ]
    )


def m_json_attr(rng: random.Random, f: h5py.File, c: Canaries) -> str:
    key = rng.choice(_JSON_KEYS)
    f.attrs[key] = _hostile_json(rng)
    return f"json attr {key}"


def m_attr_type(rng: random.Random, f: h5py.File, c: Canaries) -> str:
    key = rng.choice(_JSON_KEYS + _TEXT_KEYS + _OTHER_KEYS)
    value = rng.choice(
        [
            np.int64(-1),
            np.float64("nan"),
            np.float64("inf"),
            np.arange(10),
            np.zeros((100_000,), dtype=np.int8),
            b"\xff\xfe\xfd",
            "x" * 200_000,
            "[/]",
            "running",
            "interrupted",
            np.int64(2**62),
            np.array([b"a", b"b"]),
            np.zeros(3, dtype=[("a", "<i4"), ("b", "<f8")]),
            h5py.Empty("f"),
            "",
        ]
    )
    f.attrs[key] = value
    return f"attr {key} type"


def m_delete_attr(rng: random.Random, f: h5py.File, c: Canaries) -> str:
    key = rng.choice(_JSON_KEYS + _TEXT_KEYS + _OTHER_KEYS)
    if key in f.attrs:
        del f.attrs[key]
    return f"delete attr {key}"


def m_many_attrs(rng: random.Random, f: h5py.File, c: Canaries) -> str:
    for i in range(rng.choice([300, 2000])):
        f.attrs[f"extra{i}"] = i
    return "many attrs"


def m_end_record(rng: random.Random, f: h5py.File, c: Canaries) -> str:
    text = rng.choice(
        [
            _hostile_json(rng),
            json.dumps({"status": "weird"}),
            json.dumps({"status": "completed", "results": [1, 2]}),
            json.dumps({"status": "completed", "full_steps": [1]}),
            json.dumps({"status": "completed", "full_steps": {"x": 1}}),
            json.dumps({"status": "completed", "full_steps": {"0": "[" * 3000 + "]" * 3000}}),
            json.dumps({"status": "failed", "error": {"a": 1}, "ended_at": 5}),
        ]
    )
    _replace(f, L.END, data=np.frombuffer(text.encode("utf-8", "surrogatepass"), dtype=np.uint8), maxshape=(None,))
    f.attrs["status"] = "running"  # the end record is read for unfinalized files
    return "end record"


def m_external_storage(rng: random.Random, f: h5py.File, c: Canaries) -> str:
    name, source, dtype = rng.choice(
        [
            (L.END, c.raw_end, np.dtype(np.uint8)),
            (L.STEPS, c.raw_steps, L.STEP_ROW_DTYPE),
            (L.SAMPLES, c.raw_samples, SAMPLE_DTYPE),
            ("results/leak", c.raw_end, np.dtype(np.uint8)),
            ("by_step/leak", c.raw_samples, SAMPLE_DTYPE),
        ]
    )
    n = os.path.getsize(source) // dtype.itemsize
    if name in f:
        del f[name]
    f.create_dataset(name, shape=(n,), dtype=dtype, external=[(str(source), 0, h5py.h5f.UNLIMITED)])
    if name == L.END:
        f.attrs["status"] = "running"
    return f"external storage {name}"


def m_external_link(rng: random.Random, f: h5py.File, c: Canaries) -> str:
    name = rng.choice([L.STEPS, L.END, L.SAMPLES, "results/leak", "by_step/extra"])
    target = {L.SAMPLES: L.SAMPLES, L.END: L.END}.get(name, L.STEPS)
    if name in f:
        del f[name]
    f[name] = h5py.ExternalLink(str(c.h5), f"/{target}")
    if name == L.END:
        f.attrs["status"] = "running"
    return f"external link {name}"


def m_virtual_other_file(rng: random.Random, f: h5py.File, c: Canaries) -> str:
    name, source, dtype = rng.choice(
        [
            (L.STEPS, L.STEPS, L.STEP_ROW_DTYPE),
            (L.END, L.END, np.dtype(np.uint8)),
            (L.SAMPLES, L.SAMPLES, SAMPLE_DTYPE),
            ("by_step/zz_leak", L.SAMPLES, SAMPLE_DTYPE),
            ("by_step/zz_self", None, SAMPLE_DTYPE),
        ]
    )
    with h5py.File(c.h5, "r") as canary:
        n = canary[source or L.SAMPLES].shape[0]
    layout = h5py.VirtualLayout(shape=(n,), dtype=dtype)
    if source is None:  # "." but onto a dataset the writer never views
        layout[:] = h5py.VirtualSource(".", f"/{L.STEPS}", shape=(n,), dtype=dtype)
    else:
        layout[:] = h5py.VirtualSource(str(c.h5), f"/{source}", shape=(n,), dtype=dtype)
    if name in f:
        del f[name]
    f.create_virtual_dataset(name, layout)
    if name == L.END:
        f.attrs["status"] = "running"
    return f"virtual {name}"


def m_links(rng: random.Random, f: h5py.File, c: Canaries) -> str:
    name = rng.choice([L.SAMPLES, L.STEPS, L.END, L.HEARTBEAT])
    kind = rng.choice(["soft", "dangling", "cycle"])
    if kind == "cycle":
        g = f.require_group("loop")
        g["again"] = g
        return "hard link cycle"
    del f[name]
    f[name] = h5py.SoftLink(f"/{L.STEPS}" if kind == "soft" else "/nowhere")
    return f"{kind} link {name}"


def m_huge_shape(rng: random.Random, f: h5py.File, c: Canaries) -> str:
    name, dtype = rng.choice(
        [
            (L.SAMPLES, SAMPLE_DTYPE),
            (L.SPECTRA, np.dtype([(n, "<f8") for n in ("freq", "z_re", "z_im", "E_dc", "I_dc", "t", "T")])),
            (L.STEPS, L.STEP_ROW_DTYPE),
            (L.EVENTS, L.EVENT_DTYPE),
            (L.END, np.dtype(np.uint8)),
            (L.HEARTBEAT, L.HEARTBEAT_DTYPE),
        ]
    )
    rows = rng.choice([10**6, 10**8, 10**10, 2**40])
    chunk = rng.choice([1024, 16384, 1 << 20])
    chunk = min(chunk, max(1, (64 << 20) // dtype.itemsize))  # over the reader's bound, cheap to write
    _replace(f, name, shape=(rows,), dtype=dtype, chunks=(chunk,), maxshape=(None,), compression="gzip")
    if rng.random() < 0.5:
        f[name][: min(chunk, 1024)] = np.zeros(min(chunk, 1024), dtype=dtype)
    if name in (L.STEPS, L.END):
        f.attrs["status"] = rng.choice(["running", "completed"])
    return f"huge shape {name} {rows}"


def m_big_chunk(rng: random.Random, f: h5py.File, c: Canaries) -> str:
    rows = 1 << 21  # 80 MiB chunk of samples, a few kB compressed
    _replace(f, L.SAMPLES, shape=(rows,), dtype=SAMPLE_DTYPE, chunks=(rows,), maxshape=(None,), compression="gzip")
    f[L.SAMPLES][:10] = np.zeros(10, dtype=SAMPLE_DTYPE)
    return "big chunk"


def m_wrong_dataset(rng: random.Random, f: h5py.File, c: Canaries) -> str:
    name = rng.choice([L.SAMPLES, L.SPECTRA, L.STEPS, L.HEARTBEAT, L.EVENTS, L.END])
    kind = rng.choice(["float32", "2d", "group", "delete", "scalar", "string"])
    if kind == "delete":
        del f[name]
    elif kind == "group":
        del f[name]
        f.create_group(name)
    elif kind == "float32":
        _replace(f, name, data=np.zeros(5, dtype=np.float32))
    elif kind == "2d":
        _replace(f, name, data=np.zeros((3, 4)))
    elif kind == "scalar":
        _replace(f, name, data=np.float64(1.0))
    else:
        _replace(f, name, data=np.array([b"x" * 10] * 3))
    return f"{kind} {name}"


def m_step_rows(rng: random.Random, f: h5py.File, c: Canaries) -> str:
    steps = f[L.STEPS]
    if steps.shape[0] == 0:
        return "no steps"
    pos = rng.randrange(steps.shape[0])
    row = steps[pos]
    fld = rng.choice(
        ["row_start", "row_stop", "spec_start", "spec_stop", "end_reason", "step", "kind", "label", "index"]
    )
    if fld in ("row_start", "row_stop", "spec_start", "spec_stop"):
        row[fld] = rng.choice([-5, -1, 10**15, -(2**62), 2**62, int(row[fld]) + 1])
    elif fld == "end_reason":
        row[fld] = rng.choice([b"bogus", b"", b"\xff\xfe", b"completed"])
    elif fld == "step":
        row[fld] = rng.choice(
            [
                b"[" * 4000,
                b"{" * 3000,
                b"[]",
                b'{"kind": "ConstantCurrent"}',
                b'{"kind": "Rest", "duration": "x"}',
                b'{"kind": "Nope", "label": [1]}',
                b'{"label": {"a": 1}}',
                b"\xff" * 100,
                b'{"kind": "Rest", "duration": 1e999}',
            ]
        )
    elif fld == "index":
        row[fld] = rng.choice([-1, 2**31 - 1])
    else:
        row[fld] = rng.choice([b"[/bold]", b"\xff\xfe", b"x" * 128, b"[red]\\[/red]"])
    steps[pos] = row
    if rng.random() < 0.5:
        f.attrs["status"] = "running"
        f.attrs["writer_pid"] = _DEAD_PID
    return f"step row {pos}.{fld}"


def m_heartbeat(rng: random.Random, f: h5py.File, c: Canaries) -> str:
    hb = f[L.HEARTBEAT]
    row = hb[0]
    row["wall_time"] = rng.choice([np.inf, -np.inf, np.nan, 1e300, -1.0, time.time()])
    row["state"] = rng.choice([b"running", b"\xff", b"[/x]"])
    hb[0] = row
    f.attrs["status"] = "running"
    f.attrs["writer_pid"] = rng.choice([_DEAD_PID, os.getpid(), 1])
    f.attrs["writer_host"] = rng.choice(["elsewhere", os.uname().nodename])
    return "heartbeat"


def m_hostile_results(rng: random.Random, f: h5py.File, c: Canaries) -> str:
    g = f.require_group(L.RESULTS)
    name = f"x{rng.randrange(1000)}"
    g.attrs[name] = _hostile_json(rng)
    return "results group"


STRUCTURED: list[Mutation] = [
    m_json_attr,
    m_json_attr,
    m_attr_type,
    m_attr_type,
    m_delete_attr,
    m_many_attrs,
    m_end_record,
    m_external_storage,
    m_external_storage,
    m_external_link,
    m_external_link,
    m_virtual_other_file,
    m_virtual_other_file,
    m_links,
    m_huge_shape,
    m_huge_shape,
    m_big_chunk,
    m_wrong_dataset,
    m_step_rows,
    m_step_rows,
    m_heartbeat,
    m_hostile_results,
]

_DEAD_PID = 0  # set by make_case's caller (build_cases) once


def _replace(f: h5py.File, name: str, **kwargs: object) -> None:
    attrs = {}
    if name in f:
        if isinstance(f[name], h5py.Dataset):
            attrs = dict(f[name].attrs)
        del f[name]
    ds = f.create_dataset(name, **kwargs)
    for k, v in attrs.items():
        ds.attrs[k] = v


def truncate(rng: random.Random, path: Path) -> str:
    size = path.stat().st_size
    cut = rng.choice([rng.randrange(0, 4096), rng.randrange(size // 2, size), rng.randrange(0, size)])
    with open(path, "r+b") as fh:
        fh.truncate(cut)
    return f"truncated at {cut}"


def flip_bytes(rng: random.Random, path: Path) -> str:
    size = path.stat().st_size
    n = rng.choice([1, 2, 5, 20, 100])
    with open(path, "r+b") as fh:
        for _ in range(n):
            # Metadata sits mostly near the start and in small blocks throughout.
            offset = rng.randrange(min(size, 8192)) if rng.random() < 0.6 else rng.randrange(size)
            fh.seek(offset)
            b = fh.read(1)
            fh.seek(offset)
            fh.write(bytes([(b[0] if b else 0) ^ (1 << rng.randrange(8))]))
    return f"{n} byte flips"


@dataclass(frozen=True)
class Case:
    path: Path
    description: str


def make_case(rng: random.Random, base: Path, out: Path, canaries: Canaries) -> Case:
    """One hostile variant of ``base`` at ``out``."""
    global _DEAD_PID
    if not _DEAD_PID:
        _DEAD_PID = _dead_pid()
    shutil.copy(base, out)
    roll = rng.random()
    done = [base.stem[-12:]]
    if roll < 0.12:
        done.append(truncate(rng, out))
    elif roll < 0.30:
        done.append(flip_bytes(rng, out))
    else:
        with h5py.File(out, "r+", libver=("v110", "latest")) as f:
            for _ in range(rng.choice([1, 1, 1, 2, 3])):
                mutation = rng.choice(STRUCTURED)
                try:
                    done.append(mutation(rng, f, canaries))
                except (KeyError, ValueError, TypeError, OSError, RuntimeError) as exc:
                    done.append(f"{mutation.__name__} not applicable ({type(exc).__name__})")
    return Case(out, "; ".join(done))


# -- running the CLI on a case -------------------------------------------------------------


@dataclass
class Outcome:
    case: Case
    command: str
    exit_code: int
    output: str
    seconds: float
    traceback: str = ""
    canary_in_output: bool = False
    canary_files_read: list[str] = field(default_factory=list)
    max_rss_mb: float | None = None  # subprocess cases only

    @property
    def ok(self) -> bool:
        return (
            not self.traceback
            and self.exit_code in EXIT_OK
            and not self.canary_in_output
            and not self.canary_files_read
            and self.seconds < 20.0
            and (self.max_rss_mb is None or self.max_rss_mb < 1024.0)
        )

    def line(self) -> str:
        what = self.traceback.strip().splitlines()[-1] if self.traceback else self.output.strip()[-200:]
        flags = [
            name
            for name, bad in (
                ("traceback", self.traceback),
                ("canary in output", self.canary_in_output),
                (f"canary files read {self.canary_files_read}", self.canary_files_read),
                (f"rss {self.max_rss_mb} MB", self.max_rss_mb is not None and self.max_rss_mb >= 1024.0),
            )
            if bad
        ]
        return f"{self.command} exit {self.exit_code} {self.seconds:.2f}s {flags} [{self.case.description}]: {what}"


COMMANDS = (("show",), ("show", "--json"), ("analyze", "--json"))


def run_in_process(case: Case, canaries: Canaries, args: tuple[str, ...]) -> Outcome:
    from labctl.cli import main

    armed = canaries.arm()
    runner = CliRunner()
    t0 = time.monotonic()
    result = runner.invoke(main, [args[0], str(case.path), *args[1:]], catch_exceptions=True)
    seconds = time.monotonic() - t0
    tb = ""
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        tb = "".join(traceback.format_exception(result.exception))
    text = result.output + result.stderr
    return Outcome(
        case=case,
        command=" ".join(args),
        exit_code=result.exit_code,
        output=text,
        seconds=seconds,
        traceback=tb or ("Traceback" if "Traceback (most recent call last)" in text else ""),
        canary_in_output=canaries.token in text,
        canary_files_read=canaries.touched(armed),
    )


#: Runs argv[2:] and writes its peak RSS (kB) to the file argv[1]. A child
#: inherits its parent's peak RSS in ru_maxrss (fork copies the memory map's
#: high-water mark, exec keeps it), so the measured process must be the child
#: of a small launcher, not of this (large) test process.
_LAUNCHER = """
import os, sys
pid = os.fork()
if pid == 0:
    os.execv(sys.argv[2], sys.argv[2:])
_, status, usage = os.wait4(pid, 0)
with open(sys.argv[1], "w") as fh:
    fh.write(str(usage.ru_maxrss))
sys.exit(os.waitstatus_to_exitcode(status) & 0xFF)
"""


def run_subprocess(case: Case, canaries: Canaries, args: tuple[str, ...]) -> Outcome:
    """The real ``labctl`` in a child process, with its own peak RSS."""
    armed = canaries.arm()
    with tempfile.TemporaryDirectory() as tmp:
        out, rss = Path(tmp) / "out", Path(tmp) / "rss"
        argv = [sys.executable, "-c", _LAUNCHER, str(rss), sys.executable, "-m", "labctl.cli"]
        t0 = time.monotonic()
        with open(out, "wb") as sink:
            proc = subprocess.Popen(
                [*argv, args[0], str(case.path), *args[1:]],
                stdout=sink,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
            try:
                proc.wait(timeout=60.0)  # hang guard; the case then fails on time
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, 9)
                proc.wait()
        seconds = time.monotonic() - t0
        text = out.read_bytes().decode("utf-8", errors="replace")
        peak_kb = float(rss.read_text()) if rss.exists() else float("nan")
    return Outcome(
        case=case,
        command="subprocess " + " ".join(args),
        exit_code=proc.returncode,
        output=text,
        seconds=seconds,
        traceback="Traceback" if "Traceback (most recent call last)" in text else "",
        canary_in_output=canaries.token in text,
        canary_files_read=canaries.touched(armed),
        max_rss_mb=peak_kb / 1024.0,  # kB on Linux
    )


#: labctl's read watchdog in the fuzz runs: a hang ends as exit 1 within the 20 s per case.
READ_TIMEOUT_S = 15.0


def run_forked(case: Case, canaries: Canaries) -> list[Outcome]:
    """The in-process runs of one case, in a forked child: an HDF5 hang or
    crash there (the read watchdog exits the process) is recorded as that
    command's outcome instead of ending the harness."""
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # child
        os.close(read_fd)
        code = 0
        try:
            with os.fdopen(write_fd, "w") as pipe:
                for args in COMMANDS:
                    o = run_in_process(case, canaries, args)
                    pipe.write(json.dumps([o.command, o.exit_code, o.output[-2000:], o.seconds, o.traceback,
                                           o.canary_in_output, o.canary_files_read]) + "\n")  # fmt: skip
                    pipe.flush()
        except BaseException:
            code = 3
        os._exit(code)
    os.close(write_fd)
    t0 = time.monotonic()
    with os.fdopen(read_fd) as pipe:
        lines = pipe.read().splitlines()
    _, status = os.waitpid(pid, 0)
    outcomes = []
    for line in lines:
        command, code, output, seconds, tb, in_output, files_read = json.loads(line)
        outcomes.append(Outcome(case, command, code, output, seconds, tb, in_output, files_read))
    if len(outcomes) < len(COMMANDS):  # the child ended mid-command: the watchdog, or a crash
        command = " ".join(COMMANDS[len(outcomes)])
        seconds = time.monotonic() - t0 - sum(o.seconds for o in outcomes)
        code = os.waitstatus_to_exitcode(status)
        outcomes.append(Outcome(case, command, code, "(process ended by the read watchdog or a crash)", seconds))
    return outcomes


@dataclass
class Tally:
    cases: int = 0
    runs: int = 0
    failures: list[Outcome] = field(default_factory=list)
    tracebacks: int = 0
    bad_exit: int = 0
    canary_reads: int = 0
    max_seconds: float = 0.0
    max_child_rss_mb: float = 0.0
    exit_codes: dict[int, int] = field(default_factory=dict)

    def add(self, outcome: Outcome) -> None:
        self.runs += 1
        self.tracebacks += bool(outcome.traceback)
        self.bad_exit += outcome.exit_code not in EXIT_OK
        self.canary_reads += bool(outcome.canary_in_output or outcome.canary_files_read)
        self.max_seconds = max(self.max_seconds, outcome.seconds)
        if outcome.max_rss_mb is not None:
            self.max_child_rss_mb = max(self.max_child_rss_mb, outcome.max_rss_mb)
        self.exit_codes[outcome.exit_code] = self.exit_codes.get(outcome.exit_code, 0) + 1
        if not outcome.ok:
            self.failures.append(outcome)

    def as_dict(self) -> dict[str, object]:
        own_peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
        return {
            "cases": self.cases,
            "runs": self.runs,
            "tracebacks": self.tracebacks,
            "bad_exit_codes": self.bad_exit,
            "canary_reads": self.canary_reads,
            "over_20s": sum(1 for f in self.failures if f.seconds >= 20.0),
            "max_seconds": round(self.max_seconds, 3),
            "max_subprocess_rss_mb": round(self.max_child_rss_mb, 1),
            "in_process_peak_rss_mb": round(own_peak, 1),
            "exit_codes": {str(k): v for k, v in sorted(self.exit_codes.items())},
            "failures": [f.line() for f in self.failures[:20]],
        }


def fuzz(
    bases: list[Path],
    canaries: Canaries,
    work: Path,
    n: int,
    seed: int,
    subprocess_every: int = 0,
    on_outcome: Callable[[Outcome], None] | None = None,
) -> Tally:
    """``n`` hostile cases; every case through show, show --json and
    analyze --json in-process, every ``subprocess_every``-th also as a real
    subprocess (0: none)."""
    rng = random.Random(seed)
    tally = Tally()
    work.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("LABCTL_READ_TIMEOUT_S", str(READ_TIMEOUT_S))
    for k in range(n):
        case = make_case(rng, rng.choice(bases), work / f"case{k % 8}.h5", canaries)
        tally.cases += 1
        for outcome in run_forked(case, canaries):
            tally.add(outcome)
            if on_outcome:
                on_outcome(outcome)
        if subprocess_every and k % subprocess_every == 0:
            outcome = run_subprocess(case, canaries, rng.choice(COMMANDS))
            tally.add(outcome)
            if on_outcome:
                on_outcome(outcome)
    return tally
