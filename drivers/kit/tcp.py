"""A client's TCP link to a vendor server (battery cyclers' control PCs): address, connect,
close. Why one piece: every network client needs the same "tcp://HOST:PORT" reading and the
same careful close (a broken exchange must close the socket, so a late reply is never taken
for the next request's); the request/reply framing is each protocol's own.
"""

from __future__ import annotations

import contextlib
import socket
import threading

from labctl.channel import ConnectionLost


def parse_tcp_resource(resource: str, default_port: int, vendor: str) -> tuple[str, int]:
    """``tcp://host:port`` (or ``host:port``, or ``host`` = ``default_port``)."""
    text = resource.split("://", 1)[1] if "://" in resource else resource
    host, _, port = text.rpartition(":")
    if not host:
        return text, default_port
    try:
        return host, int(port)
    except ValueError:
        raise ValueError(f"bad {vendor} resource {resource!r} (allowed: tcp://HOST:PORT)") from None


class TcpLink:
    """One TCP connection; subclasses add their request/reply under ``self._lock``."""

    vendor = "instrument"
    default_port = 0

    def __init__(self, resource: str, timeout: float) -> None:
        self.host, self.port = parse_tcp_resource(resource, self.default_port, self.vendor)
        self.timeout = timeout
        self._sock: socket.socket | None = None
        self._lock = threading.Lock()
        self._buffer = b""

    @property
    def connected(self) -> bool:
        return self._sock is not None

    def connect(self) -> None:
        self.close()
        try:
            sock = socket.create_connection((self.host, self.port), timeout=self.timeout)
        except OSError as exc:
            raise ConnectionLost(f"{self.vendor}: cannot connect to {self.host}:{self.port}: {exc}") from exc
        sock.settimeout(self.timeout)
        self._sock, self._buffer = sock, b""

    def close(self) -> None:
        sock, self._sock = self._sock, None
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            with contextlib.suppress(OSError):
                sock.close()
