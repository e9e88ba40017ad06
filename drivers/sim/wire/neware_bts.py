"""Neware BTS server, emulated: the BTS "TCP/IP communication protocol" (XML over
TCP, port 502 on the BTS PC) in front of many emulated cycler channels.

What is pinned to public material
---------------------------------
The message set and framing follow Neware's BTS server API as public clients
use it (Neware's "BTS TCP/IP communication protocol" document is what they
implement; we read the command set in the open-source ``NewareAPI`` client of
the Empa aurora/neware_api project and in ``NewareStep`` step-file writers):

* a message is ``<?xml version="1.0" encoding="UTF-8" ?><bts version="1.0">``
  + body + ``</bts>``, followed by the terminator ``\\n\\n#\\r\\n``; a reply
  is framed the same way;
* the body starts with ``<cmd>NAME</cmd>``; commands served here: ``connect``
  (``<username>``, ``<password>``, ``<type>``), ``getdevinfo`` (channels listed
  in ``<middle>`` with attributes ``ip devtype devid subdevid Channelid``),
  ``getchlstatus``, ``inquire`` (one ``<inquire ip devtype devid subdevid chlid>``
  per channel in ``<list count="n">``), ``inquiredf`` (``count`` = records of the
  latest test), ``start`` (``<start … barcode="…">STEP-FILE PATH</start>``
  per channel, reply text ``ok`` or ``false``), ``stop``, ``continue``,
  ``download`` (``<download devtype devid subdevid chlid auxid testid
  startpos count/>``, records from ``startpos``, 1-based), ``light``,
  ``clearflag``;
* channel states (``workstatus``): ``working``, ``stop``, ``finish``,
  ``protect`` (an alarm stopped it), ``pause``; a test may start only from
  ``finish``, ``stop`` or ``protect``;
* step files: ``Step_Info`` holding ``Step1…StepN`` with ``Step_ID`` and
  ``Step_Type`` (1 CC charge, 2 CC discharge, 3 CV charge, 4 rest, 5 cycle,
  6 end, 7 CC-CV charge, 19 CV discharge, 20 CC-CV discharge) and
  ``Limit/Main`` values ``Curr`` (mA), ``Volt``/``Stop_Volt`` (0.1 mV),
  ``Stop_Curr`` (mA), ``Time`` (ms); a cycle step's ``Limit/Other`` has
  ``Start_Step`` and ``Cycle_Count``.

What is ours (not in the public material we found): the names of a download
record's attributes and the units of replies (``volt`` V, ``current`` A signed,
``cap`` mAh as a magnitude, times in s, ``atime`` the instrument's date-time), the
``<result>`` of ``connect``, ``Record/Main/Time`` (ms) as a step's record
interval, and ``alarm`` naming why a channel is in ``protect``.

Faults: ``server.faults`` (transport, for ``--fault``: no reply, garbled reply,
dropped connection, as every emulator), ``instrument-error`` = a channel alarm
(the first working channel goes to ``protect``, output off), and per channel:
``inject(address, kind)`` makes the next reply about that channel vanish,
arrive garbled or drop its connection, or raises an alarm on it, leaving the
other channels alone.
"""

from __future__ import annotations

import threading
import xml.etree.ElementTree as ET
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from xml.sax.saxutils import quoteattr

from drivers.sim import SimParams
from drivers.sim.wire.cycler_cell import CyclerCell, Program, Record, Segment
from drivers.sim.wire.cycler_server import CyclerServer
from drivers.sim.wire.transport import (
    LineHandler,
    Session,
    TcpServer,
)
from labctl.clock import Clock, ScaledClock

HEADER = '<?xml version="1.0" encoding="UTF-8" ?><bts version="1.0">'
FOOTER = "</bts>"
TERMINATOR = b"\n\n#\r\n"
DEVTYPE = 24
#: The instrument's date-time at emulator time 0 (records carry date-times).
EPOCH = datetime(2026, 1, 1, tzinfo=UTC)
STARTABLE = ("finish", "stop", "protect")


def frame(body: str) -> bytes:
    return (HEADER + body + FOOTER).encode("utf-8") + TERMINATOR


class StepFileError(ValueError):
    """A step file the server cannot run."""


