"""Arbin CTI (Console TCP Interface to MITS Pro): binary messages and the link that carries them.

Sources (facts only, our own code): Arbin's "ArbinCTI Protocol Commands" v1.1 and "Arbin CTI
Instructions" v4.5 (the vendor PDFs kept in the open-source ``BatteryDataAlliance/pyctiarbin``
repository, ``docs/``), checked against that repository's example messages.

Every message is packed (``Pack = 1``), little-endian::

    ulong  Token      0x11DDDDDDDDDDDDDD (one 0x11, seven 0xDD on the wire, low byte first)
    uint   dwLen      requests: command + arguments + checksum (= total - 12);
                      feedbacks: header + command + arguments + checksum (= total)  [v1.1]
    uint   dwCmd      the command code (below)
    uint   dwCmd_Extend  always 0
    ...    arguments  (``LAYOUTS``)
    ushort CheckSum   the sum of every byte before it, modulo 2**16

Strings are NUL-padded: ``Byte[n]`` fields are 8-bit text, ``char``/``wchar_t[n]`` fields
are UTF-16-LE (2n bytes). The server answers every request with one feedback (for a
request on all channels, one per channel); the protocol recommends a 10 s reply timeout.
Port 9031 serves these commands (9032 the file commands; CTI Instructions v4.5,
"Connect").
"""

from __future__ import annotations

import struct
import time
from dataclasses import dataclass
from typing import Any

from drivers.kit.tcp import TcpLink, parse_tcp_resource
from labctl.channel import ConnectionLost, GarbledReply, InstrumentError, InstrumentTimeout

DEFAULT_PORT = 9031
TOKEN = 0x11DDDDDDDDDDDDDD
HEADER = struct.Struct("<QIII")  # Token, dwLen, dwCmd, dwCmd_Extend
CHECKSUM = struct.Struct("<H")
#: A reply longer than this is not a CTI feedback (the login feedback, the largest fixed
#: one, is 8678 bytes; channel info grows with auxiliary readings).
MAX_MESSAGE = 1 << 20


@dataclass(frozen=True)
class Field:
    """One argument: ``fmt`` is a ``struct`` code; ``text`` the encoding of a string field."""

    name: str
    fmt: str
    text: str | None = None


@dataclass(frozen=True)
class Layout:
    """One message: its command code, whether it is a feedback (dwLen counts the header),
    and its arguments in order."""

    name: str
    code: int
    feedback: bool
    fields: tuple[Field, ...]

    @property
    def struct(self) -> struct.Struct:
        return struct.Struct("<" + "".join(f.fmt for f in self.fields))

    @property
    def size(self) -> int:
        """Bytes on the wire, header and checksum included."""
        return HEADER.size + self.struct.size + CHECKSUM.size


def _f(spec: str) -> tuple[Field, ...]:
    """``"name:fmt[:text]"`` words -> fields (keeps the table below one line per field group)."""
    out = []
    for word in spec.split():
        name, fmt, *text = word.split(":")
        out.append(Field(name, fmt, {"w": "utf-16-le", "a": "latin-1"}[text[0]] if text else None))
    return tuple(out)


_RESULT = "channel:i result:B reserved:101s"
#: One channel of the channel-info feedback (THIRD_PARTY_CHANNEL: ChannelIndex, then
#: THIRD_PARTY_STATUS_INFOMATION up to its fourteen counts; auxiliary/BMS/SMB values follow).
CHANNEL_BLOCK = _f(
    "channel:I status:h comm_failure:B schedule:400s:w test_name:144s:w exit_condition:100s:a "
    "step_and_cycle:64s:a barcode:144s:w can_config:400s:w smb_config:400s:w master_channel:H "
    "test_time:d step_time:d voltage:f current:f power:f charge_capacity:f discharge_capacity:f "
    "charge_energy:f discharge_energy:f internal_resistance:f dvdt:f acr:f aci:f aci_phase:f "
    "n_aux_voltage:H n_aux_temperature:H n_aux_pressure:H n_aux_external:H n_aux_flow:H n_aux_ao:H "
    "n_aux_di:H n_aux_do:H n_aux_humidity:H n_aux_safety:H n_aux_ph:H n_aux_density:H n_bms:H n_smb:H"
)
CHANNEL_STRUCT = struct.Struct("<" + "".join(f.fmt for f in CHANNEL_BLOCK))

