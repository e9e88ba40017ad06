"""The Neware BTS emulator and step-file writer against the published message formats.

These tests speak the BTS TCP/IP protocol by hand, from the formats public clients
document (the aurora ``NewareAPI`` client; ``NewareStep`` step-file writers), not
through our driver: framing ``<?xml …?><bts version="1.0">…</bts>`` + ``\\n\\n#\\r\\n``,
``getdevinfo``'s ``<middle>`` rows with ``Channelid``, per-channel lists of
``inquire``/``start``/``stop``, ``download`` by ``startpos``/``count`` from 1, the
``workstatus`` words, and step files with ``Step_Type`` codes and scaled units
(mA, 0.1 mV, ms).
"""

from __future__ import annotations

import socket
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from drivers.neware.options import NewareOptions
from drivers.neware.stepfile import StepFileRefusal, compile_steps
from drivers.sim import SimParams
from drivers.sim.wire.faults import FaultPlan, install
from drivers.sim.wire.neware_bts import serve
from labctl.clock import VirtualClock
from labctl.steps import ConstantCurrent, ConstantVoltage, Limits, Rest, VoltageSweep
from tests.signal_trial import sim_server

HEADER = '<?xml version="1.0" encoding="UTF-8" ?><bts version="1.0">'
TERM = b"\n\n#\r\n"
CHL = 'ip="127.0.0.1" devtype="24" devid="27" subdevid="1" chlid="{}"'


