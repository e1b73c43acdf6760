"""IRC over WebSocket (IRCv3 ``websocket``) on the HTTP listener.

The WebSocket protocol itself is the sans-I/O ``websockets.server.ServerProtocol``: bytes
in, events out, bytes to send. This module is the shell around it. Once the handshake is
done, the connection is an ordinary IRC client of the core: a :class:`ClientProtocol`
(the same D-lines, connection limits, flood control and SendQ as TCP) whose transport is a
:class:`WebSocketSink` that turns the core's CR LF lines into WebSocket messages.

Every connection starts as HTTP/1.1, parsed by the sans-I/O ``h11.Connection``: plain
requests get the web client's files (salon.web) over a kept-alive connection, under a
per-address request budget. A request with an ``Upgrade`` header is written out again as
h11 read it and handed, with whatever followed it, to a fresh ``ServerProtocol``; from
there on h11 is out of the way. See docs/architecture.md, "IRC over WebSocket".
"""

from __future__ import annotations

import asyncio
import email.utils
import http
import ipaddress
import logging
import math
import re
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Protocol

import h11
from websockets.datastructures import Headers
from websockets.frames import CloseCode, Frame, Opcode
from websockets.http11 import Request, Response
from websockets.protocol import CONNECTING, OPEN, SEND_EOF
from websockets.server import ServerProtocol
from websockets.typing import Origin, Subprotocol

from salon import web
from salon.net.connection import ClientProtocol, peer_ip
from salon.net.filehost import Exchange
from salon.net.limits import Key
from salon.proto.limits import MAX_CLIENT_TAGS
from salon.server.client import Kind
from salon.server.filepolicy import HOST_HEADER

if TYPE_CHECKING:
    from salon.net.runner import Shell

log = logging.getLogger("salon.net")
# The websockets library logs every connection opened and every HTTP answer at INFO: the
# server log has its own lines for connections (salon.server). Its warnings stay.
_ws_log = logging.getLogger("salon.websocket")
_ws_log.setLevel(logging.WARNING)

# websocket: "Servers implementing this specification MUST support binary.ircv3.net and
# SHOULD support text.ircv3.net."
BINARY = Subprotocol("binary.ircv3.net")
TEXT = Subprotocol("text.ircv3.net")
SUBPROTOCOLS = (BINARY, TEXT)
# "Clients and servers SHOULD impose limits on the maximum size of messages they will
# accept ... The limits SHOULD reflect the increased total line lengths allowed by the
# message-tags specification": client tags, their '@' and space, and a 510-byte line (and
# the CR LF a client may send anyway).
MAX_MESSAGE = MAX_CLIENT_TAGS + 2 + 510 + 2
# Seconds for an HTTP request to arrive, whole; and for the next one on a kept-alive
# connection.
HANDSHAKE_TIMEOUT = 15.0
# Seconds a file host transfer may go without progress (an upload's body, a download's
# reader) before the connection is cut.
TRANSFER_IDLE = 30.0
# Bytes of a streamed answer read from disk and written at once.
STREAM_CHUNK = 65536
# Bytes of it written in one event-loop turn at most.
STREAM_TURN = 1 << 20
# Requests on one connection; the last one's answer says "Connection: close".
MAX_REQUESTS = 100
# Bytes of a request body read and dropped (no path takes one yet) before a 413.
MAX_DISCARDED_BODY = 65536
TEXT_PLAIN = "text/plain; charset=utf-8"
# What h11 lets through and salon refuses (docs/architecture.md): a line ended by LF alone,
# which a proxy in front may read differently (RFC 9112 2.2: "a recipient MAY recognize a
# single LF as a line terminator"), and obs-fold (RFC 9112 5.2: "A server that receives an
# obs-fold in a request message ... MUST either reject the message by sending a 400 (Bad
# Request) ... or replace each received obs-fold with one or more SP octets").
_BARE_LF = re.compile(rb"(?<!\r)\n")
_OBS_FOLD = re.compile(rb"\r\n[ \t]")
# What a refusal carries when its caller gave no policy of its own.
_PLAIN_ANSWER = (
    ("X-Content-Type-Options", "nosniff"),
    ("Content-Security-Policy", "default-src 'none'; sandbox"),
)


