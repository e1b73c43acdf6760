"""An in-process harness for the sans-I/O core: no sockets, no asyncio, an injected clock.

``Net`` owns a :class:`~salon.server.core.Server` and the current time; ``Conn`` is one
connection on it, feeding bytes in and reading what the core put in the outbox::

    net = Net()
    alice = net.register("alice")
    alice.send("JOIN #c")
    assert alice.numerics() == [...]
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

from salon.config import Config, from_mapping
from salon.proto.message import Message, parse
from salon.server.client import Client, Kind
from salon.server.core import Server
from salon.server.effects import Close, Effect, Offload, StoreCall
from salon.store.memory import MemoryStore

START = 1000.0
SERVER_NAME = "test.salon"


def make_config(**sections: Any) -> Config:
    """A validated config: ``make_config(flood={"enabled": True}, limits={"sendq": 4096})``.

    Defaults for tests: server name ``test.salon`` and flood control off (most tests send
    many lines at one instant). ``oper=[{...}]`` gives operator blocks.
    """
    raw: dict[str, Any] = {
        "server": {"name": SERVER_NAME},
        "flood": {"enabled": False},
    }
    for section, values in sections.items():
        if isinstance(values, dict):
            raw.setdefault(section, {}).update(values)
        else:
            raw[section] = values
    return from_mapping(raw)


class Net:
    """A server with an injected clock, and the connections made to it."""

    def __init__(self, config: Config | None = None, now: float = START, **sections: Any):
        self.now = now
        self.config = config if config is not None else make_config(**sections)
        self.server = Server(self.config, now=now)
        self.store = MemoryStore()
        self.server.load(self.store)
        self.closed: list[Client] = []
        self.pending: list[Offload] = []
        self._port = 40000

    # -------------------------------------------------------------- time

    def advance(self, seconds: float) -> None:
        self.now += seconds

    def tick(self, seconds: float = 0.0) -> None:
        self.advance(seconds)
        self.server.tick(self.now)
        self.collect_effects()

    def check_timeouts(self, seconds: float = 0.0) -> None:
        """Advance the clock and run the timers, then the background steps they left
        (a purge goes on in ``later`` steps when one runs out of its time slice, which a
        loaded machine makes happen at any size), as the shell's ticks would."""
        self.advance(seconds)
        self.server.check_timeouts(self.now)
        self.collect_effects()
        for _ in range(10000):
            if not self.server.later:
                return
            self.server.tick(self.now)
            self.collect_effects()
        raise AssertionError("background work never finished")

    # -------------------------------------------------------------- effects

    def collect_effects(self) -> list[Effect]:
        """Drain the core's effects: remember closes and offloads for the tests to inspect;
        store calls run at once against the in-memory store, like the shell's storage
        thread would at the end of the turn."""
        effects = self.server.take_effects()
        calls: list[StoreCall] = []
        for effect in effects:
            if isinstance(effect, Close):
                self.closed.append(effect.client)
            elif isinstance(effect, StoreCall):
                calls.append(effect)
            else:
                self.pending.append(effect)
        if calls:
            with self.store.transaction():
                results = [call.call(self.store) for call in calls]
            for call, result in zip(calls, results, strict=True):
                self.server.complete_store(call, result, self.now)
            self.collect_effects()
        return effects

    def run_offloads(self) -> int:
        """Run queued Offload work synchronously and complete it; return how many ran."""
        count = 0
        while self.pending:
            effect = self.pending.pop(0)
            result = effect.work()
            self.server.complete(effect, result, self.now)
            self.collect_effects()
            count += 1
        return count

    # -------------------------------------------------------------- connections

    def connect(self, kind: Kind = Kind.IRC, ip: str = "127.0.0.1") -> Conn:
        self._port += 1
        client = self.server.connect(kind, ip, self._port, self.now)
        self.collect_effects()
        return Conn(self, client)

    def register(
        self, nick: str, caps: Iterable[str] = (), ip: str = "127.0.0.1", user: str | None = None
    ) -> Conn:
        """Connect and register an IRC client (optionally requesting capabilities); the
        welcome burst is read and cleared."""
        conn = self.connect(Kind.IRC, ip)
        wanted = " ".join(caps)
        if wanted:
            conn.send("CAP LS 302")
            conn.send(f"CAP REQ :{wanted}")
        conn.send(f"NICK {nick}")
        conn.send(f"USER {user or nick} 0 * :{nick} real")
        if wanted:
            conn.send("CAP END")
        lines = conn.lines()
        assert any(f" 001 {nick} " in line for line in lines), lines
        if wanted:
            assert any(" ACK " in line for line in lines), lines
        return conn

    def plain(self, name: str | None = None, ip: str = "127.0.0.1") -> Conn:
        """Connect to the plain-text port; with ``name``, answer the prompt and clear."""
        conn = self.connect(Kind.TEXTPORT, ip)
        if name is not None:
            conn.send(name)
            conn.lines()
        return conn

    def is_closed(self, conn: Conn) -> bool:
        return conn.client in self.closed


