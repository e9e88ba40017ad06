"""The SCPI parser of the wire emulators (Keithley 2450/2400, Keysight E4980A): headers,
compound messages, parameters, the error queue.

Written from the SCPI-1999 rules (Vol. 1 §6–§7) and IEEE 488.2 §7 as the
Keithley manuals restate them (2450 Reference Manual 2450-901-01 §6 "SCPI
command reference", 2400 User's Manual 2400S-900-01 §18):

* a header is a path of mnemonics separated by ``:``; each mnemonic matches
  its short form (the capitals of ``SOURce``) or its long form, in any case;
  bracketed nodes (``[:LEVel]``) may be left out; a trailing ``?`` makes a query;
* a message holds several units separated by ``;``; a unit without a leading
  ``:`` continues at the level of the previous unit's path (so
  ``:SOUR:CURR 1e-3;VLIM 2`` sets ``:SOUR:CURR:VLIM``); common commands
  (``*RST``) leave that level alone;
* replies to the queries of one message are joined by ``;`` on one line;
* an error stops the rest of the message and is queued as ``code,"message"``
  (-113 "Undefined header", -109 "Missing parameter", ...), with the Standard
  Event Status bits set by class (command/execution/device/query error).

Patterns are written with spaces between nodes, optional nodes in brackets and
an optional numeric suffix ``[1]``: ``"[SOURce[1]] CURRent VLIMit [LEVel] TRIPped"``.
"""

from __future__ import annotations

import re
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

#: Standard SCPI error texts used by the emulators (SCPI-1999 Vol. 2 §21.8).
UNDEFINED_HEADER = (-113, "Undefined header")
PARAMETER_NOT_ALLOWED = (-108, "Parameter not allowed")
MISSING_PARAMETER = (-109, "Missing parameter")
DATA_TYPE_ERROR = (-104, "Data type error")
EXECUTION_ERROR = (-200, "Execution error")
TRIGGER_IGNORED = (-211, "Trigger ignored")
ILLEGAL_PARAMETER = (-224, "Illegal parameter value")
DATA_OUT_OF_RANGE = (-222, "Data out of range")
SETTINGS_CONFLICT = (-221, "Settings conflict")
DATA_STALE = (-230, "Data corrupt or stale")
QUEUE_OVERFLOW = (-350, "Queue overflow")
QUERY_INTERRUPTED = (-410, "Query INTERRUPTED")
STANDARD_ERRORS: dict[int, str] = dict(
    [
        (-100, "Command error"),
        (-102, "Syntax error"),
        DATA_TYPE_ERROR,
        PARAMETER_NOT_ALLOWED,
        MISSING_PARAMETER,
        UNDEFINED_HEADER,
        EXECUTION_ERROR,
        TRIGGER_IGNORED,
        SETTINGS_CONFLICT,
        DATA_OUT_OF_RANGE,
        ILLEGAL_PARAMETER,
        DATA_STALE,
        QUEUE_OVERFLOW,
        QUERY_INTERRUPTED,
    ]
)


class ScpiError(Exception):
    """A command that failed; queued as ``code,"message"``.

    ``text`` is what the instrument itself reports; ``detail`` (what exactly was
    wrong) is appended for emulators that report it (``CommandTree(details=True)``)."""

    def __init__(self, code: int, message: str, detail: str = "") -> None:
        self.code = code
        self.text = message
        self.detail = detail
        self.message = f"{message}; {detail}" if detail else message
        super().__init__(f"{code},{self.message}")

    @classmethod
    def of(cls, pair: tuple[int, str], detail: str = "") -> ScpiError:
        code, text = pair
        return cls(code, text, detail)


@dataclass(frozen=True)
class _Node:
    short: str
    long: str
    optional: bool
    suffix: bool  # an optional numeric suffix (SOURce1) is accepted
    number: str = ""  # a required numeric suffix (CALCulate3 is not CALCulate)

    def matches(self, token: tuple[str, str]) -> bool:
        name, digits = token
        if self.number:
            return digits == self.number and name in (self.short, self.long)
        if digits and not (self.suffix and digits == "1"):
            return False
        return name in (self.short, self.long)


