"""`labctl sim-server --fault KIND[@WHEN]`: the grammar, the refusals, and every kind
against an emulator with a real client (raw socket, or the project's driver).

Faults are triggered by reply counts or by a cell clock the test controls, never by
wall time, so none of these tests depends on the machine's speed."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
from collections.abc import Iterator, Mapping
from typing import Any

import pytest

from drivers.palmsens import create_emstat4
from drivers.sim import SimParams
from drivers.sim.wire.emstat import serve_emstat4
from drivers.sim.wire.faults import FaultPlan, install
from labctl.channel import InstrumentErrorCode
from labctl.clock import VirtualClock
from labctl.engine import Engine, RunState
from labctl.params import Param
from labctl.protocol import Cell, Protocol
from labctl.registry import driver_factory, emulator_factory
from labctl.steps import ConstantCurrent, ConstantVoltage, Limits, Step

pytestmark = pytest.mark.timeout(90)


# --- the grammar ---------------------------------------------------------------------
@pytest.mark.parametrize(
    ("text", "plan"),
    [
        ("no-reply", FaultPlan("no-reply")),
        ("garbled@once", FaultPlan("garbled")),
        ("drop-link@always", FaultPlan("drop-link", "always")),
        ("instrument-error@12", FaultPlan("instrument-error", "reply", 12.0)),
        ("compliance@t=30s", FaultPlan("compliance", "time", 30.0)),
        ("Garbled@t=2.5min", FaultPlan("garbled", "time", 150.0)),
        ("no-reply@t=250ms", FaultPlan("no-reply", "time", 0.25)),
        ("drop-link@t=1h", FaultPlan("drop-link", "time", 3600.0)),
        ("no-reply@t=45", FaultPlan("no-reply", "time", 45.0)),
    ],
)
def test_the_grammar(text: str, plan: FaultPlan) -> None:
    assert FaultPlan.parse(text) == plan


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("smoke", "unknown kind 'smoke' (allowed: no-reply, garbled, drop-link, instrument-error, compliance)"),
        ("garbled@0", "the reply number must be 1 or more"),
        ("garbled@-3", "bad WHEN '-3' (allowed: once, always, N"),
        ("garbled@soon", "bad WHEN 'soon'"),
        ("garbled@t=3parsecs", "bad cell time '3parsecs' (allowed: a number with unit ms, s, min or h)"),
        ("garbled@", "bad WHEN ''"),
    ],
)
def test_bad_faults_are_refused_in_one_line(text: str, says: str) -> None:
    with pytest.raises(ValueError, match=r"^--fault") as refused:
        FaultPlan.parse(text)
    assert says in str(refused.value) and "\n" not in str(refused.value)


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "labctl.cli", "sim-server", *args], capture_output=True, text=True, timeout=60
    )


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (("--model", "espec", "--fault", "compliance"), "the espec emulator cannot inject it (allowed: no-reply, "),
        (("--model", "eurotherm", "--fault", "compliance@3"), "the eurotherm emulator cannot inject it"),
        (("--model", "keithley2450", "--fault", "garbled@later"), "bad WHEN 'later'"),
    ],
)
def test_the_cli_refuses_with_exit_2_and_one_line(args: tuple[str, ...], says: str) -> None:
    proc = cli(*args)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.count("\n") == 1 and proc.stderr.startswith("error: --fault") and says in proc.stderr
    assert "Traceback" not in proc.stderr and proc.stdout == ""


def test_the_help_documents_the_grammar() -> None:
    proc = cli("--help")
    assert proc.returncode == 0
    for text in ("--fault KIND[@WHEN]", "instrument-error", "@always", "@t=DURATION", "the N-th reply"):
        assert text in proc.stdout


# --- every kind, with a real client ----------------------------------------------------
class Line:
    """A raw TCP client of an SCPI emulator."""

    def __init__(self, resource: str) -> None:
        port = int(resource.split("::")[2])
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=30.0)  # a hang guard only
        self.buffer = b""

    def ask(self, command: str) -> None:
        self.sock.sendall(command.encode() + b"\n")

    def line(self) -> bytes | None:
        """The next reply line; None when the emulator closed the connection."""
        while b"\n" not in self.buffer:
            chunk = self.sock.recv(4096)
            if not chunk:
                return None
            self.buffer += chunk
        line, _, self.buffer = self.buffer.partition(b"\n")
        return line

    def close(self) -> None:
        self.sock.close()


def test_the_cli_injects_faults_at_reply_counts_for_a_raw_socket_client() -> None:
    """The real command, a raw socket: reply 2 is garbled, the instrument errs at reply 3
    (seen at the next error query), the link drops at reply 6."""
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "labctl.cli",
            "sim-server",
            "--model",
            "keithley2450",
            "--fault",
            "garbled@2",
            "--fault",
            "instrument-error@3",
            "--fault",
            "drop-link@6",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        resource = proc.stdout.readline().strip()
        assert resource.endswith("::SOCKET"), proc.stderr.read()
        link = Line(resource)
        replies = []
        for command in ("*IDN?", "*IDN?", "*IDN?", ":SYST:ERR?", ":SYST:ERR?", "*IDN?"):
            link.ask(command)
            replies.append(link.line())
        link.close()
    finally:
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=10)
    assert proc.returncode == 0
    idn = replies[0]
    assert idn is not None and b"KEITHLEY" in idn and b"2450" in idn
    assert replies[1] is not None and replies[1] != idn and replies[1].endswith(b"#?")  # garbled
    assert replies[2] == idn
    assert replies[3] is not None and replies[3].startswith(b"-300,")  # the injected error
    assert replies[4] is not None and replies[4].startswith(b"0,")  # the queue is empty again
    assert replies[5] is None  # the emulator hung up
    assert "fault armed: garbled at reply 2" in err and "fault armed: drop-link at reply 6" in err


@pytest.fixture
def smu() -> Iterator[Any]:
    with emulator_factory("keithley2450")(SimParams(), clock=VirtualClock(), cell_type="li_li") as server:
        yield server


def test_no_reply_swallows_exactly_the_chosen_reply(smu: Any) -> None:
    install(smu, [FaultPlan.parse("no-reply@2")], "keithley2450")
    link = Line(smu.resource)
    link.ask("*IDN?")
    assert b"2450" in (link.line() or b"")
    link.ask("*IDN?")  # reply 2: swallowed
    link.ask(":SYST:ERR?")
    assert (link.line() or b"").startswith(b"0,")  # the next line is the answer to the next query
    link.close()


def test_always_garbles_every_reply(smu: Any) -> None:
    install(smu, [FaultPlan.parse("garbled@always")], "keithley2450")
    link = Line(smu.resource)
    for _ in range(3):
        link.ask("*IDN?")
        assert (link.line() or b"").endswith(b"#?")
    link.close()


def test_smu_compliance_waits_for_the_output_and_ends_the_step_through_the_driver() -> None:
    """compliance@once on a 2450: armed at connection, it takes effect once the output is
    on; the driver's step ends with COMPLIANCE and the output is switched off."""
    clock = VirtualClock()
    with emulator_factory("keithley2450")(SimParams(), clock=clock, cell_type="li_li", off_mode="HIMP") as server:
        install(server, [FaultPlan.parse("compliance")], "keithley2450")
        channel = driver_factory("keithley2450")(server.resource, {"timeout_ms": 30000}, clock)
        step = ConstantCurrent(current=1e-4, limits=Limits(max_time=100.0), sample_period=1.0)
        outcome = Engine(channel).run(one_step(step), {"x": 1.0}, Cell("li_li", 1.0, 100.0))
        assert outcome.status is RunState.COMPLETED, outcome.error
        assert outcome.results["end_reason"] == "compliance"
        assert not server.output_on


