"""The MacNet link: one JSON-RPC request, one JSON reply, over TCP.

Message form (Maccor MacNet JSON interface, as the open-source pymacnet
client implements it): ``{"jsonrpc": "2.0", "method": "MacNet", "params":
{"FClass": c, "FNum": n, …}, "id": i}``; the reply carries ``result`` with the
same ``FClass``/``FNum``. Texts follow each other on the stream without a
separator, so a reply is complete when it parses as one JSON value.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import socket
import threading
import time
from typing import Any

from labctl.channel import ConnectionLost, GarbledReply, InstrumentError, InstrumentTimeout

DEFAULT_PORT = 57570


def parse_resource(resource: str) -> tuple[str, int]:
    """``tcp://host:port`` (or ``host:port``, or ``host`` = port 57570)."""
    text = resource.split("://", 1)[1] if "://" in resource else resource
    host, _, port = text.rpartition(":")
    if not host:
        return text, DEFAULT_PORT
    try:
        return host, int(port)
    except ValueError:
        raise ValueError(f"bad Maccor resource {resource!r} (allowed: tcp://HOST:PORT)") from None


class MacNetLink:
    """One TCP connection to MacNet; thread-safe request/reply."""

    def __init__(self, resource: str, timeout: float) -> None:
        self.host, self.port = parse_resource(resource)
        self.timeout = timeout
        self._sock: socket.socket | None = None
        self._lock = threading.Lock()
        self._ids = itertools.count(1)

    @property
    def connected(self) -> bool:
        return self._sock is not None

    def connect(self) -> None:
        self.close()
        try:
            self._sock = socket.create_connection((self.host, self.port), timeout=self.timeout)
        except OSError as exc:
            raise ConnectionLost(f"Maccor: cannot connect to {self.host}:{self.port}: {exc}") from exc

    def close(self) -> None:
        sock, self._sock = self._sock, None
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            with contextlib.suppress(OSError):
                sock.close()

    def call(self, fclass: int, fnum: int, **params: Any) -> dict[str, Any]:
        """Send message (fclass, fnum); its ``result``. A broken exchange closes the
        link, so a late reply is never taken for the next request's."""
        what = f"({fclass}, {fnum})"
        request = {"jsonrpc": "2.0", "method": "MacNet", "params": {"FClass": fclass, "FNum": fnum, **params}}
        with self._lock:
            if self._sock is None:
                raise ConnectionLost("Maccor: not connected")
            request["id"] = next(self._ids)
            try:
                self._sock.sendall(json.dumps(request).encode("utf-8"))
                reply = self._read(what)
            except InstrumentError:
                self.close()
                raise
            except OSError as exc:
                self.close()
                raise ConnectionLost(f"Maccor: link lost during {what}: {exc}") from exc
        if not isinstance(reply, dict) or reply.get("id") != request["id"]:
            self.close()
            raise GarbledReply(f"Maccor: reply to {what} is not its answer: {str(reply)[:80]}")
        if "error" in reply:
            raise InstrumentError(f"Maccor: {what} refused: {reply['error']}")
        result = reply.get("result")
        if not isinstance(result, dict) or result.get("FClass") != fclass or result.get("FNum") != fnum:
            raise GarbledReply(f"Maccor: reply to {what} has no matching result: {str(reply)[:80]}")
        return result

    def _read(self, what: str) -> Any:
        assert self._sock is not None
        decoder = json.JSONDecoder()
        buffer = b""
        deadline = time.monotonic() + self.timeout
        while True:
            if buffer.strip():
                try:
                    value, _ = decoder.raw_decode(buffer.decode("utf-8").lstrip())
                    return value
                except UnicodeDecodeError as exc:
                    raise GarbledReply(f"Maccor: reply to {what} is not UTF-8: {buffer[:60]!r}") from exc
                except json.JSONDecodeError as exc:
                    if buffer.count(b"{") <= buffer.count(b"}"):
                        raise GarbledReply(f"Maccor: reply to {what} does not parse: {buffer[:60]!r}") from exc
            left = deadline - time.monotonic()
            if left <= 0:
                if buffer:
                    raise GarbledReply(f"Maccor: incomplete reply to {what}: {buffer[:60]!r}")
                raise InstrumentTimeout(f"Maccor: no reply to {what} within {self.timeout:g} s")
            self._sock.settimeout(left)
            try:
                chunk = self._sock.recv(65536)
            except TimeoutError:
                continue
            if not chunk:
                raise ConnectionLost(f"Maccor: the server closed the link during {what}")
            buffer += chunk