def _value(step: ET.Element, path: str) -> float | None:
    node = step.find(path)
    if node is None:
        return None
    try:
        return float(node.get("Value", ""))
    except ValueError as exc:
        raise StepFileError(f"{step.tag}: {path} has no numeric Value") from exc


def parse_step_file(text: str) -> tuple[Program, float | None]:
    """A BTS step file -> the program and its record interval (s, None = default)."""
    try:
        root = ET.fromstring(text)
    except ET.ParseError as exc:
        raise StepFileError(f"not XML: {exc}") from exc
    info = root.find(".//Step_Info")
    if info is None:
        raise StepFileError("no Step_Info")
    steps = sorted(
        (s for s in info if s.tag.startswith("Step") and s.get("Step_ID")), key=lambda s: int(s.get("Step_ID", "0"))
    )
    segments: list[Segment] = []
    loops: dict[int, tuple[int, int]] = {}
    index_of_step: dict[int, int] = {}
    record: float | None = None
    for s in steps:
        sid, kind = int(s.get("Step_ID", "0")), int(s.get("Step_Type", "0"))
        ms = _value(s, "Limit/Main/Time")
        duration = None if ms is None else ms / 1000.0
        curr = (_value(s, "Limit/Main/Curr") or 0.0) / 1000.0
        volt = _value(s, "Limit/Main/Volt")
        stop_v = _value(s, "Limit/Main/Stop_Volt")
        stop_i = _value(s, "Limit/Main/Stop_Curr")
        rec = _value(s, "Record/Main/Time")
        if rec is not None and rec > 0:
            record = rec / 1000.0 if record is None else min(record, rec / 1000.0)
        v = None if volt is None else volt / 10000.0
        sv = None if stop_v is None else stop_v / 10000.0
        si = None if stop_i is None else stop_i / 1000.0
        index_of_step[sid] = len(segments)
        if kind == 4:
            if duration is None:
                raise StepFileError(f"Step{sid}: a rest needs a Time")
            segments.append(Segment("rest", duration=duration, step_id=sid, step_type=kind))
        elif kind in (1, 2):
            sign = 1.0 if kind == 1 else -1.0
            if sv is None and duration is None:
                raise StepFileError(f"Step{sid}: a CC step needs Stop_Volt or Time")
            above, below = (sv, None) if kind == 1 else (None, sv)
            segments.append(Segment("cc", sign * curr, 0.0, duration, above, below, None, sid, kind))
        elif kind in (3, 19):
            if v is None or (si is None and duration is None):
                raise StepFileError(f"Step{sid}: a CV step needs Volt and Stop_Curr or Time")
            segments.append(Segment("cv", curr, v, duration, None, None, si, sid, kind))
        elif kind in (7, 20):
            if v is None or (si is None and duration is None):
                raise StepFileError(f"Step{sid}: a CC-CV step needs Volt and Stop_Curr or Time")
            sign = 1.0 if kind == 7 else -1.0
            above, below = (v, None) if kind == 7 else (None, v)
            segments.append(Segment("cc", sign * curr, 0.0, duration, above, below, None, sid, kind))
            segments.append(Segment("cv", curr, v, duration, None, None, si, sid, kind))
        elif kind == 5:
            start = _value(s, "Limit/Other/Start_Step")
            count = _value(s, "Limit/Other/Cycle_Count")
            if start is None or count is None or int(start) not in index_of_step or not segments:
                raise StepFileError(f"Step{sid}: a cycle needs Start_Step (an earlier step) and Cycle_Count")
            loops[len(segments) - 1] = (index_of_step[int(start)], int(count))
        elif kind == 6:
            break
        else:
            raise StepFileError(f"Step{sid}: Step_Type {kind} is not emulated")
    if not segments:
        raise StepFileError("no steps")
    return Program(segments, loops), record


