"""Arbin MITS Pro CTI server, emulated: binary messages over TCP (port 9031 on the Arbin PC)
in front of many emulated cycler channels.

What is pinned to public material
---------------------------------
Arbin's "ArbinCTI Protocol Commands" v1.1 and "Arbin CTI Instructions" v4.5 (the vendor
PDFs in the open-source ``pyctiarbin`` repository), written out here independently of any
client. Every message, little-endian and packed::

    <Q  token 0x11DDDDDDDDDDDDDD   <I dwLen   <I command code   <I 0 (extended code)
    arguments                      <H checksum = sum of all bytes before it, mod 2**16

``dwLen`` counts command + arguments + checksum in a request (total − 12) and the whole
message in a feedback (v1.1, and the pyctiarbin example feedbacks). Requests served
(arguments as ``struct`` formats; ``Ns`` text fields are NUL-padded, ``wchar_t`` ones
UTF-16-LE):

* 0xEEAB0001 login ``32s 32s`` (user, password) -> 0xEEBA0001 ``I 4s 16s 256s 2048s×4 128s
  32s I×6`` (result 1 = success, serial number, …, channel count, …);
* 0xEEAB0003 get channels info ``h h I 32s`` (channel or −1 for all, selection, aux
  options) -> 0xEEBA0003 ``I`` channel count, then per channel ``I h B 400s 144s 100s 64s
  144s 400s 400s H d d 12f 14H``: index, status (the v1.1 table), comm failure, schedule,
  test name, exit condition, "[cycle] step: name, type", barcode, CAN/SMB configs, master
  channel, TestTime, StepTime (s), Voltage, Current, Power, ChargeCapacity,
  DischargeCapacity (Ah), ChargeEnergy, DischargeEnergy (Wh), IR, dV/dt, ACR, ACI, phase,
  then fourteen auxiliary counts (all 0 here);
* 0xBB210001 assign schedule ``i B 400s f 144s 16f 32s`` -> 0xBB120001;
* 0xBB320004 start schedule ``144s I`` + ``H`` per channel -> 0xBB230004;
* 0xBB310001 stop schedule ``I B 101s`` -> 0xBB130001;
* 0xBB320005 jump channel ``i i 101s`` (0-indexed step, channel) -> 0xBB230005 (a step
  past the schedule's end stops the test);
* 0xBB150001 set meta variable ``I i i 16s i f 16s`` (channel, MV type 1, meta code —
  MV_UD1..4 = 52..55, MV_UD5..16 = 105..116 —, value type 1, value) -> 0xBB510001; refused
  when the channel is not running (0x12), for an unknown meta code (0x11), or when sent
  within 200 ms of the channel's previous update (0x14);
* every feedback but login's and channel info's is ``i B 101s`` (channel, result, 0 =
  success, the documented codes otherwise).

The lab-side control schedule (labctl's convention, ``docs/arbin-control-schedule.md``)
is what this MITS Pro runs when the schedule named ``schedule`` (default
``labctl_direct.sdx``) is assigned: MV_UD1 mode (0 rest, 1 CCCV at current UD2 with clamp
UD3, 2 CV at UD3 with current limit |UD2|), applied when MV_UD4 changes; V above UD5, V
below UD6, |I| above UD7 (when set, non-zero) stop the channel as Unsafe. Its steps, for
the status text and jumps: 0 Wait, 1 Rest, 2 CCCV, 3 CV.

What is ours (not in the public material we found): status codes chosen from the table (2
Charge / 3 Discharge by the sign of the current, 4 Rest, 8 Unsafe after a safety limit or
alarm, 15 Finished, 0 Idle); ChargeCapacity/DischargeCapacity cumulative from the schedule
start (each command's net charge counted on its sign's side); a session that has not
logged in, a request with a bad checksum or an unknown command code gets no feedback (a
bad header token closes the connection); any user/password logs in.

Faults: ``server.faults`` (transport, for ``--fault``), ``instrument-error`` = a channel
alarm (the first running channel becomes Unsafe, output off), and per channel
``inject(chan, kind)`` (``no-reply``, ``garbled``, ``drop-link``, ``alarm``) acting on
the feedbacks about that channel only.
"""

from __future__ import annotations

import logging
import struct
import threading
from typing import Any

from drivers.sim import SimParams
from drivers.sim.wire.cycler_cell import Program, Segment
from drivers.sim.wire.cycler_server import CyclerServer, channel_cells
from drivers.sim.wire.transport import LineHandler, Session, TcpServer
from labctl.clock import Clock, ScaledClock