_TOKEN = re.compile(r"([A-Za-z_]+)(\d*)")


def _tokens(path: list[str]) -> tuple[tuple[str, str], ...] | None:
    """Header nodes as (MNEMONIC, numeric suffix); None when one is not a mnemonic."""
    out = []
    for text in path:
        match = _TOKEN.fullmatch(text)
        if match is None:
            return None
        out.append((match.group(1).upper(), match.group(2)))
    return tuple(out)


def _compile(pattern: str) -> tuple[_Node, ...]:
    nodes = []
    for raw in pattern.split():
        optional = raw.startswith("[")
        text = raw[1:-1] if optional else raw
        suffix = text.endswith("[1]")
        if suffix:
            text = text[:-3]
        fixed = _TOKEN.fullmatch(text)
        number = fixed.group(2) if fixed is not None else ""
        text = text[: len(text) - len(number)]
        short = "".join(ch for ch in text if ch.isupper() or ch.isdigit())
        nodes.append(_Node(short=short, long=text.upper(), optional=optional, suffix=suffix, number=number))
    return tuple(nodes)


def _match(nodes: tuple[_Node, ...], tokens: tuple[tuple[str, str], ...]) -> bool:
    if not nodes:
        return not tokens
    head, rest = nodes[0], nodes[1:]
    if tokens and head.matches(tokens[0]) and _match(rest, tokens[1:]):
        return True
    return head.optional and _match(rest, tokens)


class Response(str):
    """What a *command* (not a query) puts in the output queue.

    Some instruments answer a command: the E4980A's ``*TRG`` triggers a measurement and
    then places its result in the output buffer (E4980A/AL User's Guide, "*TRG"). A setter
    returns ``Response(text)`` to say so; any other return value of a setter is discarded.
    """


Setter = Callable[[list[str]], None]
Getter = Callable[[list[str]], str]


@dataclass
class _Command:
    nodes: tuple[_Node, ...]
    setter: Setter | None
    getter: Getter | None


def split_params(text: str) -> list[str]:
    """Comma-separated parameters; quoted strings keep their commas."""
    params: list[str] = []
    current: list[str] = []
    quote = ""
    for ch in text:
        if quote:
            current.append(ch)
            if ch == quote:
                quote = ""
        elif ch in "'\"":
            quote = ch
            current.append(ch)
        elif ch == ",":
            params.append("".join(current).strip())
            current = []
        else:
            current.append(ch)
    if quote:
        raise ScpiError.of(DATA_TYPE_ERROR, "unterminated string")
    tail = "".join(current).strip()
    if tail or params:
        params.append(tail)
    return params


def _split_units(message: str) -> list[str]:
    """Split a message at semicolons outside quoted strings."""
    units: list[str] = []
    current: list[str] = []
    quote = ""
    for ch in message:
        if quote:
            if ch == quote:
                quote = ""
        elif ch in "'\"":
            quote = ch
        elif ch == ";":
            units.append("".join(current))
            current = []
            continue
        current.append(ch)
    units.append("".join(current))
    return units


# --- parameter helpers (raise ScpiError, which the tree queues) ---------------------
def one(params: list[str]) -> str:
    """The single parameter of a command."""
    if not params or params[0] == "":
        raise ScpiError.of(MISSING_PARAMETER)
    return params[0]


_NUMBER_WITH_UNIT = re.compile(r"([-+]?(?:\d+\.?\d*|\.\d+)(?:E[-+]?\d+)?)\s*([A-Z]*)")


