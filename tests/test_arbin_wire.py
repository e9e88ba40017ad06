"""Arbin CTI at the byte level, and the MITS Pro CTI emulator spoken to by hand.

Expected bytes are written out field by field from the vendor's structures ("ArbinCTI
Protocol Commands" v1.1 and "Arbin CTI Instructions" v4.5, the PDFs in the public
``BatteryDataAlliance/pyctiarbin`` repository), never produced by the driver's encoder:

* header: ``Q`` token 0x11DDDDDDDDDDDDDD (on the wire: ``DD``×7 then ``11``), ``I`` dwLen
  (request: total − 12; feedback: total), ``I`` command code, ``I`` 0;
* checksum: ``H`` = the sum of every byte before it, mod 2**16;
* THIRD_PARTY_USER_LOGIN 0xEEAB0001: ``32s 32s`` (user, password);
* THIRD_PARTY_GET_CHANNELS_INFO 0xEEAB0003: ``h h I 32s`` (channel, selection, aux, reserved);
* THIRD_PARTY_ASSIGN_SCHEDULE 0xBB210001: ``i B 400s f 144s 16f 32s``;
* THIRD_PARTY_START_SCHEDULE 0xBB320004: ``144s I`` + ``H`` per channel (v4.5);
* THIRD_PARTY_STOP_SCHEDULE 0xBB310001: ``I B 101s``;
* THIRD_PARTY_JUMP_CHANNEL 0xBB320005: ``i i 101s`` (step, channel);
* THIRD_PARTY_SET_MV_VALUE 0xBB150001: ``I i i 16s i f 16s``, MV_UD1..4 = meta codes 52..55;
* feedbacks 0xBB120001 / 0xBB230004 / 0xBB130001 / 0xBB230005 / 0xBB510001: ``i B 101s``;
  0xEEBA0001 login: ``I 4s 16s 256s 2048s 2048s 2048s 2048s 128s 32s I I I I I I``;
  0xEEBA0003 channel info: ``I`` count, then ``I h B 400s 144s 100s 64s 144s 400s 400s H d d
  12f 14H`` per channel.
"""

from __future__ import annotations

import ast
import socket
import struct
from pathlib import Path

import pytest
from click.testing import CliRunner

from drivers.arbin import cti
from drivers.arbin.options import ArbinOptions
from drivers.sim import SimParams
from drivers.sim.wire.arbin_cti import serve
from drivers.sim.wire.faults import FaultPlan, install
from labctl.channel import GarbledReply, InstrumentTimeout
from labctl.cli import main
from labctl.clock import VirtualClock
from tests.signal_trial import sim_server

pytestmark = pytest.mark.timeout(60)

WIRE_TOKEN = b"\xdd" * 7 + b"\x11"


def request(code: int, args: bytes) -> bytes:
    """A request by hand: dwLen = command + arguments + checksum."""
    head = WIRE_TOKEN + struct.pack("<III", 8 + len(args) + 2, code, 0)
    return head + args + struct.pack("<H", sum(head + args) & 0xFFFF)


def feedback(code: int, args: bytes) -> bytes:
    """A feedback by hand: dwLen = the whole message."""
    head = WIRE_TOKEN + struct.pack("<III", 20 + len(args) + 2, code, 0)
    return head + args + struct.pack("<H", sum(head + args) & 0xFFFF)


def w(text: str) -> bytes:
    return text.encode("utf-16-le")


# --- the driver's messages, byte for byte --------------------------------------------------------
def test_login_request_bytes() -> None:
    expected = request(0xEEAB0001, struct.pack("<32s32s", b"admin", b"000000"))
    assert len(expected) == 86 and expected[8:12] == (74).to_bytes(4, "little")
    assert cti.encode("login", user="admin", password="000000") == expected


def test_channel_info_request_bytes() -> None:
    expected = request(0xEEAB0003, struct.pack("<hhI32s", 13, 1, 0, b""))
    assert len(expected) == 62
    assert cti.encode("channel_info", channel=13, info_type=1, need_type=0) == expected