LAYOUTS: dict[str, Layout] = {
    layout.name: layout
    for layout in (
        Layout("login", 0xEEAB0001, False, _f("user:32s:a password:32s:a")),
        Layout(
            "login_feedback",
            0xEEBA0001,
            True,
            _f(
                "result:I ip:4s sn:16s:a note:256s:a nick_name:2048s:w location:2048s:w contact:2048s:w "
                "comments:2048s:w email:128s:w call:32s:w itac:I version:I allow_control:I channels:I "
                "user_type:I picture_length:I"
            ),
        ),
        Layout("channel_info", 0xEEAB0003, False, _f("channel:h info_type:h need_type:I reserved:32s")),
        Layout("channel_info_feedback", 0xEEBA0003, True, _f("count:I") + CHANNEL_BLOCK),
        Layout(
            "assign_schedule",
            0xBB210001,
            False,
            _f("channel:i assign_all:B schedule:400s:w capacity:f item_id:144s:w")
            + tuple(Field(f"mv_ud{k}", "f") for k in range(1, 17))
            + _f("reserved:32s"),
        ),
        Layout("assign_schedule_feedback", 0xBB120001, True, _f(_RESULT)),
        Layout("start_schedule", 0xBB320004, False, _f("test_name:144s:w count:I channel:H")),
        Layout("start_schedule_feedback", 0xBB230004, True, _f(_RESULT)),
        Layout("stop_schedule", 0xBB310001, False, _f("channel:I stop_all:B reserved:101s")),
        Layout("stop_schedule_feedback", 0xBB130001, True, _f(_RESULT)),
        Layout("jump_channel", 0xBB320005, False, _f("step:i channel:i reserved:101s")),
        Layout("jump_channel_feedback", 0xBB230005, True, _f(_RESULT)),
        Layout(
            "set_mv",
            0xBB150001,
            False,
            _f("channel:I mv_type:i meta_code:i reserved1:16s value_type:i value:f reserved2:16s"),
        ),
        Layout("set_mv_feedback", 0xBB510001, True, _f(_RESULT)),
    )
}
BY_CODE: dict[int, Layout] = {layout.code: layout for layout in LAYOUTS.values()}
#: Each request's feedback.
FEEDBACK: dict[str, str] = {name: f"{name}_feedback" for name in LAYOUTS if not LAYOUTS[name].feedback}

#: Meta codes of the user-defined meta variables MV_UD1…MV_UD16 (THIRD_PARTY_SET_MV_VALUE).
MV_UD: dict[int, int] = {1: 52, 2: 53, 3: 54, 4: 55, **{k: 100 + k for k in range(5, 17)}}

#: THIRD_PARTY_STATUS_INFORMATION status codes (v1.1 table).
STATUS = (
    "Idle", "Transition", "Charge", "Discharge", "Rest", "Wait", "External Charge", "Calibration", "Unsafe",
    "Pulse", "Internal Resistance", "AC Impedance", "ACI Cell", "Test Settings", "Error", "Finished",
    "Volt Meter", "Waiting for ACS", "Pause", "Empty", "Idle from MCU", "Start", "Running", "Step Transfer",
    "Resume", "Go Pause", "Go Stop", "Go Next Step", "Online Update", "DAQ Memory Unsafe", "ACR",
)  # fmt: skip

