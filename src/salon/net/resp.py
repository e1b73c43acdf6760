"""A bare Redis connection for the bus's two busy calls: a node's turn (``FCALL
salon_turn``) and the log's reader (``XREAD BLOCK``).

redis-py's asyncio client spends more CPU around each command (its connection pool, retry
and health-check layers, its reply callbacks) than Redis spends on the command: in a
cluster under traffic those two calls are made once per event-loop turn on every node, and
that overhead was a good part of what a cluster cost per message (docs/BENCHMARKS.md,
"Scale-out"). Here a command is written as RESP bytes on an asyncio protocol and its reply
parsed by hiredis (which redis-py's ``[hiredis]`` extra installs), nothing else. Every
other call of the bus (start, heartbeats, reaping, status) stays on redis-py.

Errors are redis-py's, so the bus handles both alike: an error reply raises
``ResponseError``, a connection that cannot be made or is lost ``ConnectionError``. A
lost connection is made again by the next call (as redis-py does).
"""

from __future__ import annotations

import asyncio
import ssl
from collections import deque
from typing import Any, cast

import hiredis
from redis.asyncio.connection import parse_url
from redis.exceptions import ConnectionError, ResponseError

# Bytes asked of the kernel per read: an XREAD reply of a busy turn is tens of kilobytes.
READ_SIZE = 1 << 16


def pack(args: tuple[str | int, ...]) -> bytes:
    """A command as a RESP array of bulk strings. A lone surrogate (a byte that was no
    UTF-8, kept by surrogateescape) goes as that byte, and the reader makes it one again."""
    parts = [b"*%d\r\n" % len(args)]
    for arg in args:
        data = arg.encode("utf-8", "surrogateescape") if isinstance(arg, str) else b"%d" % arg
        parts.append(b"$%d\r\n%s\r\n" % (len(data), data))
    return b"".join(parts)


def _tls(options: dict[str, Any]) -> ssl.SSLContext:
    """The TLS settings of a rediss:// URL's query, as redis-py reads them: ssl_ca_certs,
    ssl_certfile and ssl_keyfile, ssl_cert_reqs (none, optional, required) and
    ssl_check_hostname."""
    context = ssl.create_default_context(cafile=options.get("ssl_ca_certs"))
    if options.get("ssl_certfile"):
        context.load_cert_chain(options["ssl_certfile"], options.get("ssl_keyfile"))
    reqs = options.get("ssl_cert_reqs", "required")
    if options.get("ssl_check_hostname") is False or reqs in ("none", ssl.CERT_NONE):
        context.check_hostname = False
    if reqs in ("none", ssl.CERT_NONE):
        context.verify_mode = ssl.CERT_NONE
    elif reqs in ("optional", ssl.CERT_OPTIONAL):
        context.verify_mode = ssl.CERT_OPTIONAL
    return context


class _Protocol(asyncio.Protocol):
    def __init__(self) -> None:
        self.reader = hiredis.Reader(
            replyError=ResponseError, encoding="utf-8", errors="surrogateescape"
        )
        self.waiting: deque[asyncio.Future[Any]] = deque()
        self.transport: asyncio.Transport | None = None
        self.lost = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # (uvloop's transports are not asyncio.Transport subclasses: no isinstance)
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        self.reader.feed(data)
        while (reply := self.reader.gets()) is not False:
            if not self.waiting:
                continue  # (a reply to a call whose caller was cancelled and gone)
            future = self.waiting.popleft()
            if future.done():
                continue
            if isinstance(reply, ResponseError):
                future.set_exception(reply)
            else:
                future.set_result(reply)

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        while self.waiting:
            future = self.waiting.popleft()
            if not future.done():
                future.set_exception(ConnectionError(f"connection to Redis lost: {exc}"))


class Link:
    """One connection to the Redis of ``url`` (redis://, rediss:// or unix://, with the
    user, password and database number redis-py would take from it)."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.options: dict[str, Any] = dict(parse_url(url))
        self._protocol: _Protocol | None = None

    async def _connect(self) -> _Protocol:
        options = self.options
        loop = asyncio.get_running_loop()
        try:
            if "path" in options:
                _t, protocol = await loop.create_unix_connection(_Protocol, options["path"])
            else:
                context = _tls(options) if self.url.startswith("rediss:") else None
                _t, protocol = await loop.create_connection(
                    _Protocol,
                    options.get("host", "localhost"),
                    int(options.get("port", 6379)),
                    ssl=context,
                )
        except OSError as exc:
            raise ConnectionError(f"cannot connect to Redis at {self.url}: {exc}") from None
        self._protocol = protocol
        password = options.get("password")
        if password is not None:
            username = options.get("username")
            await self._call(
                protocol, ("AUTH", username, password) if username else ("AUTH", password)
            )
        if options.get("db"):
            await self._call(protocol, ("SELECT", int(options["db"])))
        return protocol

    async def call(self, *args: str | int) -> Any:
        """Send one command and return its reply (hiredis's: lists, str, int, None)."""
        protocol = self._protocol
        if protocol is None or protocol.lost:
            protocol = await self._connect()
        return await self._call(protocol, args)

    @staticmethod
    async def _call(protocol: _Protocol, args: tuple[str | int, ...]) -> Any:
        transport = protocol.transport
        if transport is None or protocol.lost or transport.is_closing():
            raise ConnectionError("connection to Redis lost")
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        protocol.waiting.append(future)
        transport.write(pack(args))
        return await future

    def close(self) -> None:
        protocol = self._protocol
        self._protocol = None
        if protocol is not None and protocol.transport is not None:
            protocol.transport.close()
