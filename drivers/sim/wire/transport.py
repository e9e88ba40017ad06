"""Loopback transports for the wire emulators, with fault injection.

A ``Session`` is one connection as the emulator sees it: lines in (through
``on_line``), bytes out (``send``, from any thread, so an emulator can stream
data packets while a script runs). ``TcpServer`` serves sessions on
127.0.0.1 (``port=0`` picks a free port); ``PtyServer`` serves one session on
a pseudo-terminal whose slave path pyserial opens like a real serial port.

Faults are injected at the transport so every emulator gets them for free:
``no_reply`` swallows the next reply (the driver must time out), ``garble``
corrupts it, ``drop`` closes the connection (now, or after N more lines are
sent, i.e. mid-step). ``Faults.arm`` schedules faults of the ``KIND[@WHEN]``
grammar (``drivers.sim.wire.faults``: at the N-th reply, at a cell time,
always), including instrument-level ones (error codes, compliance), which each
emulator applies through a hook of its own (``instrument_faults()``).
"""

from __future__ import annotations

import contextlib
import logging
import os
import select
import socket
import threading
import time
import tty
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Self

from drivers.sim.wire.faults import FaultPlan

log = logging.getLogger(__name__)


#: What the fault injector does to one reply.
NO_REPLY, GARBLED, DROP_LINK = "no-reply", "garbled", "drop-link"


@dataclass
class _Armed:
    plan: FaultPlan
    hook: Callable[[], bool] | None  # an instrument fault: True once it took effect


@dataclass
class Faults:
    """Pending transport faults; each is consumed when it fires.

    The counters are the tests' direct handles; ``arm`` adds a scheduled fault
    (``drivers.sim.wire.faults``: once, always, at the N-th reply, at a cell
    time), transport or instrument-level (then ``hook`` applies it to the
    instrument and says whether it could, e.g. a compliance needs the output on).
    """

    no_reply: int = 0  # swallow this many replies
    garble: int = 0  # corrupt this many replies
    drop_after_sends: int | None = None  # close after this many more sends (0 = at once)
    sends: int = 0  # replies the emulator has tried to send (the N of ``KIND@N``)
    cell_time: Callable[[], float] | None = None  # the emulator's cell clock, for ``KIND@t=…``
    _armed: list[_Armed] = field(default_factory=list, repr=False)
    _lock: threading.RLock = field(default_factory=threading.RLock, repr=False)

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

    def arm(self, plan: FaultPlan, hook: Callable[[], bool] | None = None) -> None:
        """Schedule ``plan``; an instrument kind needs its ``hook``."""
        if not plan.transport and hook is None:
            raise ValueError(f"{plan.kind} needs the emulator's hook")
        if plan.when == "time" and self.cell_time is None:
            raise ValueError(f"--fault {plan.kind}@t=…: this emulator has no cell clock")
        with self._lock:
            self._armed.append(_Armed(plan, hook))

    def next_action(self) -> str | None:
        """Called once per reply about to be sent: what happens to it (None: sent as is)."""
        with self._lock:
            self.sends += 1
            fired = self._fire_scheduled()
            if self.take_no_reply() or NO_REPLY in fired:
                return NO_REPLY
            garbled = self.take_garble() or GARBLED in fired
            if DROP_LINK in fired:
                return DROP_LINK
            if self.drop_after_sends is not None:
                if self.drop_after_sends <= 0:
                    self.drop_after_sends = None
                    return DROP_LINK
                self.drop_after_sends -= 1
            return GARBLED if garbled else None

    def _fire_scheduled(self) -> set[str]:
        fired: set[str] = set()
        keep: list[_Armed] = []
        now: float | None = None
        for armed in self._armed:
            plan = armed.plan
            if plan.when == "reply":
                due = self.sends >= plan.at
            elif plan.when == "time":
                if now is None:
                    assert self.cell_time is not None
                    now = self.cell_time()
                due = now >= plan.at
            else:
                due = True
            took = False
            if due:
                took = True if armed.hook is None else bool(armed.hook())
                if took and plan.transport:
                    fired.add(plan.kind)
            if plan.when == "always" or not took:
                keep.append(armed)
        self._armed = keep
        return fired


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

    def send(
        self, data: bytes, *, garbled: bool = False, scheduled: bool = True, frame_end: bytes = b""
    ) -> bool:
        """Send bytes to the client, through the fault injector; True when they went out as
        they were. ``scheduled=False``: the reply does not count toward the scheduled faults
        (a multi-channel server faulting one channel); ``garbled``: corrupt it anyway (an
        instrument fault); ``frame_end``: kept intact when garbling, as a corrupted reply from
        a framing server arrives framed but unparseable."""
        if self.closed.is_set():
            return False
        with self._send_lock:
            action = self.faults.next_action() if scheduled else None
            if action == NO_REPLY:
                return False
            if action == DROP_LINK:
                self.close()
                return False
            corrupt = garbled or action == GARBLED
            if corrupt:
                body = data[: len(data) - len(frame_end)] if frame_end and data.endswith(frame_end) else data
                data = garble(body) + (frame_end if body is not data else b"")
            try:
                self._write(data)
            except OSError:
                self.close()
                return False
            return not corrupt


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

    def _split(self, buffer: bytearray) -> list[bytes]:
        """The complete messages at the front of ``buffer`` (removed from it): lines here."""
        return _split_lines(buffer, self.terminators)

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
                for line in self._split(buffer):
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


def line_time(n_bytes: int, baudrate: int | None) -> float:
    """Seconds a UART needs for ``n_bytes`` at ``baudrate`` (10 bits a byte: start, 8 data,
    stop); 0 for an unpaced link."""
    return 0.0 if not baudrate else n_bytes * 10.0 / baudrate


class _PtySession(Session):
    def __init__(self, master_fd: int, faults: Faults, terminator: bytes, baudrate: int | None = None) -> None:
        super().__init__(faults, terminator)
        self.master_fd = master_fd
        self.baudrate = baudrate

    def _write(self, data: bytes) -> None:
        """Out at the line's pace: a reply of 100 bytes at 9600 baud takes 0.1 s."""
        chunk = max(1, (self.baudrate or 0) // 100) if self.baudrate else len(data)  # ~10 ms pieces
        view = memoryview(data)
        while view:
            piece = view[:chunk]
            time.sleep(line_time(len(piece), self.baudrate))  # the bytes are on the wire until then
            written = os.write(self.master_fd, piece)
            view = view[written:]

    def close(self) -> None:
        self.closed.set()


class PtyServer:
    """Serves an emulator on a pseudo-terminal: ``path`` is the serial port to open."""

    def __init__(
        self, handler: Handler, terminators: tuple[bytes, ...] = (b"\n",), baudrate: int | None = None
    ) -> None:
        """``baudrate``: pace both directions as a serial line at that rate would (a line
        received is handled only once its bytes could have arrived); None: unpaced."""
        self.handler = handler
        self.terminators = terminators
        self.baudrate = baudrate
        self.faults = Faults()
        self.master_fd, slave_fd = os.openpty()
        tty.setraw(slave_fd)  # no echo, no line discipline: bytes as a UART would carry them
        self.path = os.ttyname(slave_fd)
        self._slave_fd = slave_fd  # kept open so the pty survives client reconnects
        self._stop = threading.Event()
        self.session = _PtySession(self.master_fd, self.faults, terminators[0], baudrate)
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
                if self.baudrate:
                    time.sleep(line_time(len(chunk), self.baudrate))
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
