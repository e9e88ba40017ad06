"""MethodSCRIPT as the emulated instrument reads and writes it, written from the manual
independently of the driver (``drivers/palmsens``).

The emulator shares no code with the driver on purpose: a mistake in the driver's packet
encoder, error table or model table would otherwise be mirrored on both sides of the wire
and no test could see it. Sources: PalmSens "MethodSCRIPT v1.8" (script format, variables,
data packages, appendix C variable types, error codes), the EmStat4 communication
protocol v1.3 and the EmStat Pico communication protocol v1.6 (``t``/``i``/``v`` replies),
and the vendor's published example scripts (``PalmSens/MethodSCRIPT_Examples``) for the
argument order of each measurement loop.

* Literals: an integer with an optional SI-prefix letter (``500m``, ``-5``, ``2k``), ``i``
  for an integer variable (``100i``), or hexadecimal (``0x7``).
* A data package: ``P`` then ``;``-separated variables, each two letters of type, 7 hex
  digits offset by 0x8000000, and a prefix character (a space for none, ``i`` for an
  integer), then optional ``,1X`` status and ``,2XX`` range metadata.
* Errors: ``<letter>!XXXX`` for a refused command; a script refused while loading is
  answered ``<letter>!XXXX: Line L, Col C`` on the line that acknowledges ``e``/``l``;
  a script failing while it runs ends with ``!XXXX: Line L``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Union

# --- numbers -----------------------------------------------------------------------------------
PREFIX = {"a": 1e-18, "f": 1e-15, "p": 1e-12, "n": 1e-9, "u": 1e-6, "m": 1e-3, "k": 1e3, "M": 1e6, "G": 1e9,
          "T": 1e12, "P": 1e15, "E": 1e18}
_LITERAL = re.compile(r"([+-]?)(\d+)([afpnumkMGTPE]|i)?")
_HEX_LITERAL = re.compile(r"0x([0-9A-Fa-f]+)")


class NotANumber(ValueError):
    """Text that is no MethodSCRIPT literal."""


def literal(text: str) -> tuple[float, bool]:
    """A script literal -> (value, integer?)."""
    hexa = _HEX_LITERAL.fullmatch(text)
    if hexa:
        return float(int(hexa.group(1), 16)), True
    match = _LITERAL.fullmatch(text)
    if match is None:
        raise NotANumber(text)
    sign, digits, suffix = match.groups()
    value = int(digits) * (-1 if sign == "-" else 1)
    if suffix == "i":
        return float(value), True
    return value * PREFIX.get(suffix or "", 1.0), False


def is_number(text: str) -> bool:
    try:
        literal(text)
    except NotANumber:
        return False
    return True


# --- data packages -------------------------------------------------------------------------------
OFFSET = 0x8000000
STATUS_OVERLOAD = 0x2  # metadata 1X, bit 1


def packet_field(value: float, integer: bool) -> str:
    """Seven hex digits + prefix: the smallest prefix whose mantissa fits 27 bits."""
    if integer:
        return f"{int(value) + OFFSET:07X}i"
    if value != value or value in (float("inf"), float("-inf")):
        return "     nan"
    if value == 0:
        return f"{OFFSET:07X} "
    for letter, scale in sorted([*PREFIX.items(), (" ", 1.0)], key=lambda kv: kv[1]):
        mantissa = round(value / scale)
        if abs(mantissa) < OFFSET:
            return f"{mantissa + OFFSET:07X}{letter}"
    raise ValueError(f"{value!r} does not fit a data package")


def packet_item(kind: str, value: float, integer: bool, status: int | None, range_code: int | None) -> str:
    text = kind + packet_field(value, integer)
    if status is not None:
        text += f",1{status:X}"
    if range_code is not None:
        text += f",2{range_code:02X}"
    return text


# --- error codes (MethodSCRIPT manual, appendix "Error codes") ----------------------------------
UNKNOWN_COMMAND = 0x0003
WRONG_STATE = 0x0006  # e.g. Z while no script runs
CELL_STATE = 0x0014
NOT_SUPPORTED = 0x001B
DIVISION_BY_ZERO = 0x0028
OVERLOAD = 0x0032
ARRAY_BOUNDS = 0x0020
SCRIPT_SYNTAX = 0x4001


# --- the emulated devices ---------------------------------------------------------------------------
@dataclass(frozen=True)
class Device:
    """What an emulated instrument answers and accepts (vendors' data sheets)."""

    name: str
    firmware: str  # the ``t`` reply's id + version
    galvanostat: bool
    potential_limit: float  # V
    max_current: float  # A
    #: (range code of the ``2XX`` metadata, full scale in A), smallest first
    current_ranges: tuple[tuple[int, float], ...]
    pgstat_modes: tuple[int, ...] = (2, 3, 6)
    loops: frozenset[str] = frozenset()

    def range_code(self, current: float) -> int:
        for code, full_scale in self.current_ranges:
            if abs(current) <= full_scale:
                return code
        return self.current_ranges[-1][0]


_DC = {"ocp", "ca", "lsv", "cv", "swv", "dpv", "npv", "pad", "eis"}
_GALVANO = {"cp", "lsp", "geis", "acv"}
DEVICES: dict[str, Device] = {
    "es4_hr": Device("EmStat4 HR", "es4_hr1400", True, 6.0, 0.1,
                     ((9, 1e-7), (12, 1e-6), (15, 1e-5), (18, 1e-4), (21, 1e-3), (24, 1e-2), (27, 1e-1)),
                     loops=frozenset(_DC | _GALVANO)),
    "es4_lr": Device("EmStat4 LR", "es4_lr1400", True, 3.0, 0.01,
                     ((3, 1e-9), (6, 1e-8), (9, 1e-7), (12, 1e-6), (15, 1e-5), (18, 1e-4), (21, 1e-3), (24, 1e-2)),
                     loops=frozenset(_DC | _GALVANO)),
    "nexus1": Device("Nexus", "nexus11100", True, 5.0, 1.0,
                     ((16, 1e-10), (0, 1e-9), (1, 1e-8), (2, 1e-7), (3, 1e-6), (4, 1e-5), (5, 1e-4), (8, 1e-3),
                      (9, 1e-2), (10, 1e-1), (11, 1.0)),
                     loops=frozenset(_DC | _GALVANO)),
    # The Pico has no galvanostat (CP, LSP, GEIS) and no ACV (vendor example headers).
    "espico": Device("EmStat Pico", "espico1600", False, 2.0, 3e-3,
                     ((0, 1e-7), (1, 2e-6), (3, 8e-6), (5, 3.2e-5), (7, 1.25e-4), (9, 5e-4), (10, 1e-3), (11, 5e-3)),
                     pgstat_modes=(2, 3), loops=frozenset(_DC)),
}


# --- the language -----------------------------------------------------------------------------------
#: Argument kinds: "new" declares, "ref" a declared variable or array element, "value" a
#: literal or a ref, "type" two letters, "array" a declared array, "text" a string literal.
SIGNATURES: dict[str, tuple[str, ...]] = {
    "var": ("new",),
    "array": ("new", "value"),
    "array_set": ("array", "value", "value"),
    "array_get": ("array", "value", "ref"),
    "store_var": ("ref", "value", "type?"),
    "copy_var": ("ref", "ref"),
    "add_var": ("ref", "value"),
    "sub_var": ("ref", "value"),
    "mul_var": ("ref", "value"),
    "div_var": ("ref", "value"),
    "float_to_int": ("ref",),
    "int_to_float": ("ref",),
    "set_pgstat_chan": ("value",),
    "set_pgstat_mode": ("value",),
    "set_max_bandwidth": ("value",),
    "set_range": ("type", "value"),
    "set_autoranging": ("type", "value", "value"),
    "set_range_minmax": ("type", "value", "value"),
    "set_e": ("value",),
    "set_i": ("value",),
    "set_gpio_cfg": ("value", "value"),
    "set_gpio": ("value",),
    "cell_on": (),
    "cell_off": (),
    "timer_start": (),
    "timer_get": ("ref",),
    "wait": ("value",),
    "pck_start": (),
    "pck_add": ("ref",),
    "pck_end": (),
    "send_string": ("text",),
    "breakloop": (),
    "abort": (),
    # measurement loops: output variables first, then the technique's values (vendor examples)
    "meas_loop_ocp": ("ref", "value", "value"),
    "meas_loop_ca": ("ref", "ref", "value", "value", "value"),
    "meas_loop_cp": ("ref", "ref", "value", "value", "value"),
    "meas_loop_lsv": ("ref", "ref", "value", "value", "value", "value"),
    "meas_loop_cv": ("ref", "ref", "value", "value", "value", "value", "value"),
    "meas_loop_swv": ("ref", "ref", "ref", "ref", "value", "value", "value", "value", "value"),
    "meas_loop_dpv": ("ref", "ref", "value", "value", "value", "value", "value", "value"),
    "meas_loop_npv": ("ref", "ref", "value", "value", "value", "value", "value"),
    "meas_loop_acv": ("ref", "ref", "ref", "ref", "ref", "ref", "value", "value", "value", "value", "value", "value"),
    "meas_loop_lsp": ("ref", "ref", "value", "value", "value", "value"),
    "meas_loop_pad": ("ref", "ref", "value", "value", "value", "value", "value", "value"),
    "meas_loop_eis": ("ref", "ref", "ref", "value", "value", "value", "value", "value"),
    "meas_loop_geis": ("ref", "ref", "ref", "value", "value", "value", "value", "value"),
}
#: Options a loop takes after its arguments, ``name(value)``.
LOOP_OPTIONS = {"meas_loop_cv": {"nscans"}}
OPERATORS = ("<", "<=", ">", ">=", "==", "!=")
LOOPS = tuple(name for name in SIGNATURES if name.startswith("meas_loop_"))
_NAME = re.compile(r"[a-z][a-z0-9_]*")
_ELEMENT = re.compile(r"([a-z][a-z0-9_]*)\[([^\]]+)\]")
_OPTION = re.compile(r"([a-z_]+)\((.*)\)")
_TYPE = re.compile(r"[a-z]{2}")
_STRING = re.compile(r"f?(\"[^\"]*\"|'[^']*')")


class LoadError(Exception):
    """A script the instrument refuses while loading: ``!XXXX: Line L, Col C``."""

    def __init__(self, why: str, line: int, column: int, code: int = SCRIPT_SYNTAX) -> None:
        super().__init__(f"line {line}, col {column}: {why}")
        self.code, self.line, self.column = code, line, column


@dataclass
class Statement:
    name: str
    args: tuple[str, ...]
    line: int
    column: int
    options: dict[str, str] = field(default_factory=dict)


@dataclass
class Block:
    head: Statement
    body: list[Node] = field(default_factory=list)
    branches: list[tuple[Statement, list[Node]]] = field(default_factory=list)


Node = Union[Statement, Block]


@dataclass
class Script:
    main: list[Node]
    on_finished: list[Node]
    arrays: set[str]


def split_line(raw: str) -> tuple[list[str], int]:
    """Words of a line (a quoted string is one word; ``#`` outside quotes starts a comment)."""
    words: list[str] = []
    word = ""
    quote = ""
    start = len(raw) - len(raw.lstrip()) + 1
    for ch in raw:
        if quote:
            word += ch
            if ch == quote:
                quote = ""
        elif ch in "\"'":
            quote = ch
            word += ch
        elif ch == "#":
            break
        elif ch.isspace():
            if word:
                words.append(word)
            word = ""
        else:
            word += ch
    if word:
        words.append(word)
    return words, start


class _Reader:
    def __init__(self) -> None:
        self.variables: set[str] = set()
        self.arrays: set[str] = set()

    def read(self, lines: list[str]) -> Script:
        root: list[Node] = []
        finished: list[Node] | None = None
        stack: list[tuple[Block, list[Node]]] = []
        body = root
        for number, raw in enumerate(lines, start=1):
            words, column = split_line(raw)
            if not words:
                continue
            word, args = words[0], tuple(words[1:])
            if word in ("on_finished:", "on_finished"):
                if stack or finished is not None:
                    raise LoadError("misplaced on_finished:", number, column)
                finished = body = []
                continue
            stmt = Statement(word, args, number, column)
            if word in ("endloop", "endif"):
                if args or not stack:
                    raise LoadError(f"unexpected {word}", number, column)
                block, _ = stack.pop()
                if word != ("endif" if block.head.name == "if" else "endloop"):
                    raise LoadError(f"{word} closes a {block.head.name}", number, column)
                body = stack[-1][1] if stack else (finished if finished is not None else root)
                continue
            if word in ("elseif", "else"):
                if not stack or stack[-1][0].head.name != "if":
                    raise LoadError(f"{word} outside if", number, column)
                if word == "elseif":
                    self._condition(stmt)
                elif args:
                    raise LoadError("else takes no arguments", number, column)
                branch: list[Node] = []
                stack[-1][0].branches.append((stmt, branch))
                stack[-1] = (stack[-1][0], branch)
                body = branch
                continue
            if word in ("if", "loop"):
                self._condition(stmt)
                block = Block(stmt)
                body.append(block)
                stack.append((block, block.body))
                body = block.body
                continue
            if word not in SIGNATURES:
                raise LoadError(f"unknown command {word}", number, column, UNKNOWN_COMMAND)
            self._arguments(stmt)
            if word in LOOPS:
                if any(b.head.name in LOOPS for b, _ in stack):
                    raise LoadError("nested measurement loop", number, column)
                block = Block(stmt)
                body.append(block)
                stack.append((block, block.body))
                body = block.body
                continue
            if word == "breakloop" and not any(b.head.name in ("loop", *LOOPS) for b, _ in stack):
                raise LoadError("breakloop outside a loop", number, column)
            body.append(stmt)
        if stack:
            head = stack[-1][0].head
            raise LoadError(f"{head.name} never closed", head.line, head.column)
        return Script(root, finished or [], set(self.arrays))

    def _condition(self, stmt: Statement) -> None:
        if len(stmt.args) != 3 or stmt.args[1] not in OPERATORS:
            raise LoadError("condition must be 'a <op> b'", stmt.line, stmt.column)
        self._value(stmt, stmt.args[0])
        self._value(stmt, stmt.args[2])

    def _arguments(self, stmt: Statement) -> None:
        kinds = SIGNATURES[stmt.name]
        args = list(stmt.args)
        allowed = LOOP_OPTIONS.get(stmt.name, set())
        while args and (option := _OPTION.fullmatch(args[-1])) and option.group(1) in allowed:
            stmt.options[option.group(1)] = option.group(2)
            self._value(stmt, option.group(2))
            args.pop()
        stmt.args = tuple(args)
        required = [k for k in kinds if not k.endswith("?")]
        if not len(required) <= len(args) <= len(kinds):
            raise LoadError(f"{stmt.name} takes {len(required)} arguments", stmt.line, stmt.column)
        for kind, arg in zip(kinds, args, strict=False):
            kind = kind.rstrip("?")
            if kind == "new":
                if not _NAME.fullmatch(arg) or arg in SIGNATURES:
                    raise LoadError(f"bad name {arg}", stmt.line, stmt.column)
                (self.arrays if stmt.name == "array" else self.variables).add(arg)
            elif kind == "ref":
                self._reference(stmt, arg)
            elif kind == "array":
                if arg not in self.arrays:
                    raise LoadError(f"{arg} is not an array", stmt.line, stmt.column)
            elif kind == "type":
                if not _TYPE.fullmatch(arg):
                    raise LoadError(f"bad type {arg}", stmt.line, stmt.column)
            elif kind == "text":
                if not _STRING.fullmatch(arg):
                    raise LoadError("a string literal is expected", stmt.line, stmt.column)
            else:
                self._value(stmt, arg)
        if stmt.name == "array":
            self.variables.discard(args[0])

    def _reference(self, stmt: Statement, arg: str) -> None:
        element = _ELEMENT.fullmatch(arg)
        if element:
            if element.group(1) not in self.arrays:
                raise LoadError(f"{element.group(1)} is not an array", stmt.line, stmt.column)
            self._value(stmt, element.group(2))
        elif arg not in self.variables:
            raise LoadError(f"{arg} is not declared", stmt.line, stmt.column)

    def _value(self, stmt: Statement, arg: str) -> None:
        if is_number(arg):
            return
        self._reference(stmt, arg)


def read_script(lines: list[str]) -> Script:
    """Load a script (the lines between ``e``/``l`` and the empty line), or raise LoadError."""
    return _Reader().read(lines)