class NewareModel:
    """The BTS server's channels and command handling (one per server)."""

    def __init__(
        self,
        params: SimParams,
        clock: Clock,
        *,
        devid: int = 27,
        units: int = 1,
        channels: int = 8,
        cell_type: str = "auto",
        record_period: float = 1.0,
        ip: str = "127.0.0.1",
        channel_clocks: dict[str, Clock] | None = None,
        fault_channel: tuple[int, int, int] | None = None,
    ) -> None:
        self.clock = clock
        #: ``--fault`` acts only on replies about this channel (None: on every reply)
        self.fault_channel = fault_channel
        self.ip = ip
        self.devid = devid
        self.record_period = record_period
        self.lock = threading.RLock()
        self.cells: dict[tuple[int, int, int], CyclerCell] = {}
        for unit in range(1, units + 1):
            for chl in range(1, channels + 1):
                seeded = SimParams(**{**params.as_dict(), "seed": params.seed + 1000 * unit + chl})
                own = (channel_clocks or {}).get(f"{devid}-{unit}-{chl}", clock)
                self.cells[(devid, unit, chl)] = CyclerCell(seeded, cell_type, own, record_period)
        #: per-channel faults pending: address -> kinds
        self.pending: dict[tuple[int, int, int], list[str]] = {}
        self.log: list[str] = []

    # --- helpers ------------------------------------------------------------------------
    def _address(self, el: ET.Element) -> tuple[int, int, int] | None:
        try:
            key = (int(el.get("devid", "")), int(el.get("subdevid", "")), int(el.get("chlid", "")))
        except ValueError:
            return None
        return key if key in self.cells else None

    def _attrs(self, key: tuple[int, int, int]) -> str:
        d, u, c = key
        return f'ip="{self.ip}" devtype="{DEVTYPE}" devid="{d}" subdevid="{u}" chlid="{c}"'

    def atime(self, t: float) -> str:
        return (EPOCH + timedelta(seconds=t)).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]

    def take_fault(self, keys: list[tuple[int, int, int]]) -> str | None:
        """A per-channel transport fault armed for one of ``keys`` (consumed)."""
        for key in keys:
            kinds = self.pending.get(key)
            if kinds:
                return kinds.pop(0) or None
        return None

    # --- commands -----------------------------------------------------------------------
    def execute(self, body: ET.Element) -> tuple[str, list[tuple[int, int, int]]]:
        """One request -> (reply body, the channels it concerned)."""
        cmd = (body.findtext("cmd") or "").strip()
        self.log.append(cmd)
        with self.lock:
            handler = getattr(self, f"_cmd_{cmd.lower()}", None)
            if handler is None:
                return f"<cmd>{cmd}</cmd><result>false</result><error>unknown command</error>", []
            return handler(body)

    def _cmd_connect(self, body: ET.Element) -> tuple[str, list[Any]]:
        ok = bool(body.findtext("username")) and body.findtext("password") is not None
        return f"<cmd>connect</cmd><result>{'ok' if ok else 'false'}</result>", []

    def _cmd_getdevinfo(self, body: ET.Element) -> tuple[str, list[Any]]:
        items = "".join(
            f'<channel ip="{self.ip}" devtype="{DEVTYPE}" devid="{d}" subdevid="{u}" Channelid="{c}">true</channel>'
            for d, u, c in self.cells
        )
        return f'<cmd>getdevinfo</cmd><middle count="{len(self.cells)}">{items}</middle>', []

    def _each(self, body: ET.Element, tag: str) -> list[tuple[ET.Element, tuple[int, int, int] | None]]:
        lst = body.find("list")
        if lst is None:
            return []
        return [(el, self._address(el)) for el in lst if el.tag == tag]

    def _status_attrs(self, key: tuple[int, int, int]) -> str:
        cell = self.cells[key]
        cell.advance()
        e, i = cell.reading()
        seg = cell.segment
        step = seg.step_id if seg is not None and cell.status == "working" else 0
        return (
            f'{self._attrs(key)} testid="{cell.test_id}" cycle="{cell.cycle}" step="{step}" '
            f'workstatus="{cell.status}" volt="{e:.5f}" current="{i:.7f}" '
            f'totaltime="{cell.test_time():.3f}" relativetime="{cell.step_time():.3f}" '
            f'open_or_close="1" alarm={quoteattr(cell.alarm)}'
        )

    def _cmd_inquire(self, body: ET.Element) -> tuple[str, list[Any]]:
        out, keys = [], []
        for _el, key in self._each(body, "inquire"):
            if key is None:
                out.append('<inquire workstatus="invalid">false</inquire>')
                continue
            keys.append(key)
            out.append(f"<inquire {self._status_attrs(key)}>true</inquire>")
        return f'<cmd>inquire</cmd><list count="{len(out)}">{"".join(out)}</list>', keys

    def _cmd_getchlstatus(self, body: ET.Element) -> tuple[str, list[Any]]:
        out, keys = [], []
        for _el, key in self._each(body, "status"):
            if key is None:
                out.append("<status>false</status>")
                continue
            keys.append(key)
            self.cells[key].advance()
            out.append(f"<status {self._attrs(key)}>{self.cells[key].status}</status>")
        return f'<cmd>getchlstatus</cmd><list count="{len(out)}">{"".join(out)}</list>', keys

    def _cmd_inquiredf(self, body: ET.Element) -> tuple[str, list[Any]]:
        out, keys = [], []
        for _el, key in self._each(body, "chl"):
            if key is None:
                out.append("<chl>false</chl>")
                continue
            keys.append(key)
            cell = self.cells[key]
            cell.advance()
            out.append(f'<chl {self._attrs(key)} testid="{cell.test_id}" count="{len(cell.records)}">true</chl>')
        return f'<cmd>inquiredf</cmd><list count="{len(out)}">{"".join(out)}</list>', keys

    def _cmd_start(self, body: ET.Element) -> tuple[str, list[Any]]:
        out, keys = [], []
        for el, key in self._each(body, "start"):
            if key is None:
                out.append("<start>false</start>")
                continue
            keys.append(key)
            cell = self.cells[key]
            cell.advance()
            ok = "false"
            if cell.status in STARTABLE:
                try:
                    program, record = parse_step_file(Path((el.text or "").strip()).read_text(encoding="utf-8"))
                except (OSError, StepFileError) as exc:
                    self.log.append(f"start refused: {exc}")
                else:
                    cell.record_period = record or self.record_period
                    cell.start(program)
                    ok = "ok"
            out.append(f"<start {self._attrs(key)}>{ok}</start>")
        return f'<cmd>start</cmd><list count="{len(out)}">{"".join(out)}</list>', keys

    def _simple(self, body: ET.Element, tag: str, action: Callable[[CyclerCell], bool]) -> tuple[str, list[Any]]:
        out, keys = [], []
        for _el, key in self._each(body, tag):
            if key is None:
                out.append(f"<{tag}>false</{tag}>")
                continue
            keys.append(key)
            ok = action(self.cells[key])
            out.append(f"<{tag} {self._attrs(key)}>{'ok' if ok else 'false'}</{tag}>")
        return f'<cmd>{tag}</cmd><list count="{len(out)}">{"".join(out)}</list>', keys

    def _cmd_stop(self, body: ET.Element) -> tuple[str, list[Any]]:
        def stop(cell: CyclerCell) -> bool:
            cell.stop()
            return True

        return self._simple(body, "stop", stop)

    def _cmd_continue(self, body: ET.Element) -> tuple[str, list[Any]]:
        return self._simple(body, "continue", lambda cell: cell.resume())

    def _cmd_light(self, body: ET.Element) -> tuple[str, list[Any]]:
        return self._simple(body, "light", lambda cell: True)

    def _cmd_clearflag(self, body: ET.Element) -> tuple[str, list[Any]]:
        def clear(cell: CyclerCell) -> bool:
            cell.alarm = ""
            return True

        return self._simple(body, "clearflag", clear)

    def _record(self, r: Record) -> str:
        return (
            f'<record seq="{r.seq}" cycle="{r.cycle}" step="{r.step_id}" steptype="{r.step_type}" '
            f'testtime="{r.test_time:.3f}" steptime="{r.step_time:.3f}" volt="{r.voltage:.6f}" '
            f'current="{r.current:.8f}" cap="{abs(r.capacity) / 3.6:.8f}" atime="{self.atime(r.abs_time)}"/>'
        )

    def _cmd_download(self, body: ET.Element) -> tuple[str, list[Any]]:
        el = body.find("download")
        key = None if el is None else self._address(el)
        if el is None or key is None:
            return '<cmd>download</cmd><list count="0"></list><result>false</result>', []
        cell = self.cells[key]
        cell.advance()
        try:
            start, count = int(el.get("startpos", "1")), int(el.get("count", "0"))
            testid = int(el.get("testid", "0"))
        except ValueError:
            return '<cmd>download</cmd><list count="0"></list><result>false</result>', [key]
        if testid not in (0, cell.test_id):
            return f'<cmd>download</cmd><list count="0" testid="{cell.test_id}"></list>', [key]
        chosen = cell.records[max(start, 1) - 1 : max(start, 1) - 1 + max(count, 0)]
        rows = "".join(self._record(r) for r in chosen)
        return (f'<cmd>download</cmd><list count="{len(chosen)}" testid="{cell.test_id}">{rows}</list>', [key])