#: btResult codes of the feedbacks (0 = success), per request.
RESULTS: dict[str, dict[int, str]] = {
    "assign_schedule": {
        0x10: "channel does not exist", 0x11: "monitor window in use", 0x12: "schedule name cannot be empty",
        0x13: "schedule name not found", 0x14: "channel is running", 0x15: "channel is downloading a schedule",
        0x16: "a batch file is open", 0x17: "assign failed",
    },
    "start_schedule": {
        0x10: "invalid channel index", 0x11: "someone controls the monitor window",
        0x12: "channel is running or unsafe", 0x13: "channel not connected to DAQ",
        0x14: "schedule not compatible with the system", 0x15: "no schedule assigned",
        0x16: "schedule version does not match MITS", 0x19: "invalid step number",
        0x21: "DAQ still downloading the schedule", 0x23: "test name empty", 0x26: "schedule safety precheck failed",
    },
    "stop_schedule": {0x10: "channel index does not exist", 0x11: "someone controls the monitor window"},
    "jump_channel": {0x11: "someone uses the monitor window", 0x12: "channel not running",
                     0x13: "channel not connected to DAQ", 0x15: "no schedule assigned"},
    "set_mv": {0x10: "set MV failed", 0x11: "MV meta code does not exist", 0x12: "channel is not running",
               0x13: "meta code does not exist in MITS Pro7", 0x14: "updated too often (200 ms)"},
}  # fmt: skip
#: Login feedback ``result``: 1 success, 2 failure, 3 already logged in.
LOGIN_OK = (1, 3)


def checksum(data: bytes) -> int:
    return sum(data) & 0xFFFF


def encode(name: str, **values: Any) -> bytes:
    """Message ``name`` with ``values`` (others zero / empty), header and checksum."""
    layout = LAYOUTS[name]
    unknown = set(values) - {f.name for f in layout.fields}
    if unknown:
        raise KeyError(f"{name} has no field(s) {', '.join(sorted(unknown))}")
    args = []
    for f in layout.fields:
        value = values.get(f.name)
        if f.fmt.endswith("s"):
            if isinstance(value, str):
                value = value.encode(f.text or "latin-1")
            value = value or b""
            if len(value) > struct.calcsize(f.fmt):
                raise ValueError(f"{name}.{f.name}: {len(value)} bytes do not fit in {f.fmt}")
        elif value is None:
            value = 0
        args.append(value)
    body = layout.struct.pack(*args)
    total = HEADER.size + len(body) + CHECKSUM.size
    head = HEADER.pack(TOKEN, total if layout.feedback else total - 12, layout.code, 0)
    return head + body + CHECKSUM.pack(checksum(head + body))


def _text(raw: bytes, encoding: str) -> str:
    if encoding == "utf-16-le":
        raw = raw[: len(raw) - len(raw) % 2]
        text = raw.decode(encoding, errors="replace")
    else:
        text = raw.decode(encoding)
    return text.split("\x00", 1)[0]