log = logging.getLogger(__name__)

TOKEN = 0x11DDDDDDDDDDDDDD
HEAD = struct.Struct("<QIII")
SUM = struct.Struct("<H")

LOGIN, CHANNEL_INFO, ASSIGN, START, STOP, JUMP, SET_MV = (
    0xEEAB0001, 0xEEAB0003, 0xBB210001, 0xBB320004, 0xBB310001, 0xBB320005, 0xBB150001,
)  # fmt: skip
#: Each request's feedback code.
FEEDBACK = {
    LOGIN: 0xEEBA0001, CHANNEL_INFO: 0xEEBA0003, ASSIGN: 0xBB120001, START: 0xBB230004, STOP: 0xBB130001,
    JUMP: 0xBB230005, SET_MV: 0xBB510001,
}  # fmt: skip
REQUEST_ARGS = {
    LOGIN: struct.Struct("<32s32s"),
    CHANNEL_INFO: struct.Struct("<hhI32s"),
    ASSIGN: struct.Struct("<iB400sf144s16f32s"),
    START: struct.Struct("<144sI"),  # + H per channel
    STOP: struct.Struct("<IB101s"),
    JUMP: struct.Struct("<ii101s"),
    SET_MV: struct.Struct("<Iii16sif16s"),
}
RESULT = struct.Struct("<iB101s")
LOGIN_FEEDBACK = struct.Struct("<I4s16s256s2048s2048s2048s2048s128s32sIIIIII")
CHANNEL_BLOCK = struct.Struct("<IhB400s144s100s64s144s400s400sHdd12f14H")

#: MV_UD1..16 meta codes.
UD_CODES = {52: 1, 53: 2, 54: 3, 55: 4, **{100 + k: k for k in range(5, 17)}}
MIN_MV_GAP = 0.2
ST_IDLE, ST_CHARGE, ST_DISCHARGE, ST_REST, ST_UNSAFE, ST_FINISHED = 0, 2, 3, 4, 8, 15
#: The control schedule's steps (0-indexed, as CTI's jump counts them).
STEPS = ("Wait", "Rest", "CCCV", "CV")


def frame(code: int, args: bytes) -> bytes:
    """A feedback: dwLen = the whole message."""
    head = HEAD.pack(TOKEN, HEAD.size + len(args) + SUM.size, code, 0)
    return head + args + SUM.pack(sum(head + args) & 0xFFFF)


def _w(text: str, size: int) -> bytes:
    return text.encode("utf-16-le")[:size]


def _a(text: str, size: int) -> bytes:
    return text.encode("latin-1", errors="replace")[:size]