class NewareHandler(LineHandler):
    def __init__(self, session: Session, model: NewareModel) -> None:
        self.session = session
        self.model = model

    def on_line(self, line: bytes) -> None:
        text = line.decode("utf-8", errors="replace").strip()
        if not text:
            return
        try:
            body = ET.fromstring(text)
        except ET.ParseError:
            refusal = frame("<cmd>error</cmd><result>false</result><error>XML does not parse</error>")
            self.session.send(refusal, frame_end=TERMINATOR)
            return
        reply, keys = self.model.execute(body)
        fault = self.model.take_fault(keys)
        if fault == "alarm":
            with self.model.lock:
                for key in keys:
                    self.model.cells[key].raise_alarm()
            fault = None
        data = frame(reply)
        if fault == "no-reply":
            return
        if fault == "drop-link":
            self.session.close()
            return
        target = self.model.fault_channel
        scheduled = target is None or target in keys
        self.session.send(data, garbled=fault == "garbled", scheduled=scheduled, frame_end=TERMINATOR)


class NewareServer(CyclerServer[tuple[int, int, int]]):
    """A running BTS server emulator; channels by address ``"devid-subdevid-chlid"``; an
    alarm stops one in ``protect``."""

    alarm_text = "over-voltage protection"

    def key(self, channel: str) -> tuple[int, int, int]:
        d, u, c = (int(x) for x in channel.split("-"))
        return d, u, c