class Conn:
    """One connection: ``send`` lines in, read what the core wrote for it."""

    def __init__(self, net: Net, client: Client) -> None:
        self.net = net
        self.client = client

    @property
    def nick(self) -> str:
        return self.client.nick

    def feed(self, data: bytes) -> None:
        self.net.server.feed(self.client, data, self.net.now)
        self.net.collect_effects()

    def send(self, line: str | bytes) -> None:
        """Send one line; CR LF is added."""
        data = line.encode() if isinstance(line, str) else line
        self.feed(data + b"\r\n")

    def raw(self) -> bytes:
        """Everything in the outbox, which is then cleared (as a shell flush would)."""
        data = b"".join(self.client.outbox)
        self.client.outbox.clear()
        self.client.outbytes = 0
        self.client.dirty = False
        dirty = self.net.server.dirty
        if self.client in dirty:
            dirty.remove(self.client)
        return data

    def lines(self) -> list[str]:
        data = self.raw()
        assert not data or data.endswith(b"\r\n"), data[-100:]
        return [line.decode("utf-8") for line in data.split(b"\r\n")[:-1]]

    def messages(self) -> list[Message]:
        return [parse(line, max_body=100_000) for line in self.lines()]

    def numerics(self) -> list[str]:
        """The commands (numerics included) of the messages waiting, in order."""
        return [m.command for m in self.messages()]

    def expect(self, pattern: str) -> list[str]:
        """Read and clear the outbox; assert some line matches ``pattern`` (re.search)."""
        lines = self.lines()
        assert any(re.search(pattern, line) for line in lines), (pattern, lines)
        return lines

    def nothing(self) -> None:
        lines = self.lines()
        assert lines == [], lines


def find(messages: Iterable[Message], command: str) -> list[Message]:
    return [m for m in messages if m.command == command]


def one(messages: Iterable[Message], command: str) -> Message:
    found = find(messages, command)
    assert len(found) == 1, (command, [str(m) for m in messages])
    return found[0]


def isupport(messages: Iterable[Message]) -> dict[str, str]:
    """The 005 tokens: ``{"NICKLEN": "30", "UTF8ONLY": "", ...}``."""
    tokens: dict[str, str] = {}
    for m in find(messages, "005"):
        for token in m.params[1:-1]:
            key, _, value = token.partition("=")
            tokens[key] = value
    return tokens


class HeldStoreNet(Net):
    """A Net whose disk is slow until told otherwise: store calls wait in ``held`` until
    :meth:`run_store` runs them all in one transaction, as the storage thread would."""

    def __init__(self, config: Config | None = None, now: float = START, **sections: Any):
        super().__init__(config, now, **sections)
        self.held: list[StoreCall] = []
        self.transactions = 0

    def collect_effects(self) -> list[Effect]:
        effects = self.server.take_effects()
        for effect in effects:
            if isinstance(effect, Close):
                self.closed.append(effect.client)
            elif isinstance(effect, StoreCall):
                self.held.append(effect)
            else:
                self.pending.append(effect)
        return effects

    def run_store(self) -> int:
        """Run the held calls in one transaction, then complete them; return how many."""
        calls, self.held = self.held, []
        if not calls:
            return 0
        with self.store.transaction():
            results = [call.call(self.store) for call in calls]
        self.transactions += 1
        for call, result in zip(calls, results, strict=True):
            self.server.complete_store(call, result, self.now)
        self.collect_effects()
        return len(calls)

    def run_store_until_idle(self, rounds: int = 1000) -> int:
        """Run transactions until no call is held; return how many transactions ran."""
        count = 0
        while self.held and count < rounds:
            self.run_store()
            count += 1
        return count


def sqlite_net(path: Any, net: Net | None = None, **sections: Any) -> Net:
    """A Net (or ``net``) whose store is a real :class:`SQLiteStore` at ``path``."""
    from salon.store.sqlite import SQLiteStore

    net = net if net is not None else Net(**sections)
    net.store = SQLiteStore(path, net.server.config.history.query_budget)  # type: ignore[assignment]
    net.server.load(net.store)
    return net


# Every capability that changes how a line is tagged or answered.
ALL_TAG_CAPS = ["labeled-response", "batch", "message-tags", "server-time", "echo-message"]


def pair(net: Net, channel: str = "#c") -> tuple[Conn, Conn]:
    """alice (creator, op) and bob, both in ``channel``, outboxes cleared."""
    alice = net.register("alice")
    bob = net.register("bob")
    alice.send(f"JOIN {channel}")
    bob.send(f"JOIN {channel}")
    alice.lines()
    bob.lines()
    return alice, bob


def trio(net: Net, channel: str = "#c") -> tuple[Conn, Conn, Conn]:
    """:func:`pair` and carol, all three in ``channel``, outboxes cleared."""
    alice, bob = pair(net, channel)
    carol = net.register("carol")
    carol.send(f"JOIN {channel}")
    carol.lines()
    alice.lines()
    bob.lines()
    return alice, bob, carol
