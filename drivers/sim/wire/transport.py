"""Loopback transports for the wire emulators, with fault injection.

A ``Session`` is one connection as the emulator sees it: lines in (through
``on_line``), bytes out (``send``, from any thread, so an emulator can stream
data packets while a script runs). ``TcpServer`` serves sessions on
127.0.0.1 (``port=0`` picks a free port); ``PtyServer`` serves one session on
a pseudo-terminal whose slave path pyserial opens like a real serial port.

Faults are injected at the transport so every emulator gets them for free:
``no_reply`` swallows the next reply (the driver must time out), ``garble``
corrupts it, ``drop`` closes the connection (now, or after N more lines are
sent, i.e. mid-step). Instrument-level faults (error codes, compliance) are
the emulators' own.
"""

from __future__ import annotations

import contextlib
import logging
import os
import select
import socket
import threading
import tty
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from typing import Self

log = logging.getLogger(__name__)


@dataclass
class Faults:
    """Pending transport faults; each is consumed when it fires."""

    no_reply: int = 0  # swallow this many replies
    garble: int = 0  # corrupt this many replies
    drop_after_sends: int | None = None  # close after this many more sends (0 = at once)

    def take_no_reply(self) -> bool:
        if self.no_reply > 0:
            self.no_reply -= 1
            return True
        return False

    def take_garble(self) -> bool:
        if self.garble > 0:
            self.garble -= 1
            return True
        return False


def garble(data: bytes) -> bytes:
    """A reply no parser should accept: bytes flipped, terminator kept."""
    body = data.rstrip(b"\r\n")
    tail = data[len(body) :]
    return bytes(b ^ 0x5A for b in body) + b"#?" + tail


class Session(ABC):
    """One connection, as seen by an emulator."""

    def __init__(self, faults: Faults, terminator: bytes = b"\n") -> None:
        self.faults = faults
        self.terminator = terminator
        self._send_lock = threading.Lock()
        self.closed = threading.Event()

    @abstractmethod
    def _write(self, data: bytes) -> None: ...

    @abstractmethod
    def close(self) -> None: ...

    def send(self, data: bytes) -> None:
        """Send bytes to the client, through the fault injector."""
        if self.closed.is_set():
            return
        with self._send_lock:
            if self.faults.take_no_reply():
                return
            if self.faults.take_garble():
                data = garble(data)
            if self.faults.drop_after_sends is not None:
                if self.faults.drop_after_sends <= 0:
                    self.faults.drop_after_sends = None
                    self.close()
                    return
                self.faults.drop_after_sends -= 1
            try:
                self._write(data)
            except OSError:
                self.close()


Handler = Callable[[Session], "LineHandler"]


class EmulatorServer(ABC):
    """What ``labctl sim-server`` and the tests hold: an emulator with an
    address (``resource``, what the driver opens) that stops cleanly, also as
    a context manager."""

    resource: str

    @abstractmethod
    def stop(self) -> None: ...

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


class LineHandler(ABC):
    """An emulator's per-connection logic: called for every line received."""

    @abstractmethod
    def on_line(self, line: bytes) -> None: ...

    def on_close(self) -> None:  # noqa: B027 - optional hook
        """The client went away (stop any running script)."""


def _split_lines(buffer: bytearray, terminators: tuple[bytes, ...]) -> list[bytes]:
    lines = []
    while True:
        cut = -1
        size = 0
        for term in terminators:
            idx = buffer.find(term)
            if idx != -1 and (cut == -1 or idx < cut):
                cut, size = idx, len(term)
        if cut == -1:
            return lines
        lines.append(bytes(buffer[:cut]).strip(b"\r"))
        del buffer[: cut + size]


class _SocketSession(Session):
    def __init__(self, sock: socket.socket, faults: Faults, terminator: bytes) -> None:
        super().__init__(faults, terminator)
        self.sock = sock

    def _write(self, data: bytes) -> None:
        self.sock.sendall(data)

    def close(self) -> None:
        if not self.closed.is_set():
            self.closed.set()
            with contextlib.suppress(OSError):
                self.sock.shutdown(socket.SHUT_RDWR)
            self.sock.close()