def one_step(step: Step) -> Protocol:
    def plan(values: Mapping[str, Any], cell: Cell):
        result = yield step
        return {"end_reason": result.end_reason.value, "message": result.message, "n": len(result.data)}

    return Protocol(
        name="one_step",
        version="1",
        title="one step",
        cell_type="li_li",
        params=(Param("x", 1.0),),
        plan=plan,
        step_kinds=frozenset({step.kind}),
    )


def run_on_emstat(fault: str, step: Step) -> Any:
    clock = VirtualClock()
    with serve_emstat4(SimParams(), clock=clock, cell_type="li_li") as server:
        install(server, [FaultPlan.parse(fault)], "emstat4")
        channel = create_emstat4(server.resource, {"timeout": 5.0}, clock)
        outcome = Engine(channel).run(one_step(step), {"x": 1.0}, Cell("li_li", 1.0, 100.0))
        assert server.device.wait_idle(10.0)
        assert not server.device.cell_on
    return outcome


HOLD = ConstantVoltage(voltage=0.01, limits=Limits(max_time=100.0), sample_period=1.0)


def test_methodscript_instrument_error_fails_the_run_with_its_code() -> None:
    outcome = run_on_emstat("instrument-error", HOLD)
    assert outcome.status is RunState.FAILED
    assert "4004" in outcome.error or "overload" in outcome.error.lower()


def test_methodscript_compliance_is_an_overload_end_reason() -> None:
    step = ConstantCurrent(current=1e-4, limits=Limits(max_time=100.0), sample_period=1.0)
    outcome = run_on_emstat("compliance", step)
    assert outcome.status is RunState.COMPLETED, outcome.error
    assert outcome.results["end_reason"] == "compliance" and "overload" in outcome.results["message"]


def test_a_reply_lost_at_a_cell_time_is_a_counted_gap() -> None:
    """no-reply@t=50s on a 100 s hold: one sample around 50 s is lost and reported."""
    outcome = run_on_emstat("no-reply@t=50s", HOLD)
    assert outcome.status is RunState.COMPLETED, outcome.error
    assert outcome.results["n"] == 100 and "data loss: 1 sample lost" in outcome.results["message"]


def test_drop_link_through_the_driver_is_connection_lost() -> None:
    outcome = run_on_emstat("drop-link@t=30s", HOLD)
    assert outcome.status is RunState.FAILED
    assert "no data" in outcome.error or "lost" in outcome.error


def test_chamber_instrument_error_is_an_alarm_through_the_driver() -> None:
    with emulator_factory("eurotherm")(SimParams(), speed=1.0, cell_type="auto") as server:
        install(server, [FaultPlan.parse("instrument-error@3")], "eurotherm")
        controller = driver_factory("eurotherm")(server.resource, {"timeout": 30.0}, None)
        controller.open()
        try:
            with pytest.raises(InstrumentErrorCode, match="alarm 1"):
                for _ in range(10):
                    controller.read_temperature()
        finally:
            controller.close()
