"""The load generator: many IRC clients in one asyncio (uvloop) event loop, on one core.

Incoming bytes are parsed as little as possible. Until a client has what it waits for (001 after
NICK/USER, 366 after JOIN) it splits lines and looks at the command; after that it only counts
`` PRIVMSG `` occurrences in the complete lines of each chunk (bytes.count, in C), looks for
``PING`` to answer it, and, for the designated latency receivers, reads the send timestamp that
senders put at the start of every message body (`` :T<20 digits>``).

Senders belong to a `Group`: one sender, `fan` receivers (99 in a channel of 100, one for a
private message). A group keeps at most `window` messages in flight, counted from the
receivers' own receipts (in flight = sent * fan - received), and refills the window in bursts
of at least `batch` messages once enough deliveries have arrived: a closed loop that keeps the
server saturated without letting its queues (or the kernel's socket buffers) grow unbounded.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import cast

monotonic_ns = time.monotonic_ns

MODE_LINES = 0  # split and look at every line (registration, joining)
MODE_COUNT = 1  # count PRIVMSG lines only
MODE_DISCARD = 2  # ignore everything (after QUIT)

TS_MARK = b" :T"  # message bodies start with "T" and a 20-digit monotonic_ns timestamp
TS_LEN = 20

# Replies that mean the registration or the JOIN we wait for failed.
FAIL_NUMERICS = frozenset(
    {
        b"ERROR",
        b"403",
        b"405",
        b"431",
        b"432",
        b"433",
        b"436",
        b"437",
        b"451",
        b"461",
        b"465",
        b"471",
        b"473",
        b"474",
        b"475",
    }
)


_turn_ns = 0


def _turn_reset() -> None:
    global _turn_ns
    _turn_ns = 0


def _turn_clock() -> int:
    """monotonic_ns() read once per event-loop turn: every socket that epoll reported ready
    together gets the same receive time, so the generator's own time spent reading the other
    sockets of that batch (a fan-out message arrives on 99) does not count as latency."""
    global _turn_ns
    if _turn_ns == 0:
        _turn_ns = monotonic_ns()
        asyncio.get_running_loop().call_soon(_turn_reset)
    return _turn_ns


@dataclass
class Stats:
    """Error counters of one scenario; all must stay 0."""

    unexpected_disconnects: int = 0
    failed_registrations: int = 0
    failed_joins: int = 0
    errors: list[str] = field(default_factory=list)

    def note(self, msg: str) -> None:
        if len(self.errors) < 20:
            self.errors.append(msg)


class Client(asyncio.Protocol):
    __slots__ = (
        "group",
        "latency",
        "lost",
        "mode",
        "nick",
        "stats",
        "tail",
        "transport",
        "wait_cmd",
        "waiter",
        "want_close",
    )

    def __init__(self, nick: str, stats: Stats) -> None:
        self.nick = nick
        self.stats = stats
        self.transport: asyncio.Transport | None = None
        self.mode = MODE_LINES
        self.tail = b""
        self.group: Group | None = None
        self.latency: list[int] | None = None
        self.waiter: asyncio.Future[bool] | None = None
        self.wait_cmd = b""
        self.want_close = False
        self.lost = False

    # asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        if not self.want_close:
            self.stats.unexpected_disconnects += 1
            self.stats.note(f"{self.nick}: disconnected ({exc or 'EOF'})")
        w = self.waiter
        if w is not None and not w.done():
            w.set_result(False)

    def eof_received(self) -> bool | None:
        return None  # close our side too

    def data_received(self, data: bytes) -> None:
        if self.tail:
            data = self.tail + data
        end = data.rfind(b"\n") + 1
        if end == 0:
            self.tail = data
            return
        self.tail = data[end:]
        mode = self.mode
        if mode == MODE_COUNT:
            n = data.count(b" PRIVMSG ", 0, end)
            if n:
                lat = self.latency
                if lat is not None:
                    now = _turn_clock()
                    pos = data.find(TS_MARK, 0, end)
                    while pos >= 0:
                        start = pos + 3
                        sent = int(data[start : start + TS_LEN])
                        if sent > now:
                            # Sent during this turn, after its clock was read (a long turn
                            # of a busy generator), and already back: read the clock now.
                            now = monotonic_ns()
                        lat.append(now - sent)
                        pos = data.find(TS_MARK, start + TS_LEN, end)
                g = self.group
                if g is not None:
                    g.delivered(n)
            if b"PING " in data:
                self._lines(data[:end])
        elif mode == MODE_LINES:
            self._lines(data[:end])

    # helpers

    def _lines(self, chunk: bytes) -> None:
        for raw in chunk.split(b"\n"):
            line = raw.rstrip(b"\r")
            if not line:
                continue
            if line[0] == 0x3A:  # ":prefix COMMAND ..."
                parts = line.split(b" ", 2)
                if len(parts) < 2:
                    continue
                cmd = parts[1]
                rest = parts[2] if len(parts) > 2 else b""
            else:
                cmd, _, rest = line.partition(b" ")
            if cmd == b"PING":
                if self.transport is not None:
                    self.transport.write(b"PONG " + rest + b"\r\n")
            elif cmd == b"PRIVMSG":
                g = self.group
                if g is not None and self.mode == MODE_LINES:
                    g.delivered(1)
            elif self.waiter is not None:
                if cmd == self.wait_cmd:
                    self._resolve(True)
                elif cmd in FAIL_NUMERICS:
                    self.stats.note(f"{self.nick}: {line[:120].decode(errors='replace')}")
                    self._resolve(False)

    def _resolve(self, ok: bool) -> None:
        w = self.waiter
        self.waiter = None
        if w is not None and not w.done():
            w.set_result(ok)

    def write(self, data: bytes) -> None:
        if self.transport is not None and not self.lost:
            self.transport.write(data)

    async def expect(self, send: bytes, cmd: bytes, timeout: float) -> bool:
        """Send `send` and wait for a line whose command is `cmd` (False on error/timeout)."""
        if self.lost or self.transport is None:
            return False
        fut: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self.waiter = fut
        self.wait_cmd = cmd
        self.mode = MODE_LINES
        self.transport.write(send)
        try:
            async with asyncio.timeout(timeout):
                return await fut
        except TimeoutError:
            self.waiter = None
            self.stats.note(f"{self.nick}: no {cmd.decode()} within {timeout:.0f}s")
            return False

    def close(self) -> None:
        self.want_close = True
        if self.transport is not None and not self.lost:
            self.transport.abort()


class Group:
    """One sender and the receivers of its messages, with a window of messages in flight."""

    __slots__ = (
        "active",
        "batch",
        "fan",
        "prefix",
        "received",
        "sender",
        "sent",
        "suffix",
        "threshold",
        "window",
    )

    def __init__(
        self, sender: Client, target: str, fan: int, window: int, batch: int, size: int
    ) -> None:
        self.sender = sender
        self.fan = fan
        self.window = window
        self.batch = max(1, min(batch, window))
        # Refill once at most (window - batch) messages' deliveries are outstanding.
        self.threshold = (window - self.batch) * fan
        self.sent = 0
        self.received = 0
        self.active = False
        self.prefix = f"PRIVMSG {target} :T".encode()
        # Pad the body so that a sent line is `size` bytes long.
        pad = max(1, size - len(self.prefix) - TS_LEN - 3)
        self.suffix = b" " + b"x" * pad + b"\r\n"

    def line(self, ts: int) -> bytes:
        return self.prefix + b"%020d" % ts + self.suffix

    def delivered(self, n: int) -> None:
        self.received += n
        if self.active and self.sent * self.fan - self.received <= self.threshold:
            self.pump()

    def pump(self) -> None:
        """Send as many messages as the window allows, in one write."""
        fan = self.fan
        k = self.window - (self.sent * fan - self.received + fan - 1) // fan
        if k > 0:
            self.sender.write(self.line(monotonic_ns()) * k)
            self.sent += k

    def send_one(self) -> None:
        self.sender.write(self.line(monotonic_ns()))
        self.sent += 1

    @property
    def expected(self) -> int:
        return self.sent * self.fan

    @property
    def missing(self) -> int:
        return self.expected - self.received


class Pacer:
    """Sends messages at a fixed total rate, round-robin over groups, evenly spaced in time."""

    def __init__(self, groups: Sequence[Group], rate: float) -> None:
        self.groups = groups
        self.rate = rate
        self.count = 0
        self.t0 = 0.0
        self.handle: asyncio.TimerHandle | None = None
        self.loop = asyncio.get_running_loop()

    def start(self) -> None:
        self.t0 = self.loop.time()
        self._tick()

    def _tick(self) -> None:
        due = int((self.loop.time() - self.t0) * self.rate) + 1
        groups = self.groups
        n = len(groups)
        for i in range(self.count, due):
            groups[i % n].send_one()
        self.count = max(self.count, due)
        self.handle = self.loop.call_at(self.t0 + self.count / self.rate, self._tick)

    def stop(self) -> None:
        if self.handle is not None:
            self.handle.cancel()
            self.handle = None


class Generator:
    """Creates and tracks the clients of one scenario."""

    def __init__(self, host: str, port: int, prefix: str) -> None:
        self.host = host
        self.port = port
        self.prefix = prefix  # nick prefix, unique per scenario
        self.stats = Stats()
        self.clients: list[Client] = []
        self.counter = 0

    def next_nick(self) -> str:
        self.counter += 1
        return f"{self.prefix}{self.counter}"

    async def connect(self, nick: str, timeout: float = 30.0, keep: bool = True) -> Client | None:
        """Connect and register (NICK/USER, wait for 001); None on failure (counted)."""
        loop = asyncio.get_running_loop()
        factory: Callable[[], Client] = lambda: Client(nick, self.stats)  # noqa: E731
        try:
            async with asyncio.timeout(timeout):
                _, client = await loop.create_connection(factory, self.host, self.port)
        except (OSError, TimeoutError) as e:
            self.stats.failed_registrations += 1
            self.stats.note(f"{nick}: connect failed: {e!r}")
            return None
        reg = f"NICK {nick}\r\nUSER {nick[:10]} 0 * :bench\r\n".encode()
        if not await client.expect(reg, b"001", timeout):
            self.stats.failed_registrations += 1
            client.close()
            return None
        if keep:
            self.clients.append(client)
        return client

    async def connect_many(self, n: int, concurrency: int) -> list[Client]:
        """Connect and register `n` clients, at most `concurrency` in progress at once."""
        out: list[Client] = []
        todo = iter(range(n))

        async def worker() -> None:
            for _ in todo:
                c = await self.connect(self.next_nick())
                if c is not None:
                    out.append(c)

        await asyncio.gather(*(worker() for _ in range(max(1, min(concurrency, n)))))
        return out

    async def join_many(
        self, pairs: Iterable[tuple[Client, str]], concurrency: int, timeout: float = 60.0
    ) -> int:
        """JOIN each client to its channel and wait for end of NAMES; returns joins done."""
        todo = iter(pairs)
        done = 0

        async def worker() -> None:
            nonlocal done
            for client, chan in todo:
                if await client.expect(f"JOIN {chan}\r\n".encode(), b"366", timeout):
                    done += 1
                    client.mode = MODE_COUNT
                else:
                    self.stats.failed_joins += 1

        await asyncio.gather(*(worker() for _ in range(max(1, concurrency))))
        return done

    def close_all(self) -> None:
        for c in self.clients:
            c.close()
        self.clients.clear()


def percentile(sorted_values: Sequence[int], q: float) -> float:
    if not sorted_values:
        return float("nan")
    idx = min(len(sorted_values) - 1, max(0, round(q * (len(sorted_values) - 1))))
    return float(sorted_values[idx])


async def drain(groups: Sequence[Group], timeout: float) -> None:
    """Wait until every sent message has been received everywhere, or `timeout` passes."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if all(g.received >= g.expected for g in groups):
            return
        await asyncio.sleep(0.02)
