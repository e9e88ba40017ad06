"""A parser for the subset of MethodSCRIPT this package writes.

Used by the wire emulator (which must really parse what it is sent, so a
driver bug shows up as the ``!4001`` a real instrument would answer) and by
the tests (every script the compiler writes must parse). The grammar follows
the MethodSCRIPT manual v1.8: one command per line, ``#`` starts a comment,
variables are declared with ``var`` before use, numbers are integers with an
optional SI prefix (``encoding.parse_literal``), ``meas_loop_*``/``loop``
... ``endloop``, ``if``/``elseif``/``else``/``endif``, ``breakloop`` and an
``on_finished:`` label whose commands run when the script ends or is
aborted.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Union

from drivers.palmsens.encoding import EncodingError, parse_literal
from drivers.palmsens.errors import CODE_SYNTAX

#: Argument kinds: "name" declares a variable, "var" must be a declared
#: variable, "value" is a literal or a declared variable, "type" a two-letter
#: variable type.
COMMANDS: dict[str, tuple[str, ...]] = {
    "var": ("name",),
    "store_var": ("var", "value", "type"),
    "copy_var": ("var", "var"),
    "add_var": ("var", "value"),
    "sub_var": ("var", "value"),
    "mul_var": ("var", "value"),
    "div_var": ("var", "value"),
    "set_pgstat_chan": ("value",),
    "set_pgstat_mode": ("value",),
    "set_max_bandwidth": ("value",),
    "set_range": ("type", "value"),
    "set_autoranging": ("type", "value", "value"),
    "set_range_minmax": ("type", "value", "value"),
    "set_e": ("value",),
    "set_i": ("value",),
    "cell_on": (),
    "cell_off": (),
    "timer_start": (),
    "timer_get": ("var",),
    "wait": ("value",),
    "pck_start": (),
    "pck_add": ("var",),
    "pck_end": (),
    "breakloop": (),
    "abort": (),
    "meas_loop_ocp": ("var", "value", "value"),
    "meas_loop_ca": ("var", "var", "value", "value", "value"),
    "meas_loop_cp": ("var", "var", "value", "value", "value"),
    "meas_loop_lsv": ("var", "var", "value", "value", "value", "value"),
    "meas_loop_eis": ("var", "var", "var", "value", "value", "value", "value", "value"),
    "meas_loop_geis": ("var", "var", "var", "value", "value", "value", "value", "value"),
}
#: Optional trailing arguments (store_var's type may be left out).
OPTIONAL_TAIL: dict[str, int] = {"store_var": 1}
CONDITION_COMMANDS = ("if", "elseif", "loop")
OPERATORS = ("<", "<=", ">", ">=", "==", "!=")
MEAS_LOOPS = tuple(name for name in COMMANDS if name.startswith("meas_loop_"))

_NAME_RE = re.compile(r"^[a-z][a-z0-9_]*$")
_TYPE_RE = re.compile(r"^[a-z]{2}$")


class ScriptSyntaxError(Exception):
    """What the instrument answers with ``!4001: Line L, Col C``."""

    def __init__(self, message: str, line: int, column: int, code: int = CODE_SYNTAX) -> None:
        self.code = code
        self.line = line
        self.column = column
        super().__init__(f"line {line}, column {column}: {message}")


@dataclass
class Command:
    """One script line: command word, arguments, where it stands."""

    name: str
    args: tuple[str, ...]
    line: int
    column: int = 1


@dataclass
class Block:
    """``meas_loop_*``/``loop``/``if`` with its body; ``branches`` are the
    ``elseif``/``else`` parts of an ``if`` (head, body)."""

    head: Command
    body: list[Node] = field(default_factory=list)
    branches: list[tuple[Command, list[Node]]] = field(default_factory=list)


Node = Union[Command, Block]


@dataclass
class Program:
    """A parsed script."""

    main: list[Node]
    on_finished: list[Node]
    variables: set[str]
    source: list[str]


def is_literal(text: str) -> bool:
    try:
        parse_literal(text)
    except EncodingError:
        return False
    return True


def _tokens(raw: str) -> tuple[list[str], int]:
    text = raw.split("#", 1)[0]
    stripped = text.lstrip()
    return stripped.split(), len(text) - len(stripped) + 1


class _Parser:
    def __init__(self, lines: list[str]) -> None:
        self.lines = lines
        self.variables: set[str] = set()

    def parse(self) -> Program:
        root: list[Node] = []
        on_finished: list[Node] | None = None
        stack: list[tuple[Block, list[Node]]] = []  # open blocks and the body being filled
        current = root
        for number, raw in enumerate(self.lines, start=1):
            words, column = _tokens(raw)
            if not words:
                continue
            word, args = words[0], tuple(words[1:])
            if word in ("on_finished:", "on_finished"):
                if stack:
                    raise ScriptSyntaxError("on_finished: inside a block", number, column)
                if on_finished is not None:
                    raise ScriptSyntaxError("a second on_finished:", number, column)
                on_finished = []
                current = on_finished
                continue
            cmd = Command(word, args, number, column)
            if word in ("endloop", "endif"):
                self._expect_args(cmd, 0)
                if not stack:
                    raise ScriptSyntaxError(f"{word} without a block to end", number, column)
                block, _ = stack.pop()
                opener = "endif" if block.head.name == "if" else "endloop"
                if word != opener:
                    raise ScriptSyntaxError(f"{word} ends a {block.head.name} block", number, column)
                current = stack[-1][1] if stack else (on_finished if on_finished is not None else root)
                continue
            if word in ("elseif", "else"):
                if not stack or stack[-1][0].head.name != "if":
                    raise ScriptSyntaxError(f"{word} outside an if block", number, column)
                if word == "elseif":
                    self._condition(cmd)
                else:
                    self._expect_args(cmd, 0)
                block = stack[-1][0]
                branch: list[Node] = []
                block.branches.append((cmd, branch))
                stack[-1] = (block, branch)
                current = branch
                continue
            if word in ("if", "loop"):
                self._condition(cmd)
                block = Block(cmd)
                current.append(block)
                stack.append((block, block.body))
                current = block.body
                continue
            if word not in COMMANDS:
                raise ScriptSyntaxError(f"unknown command {word!r}", number, column)
            self._arguments(cmd)
            if word in MEAS_LOOPS:
                if any(b.head.name in MEAS_LOOPS for b, _ in stack):
                    raise ScriptSyntaxError("measurement loops cannot be nested", number, column)
                block = Block(cmd)
                current.append(block)
                stack.append((block, block.body))
                current = block.body
                continue
            if word == "breakloop" and not any(b.head.name in ("loop", *MEAS_LOOPS) for b, _ in stack):
                raise ScriptSyntaxError("breakloop outside a loop", number, column)
            current.append(cmd)
        if stack:
            block = stack[-1][0]
            raise ScriptSyntaxError(f"{block.head.name} block is never closed", block.head.line, block.head.column)
        return Program(root, on_finished or [], set(self.variables), list(self.lines))

    def _expect_args(self, cmd: Command, count: int) -> None:
        if len(cmd.args) != count:
            raise ScriptSyntaxError(f"{cmd.name} takes {count} arguments, got {len(cmd.args)}", cmd.line, cmd.column)

    def _condition(self, cmd: Command) -> None:
        if len(cmd.args) != 3 or cmd.args[1] not in OPERATORS:
            ops = " ".join(OPERATORS)
            raise ScriptSyntaxError(f"{cmd.name} needs 'a <op> b' with op in {ops}", cmd.line, cmd.column)
        self._value(cmd, cmd.args[0])
        self._value(cmd, cmd.args[2])

    def _arguments(self, cmd: Command) -> None:
        kinds = COMMANDS[cmd.name]
        optional = OPTIONAL_TAIL.get(cmd.name, 0)
        if not len(kinds) - optional <= len(cmd.args) <= len(kinds):
            raise ScriptSyntaxError(
                f"{cmd.name} takes {len(kinds)} arguments, got {len(cmd.args)}", cmd.line, cmd.column
            )
        for kind, arg in zip(kinds, cmd.args, strict=False):
            if kind == "name":
                if not _NAME_RE.match(arg) or arg in COMMANDS:
                    raise ScriptSyntaxError(f"{arg!r} is not a valid variable name", cmd.line, cmd.column)
                self.variables.add(arg)
            elif kind == "var":
                if arg not in self.variables:
                    raise ScriptSyntaxError(f"variable {arg!r} is not declared", cmd.line, cmd.column)
            elif kind == "type":
                if not _TYPE_RE.match(arg):
                    raise ScriptSyntaxError(f"{arg!r} is not a variable type", cmd.line, cmd.column)
            else:
                self._value(cmd, arg)

    def _value(self, cmd: Command, arg: str) -> None:
        if arg in self.variables or is_literal(arg):
            return
        if _NAME_RE.match(arg):
            raise ScriptSyntaxError(f"variable {arg!r} is not declared", cmd.line, cmd.column)
        raise ScriptSyntaxError(f"{arg!r} is not a number (integer + SI prefix) or a variable", cmd.line, cmd.column)


def parse_script(lines: list[str]) -> Program:
    """Parse the lines of a script (without the ``e`` and the closing empty line)."""
    return _Parser(lines).parse()
