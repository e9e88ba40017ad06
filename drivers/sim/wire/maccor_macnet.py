"""Maccor MacNet server, emulated: JSON-RPC over TCP (port 57570 on the Maccor PC)
in front of many emulated cycler channels.

What is pinned to public material
---------------------------------
MacNet's JSON messages as Maccor documents them and the open-source
``pymacnet`` client (Battery Data Alliance) reproduces them: a request is
``{"jsonrpc": "2.0", "method": "MacNet", "params": {"FClass": c, "FNum": n,
"Chan": k, …}, "id": i}`` sent as one JSON text on the TCP stream; the reply is
``{"jsonrpc": "2.0", "result": {"FClass": c, "FNum": n, "Chan": k, …}, "id": i}``.
Channels (``Chan``) are numbered from 0 on the wire. Messages served here:

* (1, 1) software versions; (1, 2) general system information
  (``SystemType``, ``TestChannels`` …);
* (4, 1) status of ``Len`` channels from ``Chan`` (``RF1``, ``RF2``, ``Stat``
  each); (4, 7) all status and readings of one channel: ``RF1 RF2 Stat
  LastRecNum Cycle Step TestTime StepTime Capacity Energy Current Voltage
  TesterTime``;
* (6, 5) reset channel (the test ends, output off);
* (6, 7) start a direct-mode test: ``TestName``, ``Current`` (A), ``Voltage``
  (V), ``Power`` (W), ``Resistance``, ``CurrentRange``, ``ChMode`` (``C``,
  ``D`` or ``R``), ``DataTime``/``DataV``/``DataI`` (record increments); the
  set points are mutually limiting and a value outside the range is ignored;
* (6, 8) set direct output (same set points); refusals as documented: 1 illegal
  system type, 2 channel not active, 3 sent too fast (at least 100 ms between
  commands), 4 direct mode not active, 5 not ready;
* (6, 10) safety limits ``VSafeMax VSafeMin ISafeChg ISafeDis``: a channel
  crossing them is suspended.

What is ours (not in the public material we found): ``Stat`` values (0 idle,
1 running, 2 suspended by a safety limit or alarm, 3 ended or reset), signed
``Current`` (+ charge, − discharge), ``Capacity``/``Energy`` as magnitudes for
the present step in Ah/Wh, a refusal's ``Result`` as the documented number,
(6, 2) start-with-procedure answering "no such procedure" (no procedure files
here), and the range "outside the range" means (|I| > ``max_current``, V ≥ 100).

Faults: ``server.faults`` (transport, for ``--fault``), ``instrument-error`` =
a channel alarm (the first running channel is suspended, output off), and per
channel ``inject(chan, kind)`` (``no-reply``, ``garbled``, ``drop-link``,
``alarm``) acting on the replies about that channel only.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import threading
from datetime import UTC, datetime, timedelta
from typing import Any

from drivers.sim import SimParams
from drivers.sim.wire.cycler_cell import Program, Segment
from drivers.sim.wire.cycler_server import CyclerServer, channel_cells
from drivers.sim.wire.transport import (
    LineHandler,
    Session,
    TcpServer,
)
from labctl.clock import Clock, ScaledClock

log = logging.getLogger(__name__)

EPOCH = datetime(2026, 1, 1, tzinfo=UTC)
#: The least time between two direct-output commands of a channel (s).
MIN_COMMAND_GAP = 0.1
#: Set points at or beyond these are "outside the range" (ignored).
IGNORE_VOLTAGE = 100.0
STAT_IDLE, STAT_RUNNING, STAT_SUSPENDED, STAT_ENDED = 0, 1, 2, 3


class MaccorModel:
    """The MacNet server's channels and message handling."""

    def __init__(
        self,
        params: SimParams,
        clock: Clock,
        *,
        channels: int = 8,
        cell_type: str = "auto",
        max_current: float = 1.0,
        channel_clocks: dict[int, Clock] | None = None,
        fault_channel: int | None = None,
    ) -> None:
        self.clock = clock
        #: ``--fault`` acts only on replies about this channel (wire number; None: every reply)
        self.fault_channel = fault_channel
        self.max_current = max_current
        self.lock = threading.RLock()
        self.cells = channel_cells(params, cell_type, clock, channels, 1.0, channel_clocks)
        self.direct: list[bool] = [False] * channels
        self.last_command: list[float] = [-1e9] * channels
        self.safety: list[dict[str, float]] = [{} for _ in range(channels)]
        self.pending: dict[int, list[str]] = {}
        self.log: list[tuple[int, int]] = []
        #: Every (4, 7) reading sent, per channel, with the instrument clock time (for tests).
        self.served: dict[int, list[dict[str, Any]]] = {}

    def stat(self, chan: int) -> int:
        cell = self.cells[chan]
        self._check_safety(chan)
        if cell.status == "working":
            return STAT_RUNNING
        if cell.status == "protect":
            return STAT_SUSPENDED
        return STAT_ENDED if cell.test_id else STAT_IDLE

    def _check_safety(self, chan: int) -> None:
        cell, lim = self.cells[chan], self.safety[chan]
        if cell.status != "working" or not lim:
            return
        cell.advance()
        for r in cell.records[-50:]:
            v, i = r.voltage, r.current
            if (
                ("VSafeMax" in lim and lim["VSafeMax"] > 0 and v > lim["VSafeMax"])
                or ("VSafeMin" in lim and lim["VSafeMin"] > 0 and v < lim["VSafeMin"])
                or ("ISafeChg" in lim and lim["ISafeChg"] > 0 and i > lim["ISafeChg"])
                or ("ISafeDis" in lim and lim["ISafeDis"] > 0 and -i > lim["ISafeDis"])
            ):
                cell.raise_alarm(f"safety limit (V {v:.4f}, I {i:.4g})")
                return

    def segments(self, params: dict[str, Any]) -> list[Segment]:
        """Direct-mode set points -> what the channel does (mutually limiting)."""
        mode = str(params.get("ChMode", "R")).upper()[:1]
        if mode == "R":
            return [Segment("rest")]
        current = abs(float(params.get("Current", 0.0)))
        voltage = float(params.get("Voltage", IGNORE_VOLTAGE))
        use_i = current <= self.max_current
        use_v = abs(voltage) < IGNORE_VOLTAGE
        sign = 1.0 if mode == "C" else -1.0
        if not use_i and not use_v:
            raise ValueError("no set point in range")
        if not use_v:
            return [Segment("cc", sign * current)]
        if not use_i:
            return [Segment("cv", self.max_current, voltage)]
        above, below = (voltage, None) if sign > 0 else (None, voltage)
        return [Segment("cc", sign * current, 0.0, None, above, below), Segment("cv", current, voltage)]

    def execute(self, request: dict[str, Any]) -> tuple[dict[str, Any], int | None]:
        params = request.get("params") or {}
        fclass, fnum = params.get("FClass"), params.get("FNum")
        self.log.append((fclass, fnum))
        result: dict[str, Any] = {"FClass": fclass, "FNum": fnum}
        chan = params.get("Chan")
        if "Chan" in params:
            result["Chan"] = chan
        with self.lock:
            handler = getattr(self, f"_m{fclass}_{fnum}", None)
            if handler is None:
                return {"jsonrpc": "2.0", "error": {"code": -32601, "message": "unknown message"}}, None
            if "Chan" in params and not (isinstance(chan, int) and 0 <= chan < len(self.cells)):
                result["Result"] = 2
                return {"jsonrpc": "2.0", "result": result}, None
            result.update(handler(params))
        return {"jsonrpc": "2.0", "result": result}, chan if isinstance(chan, int) else None

    # --- messages -------------------------------------------------------------------------
    def _m1_1(self, p: dict[str, Any]) -> dict[str, Any]:
        return {
            "APIVersion": 1,
            "MacTest32EXEversionMajor": 3,
            "MacTest32EXEversionMinor": 3,
            "MacTest32EXEversionBuild": 1,
        }

    def _m1_2(self, p: dict[str, Any]) -> dict[str, Any]:
        return {
            "SystemID": "labctl-emulator",
            "SystemType": 0,
            "ControllerBoards": (len(self.cells) + 7) // 8,
            "TestChannels": len(self.cells),
            "AuxBoards": 0,
            "AuxChannels": 0,
        }

    def _m4_1(self, p: dict[str, Any]) -> dict[str, Any]:
        start, n = int(p.get("Chan", 0)), int(p.get("Len", 1))
        chans = range(max(start, 0), min(start + max(n, 0), len(self.cells)))
        return {"Len": len(chans), "Status": [{"RF1": 0, "RF2": 0, "Stat": self.stat(c)} for c in chans]}

    def _m4_7(self, p: dict[str, Any]) -> dict[str, Any]:
        chan = p["Chan"]
        stat = self.stat(chan)
        cell = self.cells[chan]
        cell.advance()
        e, i = cell.reading()
        q = abs(cell.capacity()) / 3600.0
        seg = cell.segment
        running = cell.status == "working"
        return {
            "RF1": 0,
            "RF2": 192 if stat == STAT_SUSPENDED else 0,
            "Stat": stat,
            "LastRecNum": len(cell.records),
            "Cycle": cell.cycle - 1,
            "Step": (seg.step_id if seg is not None else 0) if running else 0,
            "TestTime": round(cell.test_time(), 3) if cell.test_id else 0.0,
            "StepTime": round(cell.step_time(), 3) if cell.test_id else 0.0,
            "Capacity": q,
            "Energy": q * abs(e),
            "Current": i,
            "Voltage": e,
            "TesterTime": (EPOCH + timedelta(seconds=cell.clock.now())).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3],
        }

    def _m6_2(self, p: dict[str, Any]) -> dict[str, Any]:
        return {"Result": f"procedure {str(p.get('ProcName', '')).strip()!r} not found"}

    def _m6_5(self, p: dict[str, Any]) -> dict[str, Any]:
        chan = p["Chan"]
        self.cells[chan].stop("finish")
        self.direct[chan] = False
        return {"Result": "OK"}

    def _m6_7(self, p: dict[str, Any]) -> dict[str, Any]:
        chan = p["Chan"]
        cell = self.cells[chan]
        cell.advance()
        if cell.status == "working":
            return {"Result": 5}
        try:
            segments = self.segments(p)
        except (TypeError, ValueError):
            return {"Result": 5}
        data_time = float(p.get("DataTime", 1.0) or 0.0)
        cell.record_period = data_time if data_time > 0 else 1e9
        cell.start(Program([]))
        cell.set_output(segments)
        self.direct[chan] = True
        self.last_command[chan] = cell.clock.now()
        return {"Result": "OK"}

    def _m6_8(self, p: dict[str, Any]) -> dict[str, Any]:
        chan = p["Chan"]
        cell = self.cells[chan]
        cell.advance()
        if cell.status != "working":
            return {"Result": 2}
        if not self.direct[chan]:
            return {"Result": 4}
        now = cell.clock.now()
        if now - self.last_command[chan] < MIN_COMMAND_GAP - 1e-9:
            return {"Result": 3}
        try:
            segments = self.segments(p)
        except (TypeError, ValueError):
            return {"Result": 5}
        step = (cell.segment.step_id if cell.segment is not None else 0) + 1
        cell.set_output([dataclasses.replace(s, step_id=step) for s in segments])
        self.last_command[chan] = now
        return {"Result": "OK"}

    def _m6_10(self, p: dict[str, Any]) -> dict[str, Any]:
        keys = ("VSafeMax", "VSafeMin", "ISafeChg", "ISafeDis", "PBatSafeChg", "PBatSafeDis")
        self.safety[p["Chan"]] = {k: float(p[k]) for k in keys if k in p}
        return {k: p.get(k, 0) for k in keys}


