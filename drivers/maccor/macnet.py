"""The MacNet link: one JSON-RPC request, one JSON reply, over TCP.

Message form (Maccor MacNet JSON interface, as the open-source pymacnet
client implements it): ``{"jsonrpc": "2.0", "method": "MacNet", "params":
{"FClass": c, "FNum": n, …}, "id": i}``; the reply carries ``result`` with the
same ``FClass``/``FNum``. Texts follow each other on the stream without a
separator, so a reply is complete when it parses as one JSON value.
"""

from __future__ import annotations

import itertools
import json
import time
from typing import Any

from drivers.kit.tcp import TcpLink, parse_tcp_resource
from labctl.channel import ConnectionLost, GarbledReply, InstrumentError, InstrumentTimeout

DEFAULT_PORT = 57570


def parse_resource(resource: str) -> tuple[str, int]:
    """``tcp://host:port`` (or ``host:port``, or ``host`` = port 57570)."""
    return parse_tcp_resource(resource, DEFAULT_PORT, "Maccor")


class MacNetLink(TcpLink):
    """One TCP connection to MacNet; thread-safe request/reply."""

    vendor = "Maccor"
    default_port = DEFAULT_PORT

    def __init__(self, resource: str, timeout: float) -> None:
        super().__init__(resource, timeout)
        self._ids = itertools.count(1)

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
