"""The one error every importer raises for a bad file, printed as one line.

``labctl analyze`` turns any ValueError into ``error: <message>`` and exit code 2, so a
reader only has to make sure that whatever is wrong with a file — its size, encoding,
structure or physics — arrives as this type, with the place and the rule it broke:

    FILE:LINE: field: reason, found '…' (allowed: …)

Binary files give ``FILE:byte N`` instead of a line number.
"""

from __future__ import annotations

from pathlib import Path

_FOUND_CHARS = 80


def _printable(text: str) -> str:
    """``text`` with control characters escaped, so a message never spans two lines."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


class SpectrumFileError(ValueError):
    """An imported spectrum file that cannot be used, and why.

    ``field`` is what was being read (a column, a header entry, the file's size or
    encoding); ``reason`` says what is wrong with it; ``allowed`` what would have been
    accepted; ``found`` the offending text (shortened). ``line`` (1-based) or ``offset``
    (bytes) say where, when known.
    """

    def __init__(
        self,
        path: str | Path,
        field: str,
        reason: str,
        *,
        line: int | None = None,
        offset: int | None = None,
        allowed: str | None = None,
        found: str | None = None,
    ) -> None:
        self.path = Path(path)
        self.field = field
        self.reason = reason
        self.line = line
        self.offset = offset
        self.allowed = allowed
        self.found = found
        super().__init__(self._message())

    def _message(self) -> str:
        where = _printable(str(self.path))
        if self.line is not None:
            where += f":{self.line}"
        if self.offset is not None:
            where += f":byte {self.offset}"
        msg = f"{where}: {_printable(self.field)}: {_printable(self.reason)}"
        if self.found is not None:
            shown = self.found if len(self.found) <= _FOUND_CHARS else self.found[: _FOUND_CHARS - 3] + "..."
            msg += f", found {shown!r}"
        if self.allowed is not None:
            msg += f" (allowed: {_printable(self.allowed)})"
        return msg

    def __reduce__(self):  # type: ignore[no-untyped-def]
        # keyword-only fields: pickle (multiprocessing, pytest-xdist) must rebuild them by name
        return (_rebuild, (self.path, self.field, self.reason, self.line, self.offset, self.allowed, self.found))


def _rebuild(
    path: Path, field: str, reason: str, line: int | None, offset: int | None, allowed: str | None, found: str | None
) -> SpectrumFileError:
    return SpectrumFileError(path, field, reason, line=line, offset=offset, allowed=allowed, found=found)


#: The former name, kept so existing ``except SpectrumFormatError`` code keeps working.
SpectrumFormatError = SpectrumFileError
