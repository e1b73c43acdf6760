"""One TCP (or TLS) connection of an IRC client, between the event loop and the core.

The shell (:mod:`salon.net.runner`) creates a :class:`ClientProtocol` for every accepted
socket; :mod:`salon.net.websocket` creates one after a WebSocket handshake, with a sink that
frames the core's lines. It feeds the core the bytes read, stops reading while the client's
input waits, and tells the core why the connection was lost.
"""

from __future__ import annotations

import asyncio
import errno
import os
import ssl
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from salon.net import tls
from salon.net.limits import Key
from salon.server.client import Client, Kind

if TYPE_CHECKING:
    from salon.net.runner import Shell


# The errno an OSError subclass stands for, when it comes without one (raised by Python
# code, not by a system call).
_CLASS_ERRNO: tuple[tuple[type[OSError], int], ...] = (
    (BrokenPipeError, errno.EPIPE),
    (ConnectionResetError, errno.ECONNRESET),
    (ConnectionAbortedError, errno.ECONNABORTED),
    (ConnectionRefusedError, errno.ECONNREFUSED),
    (TimeoutError, errno.ETIMEDOUT),
)


def lost_reason(exc: BaseException | None) -> str:
    """The quit reason of a connection lost with ``exc``, as every channel member reads it:
    in words, like ircd's "Read error: Connection reset by peer", never a class name."""
    if exc is None:
        return "Connection closed"
    if isinstance(exc, ssl.SSLError):
        # Its errno is an OpenSSL code, not a system one; its reason is OpenSSL's name,
        # like DECRYPTION_FAILED_OR_BAD_RECORD_MAC.
        what = "".join(ch for ch in exc.reason or "" if ch.isalnum() or ch == "_")
        what = what.replace("_", " ").lower()
        return f"Read error: TLS error ({what})" if what else "Read error: TLS error"
    if not isinstance(exc, OSError):
        return "Read error: Connection lost"
    code = exc.errno if exc.errno and exc.errno > 0 else 0
    if not code:
        code = next((c for cls, c in _CLASS_ERRNO if isinstance(exc, cls)), 0)
    if not code:
        return "Read error: Connection lost"
    # EPIPE comes only from a write (send(2)): the peer is gone and we were talking.
    where = "Write error" if code == errno.EPIPE else "Read error"
    return f"{where}: {os.strerror(code)}"


def peer_ip(peer: Any) -> str:
    """A peer's address as the core knows it: an IPv4-mapped IPv6 one as IPv4."""
    ip = str(peer[0])
    return ip[7:] if ip.startswith("::ffff:") and "." in ip else ip


@dataclass(frozen=True, slots=True)
class Refusal:
    """Why a new connection is refused at the edge: a D-line (``banned``) or a limit."""

    reason: str
    banned: bool


class ClientProtocol(asyncio.Protocol):
    __slots__ = (
        "client", "counted", "kind", "limit_key", "partial", "refused", "shell", "tls", "waiting",
    )  # fmt: skip

    def __init__(self, shell: Shell, kind: Kind, tls: bool = False) -> None:
        self.shell = shell
        self.kind = kind
        self.tls = tls
        self.client: Client | None = None
        # The network this connection is counted in by the shell's ConnectionLimits.
        self.limit_key: Key | None = None
        # Bytes received since the last newline. The core discards an overlong line as it
        # goes, so only the shell sees an endless line whatever the read sizes are.
        self.partial = 0
        # The key of a refused connection in the shell's transports (a negative number).
        self.refused = 0
        # An address whose connection limits were applied already, when the socket was
        # accepted (WebSocketProtocol): not counted twice.
        self.counted: str | None = None
        # Bytes read while a cluster node was unsure it is still part of the network
        # (Shell.hold_input): fed once it is sure.
        self.waiting = b""

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        peer = transport.get_extra_info("peername") or ("0.0.0.0", 0)
        ip = peer_ip(peer)
        shell = self.shell
        if shell.closing:
            transport.abort()
            return
        refusal, self.limit_key = shell.screen(ip, count=ip != self.counted)
        if refusal is not None:
            self.refused = shell.refuse(transport, ip, refusal.reason)
            return
        client = shell.server.connect(self.kind, ip, int(peer[1]), time.time())
        if self.tls:
            client.tls = True
            ssl_object = transport.get_extra_info("ssl_object")
            der = ssl_object.getpeercert(binary_form=True) if ssl_object is not None else None
            if der:
                client.certfp = tls.fingerprint(der)
        client.sink = transport
        self.client = client
        shell.transports[client.id] = transport
        shell.after()

    def data_received(self, data: bytes) -> None:
        client = self.client
        if client is None or client.closed:
            return
        shell = self.shell
        if shell.bus is not None and shell.hold_input(self, data):
            return
        server = shell.server
        nl = data.rfind(b"\n")
        self.partial = self.partial + len(data) if nl < 0 else len(data) - nl - 1
        if self.partial > server.recvq:
            # RecvQ: more than it may hold without a newline, however it was split up.
            server.disconnected(client, time.time(), "RecvQ exceeded")
        else:
            server.feed(client, data, time.time())
            if client.blocked and not client.reading_paused and client.sink is not None:
                # Its input waits for a store call or slow work: stop reading (TCP
                # backpressure) instead of buffering without bound.
                client.reading_paused = True
                client.sink.pause_reading()
                shell.paused.add(client)
        shell.after()

    def eof_received(self) -> bool:
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        shell = self.shell
        if self.limit_key is not None:
            shell.limits.release(self.limit_key)
            self.limit_key = None
        client = self.client
        if client is None:
            if self.refused:
                shell.transports.pop(self.refused, None)
            return
        shell.transports.pop(client.id, None)
        shell.server.disconnected(client, time.time(), lost_reason(exc))
        client.sink = None
        shell.after()
