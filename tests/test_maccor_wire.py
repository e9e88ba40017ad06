"""The Maccor MacNet emulator against the published JSON message formats.

Spoken by hand from the formats in Maccor's MacNet JSON documentation as the
open-source pymacnet client reproduces them, not through our driver: requests
``{"jsonrpc": "2.0", "method": "MacNet", "params": {"FClass", "FNum", "Chan", …},
"id"}`` sent back to back on one TCP stream, replies carrying ``result`` with the
same ``FClass``/``FNum``; (1, 2) general information, (4, 1) multi-channel status,
(4, 7) all status and readings, (6, 7) start direct mode, (6, 8) set direct
output (refused when sent within 100 ms, or without direct mode), (6, 5) reset,
(6, 10) safety limits.
"""

from __future__ import annotations

import json
import socket

import pytest

from drivers.maccor.options import MaccorOptions
from drivers.sim import SimParams
from drivers.sim.wire.faults import FaultPlan, install
from drivers.sim.wire.maccor_macnet import serve
from labctl.clock import VirtualClock
from tests.signal_trial import sim_server

READING_KEYS = {
    "FClass", "FNum", "Chan", "RF1", "RF2", "Stat", "LastRecNum", "Cycle", "Step", "TestTime", "StepTime",
    "Capacity", "Energy", "Current", "Voltage", "TesterTime",
}  # fmt: skip


class Client:
    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=5)
        self.n = 0

    def raw(self, params: dict) -> bytes:
        self.n += 1
        self.sock.sendall(json.dumps({"jsonrpc": "2.0", "method": "MacNet", "params": params, "id": self.n}).encode())
        data = b""
        decoder = json.JSONDecoder()
        while True:
            data += self.sock.recv(65536)
            try:
                decoder.raw_decode(data.decode())
                return data
            except (json.JSONDecodeError, UnicodeDecodeError):
                if data.count(b"{") == data.count(b"}") and data:
                    return data  # complete but unparseable
                continue

    def __call__(self, fclass: int, fnum: int, **params) -> dict:
        reply = json.loads(self.raw({"FClass": fclass, "FNum": fnum, **params}))
        assert reply["jsonrpc"] == "2.0" and reply["id"] == self.n
        result = reply["result"]
        assert (result["FClass"], result["FNum"]) == (fclass, fnum)
        return result

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def macnet():
    clock = VirtualClock()
    server = serve(SimParams(), clock=clock, channels=4)
    client = Client(server.port)
    yield server, client, clock
    client.close()
    server.stop()


DIRECT = {"TestName": "Random", "Power": 65536, "Resistance": 0, "CurrentRange": 1, "DataTime": 10, "DataV": 0,
          "DataI": 0}  # fmt: skip


def test_system_information_and_status_of_several_channels(macnet) -> None:
    _server, client, _ = macnet
    info = client(1, 2)
    assert info["TestChannels"] == 4 and info["SystemType"] == 0
    status = client(4, 1, Chan=0, Len=3)
    assert status["Len"] == 3 and [set(s) for s in status["Status"]] == [{"RF1", "RF2", "Stat"}] * 3


def test_direct_mode_outputs_what_it_is_set_to_and_records_its_data(macnet) -> None:
    server, client, clock = macnet
    assert client(6, 7, Chan=2, Current=2e-3, Voltage=65536, ChMode="C", **DIRECT)["Result"] == "OK"
    clock.sleep(600)
    r = client(4, 7, Chan=2)
    assert set(r) == READING_KEYS
    assert r["Current"] == pytest.approx(2e-3, rel=1e-3) and r["TestTime"] == pytest.approx(600)
    assert r["Capacity"] == pytest.approx(2e-3 * 600 / 3600, rel=1e-3)  # Ah
    assert r["LastRecNum"] == 61  # DataTime 10 s: records at 0, 10, …, 600
    # too fast: at least 100 ms between commands
    assert client(6, 8, Chan=2, Current=1e-3, Voltage=65536, ChMode="D", Power=65536, Resistance=0,
                  CurrentRange=1)["Result"] == "OK"  # fmt: skip
    clock.sleep(0.05)
    assert client(6, 8, Chan=2, Current=1e-3, Voltage=65536, ChMode="C", Power=65536, Resistance=0,
                  CurrentRange=1)["Result"] == 3  # fmt: skip
    clock.sleep(60)
    r = client(4, 7, Chan=2)
    assert r["Current"] == pytest.approx(-1e-3, rel=1e-3) and r["StepTime"] == pytest.approx(60.05)
    # mutually limiting: a charge current with a voltage set point holds that voltage once reached
    clock.sleep(0.2)
    client(6, 8, Chan=2, Current=1e-3, Voltage=3.2, ChMode="C", Power=65536, Resistance=0, CurrentRange=1)
    clock.sleep(1800)
    r = client(4, 7, Chan=2)
    assert r["Voltage"] == pytest.approx(3.2, abs=1e-4) and -1e-9 < r["Current"] < 0.99e-3
    # reset: the test ends, the output is off
    assert client(6, 5, Chan=2)["Result"] == "OK"
    assert not server.cell(2).output_on
    assert client(4, 7, Chan=2)["Stat"] != 1