def _address(text: str | None, devid: int, units: int, channels: int) -> tuple[int, int, int] | None:
    if text is None:
        return None
    try:
        d, u, c = (int(x) for x in str(text).split("-"))
    except ValueError:
        raise ValueError(f"fault_channel {text!r}: not an address (allowed: DEVID-UNIT-CHANNEL)") from None
    if d != devid or not 1 <= u <= units or not 1 <= c <= channels:
        raise ValueError(f"fault_channel {text!r}: no such channel (allowed: {devid}-1-1 … {devid}-{units}-{channels})")
    return d, u, c


def serve(
    params: SimParams,
    *,
    port: int = 0,
    speed: float = 1.0,
    cell_type: str = "auto",
    clock: Clock | None = None,
    devid: int = 27,
    units: int = 1,
    channels: int = 8,
    record_period: float = 1.0,
    channel_clocks: dict[str, Clock] | None = None,
    fault_channel: str | None = None,
    **options: Any,
) -> NewareServer:
    """Start a BTS server emulator with ``units`` × ``channels`` channels (addresses
    ``devid-unit-channel``, from 1). ``clock``: share a VirtualClock with the driver
    (lockstep tests); ``channel_clocks``: a clock per address (lockstep drivers in
    parallel threads); otherwise ``speed`` × real time. ``fault_channel``
    (``devid-unit-channel``): scheduled faults (``--fault``) act on that channel only."""
    if options:
        allowed = "devid, units, channels, record_period, fault_channel"
        raise TypeError(f"unknown option(s) {', '.join(sorted(options))} (allowed: {allowed})")
    model = NewareModel(
        params,
        clock or ScaledClock(speed),
        devid=int(devid),
        units=int(units),
        channels=int(channels),
        cell_type=cell_type,
        record_period=float(record_period),
        channel_clocks=channel_clocks,
        fault_channel=_address(fault_channel, int(devid), int(units), int(channels)),
    )

    def handler(session: Session) -> NewareHandler:
        return NewareHandler(session, model)

    tcp = TcpServer(handler, port=int(port), terminators=(TERMINATOR,)).start()
    return NewareServer(model, tcp)