def _split_json(buffer: bytearray) -> list[bytes]:
    """Complete JSON texts at the front of ``buffer`` (MacNet sends them back to back)."""
    out = []
    decoder = json.JSONDecoder()
    while True:
        text = bytes(buffer).decode("utf-8", errors="replace").lstrip()
        if not text:
            buffer.clear()
            return out
        try:
            _, end = decoder.raw_decode(text)
        except json.JSONDecodeError:
            if text.count("{") <= text.count("}") and text.strip():
                out.append(text.encode())  # a complete but broken text: answer it with an error
                buffer.clear()
            return out
        out.append(text[:end].encode())
        buffer[:] = text[end:].encode()


class JsonTcpServer(TcpServer):
    """``TcpServer`` for a stream of JSON texts (no line terminator)."""

    def _split(self, buffer: bytearray) -> list[bytes]:
        return _split_json(buffer)


class MaccorHandler(LineHandler):
    def __init__(self, session: Session, model: MaccorModel) -> None:
        self.session = session
        self.model = model

    def on_line(self, line: bytes) -> None:
        try:
            request = json.loads(line)
            if not isinstance(request, dict):
                raise ValueError("not an object")
        except ValueError:
            reply = {"jsonrpc": "2.0", "error": {"code": -32700, "message": "parse error"}, "id": None}
            self.session.send(json.dumps(reply).encode())
            return
        reply, chan = self.model.execute(request)
        reply["id"] = request.get("id")
        data = json.dumps(reply).encode()
        fault = None
        if chan is not None:
            with self.model.lock:
                kinds = self.model.pending.get(chan)
                fault = (kinds.pop(0) or None) if kinds else None
        if fault == "alarm":
            with self.model.lock:
                self.model.cells[chan].raise_alarm("alarm")  # type: ignore[index]
            fault = None
        if fault == "no-reply":
            return
        if fault == "drop-link":
            self.session.close()
            return
        target = self.model.fault_channel
        result = reply.get("result") or {}
        reading = chan is not None and (result.get("FClass"), result.get("FNum")) == (4, 7)
        clock_now = self.model.cells[chan].clock.now() if reading else 0.0  # type: ignore[index]
        sent = self.session.send(data, garbled=fault == "garbled", scheduled=target is None or chan == target)
        if sent and reading:
            with self.model.lock:
                self.model.served.setdefault(chan, []).append({**result, "clock": clock_now})  # type: ignore[arg-type]


