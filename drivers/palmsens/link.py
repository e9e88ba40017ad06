"""The serial line to a MethodSCRIPT instrument.

Commands and replies are ASCII lines ending in ``\\n`` (EmStat4 communication
protocol v1.3, EmStat Pico communication protocol v1.6). An empty line means
something (the end of a script's output), so lines are never skipped here;
only ``\\r`` and the XON/XOFF flow-control bytes a Pico may send are dropped.

``Link`` works on anything with pyserial's ``read``/``write``/``in_waiting``
(a real port, the emulator's pseudo-terminal, or a scripted fake in the
tests), never blocks longer than the caller's timeout and turns transport
failures into ``ConnectionLost``.
"""

from __future__ import annotations

import logging
import time
from typing import Protocol

from labctl.channel import ConnectionLost

log = logging.getLogger(__name__)

XON, XOFF = 0x11, 0x13
#: pyserial's read timeout: the granularity at which a wait checks its deadline.
POLL_S = 0.02


class Port(Protocol):
    """The part of ``serial.Serial`` the link uses."""

    def write(self, data: bytes) -> int | None: ...

    def read(self, size: int = 1) -> bytes: ...

    @property
    def in_waiting(self) -> int: ...

    def reset_input_buffer(self) -> None: ...

    def close(self) -> None: ...


def open_serial(resource: str, *, baudrate: int, xonxoff: bool = False, exclusive: bool = True) -> Port:
    """Open a serial port (a path such as /dev/ttyACM0, or any pyserial URL)."""
    import serial

    try:
        if "://" in resource:
            port = serial.serial_for_url(resource, baudrate=baudrate, timeout=POLL_S, xonxoff=xonxoff)
        else:
            port = serial.Serial(resource, baudrate=baudrate, timeout=POLL_S, xonxoff=xonxoff, exclusive=exclusive)
    except (serial.SerialException, OSError, ValueError) as exc:
        raise ConnectionLost(f"cannot open {resource}: {exc}") from exc
    return port


class Link:
    """Line I/O with deadlines. Not thread-safe by itself: the channel holds a lock."""

    def __init__(self, port: Port, name: str = "") -> None:
        self.port = port
        self.name = name
        self._buffer = bytearray()
        self.closed = False

    def _fail(self, action: str, exc: BaseException) -> ConnectionLost:
        self.closed = True
        where = self.name or "serial port"
        return ConnectionLost(f"{where}: {action} failed ({exc}); was the instrument disconnected?")

    def write(self, text: str) -> None:
        if self.closed:
            raise ConnectionLost(f"{self.name or 'serial port'} is closed")
        log.debug("TX %r", text)
        try:
            self.port.write(text.encode("ascii"))
        except Exception as exc:  # SerialException, OSError: the port went away
            raise self._fail("write", exc) from exc

    def _take_line(self) -> str | None:
        cut = self._buffer.find(b"\n")
        if cut < 0:
            return None
        raw = bytes(self._buffer[:cut])
        del self._buffer[: cut + 1]
        line = raw.replace(b"\r", b"").decode("ascii", errors="replace")
        log.debug("RX %r", line)
        return line

    def read_line(self, timeout: float) -> str | None:
        """The next line (without ``\\n``), or None when none arrived within ``timeout`` s."""
        line = self._take_line()
        if line is not None:
            return line
        if self.closed:
            raise ConnectionLost(f"{self.name or 'serial port'} is closed")
        deadline = time.monotonic() + max(timeout, 0.0)
        while True:
            try:
                waiting = self.port.in_waiting
                chunk = self.port.read(max(1, waiting))
            except Exception as exc:
                raise self._fail("read", exc) from exc
            if chunk:
                self._buffer += bytes(b for b in chunk if b not in (XON, XOFF))
                line = self._take_line()
                if line is not None:
                    return line
            if time.monotonic() >= deadline:
                return None

    def flush_input(self) -> None:
        """Forget whatever arrived and was not read (stale output of an aborted script)."""
        self._buffer.clear()
        try:
            self.port.reset_input_buffer()
        except Exception as exc:
            raise self._fail("flush", exc) from exc

    def close(self) -> None:
        self.closed = True
        try:
            self.port.close()
        except Exception:  # closing a port that already went away
            log.debug("closing %s failed", self.name, exc_info=True)