class ArbinModel:
    """MITS Pro's channels, the control schedule and the CTI request handling."""

    def __init__(
        self,
        params: SimParams,
        clock: Clock,
        *,
        channels: int = 16,
        cell_type: str = "auto",
        schedule: str = "labctl_direct.sdx",
        record_period: float = 1.0,
        channel_clocks: dict[int, Clock] | None = None,
        fault_channel: int | None = None,
    ) -> None:
        self.clock = clock
        self.fault_channel = fault_channel
        self.schedule = schedule
        self.record_period = record_period
        self.lock = threading.RLock()
        self.cells = channel_cells(params, cell_type, clock, channels, record_period, channel_clocks)
        self.assigned: list[str] = [""] * channels
        self.test_names: list[str] = [""] * channels
        self.mv: list[dict[int, float]] = [{} for _ in range(channels)]
        self.applied: list[float] = [0.0] * channels
        self.last_mv: list[float] = [-1e9] * channels
        self.step: list[int] = [0] * channels
        #: Charge and discharge (C) of the commands before the present one.
        self.totals: list[tuple[float, float]] = [(0.0, 0.0)] * channels
        self.pending: dict[int, list[str]] = {}
        self.log: list[int] = []
        #: Every channel-info block sent, per channel, with the channel's clock time (for tests).
        self.served: dict[int, list[dict[str, Any]]] = {}
        #: The latest channel-info fields built, per channel (what ``served`` records once sent).
        self.last_fields: dict[int, dict[str, Any]] = {}

    # --- the control schedule ------------------------------------------------------------
    def _segments(self, chan: int, step: int) -> list[Segment]:
        mv = self.mv[chan]
        sid = step + 1
        if step in (0, 1):
            return [Segment("rest", step_id=sid)]
        current, voltage = mv.get(2, 0.0), mv.get(3, 0.0)
        if step == 3:
            return [Segment("cv", abs(current), voltage, step_id=sid)]
        if current == 0:
            return [Segment("rest", step_id=sid)]
        above, below = (voltage, None) if current > 0 else (None, voltage)
        return [
            Segment("cc", current, 0.0, None, above, below, step_id=sid),
            Segment("cv", abs(current), voltage, step_id=sid),
        ]

    def _go(self, chan: int, step: int) -> None:
        """The schedule moves to ``step`` (its set points from the MVs now)."""
        cell = self.cells[chan]
        q = cell.capacity()
        charge, discharge = self.totals[chan]
        self.totals[chan] = (charge + max(q, 0.0), discharge + max(-q, 0.0))
        self.step[chan] = step
        cell.set_output(self._segments(chan, step))

    def _check_safety(self, chan: int) -> None:
        cell, mv = self.cells[chan], self.mv[chan]
        if cell.status != "working":
            return
        cell.advance()
        v_max, v_min, i_max = mv.get(5, 0.0), mv.get(6, 0.0), mv.get(7, 0.0)
        points = [(r.voltage, r.current) for r in cell.records[-50:]] + [cell.reading()]
        for v, i in points:
            if (v_max and v > v_max) or (v_min and v < v_min) or (i_max and abs(i) > i_max):
                cell.raise_alarm(f"safety limit (V {v:.4f}, I {i:.4g})")
                return

    def status(self, chan: int) -> int:
        cell = self.cells[chan]
        self._check_safety(chan)
        if cell.status == "working":
            seg = cell.segment
            if seg is None or seg.mode == "rest":
                return ST_REST
            return ST_CHARGE if cell.reading()[1] >= 0 else ST_DISCHARGE
        if cell.status == "protect":
            return ST_UNSAFE
        return ST_FINISHED if cell.test_id else ST_IDLE

    def channel_block(self, chan: int) -> tuple[bytes, dict[str, Any]]:
        code = self.status(chan)
        cell = self.cells[chan]
        e, i = cell.reading()
        q = cell.capacity() if cell.status == "working" else 0.0
        charge, discharge = self.totals[chan]
        charge_ah, discharge_ah = (charge + max(q, 0.0)) / 3600.0, (discharge + max(-q, 0.0)) / 3600.0
        started = bool(cell.test_id)
        step = self.step[chan]
        kind = {ST_CHARGE: "Charge", ST_DISCHARGE: "Discharge"}.get(code, "Rest")
        fields = {
            "channel": chan,
            "status": code,
            "test_time": cell.test_time() if started else 0.0,
            "step_time": cell.step_time() if started else 0.0,
            "voltage": e,
            "current": i,
            "charge_capacity": charge_ah,
            "discharge_capacity": discharge_ah,
        }
        floats = (e, i, e * i, charge_ah, discharge_ah, charge_ah * abs(e), discharge_ah * abs(e)) + (0.0,) * 5
        block = CHANNEL_BLOCK.pack(
            chan,
            code,
            0,
            _w(self.assigned[chan], 400),
            _w(self.test_names[chan], 144),
            _a("N/A" if started else "", 100),
            _a(f"[{cell.cycle}] {step + 1}: {STEPS[step]}, {kind}" if started else "", 64),
            b"",
            b"",
            b"",
            chan,
            fields["test_time"],
            fields["step_time"],
            *floats,
            *(0,) * 14,
        )
        return block, fields

    # --- requests -----------------------------------------------------------------------------
    def _result(self, code: int, chan: int, result: int) -> bytes:
        return frame(FEEDBACK[code], RESULT.pack(chan, result, b""))

    def _valid(self, chan: int) -> bool:
        return 0 <= chan < len(self.cells)

    def login(self, args: bytes) -> bytes:
        n = len(self.cells)
        values = (1, bytes([127, 0, 0, 1]), b"labctl-emulator", _a(f"labctl emulator, {n} channels", 256))
        values += (b"",) * 6 + (0, 1, 1, n, 0, 0)
        return frame(FEEDBACK[LOGIN], LOGIN_FEEDBACK.pack(*values))

    def channel_info(self, args: bytes) -> tuple[bytes, list[int]]:
        only, _selection, _aux, _ = REQUEST_ARGS[CHANNEL_INFO].unpack_from(args)
        chans = list(range(len(self.cells))) if only == -1 else [only] if self._valid(only) else []
        blocks = []
        for chan in chans:
            block, fields = self.channel_block(chan)
            blocks.append(block)
            self.last_fields[chan] = fields
        return frame(FEEDBACK[CHANNEL_INFO], struct.pack("<I", len(blocks)) + b"".join(blocks)), chans

    def assign(self, args: bytes) -> tuple[bytes, int]:
        fields = REQUEST_ARGS[ASSIGN].unpack_from(args)
        chan, name = fields[0], fields[2].decode("utf-16-le", errors="replace").split("\x00", 1)[0]
        if not self._valid(chan):
            return self._result(ASSIGN, chan, 0x10), chan
        if self.cells[chan].status == "working":
            return self._result(ASSIGN, chan, 0x14), chan
        if not name.strip():
            return self._result(ASSIGN, chan, 0x12), chan
        if name != self.schedule:
            return self._result(ASSIGN, chan, 0x13), chan
        self.assigned[chan] = name
        return self._result(ASSIGN, chan, 0), chan

    def start(self, args: bytes) -> tuple[bytes, int]:
        size = REQUEST_ARGS[START].size
        raw_name, count = REQUEST_ARGS[START].unpack_from(args)
        chans = list(struct.unpack_from(f"<{count}H", args, size)) if len(args) >= size + 2 * count else []
        chan = chans[0] if chans else -1
        name = raw_name.decode("utf-16-le", errors="replace").split("\x00", 1)[0]
        if len(chans) != 1 or not self._valid(chan):
            return self._result(START, chan, 0x10 if chans else 0x1F), chan
        cell = self.cells[chan]
        cell.advance()
        if cell.status in ("working", "protect"):
            return self._result(START, chan, 0x12), chan
        if not self.assigned[chan]:
            return self._result(START, chan, 0x15), chan
        if not name.strip():
            return self._result(START, chan, 0x23), chan
        self.test_names[chan] = name
        self.mv[chan], self.applied[chan], self.step[chan] = {}, 0.0, 0
        self.totals[chan] = (0.0, 0.0)
        cell.start(Program([Segment("rest", step_id=1)]))
        return self._result(START, chan, 0), chan

    def stop(self, args: bytes) -> tuple[bytes, int]:
        chan, stop_all, _ = REQUEST_ARGS[STOP].unpack_from(args)
        if stop_all:
            for cell in self.cells:
                cell.stop("finish")
            return self._result(STOP, chan, 0), chan
        if not self._valid(chan):
            return self._result(STOP, chan, 0x10), chan
        self.cells[chan].stop("finish")
        return self._result(STOP, chan, 0), chan

    def jump(self, args: bytes) -> tuple[bytes, int]:
        step, chan, _ = REQUEST_ARGS[JUMP].unpack_from(args)
        if not self._valid(chan):
            return self._result(JUMP, chan, 0x10), chan
        cell = self.cells[chan]
        cell.advance()
        if cell.status != "working":
            return self._result(JUMP, chan, 0x12), chan
        if not 0 <= step < len(STEPS):
            cell.stop("finish")  # "a step number greater than the schedule's stops the test"
        else:
            self._go(chan, step)
        return self._result(JUMP, chan, 0), chan

    def set_mv(self, args: bytes) -> tuple[bytes, int]:
        chan, mv_type, meta, _, value_type, value, _ = REQUEST_ARGS[SET_MV].unpack_from(args)
        if not self._valid(chan):
            return self._result(SET_MV, chan, 0x10), chan
        cell = self.cells[chan]
        cell.advance()
        if cell.status != "working":
            return self._result(SET_MV, chan, 0x12), chan
        if mv_type != 1 or value_type != 1:
            return self._result(SET_MV, chan, 0x10), chan
        number = UD_CODES.get(meta)
        if number is None:
            return self._result(SET_MV, chan, 0x11), chan
        now = cell.clock.now()
        if now - self.last_mv[chan] < MIN_MV_GAP - 1e-9:
            return self._result(SET_MV, chan, 0x14), chan
        self.last_mv[chan] = now
        self.mv[chan][number] = value
        if number == 4 and value != self.applied[chan]:
            self.applied[chan] = value
            mode = int(self.mv[chan].get(1, 0.0))
            self._go(chan, {0: 1, 1: 2, 2: 3}.get(mode, 1))
        return self._result(SET_MV, chan, 0), chan

    def execute(self, code: int, args: bytes) -> tuple[bytes, list[int]] | None:
        """A request -> its feedback and the channels it is about (None: no feedback)."""
        self.log.append(code)
        with self.lock:
            if code == LOGIN:
                return self.login(args), []
            if code == CHANNEL_INFO:
                return self.channel_info(args)
            handler = {ASSIGN: self.assign, START: self.start, STOP: self.stop, JUMP: self.jump, SET_MV: self.set_mv}
            if code not in handler:
                return None
            reply, chan = handler[code](args)
            return reply, [chan] if self._valid(chan) else []