class MaccorServer(CyclerServer[int]):
    """A running MacNet emulator; channels by wire number (from 0); an alarm suspends one."""

def _channel_number(number: int | None, channels: int) -> int | None:
    if number is None:
        return None
    if not isinstance(number, int) or not 1 <= number <= channels:
        raise ValueError(f"fault_channel {number!r}: no such channel (allowed: 1 to {channels})")
    return number - 1


def serve(
    params: SimParams,
    *,
    port: int = 0,
    speed: float = 1.0,
    cell_type: str = "auto",
    clock: Clock | None = None,
    channels: int = 8,
    max_current: float = 1.0,
    channel_clocks: dict[int, Clock] | None = None,
    fault_channel: int | None = None,
    **options: Any,
) -> MaccorServer:
    """Start a MacNet emulator with ``channels`` channels. ``clock``: share a
    VirtualClock with the driver (lockstep tests); ``channel_clocks``: a clock per
    channel (lockstep drivers in parallel threads); otherwise ``speed`` × real time.
    ``fault_channel`` (a channel number from 1, as MacTest shows it): scheduled faults
    (``--fault``) act on that channel only."""
    if options:
        allowed = "channels, max_current, fault_channel"
        raise TypeError(f"unknown option(s) {', '.join(sorted(options))} (allowed: {allowed})")
    model = MaccorModel(
        params,
        clock or ScaledClock(speed),
        channels=int(channels),
        cell_type=cell_type,
        max_current=float(max_current),
        channel_clocks=channel_clocks,
        fault_channel=_channel_number(fault_channel, int(channels)),
    )

    def handler(session: Session) -> MaccorHandler:
        return MaccorHandler(session, model)

    tcp = JsonTcpServer(handler, port=int(port)).start()
    return MaccorServer(model, tcp)
