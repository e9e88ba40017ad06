"""MethodSCRIPT error replies: ``!XXXX`` codes and where they came from.

The instrument answers a failed command with ``<command letter>!XXXX``, a
script it cannot load with ``<e or l>!XXXX: Line L, Col C`` (the reply to the
``e``/``l`` that sent it) and a script that fails while running with
``!XXXX: Line L``. The vendor's own client matches any text before the ``!``;
so does ``parse_error``, which takes the load error with or without its letter (MethodSCRIPT manual v1.8 §"Errors" and
appendix A; EmStat4 communication protocol v1.3). Only the codes below are
used by this package; the descriptions are ours, written so a run file's error
says what to do. Any other code is reported as an unknown instrument error
with its number, never dropped.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

ERROR_TEXT: dict[int, str] = {
    0x0003: "unknown or invalid command",
    0x0006: "command not allowed now (a script is running, or none is)",
    0x0014: "the cell state does not allow this measurement (OCP needs cell_off, the others cell_on)",
    0x001B: "not supported by this instrument",
    0x0028: "division by zero in the script",
    0x0032: "cell severely overloaded",
    0x4001: "script syntax error",
}

CODE_UNKNOWN_COMMAND = 0x0003
CODE_WRONG_STATE = 0x0006
CODE_CELL_STATE = 0x0014
CODE_UNSUPPORTED = 0x001B
CODE_DIVISION_BY_ZERO = 0x0028
CODE_OVERLOAD = 0x0032
CODE_SYNTAX = 0x4001

_ERROR_RE = re.compile(r"^([A-Za-z]?)!([0-9A-Fa-f]{4})(?::\s*Line\s+(\d+)(?:,\s*Col\s+(\d+))?)?\s*$")


@dataclass(frozen=True)
class ErrorReply:
    """A parsed ``!XXXX`` line."""

    code: int
    command: str = ""  # the letter the error answers ("" inside a script's output)
    line: int | None = None
    column: int | None = None

    @property
    def description(self) -> str:
        return ERROR_TEXT.get(self.code, "unknown instrument error")

    def text(self) -> str:
        where = ""
        if self.line is not None:
            where = f" at script line {self.line}" + (f", column {self.column}" if self.column is not None else "")
        return f"!{self.code:04X} {self.description}{where}"

    def wire(self) -> str:
        """The line the instrument sends (without the newline)."""
        out = f"{self.command}!{self.code:04X}"
        if self.line is not None:
            out += f": Line {self.line}"
            if self.column is not None:
                out += f", Col {self.column}"
        return out


def parse_error(line: str) -> ErrorReply | None:
    """The error a reply line carries, or None if it is not an error line."""
    match = _ERROR_RE.match(line)
    if match is None:
        return None
    letter, code, row, col = match.groups()
    return ErrorReply(int(code, 16), letter, int(row) if row else None, int(col) if col else None)