def select_subprotocol(
    protocol: ServerProtocol, offered: Sequence[Subprotocol]
) -> Subprotocol | None:
    """websocket: "The server MUST accept any subprotocol it supports, respecting the
    client's order of preference. If no subprotocol can be agreed on, the server MAY
    continue connection establishment without sending the Sec-WebSocket-Protocol header."
    """
    for subprotocol in offered:
        if subprotocol in SUBPROTOCOLS:
            return subprotocol
    return None


def http_response(
    status: int, body: str | bytes, content_type: str = "text/plain; charset=utf-8"
) -> Response:
    """An HTTP answer after which the connection closes."""
    data = body.encode() if isinstance(body, str) else body
    headers = Headers(
        [
            # RFC 9110 6.6.1: "An origin server with a clock MUST generate a Date".
            ("Date", email.utils.formatdate(usegmt=True)),
            ("Connection", "close"),
            ("Content-Length", str(len(data))),
            ("Content-Type", content_type),
        ]
    )
    return Response(status, http.HTTPStatus(status).phrase, headers, data)


class Source(Protocol):
    """The bytes of a streamed answer (salon.net.filehost.FileReader)."""

    def read(self, count: int) -> bytes: ...
    def close(self) -> None: ...


class WebSocketSink(asyncio.Transport):
    """What the core writes to for a WebSocket client: each CR LF line becomes one
    message, in text or binary frames as negotiated (text without a subprotocol, what
    browsers' legacy clients expect)."""

    def __init__(self, protocol: WebSocketProtocol, text: bool, peer: Any) -> None:
        super().__init__()
        self._protocol = protocol
        self._text = text
        self._peer = peer  # the client's address, maybe from a trusted proxy

    def write(self, data: bytes | bytearray | memoryview) -> None:
        ws = self._protocol.ws
        if ws.state is not OPEN:
            return
        send = ws.send_text if self._text else ws.send_binary
        for line in bytes(data).split(b"\r\n"):
            if not line:
                continue
            if self._text:
                # "Servers MUST NOT relay non-UTF-8 content to clients using text
                # messages ... Servers MAY replace non-UTF-8 bytes with ... U+FFFD."
                try:
                    line.decode("utf-8")
                except UnicodeDecodeError:
                    line = line.decode("utf-8", "replace").encode("utf-8")
            send(line)
        self._protocol.send_pending()

    def is_closing(self) -> bool:
        return self._protocol.ws.state is not OPEN or self._protocol.transport.is_closing()

    def get_write_buffer_size(self) -> int:
        return self._protocol.transport.get_write_buffer_size()

    def pause_reading(self) -> None:
        self._protocol.transport.pause_reading()

    def resume_reading(self) -> None:
        self._protocol.transport.resume_reading()

    def is_reading(self) -> bool:
        return self._protocol.transport.is_reading()

    def can_write_eof(self) -> bool:
        return True

    def write_eof(self) -> None:
        """The server ends the connection: a close frame, then the client's answer (or
        the shell's linger timeout) closes the TCP connection."""
        self._protocol.close_websocket(CloseCode.NORMAL_CLOSURE)

    def close(self) -> None:
        self._protocol.close_websocket(CloseCode.GOING_AWAY)
        self._protocol.transport.close()

    def abort(self) -> None:
        self._protocol.transport.abort()

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        if name == "peername":
            return self._peer
        return self._protocol.transport.get_extra_info(name, default)