def number(
    text: str,
    *,
    default: float | None = None,
    low: float | None = None,
    high: float | None = None,
    units: dict[str, float] | None = None,
) -> float:
    """A numeric parameter; MIN/MAX/DEF map to the bounds and default; ``units``: the
    suffixes the instrument accepts and their scale (``{"KHZ": 1e3, "MV": 1e-3}``)."""
    word = text.strip().upper()
    if word in ("DEF", "DEFAULT") and default is not None:
        return default
    if word in ("MIN", "MINIMUM") and low is not None:
        return low
    if word in ("MAX", "MAXIMUM") and high is not None:
        return high
    scale = 1.0
    if units:
        match = _NUMBER_WITH_UNIT.fullmatch(word)
        if match is None or (match.group(2) and match.group(2) not in units):
            raise ScpiError.of(DATA_TYPE_ERROR, f"not a number: {text.strip()!r}")
        word, scale = match.group(1), units.get(match.group(2), 1.0)
    try:
        value = float(word) * scale
    except ValueError:
        raise ScpiError.of(DATA_TYPE_ERROR, f"not a number: {text.strip()!r}") from None
    if (low is not None and value < low) or (high is not None and value > high):
        raise ScpiError.of(DATA_OUT_OF_RANGE, f"{value:g} outside {low if low is not None else '-inf'}..{high}")
    return value


def boolean(text: str) -> bool:
    word = text.strip().upper()
    if word in ("ON", "1"):
        return True
    if word in ("OFF", "0"):
        return False
    try:
        return float(word) != 0.0
    except ValueError:
        raise ScpiError.of(ILLEGAL_PARAMETER, f"expected ON/OFF, got {text.strip()!r}") from None


def choice(text: str, options: dict[str, str]) -> str:
    """A character parameter matched like a mnemonic: ``{"CURRent": "CURR", ...}``."""
    word = text.strip().strip("'\"").upper()
    for mnemonic, value in options.items():
        short = "".join(ch for ch in mnemonic if ch.isupper() or ch.isdigit())
        if word in (short, mnemonic.upper()):
            return value
    raise ScpiError.of(ILLEGAL_PARAMETER, f"{text.strip()!r} not one of {', '.join(options)}")


def unquote(text: str) -> str:
    text = text.strip()
    if len(text) >= 2 and text[0] == text[-1] and text[0] in "'\"":
        return text[1:-1]
    raise ScpiError.of(DATA_TYPE_ERROR, f"expected a quoted string, got {text!r}")


# --- the error/status model shared by SCPI instruments -------------------------------
@dataclass
class StatusModel:
    """Error queue and IEEE 488.2 status registers."""

    capacity: int = 10
    queue: deque[tuple[int, str]] = field(default_factory=deque)
    esr: int = 0
    ese: int = 0
    sre: int = 0

    def push(self, code: int, message: str) -> None:
        if len(self.queue) >= self.capacity:
            self.queue[-1] = QUEUE_OVERFLOW
        else:
            self.queue.append((code, message))
        if -199 <= code <= -100:
            self.esr |= 32  # command error
        elif -299 <= code <= -200:
            self.esr |= 16  # execution error
        elif -499 <= code <= -400:
            self.esr |= 4  # query error
        elif code != 0:
            self.esr |= 8  # device-dependent error

    def pop(self) -> tuple[int, str]:
        return self.queue.popleft() if self.queue else (0, "No error")

    def clear(self) -> None:
        self.queue.clear()
        self.esr = 0

    def stb(self) -> int:
        value = 4 if self.queue else 0  # EAV: error available
        if self.esr & self.ese:
            value |= 32  # ESB
        if value & self.sre:
            value |= 64  # MSS
        return value

    def read_esr(self) -> int:
        value, self.esr = self.esr, 0
        return value


def format_error(err: tuple[int, str]) -> str:
    return f'{err[0]},"{err[1]}"'


