"""The BTS server link: framing, one request/one reply, and the replies parsed.

Framing (Neware BTS TCP/IP protocol, as public clients implement it): each
message is ``<?xml version="1.0" encoding="UTF-8" ?><bts version="1.0">`` + body
+ ``</bts>`` + ``\\n\\n#\\r\\n``; the server answers each request with one such
message. Bodies start with ``<cmd>NAME</cmd>``. Replies are parsed with the
standard library's expat-based ElementTree (no external entities are fetched;
the peer is the lab's own BTS PC).
"""

from __future__ import annotations

import time
import xml.etree.ElementTree as ET
from dataclasses import dataclass

from drivers.kit.tcp import TcpLink, parse_tcp_resource
from labctl.channel import ConnectionLost, GarbledReply, InstrumentError, InstrumentTimeout

HEADER = '<?xml version="1.0" encoding="UTF-8" ?><bts version="1.0">'
FOOTER = "</bts>"
TERMINATOR = b"\n\n#\r\n"
#: Records asked for per download request (public clients use 1000).
CHUNK = 1000


def parse_resource(resource: str) -> tuple[str, int]:
    """``tcp://host:port`` (or ``host:port``, or ``host`` = port 502)."""
    return parse_tcp_resource(resource, 502, "Neware")


@dataclass(frozen=True)
class Address:
    devtype: int
    devid: int
    subdevid: int
    chlid: int
    ip: str

    def attrs(self) -> str:
        return (
            f'ip="{self.ip}" devtype="{self.devtype}" devid="{self.devid}" '
            f'subdevid="{self.subdevid}" chlid="{self.chlid}"'
        )

    @property
    def name(self) -> str:
        return f"{self.devid}-{self.subdevid}-{self.chlid}"


class BtsLink(TcpLink):
    """One TCP connection to the BTS server; thread-safe request/reply."""

    vendor = "Neware"
    default_port = 502

    def command(self, body: str) -> ET.Element:
        """Send ``body``; the reply's ``<bts>`` element. A late or partial reply
        breaks the connection (the next request reconnects), so a reply can never
        be taken for the answer to a later request."""
        with self._lock:
            if self._sock is None:
                raise ConnectionLost("Neware: not connected")
            what = body[5 : body.find("</cmd>")] if body.startswith("<cmd>") else body[:20]
            try:
                self._sock.sendall((HEADER + body + FOOTER).encode("utf-8") + TERMINATOR)
                raw = self._read_reply(what)
            except InstrumentError:
                self.close()
                raise
            except OSError as exc:
                self.close()
                raise ConnectionLost(f"Neware: link lost during {what}: {exc}") from exc
        try:
            root = ET.fromstring(raw.decode("utf-8"))
        except (UnicodeDecodeError, ET.ParseError) as exc:
            raise GarbledReply(f"Neware: reply to {what} does not parse: {raw[:60]!r}") from exc
        if root.tag != "bts":
            raise GarbledReply(f"Neware: reply to {what} is not a <bts> message: {raw[:60]!r}")
        got = (root.findtext("cmd") or "").strip()
        if got.lower() != what.lower():
            raise GarbledReply(f"Neware: reply to {what} is for {got!r}")
        return root

    def _read_reply(self, what: str) -> bytes:
        assert self._sock is not None
        deadline = time.monotonic() + self.timeout
        while TERMINATOR not in self._buffer:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            self._sock.settimeout(left)
            try:
                chunk = self._sock.recv(65536)
            except TimeoutError:
                break
            if not chunk:
                raise ConnectionLost(f"Neware: the server closed the link during {what}")
            self._buffer += chunk
        if TERMINATOR not in self._buffer:
            partial, self._buffer = self._buffer, b""
            if partial:
                raise GarbledReply(f"Neware: unterminated reply to {what}: {partial[:60]!r}")
            raise InstrumentTimeout(f"Neware: no reply to {what} within {self.timeout:g} s")
        raw, _, self._buffer = self._buffer.partition(TERMINATOR)
        return raw


def records(root: ET.Element, list_tag: str = "list") -> list[dict[str, str]]:
    """The children of ``<list>`` (or ``<middle>``) as attribute dicts; an element's
    text is under its own tag name (``{"start": "ok", …}``)."""
    node = root.find(list_tag)
    if node is None:
        raise GarbledReply(f"Neware: reply has no <{list_tag}>")
    out = []
    for el in node:
        row = dict(el.attrib)
        if el.text and el.text.strip():
            row[el.tag] = el.text.strip()
        out.append(row)
    return out