def test_direct_output_needs_a_running_direct_test(macnet) -> None:
    _server, client, _ = macnet
    assert client(6, 8, Chan=1, Current=1e-3, Voltage=65536, ChMode="C", Power=65536, Resistance=0,
                  CurrentRange=1)["Result"] == 2  # fmt: skip


def test_safety_limits_suspend_a_channel(macnet) -> None:
    server, client, clock = macnet
    limits = {"VSafeMax": 3.6, "VSafeMin": 2.0, "ISafeChg": 0.01, "ISafeDis": 0.01, "PBatSafeChg": 0,
              "PBatSafeDis": 0}  # fmt: skip
    assert client(6, 10, Chan=0, **limits)["VSafeMax"] == 3.6
    client(6, 7, Chan=0, Current=2e-3, Voltage=65536, ChMode="C", **DIRECT)
    clock.sleep(4 * 3600)
    r = client(4, 7, Chan=0)
    assert r["Stat"] == 2 and not server.cell(0).output_on


def test_messages_back_to_back_on_one_stream(macnet) -> None:
    server, _client, _ = macnet
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=5)
    try:
        two = [{"jsonrpc": "2.0", "method": "MacNet", "params": {"FClass": 1, "FNum": k}, "id": k} for k in (1, 2)]
        sock.sendall(b"".join(json.dumps(m).encode() for m in two))
        data, decoder, got = b"", json.JSONDecoder(), []
        while len(got) < 2:
            data += sock.recv(65536)
            text = data.decode()
            got, pos = [], 0
            while pos < len(text):
                try:
                    value, end = decoder.raw_decode(text, pos)
                except json.JSONDecodeError:
                    break
                got.append(value)
                pos = end
        assert [g["id"] for g in got] == [1, 2] and got[1]["result"]["TestChannels"] == 4
    finally:
        sock.close()


def test_scheduled_garbled_reply_and_alarm(macnet) -> None:
    server, client, _ = macnet
    install(server, [FaultPlan.parse("garbled@2"), FaultPlan.parse("instrument-error@4")], "maccor")
    client(6, 7, Chan=0, Current=1e-3, Voltage=65536, ChMode="C", **DIRECT)
    with pytest.raises(json.JSONDecodeError):
        json.loads(client.raw({"FClass": 1, "FNum": 2}))
    assert client(4, 7, Chan=0)["Stat"] == 1
    assert client(4, 7, Chan=0)["Stat"] == 1  # reply 4: the alarm comes with it
    assert client(4, 7, Chan=0)["Stat"] == 2 and not server.cell(0).output_on


def test_options_name_the_channel_number() -> None:
    with pytest.raises(ValueError, match="whole number from 1"):
        MaccorOptions.parse({"channel": "0"})
    assert MaccorOptions.parse({"channel": "12"}).chan == 11


def test_labctl_sim_server_serves_the_macnet_emulator() -> None:
    with sim_server("--model", "maccor", "--option", "channels=12") as resource:
        client = Client(int(resource.rsplit(":", 1)[1]))
        assert client(1, 2)["TestChannels"] == 12
        client.close()


def test_scheduled_faults_can_target_one_channel() -> None:
    """``--option fault_channel=2``: ``--fault`` counts and hits only replies about channel 2."""
    clock = VirtualClock()
    with serve(SimParams(), clock=clock, channels=2, fault_channel=2) as server:
        install(server, [FaultPlan.parse("garbled@1"), FaultPlan.parse("instrument-error@2")], "maccor")
        client = Client(server.port)
        try:
            assert client(6, 7, Chan=0, Current=1e-3, Voltage=65536, ChMode="C", **DIRECT)["Result"] == "OK"
            with pytest.raises(json.JSONDecodeError):
                json.loads(client.raw({"FClass": 6, "FNum": 7, "Chan": 1, "Current": 1e-3, "Voltage": 65536,
                                       "ChMode": "C", **DIRECT}))  # fmt: skip
            assert client(4, 7, Chan=1)["Stat"] == 1  # its 2nd reply: the alarm comes with it
            assert client(4, 7, Chan=1)["Stat"] == 2
            assert client(4, 7, Chan=0)["Stat"] == 1
        finally:
            client.close()
    with pytest.raises(ValueError, match="no such channel"):
        serve(SimParams(), channels=2, fault_channel=3)
