"""The asyncio side of ``salon chat``: one TCP (or TLS) link that feeds a sans-I/O
:class:`~salon.client.Session`, and reconnects with backoff when the link drops.

Both front ends use it: the Textual app runs :meth:`Connection.run` in a worker, the
``--plain`` mode awaits it directly. Events from the session go to ``on_events``.
"""

from __future__ import annotations

import asyncio
import hashlib
import random
import ssl
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from salon.client import Session
from salon.client.model import Event, Fatal, QuitRequested, TimedOut

EventSink = Callable[[list[Event]], None]
AskTrust = Callable[[str, str, str], Awaitable[bool]]  # (host:port, fingerprint, reason)

QUIT_GRACE = 2.0  # seconds to wait for the server to close after our QUIT
CLOSED = "the server closed the connection"


@dataclass
class Target:
    host: str = "localhost"
    port: int = 6667
    tls: bool = False
    insecure: bool = False  # TLS without certificate checks

    @property
    def key(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"


class TrustError(Exception):
    """The server's certificate is not trusted (and the user did not accept it)."""


def fingerprint(der: bytes) -> str:
    """SHA-256 of a DER certificate as colon-separated upper-case hex."""
    digest = hashlib.sha256(der).hexdigest().upper()
    return ":".join(digest[i : i + 2] for i in range(0, len(digest), 2))


def _no_verify_context() -> ssl.SSLContext:
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


def _peer_fingerprint(writer: asyncio.StreamWriter) -> str:
    sslobj = writer.get_extra_info("ssl_object")
    der = sslobj.getpeercert(binary_form=True) if sslobj is not None else None
    return fingerprint(der or b"")


# OpenSSL's words for a peer that answered the ClientHello with something else than TLS.
_NOT_TLS = frozenset(
    {"WRONG_VERSION_NUMBER", "UNKNOWN_PROTOCOL", "HTTP_REQUEST", "RECORD_LAYER_FAILURE"}
)


def _reason(exc: BaseException, *, handshake: bool = False) -> str:
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused (is the server running?)"
    if isinstance(exc, TimeoutError):
        return "timed out"
    if isinstance(exc, ssl.SSLCertVerificationError):
        return exc.verify_message or str(exc)
    if isinstance(exc, ssl.SSLError) and handshake:
        if isinstance(exc, ssl.SSLEOFError) or exc.reason in _NOT_TLS:
            return (
                "TLS handshake failed: does the server speak TLS on that port? (try without --tls)"
            )
        return f"TLS handshake failed: {(exc.reason or str(exc)).lower().replace('_', ' ')}"
    if isinstance(exc, ssl.SSLError):
        return f"TLS error: {(exc.reason or str(exc)).lower().replace('_', ' ')}"
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror.lower() if exc.strerror[:1].isupper() else exc.strerror
    return str(exc) or type(exc).__name__


class Connection:
    def __init__(
        self,
        session: Session,
        target: Target,
        on_events: EventSink,
        *,
        pins: dict[str, str] | None = None,
        ask_trust: AskTrust | None = None,
        save_pin: Callable[[str, str], None] | None = None,
        backoff: tuple[float, float] = (1.0, 60.0),
        connect_timeout: float = 10.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.session = session
        session.peer = target.key
        session.tls = target.tls
        self.target = target
        self.on_events = on_events
        self.pins = pins if pins is not None else {}
        self.ask_trust = ask_trust
        self.save_pin = save_pin
        self.backoff = backoff
        self.connect_timeout = connect_timeout
        self.clock = clock
        self.fatal = ""
        self.attempts = 0
        self._writer: asyncio.StreamWriter | None = None
        self._closing = False
        self._heard = False  # the peer sent something on this link
        self._quit_deadline = 0.0
        self._wake = asyncio.Event()

    # ------------------------------------------------------------------ used by front ends

    def input(self, text: str, buffer: str) -> None:
        """What the user typed, in ``buffer``."""
        self._handle(self.session.input(text, buffer, self.clock()))

    def load_older(self, buffer: str) -> None:
        self._handle(self.session.load_older(buffer, self.clock()))

    def quit(self, reason: str = "") -> None:
        self.input("/quit " + reason if reason else "/quit", self.session.active)

    @property
    def connected(self) -> bool:
        return self._writer is not None

    def drop(self) -> None:
        """Close the link as if the network failed (tests, and /reconnect)."""
        if self._writer is not None:
            self._writer.transport.abort()

    async def run(self) -> str:
        """Connect, talk, reconnect; return "" after a quit, or a one-line fatal message."""
        lo, hi = self.backoff
        while True:
            try:
                reader, writer = await self._open()
            except TrustError as exc:
                return str(exc)
            except (OSError, TimeoutError, ssl.SSLError) as exc:
                reason = f"cannot connect to {self.target.key}: {_reason(exc, handshake=True)}"
                if not self.session.ever_registered:
                    return reason
                if self.session.quitting:
                    return ""
                await self._wait_backoff(reason, lo, hi)
                if self.session.quitting:
                    return ""
                continue
            self.attempts = 0
            reason = await self._talk(reader, writer)
            if self.fatal:
                return self.fatal
            if self.session.quitting:
                return ""
            if not self.session.ever_registered:
                if not self._heard:
                    hint = "" if self.target.tls else " (a TLS port? try --tls)"
                    return f"{self.target.key} closed the connection without a word{hint}"
                if reason == CLOSED:
                    return f"{self.target.key} closed the connection before the welcome"
                return f"{self.target.key} closed the connection: {reason or 'no reason given'}"
            await self._wait_backoff(reason or "connection lost", lo, hi)
            if self.session.quitting:
                return ""

    # ------------------------------------------------------------------ internals

    def _handle(self, events: list[Event]) -> None:
        for event in events:
            if isinstance(event, Fatal):
                self.fatal = event.message
                self._close()
            elif isinstance(event, QuitRequested):
                self._quit_deadline = self.clock() + QUIT_GRACE
                self._wake.set()
                if self._writer is None:
                    self._closing = True
            elif isinstance(event, TimedOut):
                self._close()
        self._flush()
        if events:
            self.on_events(events)

    def _flush(self) -> None:
        data = self.session.data_to_send()
        if data and self._writer is not None and not self._writer.is_closing():
            self._writer.write(data)

    def _close(self) -> None:
        if self._writer is not None:
            self._flush()
            self._writer.close()

    async def _wait_backoff(self, reason: str, lo: float, hi: float) -> None:
        delay = min(hi, lo * (2**self.attempts)) * random.uniform(0.8, 1.2)
        self.attempts += 1
        self._handle(
            self.session.note(
                f"{reason[:1].upper()}{reason[1:]}; reconnecting in {delay:.0f} s",
                self.clock(),
                error=True,
            )
        )
        self._wake.clear()
        try:
            await asyncio.wait_for(self._wake.wait(), delay)
        except TimeoutError:
            pass

    async def _open(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        t = self.target
        self._handle(self.session.note(f"Connecting to {t.key}...", self.clock()))
        if not t.tls:
            return await asyncio.wait_for(
                asyncio.open_connection(t.host, t.port), self.connect_timeout
            )
        pin = self.pins.get(t.key)
        if t.insecure or pin:
            reader, writer = await self._open_tls(_no_verify_context())
            if pin and not t.insecure:
                got = _peer_fingerprint(writer)
                if got != pin:
                    writer.close()
                    raise TrustError(
                        f"the certificate of {t.key} has changed (pinned {pin[:23]}..., "
                        f"now {got[:23]}...): refusing to connect"
                    )
            return reader, writer
        try:
            return await self._open_tls(ssl.create_default_context())
        except ssl.SSLCertVerificationError as exc:
            why = _reason(exc)
        reader, writer = await self._open_tls(_no_verify_context())
        fp = _peer_fingerprint(writer)
        if self.ask_trust is not None and await self.ask_trust(t.key, fp, why):
            self.pins[t.key] = fp
            if self.save_pin is not None:
                self.save_pin(t.key, fp)
            return reader, writer
        writer.close()
        raise TrustError(
            f"{t.key} has an untrusted certificate ({why}); SHA-256 fingerprint {fp}. "
            "Run salon chat in a terminal to trust it, or pass --insecure"
        )

    async def _open_tls(
        self, ctx: ssl.SSLContext
    ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        t = self.target
        return await asyncio.wait_for(
            asyncio.open_connection(t.host, t.port, ssl=ctx, server_hostname=t.host),
            self.connect_timeout,
        )

    async def _talk(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> str:
        self._writer = writer
        self._heard = False
        self._handle(self.session.connection_made(self.clock()))
        reason = ""
        try:
            while not writer.is_closing():
                now = self.clock()
                if self._quit_deadline and now > self._quit_deadline:
                    break
                try:
                    data = await asyncio.wait_for(reader.read(65536), 1.0)
                except TimeoutError:
                    self._handle(self.session.tick(self.clock()))
                    continue
                if not data:
                    reason = CLOSED
                    break
                self._heard = True
                self._handle(self.session.receive(data, self.clock()))
                await writer.drain()
        except (OSError, ssl.SSLError) as exc:
            reason = _reason(exc)
        finally:
            if self.session.error_reason:
                # The server said why (ERROR :Closing Link: ... (Killed ...)): say that.
                reason = f"{CLOSED}: {self.session.error_reason}"
            self._writer = None
            writer.close()
            try:
                await asyncio.wait_for(writer.wait_closed(), 1.0)
            except (OSError, TimeoutError, ssl.SSLError):
                pass
        self._quit_deadline = 0.0
        self._handle(self.session.connection_lost(self.clock(), reason))
        return reason