class CtiTcpServer(TcpServer):
    """``TcpServer`` for CTI frames: header + dwLen (a request's dwLen excludes the 12 first bytes)."""

    def _split(self, buffer: bytearray) -> list[bytes]:
        out = []
        while len(buffer) >= 12:
            token, length = struct.unpack_from("<QI", buffer)
            if token != TOKEN or length > 1 << 20:
                out.append(bytes(buffer))  # not CTI: the handler closes the connection
                buffer.clear()
                break
            if len(buffer) < 12 + length:
                break
            out.append(bytes(buffer[: 12 + length]))
            del buffer[: 12 + length]
        return out


class ArbinHandler(LineHandler):
    def __init__(self, session: Session, model: ArbinModel) -> None:
        self.session = session
        self.model = model
        self.logged_in = False

    def on_line(self, line: bytes) -> None:
        if len(line) < HEAD.size + SUM.size or HEAD.unpack_from(line)[0] != TOKEN:
            self.session.close()
            return
        _token, _length, code, _ext = HEAD.unpack_from(line)
        (got,) = SUM.unpack_from(line, len(line) - 2)
        args = line[HEAD.size : -2]
        if got != sum(line[:-2]) & 0xFFFF:
            return
        if code != LOGIN and not self.logged_in:
            return
        wanted = REQUEST_ARGS.get(code)
        if wanted is None or len(args) < wanted.size:
            return
        answer = self.model.execute(code, args)
        if answer is None:
            return
        if code == LOGIN:
            self.logged_in = True
        data, chans = answer
        chan = chans[0] if len(chans) == 1 else None
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
        reading = chan is not None and code == CHANNEL_INFO
        clock_now = self.model.cells[chan].clock.now() if reading else 0.0  # type: ignore[index]
        sent = self.session.send(data, garbled=fault == "garbled", scheduled=target is None or chan == target)
        if sent and reading:
            with self.model.lock:
                fields = self.model.last_fields[chan]  # type: ignore[index]
                self.model.served.setdefault(chan, []).append({**fields, "clock": clock_now})  # type: ignore[arg-type]