def test_assign_start_stop_jump_request_bytes() -> None:
    assign = request(0xBB210001, struct.pack("<iB400sf144s16f32s", 3, 0, w("labctl_direct.sdx"), 0.0, b"",
                                             *[0.0] * 16, b""))  # fmt: skip
    assert len(assign) == 671
    assert cti.encode("assign_schedule", channel=3, schedule="labctl_direct.sdx") == assign
    start = request(0xBB320004, struct.pack("<144sIH", w("labctl"), 1, 3))
    assert len(start) == 172
    assert cti.encode("start_schedule", test_name="labctl", count=1, channel=3) == start
    stop = request(0xBB310001, struct.pack("<IB101s", 3, 0, b""))
    assert len(stop) == 128
    assert cti.encode("stop_schedule", channel=3) == stop
    jump = request(0xBB320005, struct.pack("<ii101s", 2, 3, b""))
    assert cti.encode("jump_channel", step=2, channel=3) == jump


def test_set_meta_variable_request_bytes() -> None:
    expected = request(0xBB150001, struct.pack("<Iii16sif16s", 13, 1, 55, b"", 1, 0.25, b""))
    assert len(expected) == 74
    assert cti.MV_UD[4] == 55 and cti.MV_UD[5] == 105 and cti.MV_UD[16] == 116
    assert cti.encode("set_mv", channel=13, mv_type=1, meta_code=55, value_type=1, value=0.25) == expected


def test_feedbacks_decode_field_by_field() -> None:
    _, stop = cti.decode(feedback(0xBB130001, struct.pack("<iB101s", 13, 0x11, b"")))
    assert (stop["channel"], stop["result"]) == (13, 0x11)
    login_args = struct.pack(
        "<I4s16s256s2048s2048s2048s2048s128s32sIIIIII", 1, b"\x0a\x00\x00\x05", b"207855", b"16 channels",
        w("nick"), w("lab 3"), b"", b"", b"", b"", 7, 1, 1, 16, 0, 0,
    )  # fmt: skip
    layout, login = cti.decode(feedback(0xEEBA0001, login_args))
    assert layout.name == "login_feedback" and len(feedback(0xEEBA0001, login_args)) == 8678
    assert (login["result"], login["sn"], login["nick_name"], login["location"], login["channels"]) == (
        1, "207855", "nick", "lab 3", 16,
    )  # fmt: skip
    block = struct.pack(
        "<IhB400s144s100s64s144s400s400sHdd12f14H", 13, 2, 0, w("labctl_direct.sdx"), w("labctl"), b"N/A",
        b"[1] 3: CCCV, Charge", b"", b"", b"", 13, 1234.5, 67.25, 3.75, 1e-3, 3.75e-3, 0.5, 0.25, *[0.0] * 7,
        *[0] * 14,
    )  # fmt: skip
    message = feedback(0xEEBA0003, struct.pack("<I", 1) + block)
    assert len(message) == 1779
    _, info = cti.decode(message)
    assert (info["count"], info["channel"], info["status"], info["schedule"]) == (1, 13, 2, "labctl_direct.sdx")
    assert info["step_and_cycle"] == "[1] 3: CCCV, Charge" and cti.STATUS[info["status"]] == "Charge"
    assert (info["test_time"], info["step_time"]) == (1234.5, 67.25)
    assert info["voltage"] == pytest.approx(3.75) and info["current"] == pytest.approx(1e-3)
    assert (info["charge_capacity"], info["discharge_capacity"]) == (0.5, 0.25)