class CommandTree:
    """Dispatches SCPI messages to handlers and keeps the error queue.

    ``add(pattern, set=..., query=...)``: ``set`` receives the parameter list,
    ``query`` the parameters after the ``?`` and returns the reply text.
    Common commands (``*IDN?``) are added with their literal header.
    """

    def __init__(self, status: StatusModel | None = None, *, details: bool = True) -> None:
        self.status = status or StatusModel()
        #: Queue errors with their detail ("Undefined header; :FOO:BAR") or as the
        #: instrument's bare standard text ("Undefined header").
        self.details = details
        self._commands: list[_Command] = []
        self._common: dict[str, _Command] = {}
        self._cache: dict[tuple[tuple[str, str], ...], _Command | None] = {}

    def add(self, pattern: str, *, set: Setter | None = None, query: Getter | None = None) -> None:
        command = _Command(_compile(pattern), set, query)
        if pattern.startswith("*"):
            name = pattern.upper().rstrip("?")
            if set is not None:
                self._common[name] = _Command((), set, None)
            if query is not None:
                self._common[name + "?"] = _Command((), None, query)
        else:
            self._commands.append(command)
            self._cache.clear()

    def _find(self, path: list[str]) -> _Command | None:
        tokens = _tokens(path)
        if tokens is None:
            return None
        if tokens in self._cache:
            return self._cache[tokens]
        found = next((c for c in self._commands if _match(c.nodes, tokens)), None)
        if len(self._cache) < 4096:  # headers repeat: a dictionary after the first time
            self._cache[tokens] = found
        return found

    def execute(self, message: str) -> str | None:
        """Run one message; the reply line (without terminator) or None."""
        replies: list[str] = []
        level: list[str] = []
        for unit in _split_units(message):
            text = unit.strip()
            if not text:
                continue
            header, _, rest = text.partition(" ")
            if "\t" in header:
                header, _, more = header.partition("\t")
                rest = f"{more} {rest}".strip()
            try:
                reply, level = self._unit(header, rest, level)
            except ScpiError as err:
                self.status.push(err.code, err.message if self.details else err.text)
                break
            if reply is not None:
                replies.append(reply)
        return ";".join(replies) if replies else None

    def _unit(self, header: str, rest: str, level: list[str]) -> tuple[str | None, list[str]]:
        is_query = header.endswith("?")
        path = header[:-1] if is_query else header
        params = split_params(rest) if rest.strip() else []
        bare = path.lstrip(":")
        if bare.startswith("*"):
            command = self._common.get(bare.upper() + ("?" if is_query else ""))
            if command is None:
                raise ScpiError.of(UNDEFINED_HEADER, header)
            handler = command.getter if is_query else command.setter
            if handler is None:
                raise ScpiError.of(UNDEFINED_HEADER, header)
            return self._call(handler, params, is_query), level
        tokens = [t for t in bare.split(":")]
        if any(t == "" for t in tokens):
            raise ScpiError.of(UNDEFINED_HEADER, header)
        full = tokens if path.startswith(":") or not level else level + tokens
        command = self._find(full)
        if command is None and full is not tokens:
            full = tokens  # a relative header may also name a root command
            command = self._find(full)
        if command is None:
            raise ScpiError.of(UNDEFINED_HEADER, header)
        handler = command.getter if is_query else command.setter
        if handler is None:
            raise ScpiError.of(UNDEFINED_HEADER, f"{header} has no {'query' if is_query else 'command'} form")
        return self._call(handler, params, is_query), full[:-1]

    @staticmethod
    def _call(handler: Setter | Getter, params: list[str], is_query: bool) -> str | None:
        result = handler(params)
        if is_query:
            return str(result)
        return str(result) if isinstance(result, Response) else None

    def add_common(self, identity: Callable[[], str], reset: Callable[[], None]) -> None:
        """The IEEE 488.2 common commands every SCPI instrument answers."""
        st = self.status

        def cls(_: list[str]) -> None:
            st.clear()

        def rst(_: list[str]) -> None:
            reset()

        def ese(params: list[str]) -> None:
            st.ese = int(number(one(params), low=0, high=255))

        def sre(params: list[str]) -> None:
            st.sre = int(number(one(params), low=0, high=255))

        def opc(_: list[str]) -> None:
            st.esr |= 1

        self.add("*IDN?", query=lambda _: identity())
        self.add("*RST", set=rst)
        self.add("*CLS", set=cls)
        self.add("*ESE", set=ese)
        self.add("*ESE?", query=lambda _: str(st.ese))
        self.add("*ESR?", query=lambda _: str(st.read_esr()))
        self.add("*SRE", set=sre)
        self.add("*SRE?", query=lambda _: str(st.sre))
        self.add("*STB?", query=lambda _: str(st.stb()))
        self.add("*OPC", set=opc)
        self.add("*OPC?", query=lambda _: "1")
        self.add("*WAI", set=lambda _: None)
        self.add("*TRG", set=lambda _: None)