class ArbinServer(CyclerServer[int]):
    """A running CTI emulator; channels by wire index (from 0); an alarm makes one Unsafe."""

def serve(
    params: SimParams,
    *,
    port: int = 0,
    speed: float = 1.0,
    cell_type: str = "auto",
    clock: Clock | None = None,
    channels: int = 16,
    schedule: str = "labctl_direct.sdx",
    record_period: float = 1.0,
    channel_clocks: dict[int, Clock] | None = None,
    fault_channel: int | None = None,
    **options: Any,
) -> ArbinServer:
    """Start a CTI emulator with ``channels`` channels. ``clock``: share a VirtualClock with
    the driver (lockstep tests); ``channel_clocks``: a clock per channel (lockstep drivers in
    parallel threads); otherwise ``speed`` × real time. ``schedule``: the control schedule's
    name; ``record_period``: MITS Pro's data-file record interval (s); ``fault_channel`` (a
    channel number from 1, as MITS Pro shows it): scheduled faults act on it only."""
    if options:
        allowed = "channels, schedule, record_period, fault_channel"
        raise TypeError(f"unknown option(s) {', '.join(sorted(options))} (allowed: {allowed})")
    n = int(channels)
    if fault_channel is not None and (not isinstance(fault_channel, int) or not 1 <= fault_channel <= n):
        raise ValueError(f"fault_channel {fault_channel!r}: no such channel (allowed: 1 to {n})")
    if float(record_period) <= 0:
        raise ValueError(f"record_period {record_period!r}: must be above 0 s")
    model = ArbinModel(
        params,
        clock or ScaledClock(speed),
        channels=n,
        cell_type=cell_type,
        schedule=str(schedule),
        record_period=float(record_period),
        channel_clocks=channel_clocks,
        fault_channel=None if fault_channel is None else fault_channel - 1,
    )

    def handler(session: Session) -> ArbinHandler:
        return ArbinHandler(session, model)

    tcp = CtiTcpServer(handler, port=int(port)).start()
    return ArbinServer(model, tcp)