def test_decode_refuses_a_bad_checksum_token_or_length() -> None:
    good = feedback(0xBB510001, struct.pack("<iB101s", 1, 0, b""))
    with pytest.raises(ValueError, match="checksum"):
        cti.decode(good[:-2] + bytes([good[-2] ^ 1, good[-1]]))
    with pytest.raises(ValueError, match="token"):
        cti.decode(b"\x11" + good[1:])
    with pytest.raises(ValueError, match="dwLen"):
        cti.decode(good[:8] + struct.pack("<I", 116) + good[12:])
    too_long = feedback(0xBB510001, struct.pack("<iB101sf", 1, 0, b"", 0.0))
    with pytest.raises(ValueError, match="not the 106 its fields say"):
        cti.decode(too_long)


# --- the emulator, by hand -------------------------------------------------------------------------
class Wire:
    """A bare CTI client: requests written by hand, feedbacks read by dwLen (= whole message)."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=5)

    def read(self) -> tuple[int, bytes]:
        data = b""
        while len(data) < 12 or len(data) < struct.unpack_from("<I", data, 8)[0]:
            chunk = self.sock.recv(65536)
            assert chunk, "the server closed the link"
            data += chunk
        assert data[:8] == WIRE_TOKEN and struct.unpack_from("<I", data, 8)[0] == len(data)
        assert struct.unpack_from("<H", data, len(data) - 2)[0] == sum(data[:-2]) & 0xFFFF
        return struct.unpack_from("<I", data, 12)[0], data[20:-2]

    def __call__(self, code: int, args: bytes) -> tuple[int, bytes]:
        self.sock.sendall(request(code, args))
        return self.read()

    def result(self, code: int, args: bytes, feedback_code: int) -> int:
        got, body = self(code, args)
        assert got == feedback_code
        return struct.unpack_from("<iB", body)[1]

    def login(self) -> int:
        code, body = self(0xEEAB0001, struct.pack("<32s32s", b"lab", b"pw"))
        assert code == 0xEEBA0001 and struct.unpack_from("<I", body)[0] == 1
        return struct.unpack_from("<I", body, 4 + 4 + 16 + 256 + 4 * 2048 + 128 + 32 + 12)[0]

    def info(self, chan: int) -> dict:
        code, body = self(0xEEAB0003, struct.pack("<hhI32s", chan, 1, 0, b""))
        assert code == 0xEEBA0003 and struct.unpack_from("<I", body)[0] == 1
        fields = struct.unpack_from("<IhB400s144s100s64s144s400s400sHdd12f14H", body, 4)
        return {
            "channel": fields[0], "status": fields[1], "schedule": fields[3].decode("utf-16-le").rstrip("\x00"),
            "step": fields[6].rstrip(b"\x00").decode(), "test_time": fields[11], "voltage": fields[13],
            "current": fields[14], "charge_ah": fields[16], "discharge_ah": fields[17],
        }  # fmt: skip

    def set_mv(self, chan: int, ud: int, value: float) -> int:
        meta = {1: 52, 2: 53, 3: 54, 4: 55}.get(ud, 100 + ud)
        return self.result(0xBB150001, struct.pack("<Iii16sif16s", chan, 1, meta, b"", 1, value, b""), 0xBB510001)

    def start(self, chan: int, schedule: str = "labctl_direct.sdx") -> tuple[int, int]:
        assign = struct.pack("<iB400sf144s16f32s", chan, 0, w(schedule), 0.0, b"", *[0.0] * 16, b"")
        a = self.result(0xBB210001, assign, 0xBB120001)
        s = self.result(0xBB320004, struct.pack("<144sIH", w("t"), 1, chan), 0xBB230004)
        return a, s

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def mits():
    clock = VirtualClock()
    server = serve(SimParams(), clock=clock, channels=4, record_period=10)
    client = Wire(server.port)
    yield server, client, clock
    client.close()
    server.stop()


def test_login_first_then_channel_info(mits) -> None:
    _server, client, _ = mits
    client.sock.sendall(request(0xEEAB0003, struct.pack("<hhI32s", 0, 1, 0, b"")))  # before login: no feedback
    assert client.login() == 4
    info = client.info(2)  # the feedback read is this one's, not the refused request's
    assert info["channel"] == 2 and info["status"] == 0 and info["test_time"] == 0.0


def test_the_control_schedule_runs_on_meta_variables(mits) -> None:
    server, client, clock = mits
    client.login()
    assert client.set_mv(1, 1, 1.0) == 0x12  # not running: "Channel is not running"
    assert client.start(1, "other.sdx") == (0x13, 0x15)  # schedule name not found; none assigned
    assert client.start(1) == (0, 0)
    assert client.info(1)["status"] == 4 and client.info(1)["schedule"] == "labctl_direct.sdx"
    assert client.set_mv(1, 2, 2e-3) == 0
    assert client.set_mv(1, 3, 4.2) == 0x14  # within 200 ms of the previous update
    clock.sleep(0.2)
    assert client.set_mv(1, 3, 4.2) == 0
    clock.sleep(0.2)
    assert client.set_mv(1, 1, 1.0) == 0
    assert client.info(1)["current"] == 0.0  # nothing applied until MV_UD4 changes
    clock.sleep(0.2)
    assert client.set_mv(1, 4, 1.0) == 0
    clock.sleep(600)
    r = client.info(1)
    assert r["status"] == 2 and r["current"] == pytest.approx(2e-3, rel=1e-3) and r["step"] == "[1] 3: CCCV, Charge"
    assert r["charge_ah"] == pytest.approx(2e-3 * 600 / 3600, rel=1e-3) and r["discharge_ah"] == 0.0
    assert r["test_time"] == pytest.approx(600.6)
    clock.sleep(4 * 3600)  # the clamp: CCCV holds 4.2 V once reached
    r = client.info(1)
    assert r["voltage"] == pytest.approx(4.2, abs=1e-4) and 0 < r["current"] < 0.99 * 2e-3
    # discharge: mode and current change, applied with the next command number
    assert client.set_mv(1, 2, -1e-3) == 0
    clock.sleep(0.2)
    assert client.set_mv(1, 3, 3.0) == 0
    clock.sleep(0.2)
    assert client.set_mv(1, 4, 2.0) == 0
    clock.sleep(60)
    r = client.info(1)
    assert r["status"] == 3 and r["current"] == pytest.approx(-1e-3, rel=1e-3)
    assert r["discharge_ah"] == pytest.approx(1e-3 * 60 / 3600, rel=1e-3)
    # jump to step 1 (Rest, 0-indexed), then past the end: the test stops
    assert client.result(0xBB320005, struct.pack("<ii101s", 1, 1, b""), 0xBB230005) == 0
    assert client.info(1)["status"] == 4 and not server.cell(1).output_on
    assert client.result(0xBB320005, struct.pack("<ii101s", 9, 1, b""), 0xBB230005) == 0
    assert client.info(1)["status"] == 15
    assert client.result(0xBB320005, struct.pack("<ii101s", 1, 1, b""), 0xBB230005) == 0x12


def test_stop_turns_the_output_off_and_safety_mvs_make_a_channel_unsafe(mits) -> None:
    server, client, clock = mits
    client.login()
    client.start(0)
    for ud, value in ((5, 3.6), (6, 2.0), (7, 0.01), (2, 2e-3), (3, 4.3), (1, 1.0), (4, 1.0)):
        assert client.set_mv(0, ud, value) == 0
        clock.sleep(0.2)
    clock.sleep(4 * 3600)
    assert client.info(0)["status"] == 8 and not server.cell(0).output_on  # Unsafe
    client.start(2)
    for ud, value in ((2, 2e-3), (3, 4.3), (1, 1.0), (4, 1.0)):
        client.set_mv(2, ud, value)
        clock.sleep(0.2)
    assert server.cell(2).output_on
    assert client.result(0xBB310001, struct.pack("<IB101s", 2, 0, b""), 0xBB130001) == 0
    assert not server.cell(2).output_on and client.info(2)["status"] == 15
    assert client.result(0xBB310001, struct.pack("<IB101s", 9, 0, b""), 0xBB130001) == 0x10


def test_a_bad_checksum_gets_no_feedback(mits) -> None:
    _server, client, _ = mits
    client.login()
    bad = bytearray(request(0xEEAB0003, struct.pack("<hhI32s", 0, 1, 0, b"")))
    bad[-1] ^= 0xFF
    client.sock.sendall(bytes(bad))
    assert client.info(3)["channel"] == 3  # the next good request is the one answered


def test_an_unknown_command_gets_no_feedback_and_a_bad_token_closes_the_link(mits) -> None:
    server, client, _ = mits
    client.login()
    client.sock.sendall(request(0xCD140002, w("hello").ljust(2048, b"\x00")))  # a command not served here
    assert client.info(1)["channel"] == 1
    client.sock.sendall(b"\x11" + b"\xdd" * 7 + struct.pack("<III", 50, 0xEEAB0003, 0) + bytes(50))
    client.sock.settimeout(2)
    assert client.sock.recv(100) == b""  # closed
    other = Wire(server.port)
    assert other.login() == 4  # the server itself goes on
    other.close()


def test_scheduled_garbled_reply_and_alarm(mits) -> None:
    server, client, _clock = mits
    install(server, [FaultPlan.parse("garbled@4"), FaultPlan.parse("instrument-error@6")], "arbin")
    client.login()
    client.start(0)  # replies 2, 3
    client.sock.sendall(request(0xEEAB0003, struct.pack("<hhI32s", 0, 1, 0, b"")))
    assert client.sock.recv(65536)[:8] != WIRE_TOKEN  # reply 4: garbled
    client.close()
    client = Wire(server.port)
    client.login()  # reply 5
    assert client.info(0)["status"] == 4  # reply 6: the alarm comes with it
    assert client.info(0)["status"] == 8 and not server.cell(0).output_on
    client.close()


def test_the_driver_link_reports_timeouts_and_garbled_feedback() -> None:
    clock = VirtualClock()
    with serve(SimParams(), clock=clock, channels=2) as server:
        link = cti.CtiLink(server.resource, 0.3)
        link.connect()
        assert link.request("login", user="a", password="b")["channels"] == 2
        server.inject(1, "no-reply")
        with pytest.raises(InstrumentTimeout, match="no feedback to channel_info"):
            link.request("channel_info", channel=1, info_type=1)
        assert not link.connected
        link.connect()
        link.request("login", user="a", password="b")
        server.inject(0, "garbled")
        with pytest.raises(GarbledReply, match="garbled"):
            link.request("channel_info", channel=0, info_type=1)
        link.close()


def test_options_and_lab_file(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="whole number from 1"):
        ArbinOptions.parse({"channel": "0"})
    assert ArbinOptions.parse({"channel": "12"}).chan == 11
    path = tmp_path / "lab.toml"
    path.write_text(
        '[instruments.arb]\ndriver = "arbin"\nresource = "tcp://10.0.0.9:9031"\noptions = { shedule = "x" }\n'
    )
    result = CliRunner().invoke(main, ["instruments", "list", "--lab", str(path), "--json"])
    assert result.exit_code == 2 and result.stdout == ""
    lines = result.stderr.strip().splitlines()
    known = ", ".join(ArbinOptions.declared())
    assert lines == [f"error: {path}: instruments.arb.options.shedule: unknown option (allowed: {known})"]


def test_the_emulator_shares_no_code_with_the_driver() -> None:
    """The emulator implements MITS Pro from the manual: it must not import ``drivers.arbin``."""
    source = Path(__file__).resolve().parents[1] / "drivers" / "sim" / "wire" / "arbin_cti.py"
    tree = ast.parse(source.read_text())
    modules = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
    modules |= {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    assert modules and not any(m.startswith("drivers.arbin") for m in modules), modules


def test_labctl_sim_server_serves_the_cti_emulator() -> None:
    with sim_server("--model", "arbin", "--option", "channels=24") as resource:
        client = Wire(int(resource.rsplit(":", 1)[1]))
        assert client.login() == 24
        client.close()