class WebSocketProtocol(asyncio.Protocol):
    """One connection to the HTTP listener: HTTP requests (h11), or a WebSocket handshake
    and then IRC lines (websockets)."""

    def __init__(self, shell: Shell, secure: bool = False) -> None:
        self.shell = shell
        self.secure = secure  # on the HTTPS listener: TLS terminated by the shell
        allowed = shell.config.listen.http_origins
        self.ws = ServerProtocol(
            # None: clients that are not browsers send no Origin, and are not refused.
            origins=[*map(Origin, allowed), None] if allowed else None,
            select_subprotocol=select_subprotocol,
            max_size=MAX_MESSAGE,
            logger=_ws_log,
        )
        # Until a request asks for a WebSocket: then None, and the bytes go to self.ws.
        self.http: h11.Connection | None = h11.Connection(h11.SERVER)
        self._method = b""  # of the request being read
        self._target = b""
        self._chunked = False  # its body is chunked
        self._body = 0  # bytes of its body read (and dropped)
        self._served = 0  # requests answered on this connection
        self.transport: asyncio.Transport
        self.irc: ClientProtocol | None = None
        self._parts: list[bytes] = []
        self._timer: asyncio.TimerHandle | None = None
        self.peer: Any = ("0.0.0.0", 0)  # the peer's (host, port): a proxy's, maybe
        self.ip = ""  # its address as the core knows it (connection.peer_ip)
        # The peer's network in the shell's ConnectionLimits, counted from the accept on.
        self.limit_key: Key | None = None
        self.done = False  # answered for the last time, or refused: nothing more is read
        self.lingering = 0  # its key in the shell's transports while its answer goes out
        # The file host's handling of the request being read (None: a page or a refusal).
        self.exchange: Exchange | None = None
        self.request: h11.Request | None = None
        self._held = False  # the exchange waits for something: the input waits too
        # A streamed answer: gives the next bytes of the file; what remains to send.
        self._source: Source | None = None
        self._remaining = 0
        self._writing_paused = False

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        self.transport = transport
        shell = self.shell
        if shell.closing:
            transport.abort()
            return
        # D-lines and the limit of open connections apply from the accept, as on the IRC
        # ports: a handshake that never ends must not let one address hold every
        # descriptor. The throttle of new connections waits for a WebSocket upgrade
        # (_upgrade): plain requests have their own budget (_begin).
        self.peer = transport.get_extra_info("peername") or ("0.0.0.0", 0)
        self.ip = peer_ip(self.peer)
        refusal, self.limit_key = shell.screen(self.ip, throttle=False)
        if refusal is not None:
            self._answer(http_response(403 if refusal.banned else 429, f"{refusal.reason}\n"))
            return
        self._arm()

    def _arm(self, seconds: float = HANDSHAKE_TIMEOUT) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._timer = self.shell.loop.call_later(seconds, self._timeout)

    def _timeout(self) -> None:
        self._timer = None
        conn = self.http
        if conn is not None and conn.their_state is h11.IDLE and not conn.trailing_data[0]:
            self.transport.close()  # idle between requests: an ordinary end
        else:
            self.transport.abort()  # a request that never ends

    def data_received(self, data: bytes) -> None:
        if self.done:
            return
        if self.http is not None:
            self.http.receive_data(data)
            self._http_input()
            if self.exchange is not None and not self._held and not self.done:
                # A body streaming in (an upload): one read per loop turn. The event loop
                # would otherwise read this socket many times in a row before it looks at
                # any other connection, and everyone else's lines would wait.
                self.transport.pause_reading()
                self.shell.loop.call_soon(self._read_more)
        else:
            self._ws_input(data)
        if self.transport.get_write_buffer_size() > self.shell.server.sendq:
            # What the protocol answers by itself (pongs to a flood of pings, answers to
            # pipelined requests) counts against the SendQ too, not only the IRC output
            # the shell flushes.
            client = self.irc.client if self.irc is not None else None
            if client is not None and not client.closed:
                self.shell.server.drop(client, "SendQ exceeded")
                self.shell.after()
            else:
                self.transport.abort()

    def _ws_input(self, data: bytes) -> None:
        ws = self.ws
        ws.receive_data(data)
        for event in ws.events_received():
            if self.done:
                break
            if isinstance(event, Frame):
                self._frame(event)
            elif isinstance(event, Request):
                self._request(event)
        self.send_pending()

    def _read_more(self) -> None:
        if not self._held and not self.done and not self.transport.is_closing():
            self.transport.resume_reading()

    def eof_received(self) -> bool:
        if self.done:
            return False
        if self.http is not None:
            self.http.receive_data(b"")
            self._http_input()
            return False
        self.ws.receive_eof()
        self.send_pending()
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self.limit_key is not None:
            self.shell.limits.release(self.limit_key)
            self.limit_key = None
        if self.lingering:
            self.shell.transports.pop(self.lingering, None)
        self._close_source()
        if self.exchange is not None:
            self.exchange.abort()
            self.exchange = None
        if self.irc is not None:
            self.irc.connection_lost(exc)

    def _answer(self, response: Response) -> None:
        """An HTTP answer that ends the connection, whatever else the client sent (the
        protocol may have read its next bytes as frames and failed already)."""
        self.transport.write(response.serialize())
        self._end()

    def _end(self) -> None:
        self.done = True
        if self._held:
            self._held = False
            self.transport.resume_reading()  # the lingering close reads what comes
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        # A lingering close: closing with the request (or more) unread would make the
        # kernel send RST, which can destroy the answer on its way.
        self.lingering = self.shell.linger(self.transport)

    # ------------------------------------------------------------------ plain HTTP

    def _http_input(self) -> None:
        """Read what h11 makes of the bytes received so far, and answer each request."""
        conn = self.http
        while conn is not None and not self.done and not self._held:
            if conn.their_state is h11.IDLE:
                # The next request's head, or its start: what h11 would take but a proxy
                # in front might read otherwise is refused.
                head = conn.trailing_data[0].split(b"\r\n\r\n", 1)[0]
                if _BARE_LF.search(head) or _OBS_FOLD.search(head):
                    self._refuse(400, "Bad request: a line folded or ended by LF alone")
                    return
            try:
                event = conn.next_event()
            except h11.RemoteProtocolError as exc:
                # h11's own refusals: bad framing, bad Content-Length, a head too long...
                self._refuse(exc.error_status_hint, f"Bad request: {exc}")
                return
            if event is h11.NEED_DATA:
                if (
                    self._chunked
                    and conn.their_state is h11.SEND_BODY
                    and _BARE_LF.search(conn.trailing_data[0])
                ):
                    # What is left unread of a chunked body is a chunk line in the making.
                    self._refuse(400, "Bad request: a chunk line ended by LF alone")
                return
            if event is h11.PAUSED:
                return
            if isinstance(event, h11.Request):
                self._begin(event)
            elif isinstance(event, h11.Data):
                if self.exchange is not None:
                    self._arm(TRANSFER_IDLE)
                    self.exchange.data(event.data)
                    continue
                self._body += len(event.data)
                if self._body > MAX_DISCARDED_BODY:
                    self._refuse(413, "Request body too large")
            elif isinstance(event, h11.EndOfMessage):
                if self.exchange is not None:
                    self.exchange.end()
                else:
                    self._finish()
            elif isinstance(event, h11.ConnectionClosed):
                self.done = True
                self.transport.close()
            conn = self.http

    def _begin(self, request: h11.Request) -> None:
        names = {name for name, _ in request.headers}
        if b"upgrade" in names:
            self._upgrade(request)
            return
        if b"content-length" in names and b"transfer-encoding" in names:
            # RFC 9112 6.3: "Such a message might indicate an attempt to perform request
            # smuggling ... or response splitting ... and ought to be handled as an
            # error." h11 would take the chunked framing and go on.
            self._refuse(400, "Bad request: both Content-Length and Transfer-Encoding")
            return
        self._method = request.method
        self._target = request.target
        self._chunked = b"transfer-encoding" in names
        self._body = 0
        key = self.limit_key
        if key is not None:
            wait = self.shell.http_budget.spend(key, time.time())
            if wait:
                retry = str(max(1, math.ceil(wait)))
                self._refuse(429, "Too many requests from your address\n", [("Retry-After", retry)])
                return
        host = self.shell.filehost
        if host is not None and host.handles(request.target):
            self.request = request
            self.exchange = host.exchange(self, request)
            self._arm(TRANSFER_IDLE)
            self.exchange.begin()

    def _finish(self) -> None:
        """The whole request is read: answer it, and wait for the next one."""
        conn = self.http
        if conn is None:
            return
        status, body, content_type, headers = self._page(self._method, self._target)
        self._served += 1
        self._respond(status, body, content_type, headers, close=self._served >= MAX_REQUESTS)
        if self.done:
            return
        if conn.our_state is h11.MUST_CLOSE:
            # The client asked to close (Connection: close, HTTP/1.0): its answer is out.
            self._end()
            return
        conn.start_next_cycle()
        self._method = self._target = b""
        self._arm()

    def _respond(
        self,
        status: int,
        body: bytes,
        content_type: str = TEXT_PLAIN,
        headers: Sequence[tuple[str, str]] = (),
        close: bool = False,
    ) -> None:
        """One answer through h11, which frames it (no body for HEAD)."""
        conn = self.http
        assert conn is not None
        fields = [
            # RFC 9110 6.6.1: "An origin server with a clock MUST generate a Date".
            ("Date", email.utils.formatdate(usegmt=True)),
            ("Content-Length", str(len(body))),
            ("Content-Type", content_type),
            *headers,
        ]
        if close:
            fields.append(("Connection", "close"))
        reason = http_status_phrase(status)
        parts = [conn.send(h11.Response(status_code=status, headers=fields, reason=reason))]
        if body and self._method != b"HEAD":
            parts.append(conn.send(h11.Data(data=body)))
        parts.append(conn.send(h11.EndOfMessage()))
        self.transport.write(b"".join(part for part in parts if part))
        if close:
            self._end()

    # ------------------------------------------------------------------ for the file host

    def hold(self) -> None:
        """The exchange waits for work off the loop: read nothing more meanwhile."""
        self._held = True
        self.transport.pause_reading()

    def release(self) -> None:
        """The exchange may go on: read what came meanwhile, and more."""
        if not self._held or self.done:
            return
        self._held = False
        self.transport.resume_reading()
        self._http_input()

    def send_continue(self) -> None:
        """RFC 9110 10.1.1: a client that sent "Expect: 100-continue" waits for this before
        it sends the body (given once the upload may go ahead)."""
        conn = self.http
        if conn is not None and conn.they_are_waiting_for_100_continue:
            self.transport.write(
                conn.send(h11.InformationalResponse(status_code=100, headers=[])) or b""
            )

    def reply(
        self,
        status: int,
        body: bytes,
        content_type: str = TEXT_PLAIN,
        headers: Sequence[tuple[str, str]] = (),
    ) -> None:
        """The exchange's answer once the whole request is read; then the next request."""
        self.exchange = None
        self._served += 1
        self._respond(status, body, content_type, headers, close=self._served >= MAX_REQUESTS)
        self._next()

    def stream(
        self, status: int, headers: Sequence[tuple[str, str]], length: int, source: Source | None
    ) -> None:
        """An answer of ``length`` bytes that ``source.read(n)`` gives a piece at a time,
        written as the peer takes them (pause_writing); then the next request."""
        conn = self.http
        assert conn is not None
        self.exchange = None
        self._served += 1
        fields = [("Date", email.utils.formatdate(usegmt=True)), *headers]
        close = self._served >= MAX_REQUESTS
        if close:
            fields.append(("Connection", "close"))
        reason = http_status_phrase(status)
        head = conn.send(h11.Response(status_code=status, headers=fields, reason=reason))
        self.transport.write(head or b"")
        self._close_source()
        self._source = source
        self._remaining = length if self._method != b"HEAD" and source is not None else 0
        self._pump()

    def _close_source(self) -> None:
        if self._source is not None:
            self._source.close()
            self._source = None

    def _pump(self) -> None:
        conn = self.http
        source = self._source
        if conn is None or self.done:
            return
        transport = self.transport
        budget = STREAM_TURN
        while self._remaining > 0 and not self._writing_paused and source is not None:
            if budget <= 0:
                # A fast reader takes everything at once: the rest waits for the next loop
                # turn, so that other connections are served meanwhile.
                self._arm(TRANSFER_IDLE)
                self.shell.loop.call_soon(self._pump)
                return
            if transport.is_closing():
                self._close_source()
                return
            chunk = source.read(min(STREAM_CHUNK, self._remaining))
            if not chunk:
                # The file is shorter than it was said to be: the answer cannot be completed.
                log.warning("file ended early while being sent ip=%s", self.ip)
                self._close_source()
                transport.abort()
                return
            self._remaining -= len(chunk)
            budget -= len(chunk)
            transport.write(conn.send(h11.Data(data=chunk)) or b"")
        if self._remaining > 0:
            self._arm(TRANSFER_IDLE)
            return
        self._close_source()
        transport.write(conn.send(h11.EndOfMessage()) or b"")
        if self._served >= MAX_REQUESTS:
            self._end()
            return
        self._next()

    def pause_writing(self) -> None:
        self._writing_paused = True

    def resume_writing(self) -> None:
        self._writing_paused = False
        if self._source is not None:
            self._pump()

    def _next(self) -> None:
        """After an answer: wait for the next request on the connection."""
        conn = self.http
        if self.done or conn is None:
            return
        if conn.our_state is h11.MUST_CLOSE or conn.their_state is not h11.DONE:
            self._end()
            return
        conn.start_next_cycle()
        self._method = self._target = b""
        self.request = None
        self._arm()
        if self._held:
            self._held = False
            self.transport.resume_reading()
        self.shell.loop.call_soon(self._http_input)

    def refuse(self, status: int, text: str, headers: Sequence[tuple[str, str]] = ()) -> None:
        """The exchange's refusal: an answer, after which the connection closes."""
        self.exchange = None
        self._refuse(status, text, headers)

    def _refuse(self, status: int, text: str, headers: Sequence[tuple[str, str]] = ()) -> None:
        """An error answer, after which the connection closes. Like every answer on this
        port it may reach a browser on the file host's URLs: nothing in it is sniffed or
        run."""
        conn = self.http
        body = text.rstrip("\n").encode() + b"\n"
        names = {name.lower() for name, _ in headers}
        if "content-security-policy" not in names:
            headers = [*headers, *_PLAIN_ANSWER]
        if conn is not None and conn.our_state in (h11.IDLE, h11.SEND_RESPONSE):
            self._respond(status, body, TEXT_PLAIN, headers, close=True)
        else:
            response = http_response(status, body)
            for name, value in headers:
                response.headers[name] = value
            self._answer(response)

    # ------------------------------------------------------------------ WebSocket

    def _upgrade(self, request: h11.Request) -> None:
        """Hand a request with an Upgrade header to the WebSocket protocol: written out
        as h11 read it (checked already), followed by whatever the client sent after it."""
        conn = self.http
        assert conn is not None
        key = self.limit_key
        if key is not None:
            refused = self.shell.limits.throttled(key, time.time())
            if refused is not None:
                log.info("refused ip=%s: %s", self.ip, refused)
                self._refuse(429, refused)
                return
        self._method = request.method
        lines = [b"%s %s HTTP/%s" % (request.method, request.target, request.http_version)]
        lines += [b"%s: %s" % (name, value) for name, value in request.headers.raw_items()]
        head = b"\r\n".join(lines) + b"\r\n\r\n"
        rest = conn.trailing_data[0]
        self.http = None
        self._ws_input(head + rest)

    def send_pending(self) -> None:
        transport = self.transport
        if self.done or transport.is_closing():
            self.ws.data_to_send()
            return
        for data in self.ws.data_to_send():
            if data is SEND_EOF or not data:
                # The closing handshake is over (or the HTTP answer sent): the server
                # closes the TCP connection (RFC 6455 7.1.1).
                transport.close()
                return
            transport.write(data)

    def close_websocket(self, code: CloseCode) -> None:
        if self.ws.state is OPEN:
            self.ws.send_close(code)
            self.send_pending()

    def _request(self, request: Request) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        ws = self.ws
        if ws.state is not CONNECTING or ws.eof_sent:
            # Invalid frames right behind the request (a client may not send any before
            # the 101): the protocol failed the connection already.
            self.done = True
            self.transport.close()
            return
        response = ws.accept(request)
        if response.status_code != 101:
            self._answer(response)  # accept() says why (no Sec-WebSocket-Key, say)
            return
        ws.send_response(response)
        self.send_pending()
        peer, forwarded_secure = self._forwarded(request)
        irc = ClientProtocol(self.shell, Kind.IRC, self.secure or forwarded_secure)
        irc.counted = self.ip  # limited from the accept on (a proxy's address is not)
        self.irc = irc
        irc.connection_made(WebSocketSink(self, ws.subprotocol != BINARY, peer))
        client = irc.client
        host = request.headers.get("Host", "")
        if client is not None and host and HOST_HEADER.fullmatch(host):
            # Where its uploads go (FILEHOST), when no files.public_url says otherwise.
            scheme = "https" if self.secure or forwarded_secure else "http"
            self.shell.server.files.web_base[client.id] = f"{scheme}://{host}"

    def _forwarded(self, request: Request) -> tuple[Any, bool]:
        """The client's address and whether its connection is TLS: what a trusted
        reverse proxy (``listen.http_proxies``) says in X-Forwarded-For (its last
        address, the one that proxy added) and X-Forwarded-Proto; else the peer's."""
        peer = self.peer
        try:
            address = ipaddress.ip_address(self.ip)
        except ValueError:
            return peer, False
        if not any(address in net for net in self.shell.config.listen.http_proxies):
            return peer, False
        headers = request.headers
        secure = headers.get_all("X-Forwarded-Proto")[-1:] == ["https"]
        chain = ",".join(headers.get_all("X-Forwarded-For")).split(",")
        try:
            client = ipaddress.ip_address(chain[-1].strip())
        except ValueError:
            return peer, secure  # no header, or not an address: the proxy's own
        if isinstance(client, ipaddress.IPv6Address):
            if client.scope_id is not None:
                # "fe80::1%zone": a zone is free text (spaces included), never a client's.
                return peer, secure
            if client.ipv4_mapped is not None:
                client = client.ipv4_mapped
        return (str(client), 0), secure

    def _frame(self, frame: Frame) -> None:
        if frame.opcode not in (Opcode.TEXT, Opcode.BINARY, Opcode.CONT):
            return  # ping (answered by the protocol), pong, close (handled by it)
        self._parts.append(bytes(frame.data))
        if not frame.fin:
            return
        data = b"".join(self._parts)
        self._parts.clear()
        irc = self.irc
        if irc is None:
            return
        # websocket: "each message MUST consist of a single IRC line, except that servers
        # and clients MUST NOT include trailing \r or \n characters in the message."
        # A client that sends them anyway is not refused for it.
        irc.data_received(data.rstrip(b"\r\n") + b"\r\n")

    def _page(self, method: bytes, target: bytes) -> tuple[int, bytes, str, list[tuple[str, str]]]:
        """The answer to a plain HTTP request: the web client's files, or 404; as
        (status, body, Content-Type, other headers)."""
        if method not in (b"GET", b"HEAD"):
            return 405, b"Method not allowed\n", TEXT_PLAIN, [("Allow", "GET, HEAD")]
        path = target.split(b"?", 1)[0].decode("ascii", "replace")
        found = web.FILES.get(path)
        if found is None:
            return 404, b"Not found\n", TEXT_PLAIN, []
        name, content_type = found
        if name == "index.html":
            ports = self.shell.bound_ports()
            listed = [(label, ports[key]) for key, label in _PORT_LABELS if key in ports]
            server = self.shell.config.server
            body = web.page(server.name, listed, server.default_channel)
        else:
            body = web.read(name)
        files = self.shell.config.files
        headers = [
            ("Content-Security-Policy", web.policy(files.public_url if files.enabled else "")),
            ("X-Content-Type-Options", "nosniff"),
            ("Referrer-Policy", "no-referrer"),
            ("Cache-Control", "no-cache"),
        ]
        return 200, body, content_type, headers


def http_status_phrase(status: int) -> bytes:
    return http.HTTPStatus(status).phrase.encode()


# The ports the page lists for other clients: (Shell.bound_ports key, label).
_PORT_LABELS = (
    ("irc", "IRC"),
    ("tls", "IRC over TLS"),
    ("plain", "plain text (nc, telnet)"),
    ("http", f"IRC over WebSocket (ws://, subprotocol {BINARY} or {TEXT})"),
    ("https", "IRC over WebSocket with TLS (wss://)"),
)