class TcpServer:
    """Serves an emulator on 127.0.0.1; one thread per connection."""

    def __init__(
        self,
        handler: Handler,
        port: int = 0,
        host: str = "127.0.0.1",
        terminators: tuple[bytes, ...] = (b"\n",),
    ) -> None:
        self.handler = handler
        self.terminators = terminators
        self.faults = Faults()
        self._listener = socket.create_server((host, port))
        self._listener.settimeout(0.2)  # so the accept loop notices stop()
        self.host, self.port = self._listener.getsockname()[:2]
        self._stop = threading.Event()
        self._sessions: list[_SocketSession] = []
        self._thread = threading.Thread(target=self._accept_loop, name=f"emulator-tcp-{self.port}", daemon=True)

    def start(self) -> TcpServer:
        self._thread.start()
        return self

    def _accept_loop(self) -> None:
        while not self._stop.is_set():
            try:
                sock, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            session = _SocketSession(sock, self.faults, self.terminators[0])
            self._sessions.append(session)
            threading.Thread(target=self._serve, args=(session,), daemon=True).start()

    def _serve(self, session: _SocketSession) -> None:
        handler = self.handler(session)
        buffer = bytearray()
        try:
            while not session.closed.is_set() and not self._stop.is_set():
                try:
                    chunk = session.sock.recv(65536)
                except OSError:
                    break
                if not chunk:
                    break
                buffer += chunk
                for line in _split_lines(buffer, self.terminators):
                    handler.on_line(line)
        except Exception:  # an emulator bug must be visible, and must not kill the server
            log.exception("emulator handler failed")
        finally:
            handler.on_close()
            session.close()

    def drop_all(self) -> None:
        """Close every open connection now (a cable pulled)."""
        for session in list(self._sessions):
            session.close()

    def stop(self) -> None:
        self._stop.set()
        self.drop_all()
        self._listener.close()
        self._thread.join(2.0)

    def __enter__(self) -> TcpServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class _PtySession(Session):
    def __init__(self, master_fd: int, faults: Faults, terminator: bytes) -> None:
        super().__init__(faults, terminator)
        self.master_fd = master_fd

    def _write(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            written = os.write(self.master_fd, view)
            view = view[written:]

    def close(self) -> None:
        self.closed.set()


class PtyServer:
    """Serves an emulator on a pseudo-terminal: ``path`` is the serial port to open."""

    def __init__(self, handler: Handler, terminators: tuple[bytes, ...] = (b"\n",)) -> None:
        self.handler = handler
        self.terminators = terminators
        self.faults = Faults()
        self.master_fd, slave_fd = os.openpty()
        tty.setraw(slave_fd)  # no echo, no line discipline: bytes as a UART would carry them
        self.path = os.ttyname(slave_fd)
        self._slave_fd = slave_fd  # kept open so the pty survives client reconnects
        self._stop = threading.Event()
        self.session = _PtySession(self.master_fd, self.faults, terminators[0])
        self._thread = threading.Thread(target=self._serve, name="emulator-pty", daemon=True)

    def start(self) -> PtyServer:
        self._thread.start()
        return self

    def _serve(self) -> None:
        handler = self.handler(self.session)
        buffer = bytearray()
        try:
            while not self._stop.is_set():
                ready, _, _ = select.select([self.master_fd], [], [], 0.1)
                if not ready:
                    continue
                try:
                    chunk = os.read(self.master_fd, 65536)
                except OSError:
                    break
                if self.session.closed.is_set():
                    # A "dropped" serial link: discard input until reconnected.
                    continue
                buffer += chunk
                for line in _split_lines(buffer, self.terminators):
                    handler.on_line(line)
        except Exception:
            log.exception("emulator handler failed")
        finally:
            handler.on_close()

    def reconnect(self) -> None:
        """Undo a dropped link (the next session starts clean)."""
        self.session.closed.clear()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(2.0)
        for fd in (self.master_fd, self._slave_fd):
            with contextlib.suppress(OSError):
                os.close(fd)

    def __enter__(self) -> PtyServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