class Client:
    """A bare BTS client: one framed request, one framed reply."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=5)
        self.buf = b""

    def raw(self, body: str) -> bytes:
        self.sock.sendall((HEADER + body + "</bts>").encode() + TERM)
        while TERM not in self.buf:
            chunk = self.sock.recv(65536)
            assert chunk, "server closed the link"
            self.buf += chunk
        reply, _, self.buf = self.buf.partition(TERM)
        return reply

    def __call__(self, body: str) -> ET.Element:
        return ET.fromstring(self.raw(body).decode())

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def bts():
    clock = VirtualClock()
    server = serve(SimParams(), clock=clock, channels=3, record_period=10.0)
    client = Client(server.port)
    yield server, client, clock
    client.close()
    server.stop()


def rows(root: ET.Element, tag: str = "list") -> list[ET.Element]:
    node = root.find(tag)
    assert node is not None
    return list(node)


def step_file(path: Path) -> Path:
    """A step file as published writers produce it: rest 60 s; CC-CV charge 1 mA to
    4.2 V, cut at 0.2 mA; CC discharge 1 mA to 3.0 V; cycle steps 2-3 twice; end."""
    path.write_text(
        '<?xml version="1.0" encoding="UTF-8"?><root><config type="Step File" version="17"/>'
        '<Step_Info Num="5">'
        '<Step1 Step_ID="1" Step_Type="4"><Limit><Main><Time Value="60000"/></Main></Limit></Step1>'
        '<Step2 Step_ID="2" Step_Type="7"><Limit><Main><Curr Value="1"/><Volt Value="42000"/>'
        '<Stop_Curr Value="0.2"/></Main></Limit></Step2>'
        '<Step3 Step_ID="3" Step_Type="2"><Limit><Main><Curr Value="1"/><Stop_Volt Value="30000"/></Main></Limit>'
        "</Step3>"
        '<Step4 Step_ID="4" Step_Type="5"><Limit><Other><Start_Step Value="2"/><Cycle_Count Value="2"/></Other>'
        "</Limit></Step4>"
        '<Step5 Step_ID="5" Step_Type="6"/></Step_Info></root>',
        encoding="utf-8",
    )
    return path


def test_framing_connect_and_getdevinfo(bts) -> None:
    _server, client, _ = bts
    raw = client.raw("<cmd>connect</cmd><username>admin</username><password>neware</password><type>bfgs</type>")
    assert raw.startswith(HEADER.encode()) and raw.endswith(b"</bts>")
    assert ET.fromstring(raw).findtext("result") == "ok"
    info = client("<cmd>getdevinfo</cmd>")
    chans = rows(info, "middle")
    assert [(c.get("devid"), c.get("subdevid"), c.get("Channelid")) for c in chans] == [
        ("27", "1", "1"),
        ("27", "1", "2"),
        ("27", "1", "3"),
    ]
    assert all(c.get("ip") and c.get("devtype") for c in chans)


def test_a_published_step_file_runs_with_its_units_and_cycles(bts, tmp_path: Path) -> None:
    _server, client, clock = bts
    path = step_file(tmp_path / "cccv.xml")
    start = client(f'<cmd>start</cmd><list count="1"><start {CHL.format(2)} barcode="x">{path}</start></list>')
    assert rows(start)[0].text == "ok"
    # a second start while it works is refused
    again = client(f'<cmd>start</cmd><list count="1"><start {CHL.format(2)} barcode="x">{path}</start></list>')
    assert rows(again)[0].text == "false"
    status = rows(client(f'<cmd>inquire</cmd><list count="1"><inquire {CHL.format(2)}>true</inquire></list>'))[0]
    assert status.get("workstatus") == "working" and status.get("step") == "1"
    clock.sleep(30 * 3600)
    status = rows(client(f'<cmd>inquire</cmd><list count="1"><inquire {CHL.format(2)}>true</inquire></list>'))[0]
    assert status.get("workstatus") == "finish"
    count = int(
        rows(client(f'<cmd>inquiredf</cmd><list count="1"><chl {CHL.format(2)} testid="0"/></list>'))[0].get("count")
    )
    data = []
    pos = 1
    while True:  # download in chunks of 100 by startpos (1-based)
        got = rows(
            client(
                '<cmd>download</cmd><download devtype="24" devid="27" subdevid="1" chlid="2" auxid="0" testid="0" '
                f'startpos="{pos}" count="100"/>'
            )
        )
        data += got
        pos += len(got)
        if len(got) < 100:
            break
    assert len(data) == count > 50
    steps = [int(r.get("step")) for r in data]
    order = [s for i, s in enumerate(steps) if i == 0 or s != steps[i - 1]]
    assert order == [1, 2, 3, 2, 3]  # the cycle step ran steps 2-3 twice
    assert {int(r.get("cycle")) for r in data} == {1, 2}
    rest = [r for r in data if r.get("step") == "1"]
    assert float(rest[-1].get("testtime")) == pytest.approx(60.0)  # Time 60000 ms
    charge = [r for r in data if r.get("step") == "2"]
    assert float(charge[1].get("current")) == pytest.approx(1e-3, rel=1e-3)  # Curr 1 mA
    assert max(float(r.get("volt")) for r in charge) == pytest.approx(4.2, abs=1e-4)  # Volt 42000 × 0.1 mV
    assert abs(float(charge[-1].get("current"))) == pytest.approx(2e-4, rel=0.02)  # Stop_Curr 0.2 mA
    discharge = [r for r in data if r.get("step") == "3"]
    assert float(discharge[-1].get("volt")) == pytest.approx(3.0, abs=1e-4)  # Stop_Volt 30000
    assert all(r.get("atime") for r in data)


def test_stop_continue_and_alarm_states(bts, tmp_path: Path) -> None:
    server, client, clock = bts
    path = step_file(tmp_path / "cccv.xml")
    client(f'<cmd>start</cmd><list count="1"><start {CHL.format(1)} barcode="x">{path}</start></list>')
    clock.sleep(120)
    stop = rows(client(f'<cmd>stop</cmd><list count="1"><stop {CHL.format(1)}>true</stop></list>'))[0]
    assert stop.text == "ok"
    inquire = f'<cmd>inquire</cmd><list count="1"><inquire {CHL.format(1)}>true</inquire></list>'
    assert rows(client(inquire))[0].get("workstatus") == "stop"
    assert not server.cell("27-1-1").output_on
    cont = client(f'<cmd>continue</cmd><list count="1"><continue {CHL.format(1)}>true</continue></list>')
    assert rows(cont)[0].text == "ok"
    assert rows(client(inquire))[0].get("workstatus") == "working"
    server.inject("27-1-1", "alarm")
    assert rows(client(inquire))[0].get("workstatus") == "protect"
    assert not server.cell("27-1-1").output_on
    # a protected channel may be started again (the published rule: finish, stop or protect)
    start = client(f'<cmd>start</cmd><list count="1"><start {CHL.format(1)} barcode="x">{path}</start></list>')
    assert rows(start)[0].text == "ok"


def test_compiled_step_files_use_the_published_types_and_units() -> None:
    text = compile_steps(
        [
            Rest(duration=30.0),
            ConstantCurrent(current=1.5e-3, limits=Limits(voltage_above=4.2, max_time=7200)),
            ConstantVoltage(voltage=4.2, limits=Limits(current_below=1e-4)),
            ConstantCurrent(current=-2e-3, limits=Limits(voltage_below=2.8)),
            ConstantVoltage(voltage=3.0, limits=Limits(max_time=60)),
        ],
        record_period=5.0,
        max_current=0.01,
        cycles=3,
        last_voltage=3.5,
    )
    info = ET.fromstring(text).find("Step_Info")
    assert info is not None and info.get("Num") == "7"
    steps = list(info)
    assert [(s.tag, s.get("Step_ID"), s.get("Step_Type")) for s in steps] == [
        ("Step1", "1", "4"),
        ("Step2", "2", "1"),
        ("Step3", "3", "3"),
        ("Step4", "4", "2"),
        ("Step5", "5", "19"),  # 3.0 V below the last 3.5 V: CV discharge
        ("Step6", "6", "5"),
        ("Step7", "7", "6"),
    ]

    def main(step: ET.Element) -> dict[str, str]:
        return {el.tag: el.get("Value", "") for el in step.find("Limit/Main")}  # type: ignore[union-attr]

    assert main(steps[0]) == {"Time": "30000"}
    assert main(steps[1]) == {"Curr": "1.5", "Stop_Volt": "42000", "Time": "7200000"}
    assert main(steps[2]) == {"Curr": "10", "Volt": "42000", "Stop_Curr": "0.1"}
    assert main(steps[3]) == {"Curr": "2", "Stop_Volt": "28000"}
    other = {el.tag: el.get("Value") for el in steps[5].find("Limit/Other")}  # type: ignore[union-attr]
    assert other == {"Start_Step": "1", "Cycle_Count": "3"}
    assert steps[0].find("Record/Main/Time").get("Value") == "5000"  # type: ignore[union-attr]


def test_steps_a_step_file_cannot_say_are_refused() -> None:
    with pytest.raises(StepFileRefusal, match="VoltageSweep"):
        compile_steps([VoltageSweep(stop=4.0)], record_period=1, max_current=1)
    with pytest.raises(StepFileRefusal, match="OCV"):
        compile_steps(
            [ConstantVoltage(voltage=0.01, vs_ocv=True, limits=Limits(max_time=5))], record_period=1, max_current=1
        )


def test_options_name_the_bts_address_form() -> None:
    with pytest.raises(ValueError, match="DEVID-SUBDEVID-CHLID"):
        NewareOptions.parse({"channel": "3"})
    assert NewareOptions.parse({"channel": "12-3-8"}).address == (12, 3, 8)


def test_scheduled_faults_of_the_sim_server_grammar(tmp_path: Path) -> None:
    """``--fault garbled@N`` and ``instrument-error`` (a channel alarm) on the BTS emulator."""
    clock = VirtualClock()
    with serve(SimParams(), clock=clock, channels=2) as server:
        install(server, [FaultPlan.parse("garbled@2"), FaultPlan.parse("instrument-error@3")], "neware")
        client = Client(server.port)
        try:
            path = step_file(tmp_path / "s.xml")
            client(f'<cmd>start</cmd><list count="1"><start {CHL.format(1)} barcode="x">{path}</start></list>')
            with pytest.raises(ET.ParseError):
                client("<cmd>getdevinfo</cmd>")  # reply 2 garbled
            client.buf = b""
            inquire = f'<cmd>inquire</cmd><list count="1"><inquire {CHL.format(1)}>true</inquire></list>'
            assert rows(client(inquire))[0].get("workstatus") == "working"  # reply 3: the alarm comes with it
            assert rows(client(inquire))[0].get("workstatus") == "protect"
            assert not server.cell("27-1-1").output_on
        finally:
            client.close()


def test_labctl_sim_server_serves_the_bts_emulator() -> None:
    with sim_server("--model", "neware", "--option", "channels=16") as resource:
        client = Client(int(resource.rsplit(":", 1)[1]))
        assert len(rows(client("<cmd>getdevinfo</cmd>"), "middle")) == 16
        client.close()


def test_a_lab_file_names_cycler_channels_by_their_bts_address(tmp_path: Path) -> None:
    from labctl.config import LabConfigError, load_lab

    good = tmp_path / "lab.toml"
    good.write_text(
        '[instruments.bts]\ndriver = "neware"\nresource = "tcp://192.0.2.7:502"\n'
        "[instruments.bts.channels.27-1-1]\n[instruments.bts.channels.27-2-8]\n",
        encoding="utf-8",
    )
    lab = load_lab(good)
    assert lab.channel("bts:27-2-8")[1].name == "27-2-8" and lab.instruments["bts"].kind == "cycler"
    bad = tmp_path / "bad.toml"
    bad.write_text(good.read_text().replace("27-2-8", "8"), encoding="utf-8")
    with pytest.raises(LabConfigError, match=r"channels\.8.*DEVID-SUBDEVID-CHLID"):
        load_lab(bad)


def test_scheduled_faults_can_target_one_channel(tmp_path: Path) -> None:
    """``--option fault_channel=27-1-2``: ``--fault`` counts and hits only replies about it."""
    clock = VirtualClock()
    with serve(SimParams(), clock=clock, channels=2, fault_channel="27-1-2") as server:
        install(server, [FaultPlan.parse("garbled@1"), FaultPlan.parse("instrument-error@2")], "neware")
        client = Client(server.port)
        try:
            path = step_file(tmp_path / "s.xml")
            for chl in (1, 2):
                client.buf = b""
                try:
                    client(
                        f'<cmd>start</cmd><list count="1"><start {CHL.format(chl)} barcode="x">{path}</start></list>'
                    )
                except ET.ParseError:
                    assert chl == 2  # the first reply about 27-1-2 is garbled, none about 27-1-1
            client.buf = b""
            inquire = '<cmd>inquire</cmd><list count="1"><inquire {}>true</inquire></list>'
            assert rows(client(inquire.format(CHL.format(1))))[0].get("workstatus") == "working"
            client(inquire.format(CHL.format(2)))  # its 2nd reply: the alarm comes with it
            assert rows(client(inquire.format(CHL.format(2))))[0].get("workstatus") == "protect"
            assert rows(client(inquire.format(CHL.format(1))))[0].get("workstatus") == "working"
        finally:
            client.close()
    with pytest.raises(ValueError, match="no such channel"):
        serve(SimParams(), channels=2, fault_channel="27-1-3")