def _decode_fields(fields: tuple[Field, ...], values: tuple[Any, ...]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for f, v in zip(fields, values, strict=True):
        out[f.name] = _text(v, f.text) if f.text else v
    return out


def decode(message: bytes) -> tuple[Layout, dict[str, Any]]:
    """A whole message -> its layout and fields. ValueError names what is wrong (token,
    length, checksum, unknown command, too short)."""
    if len(message) < HEADER.size + CHECKSUM.size:
        raise ValueError(f"{len(message)} bytes are not a CTI message")
    token, length, code, _ext = HEADER.unpack_from(message)
    if token != TOKEN:
        raise ValueError(f"bad header token {token:#x}")
    layout = BY_CODE.get(code)
    if layout is None:
        raise ValueError(f"unknown command code {code:#010x}")
    expect = len(message) if layout.feedback else len(message) - 12
    if length != expect:
        raise ValueError(f"dwLen {length} does not match the {len(message)} bytes received")
    (got,) = CHECKSUM.unpack_from(message, len(message) - 2)
    if got != checksum(message[:-2]):
        raise ValueError(f"checksum {got:#06x} is not {checksum(message[:-2]):#06x}")
    body = message[HEADER.size : -2]
    if len(body) < layout.struct.size:
        raise ValueError(f"{layout.name}: {len(body)} argument bytes, {layout.struct.size} needed")
    fields = _decode_fields(layout.fields, layout.struct.unpack_from(body))
    tail = _tail(layout.name, fields)
    if tail is not None and len(body) != layout.struct.size + tail:
        expect = layout.struct.size + tail
        raise ValueError(f"{layout.name}: {len(body)} argument bytes, not the {expect} its fields say")
    return layout, fields


#: Bytes per auxiliary value (THIRD_PARTY_AUX_VALUE: float, float) and BMS value (uint, double).
AUX_SIZE, BMS_SIZE = 8, 12


def _tail(name: str, fields: dict[str, Any]) -> int | None:
    """Bytes after a message's fixed part, from its fields (None: not knowable here)."""
    if name == "login_feedback":
        return int(fields["picture_length"])
    if name == "channel_info_feedback":
        if fields["count"] != 1 or fields["n_smb"]:
            return None  # several channels, or SMB values (their size is not documented)
        aux = sum(int(v) for k, v in fields.items() if k.startswith("n_aux_"))
        return aux * AUX_SIZE + int(fields["n_bms"]) * BMS_SIZE
    return 0


def total_length(header: bytes, *, feedback: bool) -> int:
    """The whole message's length from its 12 first bytes (ValueError: not a CTI header)."""
    token, length = struct.unpack_from("<QI", header)
    if token != TOKEN:
        raise ValueError(f"bad header token {token:#x}")
    total = length if feedback else length + 12
    if not HEADER.size + CHECKSUM.size <= total <= MAX_MESSAGE:
        raise ValueError(f"dwLen {length} is not a CTI message length")
    return total


def parse_resource(resource: str) -> tuple[str, int]:
    """``tcp://host:port`` (or ``host:port``, or ``host`` = port 9031)."""
    return parse_tcp_resource(resource, DEFAULT_PORT, "Arbin")


class CtiLink(TcpLink):
    """One TCP connection to MITS Pro's CTI server; thread-safe request/feedback."""

    vendor = "Arbin"
    default_port = DEFAULT_PORT

    def request(self, name: str, **values: Any) -> dict[str, Any]:
        """Send request ``name``; its feedback's fields. A broken exchange closes the link,
        so a late feedback is never taken for the next request's."""
        want = LAYOUTS[FEEDBACK[name]]
        data = encode(name, **values)
        with self._lock:
            if self._sock is None:
                raise ConnectionLost("Arbin: not connected")
            try:
                self._sock.sendall(data)
                message = self._read(name)
                layout, fields = decode(message)
            except ValueError as exc:
                self.close()
                raise GarbledReply(f"Arbin: feedback to {name} is garbled: {exc}") from exc
            except InstrumentError:
                self.close()
                raise
            except OSError as exc:
                self.close()
                raise ConnectionLost(f"Arbin: link lost during {name}: {exc}") from exc
            if layout is not want:
                self.close()
                raise GarbledReply(f"Arbin: {name} answered by {layout.name}, not {want.name}")
        return fields

    def _read(self, name: str) -> bytes:
        assert self._sock is not None
        deadline = time.monotonic() + self.timeout
        buffer = b""
        need = HEADER.size
        while len(buffer) < need:
            left = deadline - time.monotonic()
            if left <= 0:
                if buffer:
                    raise GarbledReply(f"Arbin: incomplete feedback to {name} ({len(buffer)} of {need} bytes)")
                raise InstrumentTimeout(f"Arbin: no feedback to {name} within {self.timeout:g} s")
            self._sock.settimeout(left)
            try:
                chunk = self._sock.recv(max(need - len(buffer), 1))
            except TimeoutError:
                continue
            if not chunk:
                raise ConnectionLost(f"Arbin: the server closed the link during {name}")
            buffer += chunk
            if need == HEADER.size and len(buffer) >= HEADER.size:
                need = total_length(buffer, feedback=True)  # ValueError: garbled
        return buffer


def check_result(name: str, fields: dict[str, Any], what: str) -> None:
    """A feedback's btResult: InstrumentError naming the documented reason unless 0."""
    code = int(fields.get("result", 0))
    if code != 0:
        reason = RESULTS.get(name, {}).get(code, "undocumented result")
        raise InstrumentError(f"Arbin: {what} refused: {reason} (result {code:#04x})")
