"""VISA failures as the driver's typed errors (one translation for every VISA driver).

pyvisa reports a missing reply as ``VisaIOError(VI_ERROR_TMO)``; pyvisa-py
reports a peer that closed a TCP socket the same way (it reads nothing until
the timeout), so after a timeout the socket is inspected: readable with no
data means the connection is gone (``ConnectionLost``), not a slow instrument
(``InstrumentTimeout``). Other backends raise ``VI_ERROR_CONN_LOST`` directly.
"""

from __future__ import annotations

import select
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from pyvisa import constants
from pyvisa.errors import Error as VisaError
from pyvisa.errors import VisaIOError

from labctl.channel import ConnectionLost, GarbledReply, InstrumentError, InstrumentTimeout

_CONNECTION_CODES = {
    constants.StatusCode.error_connection_lost,
    constants.StatusCode.error_io,
    constants.StatusCode.error_invalid_object,
    constants.StatusCode.error_closing_failed,
}


def peer_closed(resource: Any) -> bool:
    """True when a pyvisa-py TCP session's peer has closed the socket."""
    try:
        sock = resource.visalib.sessions[resource.session].interface
    except Exception:  # another backend, or no session any more
        return False
    if not isinstance(sock, socket.socket):
        return False
    try:
        readable, _, _ = select.select([sock], [], [], 0)
        if not readable:
            return False
        return sock.recv(1, socket.MSG_PEEK) == b""
    except (OSError, ValueError):
        return True


def enable_nodelay(resource: Any) -> bool:
    """Switch Nagle's algorithm off on a TCP socket resource; True if it is off.

    A command written without a reply, followed at once by a query, is the
    pattern of every SMU step (set the level, read): with Nagle on, the query
    waits for the peer's delayed ACK, ~40 ms on Linux, per sample. NI-VISA
    sets VI_ATTR_TCPIP_NODELAY by default; pyvisa-py 0.8 lists the attribute
    but cannot set it, so its socket is set directly.
    """
    try:
        resource.set_visa_attribute(constants.ResourceAttribute.tcpip_nodelay, constants.VI_TRUE)
        return True
    except Exception:  # unsupported by this backend or resource type: fall through
        pass
    try:
        sock = resource.visalib.sessions[resource.session].interface
    except Exception:
        return False
    if not isinstance(sock, socket.socket) or sock.type != socket.SOCK_STREAM:
        return False
    try:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    except OSError:
        return False
    return True


#: Exceptions that mean "the reply is not what the manual says" by default: a decode
#: failure, or pymeasure's casts of a reply that is not a number.
GARBLED: tuple[type[Exception], ...] = (UnicodeDecodeError, ValueError)


@contextmanager
def typed_errors(
    what: str, resource: Any, timeout_ms: float, *, garbled: tuple[type[Exception], ...] = GARBLED
) -> Iterator[None]:
    """Translate what the VISA layer raises inside the block into InstrumentError subclasses.

    ``what`` starts every message (e.g. "E4980A: *IDN?"); ``resource`` is the pyvisa
    resource (None before it exists), inspected after a timeout to tell a closed
    connection from a slow instrument; ``garbled`` the exceptions that mean a bad reply
    (a driver whose block also sets validated properties leaves ValueError out)."""
    try:
        yield
    except InstrumentError:
        raise
    except VisaIOError as exc:
        if exc.error_code == constants.StatusCode.error_timeout:
            if resource is not None and peer_closed(resource):
                raise ConnectionLost(f"{what}: the instrument closed the connection") from exc
            raise InstrumentTimeout(f"{what}: no reply within {timeout_ms:g} ms") from exc
        if exc.error_code in _CONNECTION_CODES:
            raise ConnectionLost(f"{what}: {exc.description}") from exc
        raise InstrumentError(f"{what}: VISA error {exc.abbreviation}: {exc.description}") from exc
    except VisaError as exc:  # e.g. InvalidSession: the handle is gone
        raise ConnectionLost(f"{what}: {exc}") from exc
    except (ConnectionError, EOFError, OSError) as exc:
        raise ConnectionLost(f"{what}: {exc}") from exc
    except garbled as exc:
        raise GarbledReply(f"{what}: {exc}") from exc
