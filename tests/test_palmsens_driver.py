"""The MethodSCRIPT channel against a scripted fake serial port: the exact bytes it
writes, how it decodes replies, and its typed errors (drivers.palmsens.methodscript).

pymeasure's ``expected_protocol`` drives pymeasure Instrument classes; this driver
talks to a pyserial-like port, so the same idea (pin the bytes written, feed the
bytes read) is done with ``FakePort`` below.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest

from drivers.palmsens.methodscript import MethodScriptChannel, Options, capabilities_for
from drivers.palmsens.models import EMSTAT4_HR, EMSTAT_PICO
from drivers.sim.drive import context, drive
from labctl.channel import (
    ConnectionLost,
    GarbledReply,
    InstrumentError,
    InstrumentErrorCode,
    InstrumentTimeout,
)
from labctl.clock import VirtualClock
from labctl.steps import ConstantCurrent, EndReason, Limits, Rest, VoltageSweep

pytestmark = pytest.mark.timeout(30)

FIRMWARE = {
    "es4_hr": "tes4_hr1400#Mar 12 2024 10:00:00",
    "es4_lr": "tes4_lr1400#Mar 12 2024 10:00:00",
    "espico": "tespico1600#Jan 01 2024 00:00:00",
}


class FakePort:
    """A serial port whose instrument is a function: written line -> reply lines.

    Script lines after ``e`` are collected until the empty line; ``on_script``
    then gets them and returns the whole output.
    """

    def __init__(self, firmware: str = "es4_hr", on_script: Callable[[list[str]], list[str]] | None = None) -> None:
        self.firmware = firmware
        self.on_script = on_script or (lambda lines: ["e", ""])
        self.written = bytearray()
        self.incoming = bytearray()
        self._partial = b""
        self._script: list[str] | None = None
        self.silent = False
        self.fail_writes = False

    # the pyserial surface
    def write(self, data: bytes) -> int:
        if self.fail_writes:
            raise OSError(5, "Input/output error")
        self.written += data
        self._partial += data
        while b"\n" in self._partial:
            line, _, self._partial = self._partial.partition(b"\n")
            self._line(line.decode())
        return len(data)

    def read(self, size: int = 1) -> bytes:
        if not self.incoming:
            time.sleep(0.002)
            return b""
        out = bytes(self.incoming[:size])
        del self.incoming[:size]
        return out

    @property
    def in_waiting(self) -> int:
        return len(self.incoming)

    def reset_input_buffer(self) -> None:
        self.incoming.clear()

    def close(self) -> None:
        pass

    # the instrument
    def reply(self, *lines: str) -> None:
        if not self.silent:
            self.incoming += "".join(line + "\n" for line in lines).encode()

    def _line(self, line: str) -> None:
        if self._script is not None:
            if line == "":
                lines, self._script = self._script, None
                self.reply(*self.on_script(lines))
            else:
                self._script.append(line)
        elif line == "e":
            self._script = []
        elif line == "Z":
            self.reply("Z!0006")
        elif line == "t":
            self.reply(FIRMWARE[self.firmware], "R*")
        elif line == "i":
            self.reply("iES4HR-123456")
        elif line == "v":
            self.reply("v0108")
        elif line:
            self.reply(f"{line[0]}!0003")


def channel(port: FakePort, key: str = "emstat4", **options) -> MethodScriptChannel:
    return MethodScriptChannel(key, "/dev/fake", {"timeout": 0.3, **options}, VirtualClock(), port=port)


def test_open_syncs_then_identifies_byte_exact() -> None:
    port = FakePort()
    ch = channel(port)
    ch.open()
    assert bytes(port.written) == b"\nZ\nt\ni\nv\n"
    info = ch.identify().as_dict()
    assert info["model"] == "EmStat4 HR" and info["serial"] == "ES4HR-123456"
    assert info["firmware"] == "es4_hr1400#Mar 12 2024 10:00:00 R"
    assert info["methodscript_version"] == "0108" and info["driver"] == "emstat4"
    assert info["resource"] == "/dev/fake"


def test_a_different_instrument_on_the_port_is_a_clear_error() -> None:
    with pytest.raises(InstrumentError, match=r"configured as EmStat4 HR .* reports EmStat Pico"):
        channel(FakePort(firmware="espico")).open()
    with pytest.raises(InstrumentError, match=r"configured as EmStat Pico .* reports EmStat4 HR"):
        channel(FakePort(), key="emstat_pico").open()
    with pytest.raises(InstrumentError, match="set option variant"):
        channel(FakePort(firmware="es4_lr")).open()
    lr = channel(FakePort(firmware="es4_lr"), variant="lr")
    lr.open()
    assert lr.identify().model == "EmStat4 LR" and lr.capabilities.voltage_range == (-3.0, 3.0)


def test_typed_errors_timeout_garbled_connection() -> None:
    silent = FakePort()
    silent.silent = True
    with pytest.raises(InstrumentTimeout, match="no reply to the abort command"):
        channel(silent).open()
    port = FakePort()
    ch = channel(port)
    ch.open()
    port.firmware = "es4_hr"
    FIRMWARE["garbled"] = "?#?\x1b\x08"
    port.firmware = "garbled"
    try:
        with pytest.raises(GarbledReply, match="reply to 't' should start with 't'"):
            ch.identify()
    finally:
        del FIRMWARE["garbled"]
    port.fail_writes = True
    with pytest.raises(ConnectionLost, match="disconnected"):
        ch.identify()


def test_options_are_checked() -> None:
    with pytest.raises(ValueError, match="unknown MethodSCRIPT driver option"):
        Options.parse({"speed": 2})
    with pytest.raises(ValueError, match="timeout"):
        Options.parse({"timeout": "-1"})
    with pytest.raises(ValueError, match="overload"):
        Options.parse({"overload": "ignore"})
    assert Options.parse({"clock_speed": "50", "baudrate": "230400", "exclusive": "false"}) == Options(
        clock_speed=50.0, baudrate=230400, exclusive=False
    )


def rest_output(lines: list[str]) -> list[str]:
    assert "meas_loop_ocp ew 1 2" in [line.strip() for line in lines]
    return [
        "e",
        "M000B",
        "Peb8000000 ;ab80F4240u,10",
        "Peb80F4240u;ab80F4240u,10",
        "Peb81E8480u;ab80F4240u,10",
        "*",
        "Pja8000000i",
        "",
    ]


def test_a_step_streams_packets_into_samples() -> None:
    port = FakePort(on_script=rest_output)
    ch = channel(port)
    ch.open()
    port.written.clear()
    ran = drive(ch, Rest(duration=2, sample_period=1), context(ch))
    assert port.written.startswith(b"e\nvar ew\nvar tm\nvar code\n") and port.written.endswith(b"cell_off\n\n")
    assert ran.outcome.end_reason is EndReason.COMPLETED
    assert list(ran.data["t"]) == [0.0, 1.0, 2.0]
    assert list(ran.data["E"]) == pytest.approx([1.0, 1.0, 1.0])
    assert list(ran.data["I"]) == [0.0, 0.0, 0.0]
    assert ch.ocv_ref == pytest.approx(1.0)  # the OCV "vs OCV" set points now refer to


def cp_output(*packets: str, tail: tuple[str, ...] = ("*", "Pja8000000i", "")) -> Callable[[list[str]], list[str]]:
    def answer(lines: list[str]) -> list[str]:
        if lines == ["cell_off"]:
            return ["e", ""]
        return ["e", "M000A", *packets, *tail]

    return answer


def test_overload_flag_ends_the_step_with_compliance_and_aborts() -> None:
    port = FakePort(
        on_script=cp_output(
            "Peb8000000 ;ab80F4240u,10;ba80186A0n,10,215",
            "Peb80F4240u;ab85B8D80u,12;ba80186A0n,10,215",
            tail=(),
        )
    )
    ch = channel(port)
    ch.open()
    step = ConstantCurrent(current=1e-4, limits=Limits(max_time=100), sample_period=1)
    ran = drive(ch, step, context(ch))
    assert ran.outcome.end_reason is EndReason.COMPLIANCE
    assert "overload on ab" in ran.outcome.message
    assert len(ran.data) == 2 and ran.data["Q"][-1] == pytest.approx(1e-4)
    assert port.written.endswith(b"Z\n")  # the script was aborted


def test_overload_can_be_made_an_error() -> None:
    port = FakePort(on_script=cp_output("Peb8000000 ;ab80F4240u,12;ba80186A0n,10,215", tail=()))
    ch = channel(port, overload="error")
    ch.open()
    with pytest.raises(InstrumentError, match="instrument overload"):
        drive(ch, ConstantCurrent(current=1e-4, limits=Limits(max_time=100)), context(ch))


def test_instrument_error_codes_refused_and_runtime() -> None:
    port = FakePort(on_script=lambda lines: ["e!4001: Line 3, Col 1"])
    ch = channel(port)
    ch.open()
    with pytest.raises(InstrumentErrorCode, match=r"4001: ocp script refused \(line 3: 'var code'\)") as info:
        drive(ch, Rest(duration=1), context(ch))
    assert info.value.code == "4001"
    port.on_script = cp_output("Peb8000000 ;ab80F4240u,10;ba80186A0n,10,215", tail=("!0032: Line 16",))
    time.sleep(0.2)
    with pytest.raises(
        InstrumentErrorCode, match=r"0032: cp script stopped \(line 16: 'meas_loop_cp.*cell severely overloaded"
    ) as info:
        drive(ch, ConstantCurrent(current=1e-4, limits=Limits(max_time=100)), context(ch))
    assert info.value.code == "0032"


def test_garbled_stream_is_a_garbled_reply() -> None:
    port = FakePort(on_script=cp_output("Peb8000000 ;ab80F4240u,10;ba80186A0n,10,215", "", tail=()))
    ch = channel(port)
    ch.open()
    with pytest.raises(GarbledReply, match="ended inside a measurement loop"):
        drive(ch, ConstantCurrent(current=1e-4, limits=Limits(max_time=100)), context(ch))


def test_safe_state_aborts_and_switches_the_cell_off_byte_exact() -> None:
    port = FakePort()
    ch = channel(port)
    ch.safe_state()  # never opened: nothing to do, nothing written
    assert port.written == b""
    ch.open()
    port.written.clear()
    ch.safe_state()
    ch.safe_state()  # idempotent
    assert bytes(port.written) == b"\nZ\ne\ncell_off\n\n" * 2


def test_safe_state_is_bounded_without_replies() -> None:
    port = FakePort()
    ch = channel(port)
    ch.open()
    port.silent = True
    t0 = time.monotonic()
    with pytest.raises(InstrumentError, match="safe state not confirmed"):
        ch.safe_state()
    assert time.monotonic() - t0 < 2.0
    assert port.written.endswith(b"e\ncell_off\n\n")  # sent even though nothing answered


def test_capabilities_per_model() -> None:
    es4, pico = capabilities_for(EMSTAT4_HR), capabilities_for(EMSTAT_PICO)
    assert "ConstantCurrent" in es4.step_kinds and "galvanostatic" in es4.impedance_modes
    assert "ConstantCurrent" not in pico.step_kinds and pico.impedance_modes == {"potentiostatic"}
    assert pico.refusal(VoltageSweep(start="ocv", stop=5.0)) == "sweep stop 5 V is outside the channel's -1.7..2 V"
    assert es4.refusal(VoltageSweep(start="ocv", stop=5.0)) is None
    assert capabilities_for(EMSTAT4_HR, max_current=0.01).max_current == 0.01
