"""Listeners, the flush loop, timers, effects and graceful shutdown.

Flow control follows aiohttp's base_protocol and hypercorn's run loop, with one rule of
our own: a slow reader is dropped (SendQ), never waited for. Output is flushed once per
event-loop turn: every client that got bytes during the turn gets one ``write``.

At the edge, before the core sees a connection: D-lines and the per-address limits
(:mod:`salon.net.limits`) refuse it with one ERROR line. TLS (:mod:`salon.net.tls`) is
terminated here; the core learns ``client.tls`` and ``client.certfp``. The IP cloaking
secret is loaded here and handed to the core (``Server.cloak_key``).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import gc
import itertools
import logging
import os
import signal
import socket
import ssl
import sys
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from salon import datadir
from salon.config import PORT_KEYS, Config, PostgresSection
from salon.net import tls
from salon.net.connection import ClientProtocol, Refusal
from salon.net.filehost import FileHost
from salon.net.limits import ConnectionLimits, Key, RequestBudget
from salon.net.storage import READERS, Storage
from salon.net.websocket import WebSocketProtocol
from salon.server.client import Client, Kind
from salon.server.cluster import Census
from salon.server.core import Server
from salon.server.effects import BusOp, Close, Offload, StoreCall
from salon.store.sqlite import SQLiteStore

log = logging.getLogger("salon.net")

TICK = 0.1
SHUTDOWN_GRACE = 2.0  # then clients that do not read are cut off; exit well within 5 s
CLOSE_TIMEOUT = 5.0
LINGER = 1.0
TLS_HANDSHAKE_TIMEOUT = 15.0
CLOAK_KEY = "cloak.key"


class StartupError(Exception):
    """The server cannot start (port in use, unwritable data directory): one line for the user."""


def _postgres_password(pg: PostgresSection) -> str:
    """[postgres]'s password, from its file's first line or its environment variable."""
    if pg.password_file:
        try:
            lines = Path(pg.password_file).read_text(encoding="utf-8").splitlines()
        except (OSError, UnicodeDecodeError) as exc:
            reason = _reason(exc) if isinstance(exc, OSError) else "not UTF-8 text"
            raise StartupError(f"postgres.password_file: cannot read: {reason}") from None
        return lines[0] if lines else ""
    if pg.password_env:
        value = os.environ.get(pg.password_env)
        if value is None:
            raise StartupError(f"postgres.password_env: {pg.password_env} is not set")
        return value
    return ""


def _where(info: Any) -> str:
    """Where a connection goes (psycopg's ConnectionInfo), without its password."""
    return f"{info.dbname} on {info.host}:{info.port} as {info.user}"


def _address(sockname: Any) -> str:
    host, port = str(sockname[0]), int(sockname[1])
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _reason(exc: OSError) -> str:
    """A short reason for an OSError: "Address already in use", not uvloop's long text."""
    if isinstance(exc, socket.gaierror):
        return exc.strerror or str(exc)
    if exc.errno and exc.errno > 0:
        return os.strerror(exc.errno)
    return exc.strerror or str(exc) or exc.__class__.__name__


@dataclass
class Listener:
    name: str
    port: int
    kind: Kind
    server: asyncio.AbstractServer | None = None
    tls: bool = False
    websocket: bool = False


JOURNAL_EVERY = 0.05  # seconds between writes of the server log
# Seconds a cluster node's bus entries wait, at most, for the commit group in flight to
# finish, so that they go together with its messages (Shell._to_bus).
BUS_HOLD = 0.002


class Journal:
    """Writes the core's server-log lines, formatted like the logging module would, with
    one write and one flush per JOURNAL_EVERY seconds instead of a logging call per event."""

    def __init__(self, name: str = "salon.server", source: str = "") -> None:
        self.name = name
        self.source = source or name  # what the line names (a worker's number, then name)
        self._second = -1
        self._stamp = ""

    def _asctime(self, when: float) -> str:
        second = int(when)
        if second != self._second:
            self._second = second
            self._stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(second))
        return f"{self._stamp},{int((when - second) * 1000):03d}"

    def write(self, notes: list[tuple[float, str]]) -> None:
        data = "".join(f"{self._asctime(t)} INFO {self.source}: {text}\n" for t, text in notes)
        handlers = logging.getLogger(self.name).handlers or logging.getLogger().handlers
        for handler in handlers:
            if isinstance(handler, logging.StreamHandler):
                handler.acquire()
                try:
                    handler.stream.write(data)
                    handler.flush()
                except (OSError, ValueError):
                    pass
                finally:
                    handler.release()


class Shell:
    """Runs a :class:`Server` core on an event loop."""

    def __init__(self, config: Config, loop: asyncio.AbstractEventLoop, worker: int = 0) -> None:
        self.config = config
        self.loop = loop
        # Worker ``worker`` of ``salon serve --workers``: every listener is shared with the
        # other workers (SO_REUSEPORT), and log lines name the worker.
        self.worker = worker
        self.server = Server(config, time.time())
        self.transports: dict[int, asyncio.Transport] = {}
        self.listeners: list[Listener] = []
        self.closing = False
        self._flush_scheduled = False
        self._timer: asyncio.TimerHandle | None = None
        self._last_timeout_check = 0.0
        self.stopped = asyncio.Event()
        self.storage: Storage | None = None
        self._lock: int | None = None  # the data directory's (datadir.lock)
        self.limits = ConnectionLimits(config.connections)
        self.http_budget = RequestBudget(
            config.listen.http_request_burst, config.listen.http_request_rate
        )
        self._last_prune = time.time()
        self.tls_context: ssl.SSLContext | None = None
        # Logged once every listener is bound, so that a failed start prints one line.
        self._notes: list[str] = []
        self.journal = Journal(source=f"worker {worker} salon.server" if worker else "")
        self._journal_timer: asyncio.TimerHandle | None = None
        # Connections the server closed, as (deadline, client id or refused key) in the
        # order of closing, so the first to expire is first: _tick closes the lingering ones
        # (LINGER) and cuts off those still open (CLOSE_TIMEOUT), found in self.transports
        # (a connection whose peer has closed is gone from there, and its transport freed).
        # Two timers per closed connection instead filled uvloop's heap under churn, each
        # holding its transport (docs/BENCHMARKS.md, "History of speed", 13:00).
        self._lingering: deque[tuple[float, int]] = deque()
        self._cutoffs: deque[tuple[float, int]] = deque()
        # Keys of refused connections (never clients) in self.transports: -1, -2, ...
        self._refused = itertools.count(-1, -1)
        # Clients whose socket reading is paused while their input waits (TCP backpressure).
        self.paused: set[Client] = set()
        # The cluster's bus (salon.net.bus.RedisBus) when [cluster] is configured: the
        # module, and redis with it, is imported only then.
        self.bus: Any = None
        # A cluster node's entries waiting for the commit group in flight (see _to_bus),
        # and the number of groups finished when they began to wait.
        self._held: list[str] | None = None
        self._held_at = 0
        self._hold_timer: asyncio.TimerHandle | None = None
        self.fenced = False
        # Bus entries read while this node was unsure it is still part of the network.
        self.later_entries: list[str] = []
        # Set by serve(): stops the server (used when the cluster fences this node).
        self.on_stop: Callable[[], None] | None = None
        # The file host on the HTTP listeners (None: off, or no HTTP listener).
        self.filehost: FileHost | None = None

    # ------------------------------------------------------------------ output

    def after(self) -> None:
        """Called after every input: make sure one flush runs at the end of this turn."""
        if not self._flush_scheduled:
            server = self.server
            if server.dirty or server.effects:
                self._flush_scheduled = True
                self.loop.call_soon(self.flush)

    def flush(self) -> None:
        self._flush_scheduled = False
        server = self.server
        sendq = server.sendq
        for client in server.take_dirty():
            client.dirty = False
            out = client.outbox
            if not out:
                continue
            transport = client.sink
            data = out[0] if len(out) == 1 else b"".join(out)
            out.clear()
            client.outbytes = 0
            if transport is None or transport.is_closing():
                continue
            transport.write(data)
            if not client.closed and transport.get_write_buffer_size() > sendq:
                server.drop(client, "SendQ exceeded")
        server.settle()
        if server.notes and self._journal_timer is None:
            # The server log is written every JOURNAL_EVERY seconds, not every turn: a
            # write and flush per turn was a good part of a registration's cost under churn
            # (docs/BENCHMARKS.md, "History of speed", 12:19).
            self._journal_timer = self.loop.call_later(JOURNAL_EVERY, self.write_journal)
        store_calls: list[StoreCall[Any]] = []
        for effect in server.take_effects():
            if isinstance(effect, Close):
                self._close(effect.client)
            elif isinstance(effect, Offload):
                self._offload(effect)
            elif isinstance(effect, StoreCall):
                store_calls.append(effect)
            elif isinstance(effect, BusOp) and self.bus is not None:
                self._to_bus(effect.entries)
        if self._held is not None and (
            not server.uncommitted or self._commits_done() != self._held_at
        ):
            self._release_bus()
        if store_calls:
            self._store(store_calls)
        if server.dirty:
            # Output produced while flushing (SendQ drops): write it on the next turn.
            self.after()

    def _to_bus(self, entries: list[str]) -> None:
        """Hand a turn's entries to the bus. While a commit group is in flight they wait
        for it to finish (BUS_HOLD at most), and go with its messages in one call: each
        call is a Redis function call, a wake-up of every node's reader and a write to
        each of a node's clients that gets something, which two turns then share. Input
        that comes in bursts is committed in two or three groups, one after the other;
        alone, each would cost all that (docs/BENCHMARKS.md, "Scale-out", session 13)."""
        held = self._held
        if held is not None:
            held += entries
        elif self.server.uncommitted:
            self._held = list(entries)
            self._held_at = self._commits_done()
            self._hold_timer = self.loop.call_later(BUS_HOLD, self._release_bus)
        else:
            self.bus.send(entries)

    def _commits_done(self) -> int:
        cluster = self.server.cluster
        return cluster.commits_done if cluster is not None else 0

    def _release_bus(self) -> None:
        """Send the entries that waited for a commit group (see _to_bus)."""
        held, self._held = self._held, None
        if self._hold_timer is not None:
            self._hold_timer.cancel()
            self._hold_timer = None
        if held:
            self.bus.send(held)

    def write_journal(self) -> None:
        """Write the server-log lines noted since the last call."""
        if self._journal_timer is not None:
            self._journal_timer.cancel()
            self._journal_timer = None
        if self.server.notes:
            self.journal.write(self.server.take_notes())

    def _close(self, client: Client) -> None:
        transport: asyncio.Transport | None = client.sink
        if client.outbox and transport is not None and not transport.is_closing():
            transport.write(b"".join(client.outbox))
        client.outbox.clear()
        client.outbytes = 0
        if transport is None or transport.is_closing():
            return
        self._close_gently(transport, client.id)

    def screen(
        self, ip: str, count: bool = True, throttle: bool = True
    ) -> tuple[Refusal | None, Key | None]:
        """D-lines and the per-address connection limits for a new connection from ``ip``:
        the refusal, or the key it is now counted under (to release when it closes;
        None when not limited, or when ``count`` is false: counted already). Without
        ``throttle``, the connection is not counted in the throttle window (yet)."""
        ban = self.server.dline_for(ip)
        if ban is not None:
            log.info("refused ip=%s by D-line %s", ip, ban.mask)
            return Refusal(f"D-lined: {ban.reason}", banned=True), None
        key = self.limits.key(ip) if count else None
        if key is not None:
            refused = self.limits.admit(key, time.time(), throttle)
            if refused is not None:
                log.info("refused ip=%s: %s", ip, refused)
                return Refusal(refused, banned=False), None
        return None, key

    def refuse(self, transport: asyncio.Transport, ip: str, reason: str) -> int:
        """Send one ERROR line to a connection the core never sees, and close it; return
        its key in self.transports until it is gone."""
        text = " ".join(reason.split())
        transport.write(f"ERROR :Closing Link: {ip} ({text})\r\n".encode("utf-8", "replace"))
        return self.linger(transport)

    def linger(self, transport: asyncio.Transport) -> int:
        """Close a connection the core never sees once its answer is sent; return its key
        in self.transports until it is gone (its protocol pops it when the peer is)."""
        key = next(self._refused)
        self.transports[key] = transport
        self._close_gently(transport, key)
        return key

    def _close_gently(self, transport: asyncio.Transport, key: int) -> None:
        """Close a transport (``key`` in self.transports) once what it holds is sent."""
        now = self.loop.time()
        if transport.can_write_eof() and not self.closing:
            # Lingering close: send what is queued and a FIN, keep reading (and ignoring)
            # for a moment, then close. Closing at once while the peer's lines are still
            # arriving would make the kernel send RST, which can destroy the ERROR line.
            transport.write_eof()
            self._lingering.append((now + LINGER, key))
        else:
            transport.close()
        # A peer that never reads would keep the buffered bytes forever: cut it off.
        self._cutoffs.append((now + CLOSE_TIMEOUT, key))

    def _sweep(self, now: float) -> None:
        """Close the lingering connections whose time is up, and cut off the closed ones
        that still hold unsent bytes after CLOSE_TIMEOUT (``now``: the loop's clock)."""
        transports = self.transports
        lingering = self._lingering
        while lingering and lingering[0][0] <= now:
            transport = transports.get(lingering.popleft()[1])
            if transport is not None:
                transport.close()
        cutoffs = self._cutoffs
        while cutoffs and cutoffs[0][0] <= now:
            transport = transports.get(cutoffs.popleft()[1])
            if transport is not None:
                transport.abort()

    def _store(self, calls: list[StoreCall[Any]]) -> None:
        if self.storage is None:
            # No store (the database failed to open): answer every call with nothing.
            for call in calls:
                self.server.complete_store(call, None, time.time())
            return
        self.storage.submit(calls)

    def _store_done(self, call: StoreCall[Any], result: Any) -> None:
        self.server.complete_store(call, result, time.time())
        # A completed commit may unblock any sender of its group: resume those whose input
        # no longer waits.
        for client in list(self.paused):
            self._resume(client)
        self.after()

    def _resume(self, client: Client) -> None:
        if client.closed:
            self.paused.discard(client)
            client.reading_paused = False
        elif client.reading_paused and not client.blocked:
            client.reading_paused = False
            self.paused.discard(client)
            if client.sink is not None and not client.sink.is_closing():
                client.sink.resume_reading()

    # ------------------------------------------------------------------ cluster

    async def _join_cluster(self) -> None:
        """Take a node number, rebuild the network's state from the bus's log, and read
        on from there (before any listener accepts a connection)."""
        from salon.net.bus import BusError, RedisBus

        cfg = self.config.cluster
        assert cfg is not None
        server = self.server
        self.bus = RedisBus(
            cfg,
            self._bus_entries,
            self._fenced,
            lambda: len(server.clients) - server.unregistered,
            self._recover,
            lambda: server.cluster.highest_node() if server.cluster is not None else 0,
            lambda: server.cluster.needs() if server.cluster is not None else time.time(),
            self._round_done,
        )
        try:
            node = await self.bus.connect()
            self.server.join_cluster(node, shared_store=self.config.postgres is not None)
            await self.bus.check_log()
            entries = await self.bus.replay()
        except BusError as exc:
            raise StartupError(str(exc)) from None
        own_store = self.config.postgres is None
        cluster = server.cluster
        assert cluster is not None
        if own_store:
            cluster.census = Census({}, {}, set())
        server.bus_entries(entries, time.time())
        # A store of this node's own holds the history this data directory saw: what the
        # replay would record again (joins, parts, messages...) is not written twice. But
        # the records (accounts, registrations, bans, metadata, read markers...) are
        # written again: the log may carry some that other nodes made while this store
        # was not there to see them (a fresh data directory, a node that was down), and
        # the log will not carry them forever (log_maxlen). Writing one again changes
        # nothing (StoreCall.idempotent). With one shared store, its origin wrote each.
        records: list[StoreCall[Any]] = []
        for effect in server.take_effects():
            if not isinstance(effect, StoreCall):
                server.effects.append(effect)
            elif effect.idempotent and own_store:
                records.append(effect)
        census, cluster.census = cluster.census, None
        since = census.since() if census is not None else None
        if census is not None and since is not None:
            # What this store holds that the log does not: the messages its predecessor
            # on this data directory committed but never sent, because it was killed
            # between the two (see Census). Nobody received them, and no other store has
            # them. A fresh data directory holds none. With one shared store, no node
            # keeps a message of its own: its origin wrote it, and every node reads it.
            unordered = census.unordered

            def forget(store: Any) -> int:
                count: int = store.forget_unordered(since, unordered)
                return count

            records.append(StoreCall(forget, self._forgot))
        if records:
            self._store(records)
        log.info("cluster state rebuilt from %d entries of the log", len(entries))
        self.bus.start()

    def _forgot(self, count: int | None) -> None:
        if count:
            log.info("deleted %d message(s) from the store that the log never had", count)

    def _bus_entries(self, entries: list[str]) -> None:
        if self.later_entries or not self.bus.alive():
            # As for input (hold_input): the entries that followed this node's death
            # (another user given its user's nick, speaking in its channels) are not shown
            # to its clients; they wait until a heartbeat confirms the node.
            if not self.later_entries:
                self.bus.confirm(self._entries_confirmed)
            self.later_entries += entries
            return
        self.server.bus_entries(entries, time.time())
        for client in list(self.paused):
            self._resume(client)
        self.after()

    def hold_input(self, conn: ClientProtocol, data: bytes) -> bool:
        """Whether ``data`` must wait (kept in ``conn.waiting``): this node has not heard
        from Redis for longer than node_ttl (it was paused, or stalled), so the other
        nodes may have declared it dead and given its users' nicks to others. Answering
        from its copy of the network then could show two users holding one nick, so no
        input is read until a heartbeat confirms the node, or Redis refuses it (fenced)."""
        if self.bus.alive() and not conn.waiting:
            return False
        if not conn.waiting and conn.client is not None and conn.client.sink is not None:
            conn.client.sink.pause_reading()
        conn.waiting += data
        self.bus.confirm(functools.partial(self._confirmed, conn))
        return True

    def _confirmed(self, conn: ClientProtocol) -> None:
        data, conn.waiting = conn.waiting, b""
        client = conn.client
        if not data or client is None or client.closed:
            return
        if client.sink is not None and not client.reading_paused:
            client.sink.resume_reading()
        conn.data_received(data)

    def _entries_confirmed(self) -> None:
        entries, self.later_entries = self.later_entries, []
        if entries:
            self._bus_entries(entries)

    def _recover(self, sent: list[str], read: str) -> tuple[list[str], list[str]]:
        """Redis lost data: what this node sends first, and after every node's
        restatement (see Cluster.recover)."""
        cluster = self.server.cluster
        return cluster.recover(sent, read, self.bus.run) if cluster is not None else ([], [])

    def _round_done(self) -> bool:
        cluster = self.server.cluster
        return cluster is None or cluster.round_done()

    def _fenced(self, reason: str) -> None:
        """Redis declared this node dead (a pause, a cut link): its users have quit on
        every other node, so its clients are closed, and the process stops."""
        self.fenced = True
        self.server.shutdown(time.time(), "Closing Link: node lost its place in the network")
        self.after()
        if self.on_stop is not None:
            self.on_stop()

    def _offload(self, effect: Offload) -> None:
        future = self.loop.run_in_executor(None, effect.work)

        def finished(fut: asyncio.Future[Any]) -> None:
            try:
                result = fut.result()
            except Exception:
                log.exception("offloaded work failed")
                result = None
            self.server.complete(effect, result, time.time())
            self._resume(effect.client)
            self.after()

        future.add_done_callback(finished)

    # ------------------------------------------------------------------ timers

    def _tick(self) -> None:
        # The next tick is booked first: whatever this one raises (a bug, logged), timers,
        # timeouts and the closing of connections go on.
        if not self.closing:
            self._timer = self.loop.call_later(TICK, self._tick)
        try:
            now = time.time()
            self._sweep(self.loop.time())
            server = self.server
            server.tick(now)
            if now - self._last_timeout_check >= 1.0:
                self._last_timeout_check = now
                server.check_timeouts(now)
                if self.filehost is not None:
                    self.filehost.collect()
                if now - self._last_prune >= 60.0:
                    self._last_prune = now
                    self.limits.prune(now)
                    self.http_budget.prune(now)
            self.after()
        except Exception:
            log.exception("bug in the timer tick")

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        host = self.config.listen.host
        wanted = [
            Listener("irc", self.config.listen.irc_port, Kind.IRC),
            Listener("tls", self.config.listen.tls_port, Kind.IRC, tls=True),
            Listener("plain", self.config.listen.plain_port, Kind.TEXTPORT),
            Listener("http", self.config.listen.http_port, Kind.IRC, websocket=True),
            Listener("https", self.config.listen.https_port, Kind.IRC, tls=True, websocket=True),
        ]
        wanted = [listener for listener in wanted if listener.port != 0]
        if not wanted:
            raise StartupError(f"all listeners are off ({', '.join(PORT_KEYS)} are 0)")
        data = self.config.data_path
        if data.exists() and not data.is_dir():
            raise StartupError(f"the data directory {data} is not a directory")
        try:
            data.mkdir(parents=True, exist_ok=True, mode=0o700)
            self._lock = datadir.lock(data)
            self._secrets(data)
            pg = self.config.postgres
            store: Any
            if pg is None:
                store = SQLiteStore(data / "salon.db", self.config.history.query_budget)
                for path, private in ((data, "700"), (store.path, "600")):
                    if path.stat().st_mode & 0o077:
                        log.warning("%s can be read by other users: chmod %s it", path, private)
                readers = READERS
            else:
                if data.stat().st_mode & 0o077:
                    log.warning("%s can be read by other users: chmod 700 it", data)
                store = self._open_postgres(pg)
                readers = pg.readers
            self.server.load(store)
            # A cluster node with a store of its own stores other nodes' messages after
            # their delivery: its reads wait for those writes (see Storage).
            ordered = self.config.cluster is not None and pg is None
            self.storage = Storage(
                store, self.loop, self._store_done, readers=readers, ordered_reads=ordered
            )
            if self.config.cluster is not None:
                await self._join_cluster()

            listen = self.config.listen
            if self.config.files.enabled and (listen.http_port or listen.https_port):
                self.filehost = FileHost(self)
        except StartupError:
            raise
        except datadir.DataDirBusy as exc:
            raise StartupError(str(exc)) from None
        except OSError as exc:
            raise StartupError(f"cannot use data directory {data}: {_reason(exc)}") from None
        except Exception as exc:  # sqlite3.Error
            raise StartupError(f"cannot open database in {data}: {exc}") from None
        # asyncio makes IPv6 sockets V6ONLY, so "::" alone would refuse IPv4 clients; the
        # example config promises that "::" accepts everyone, so bind 0.0.0.0 beside it.
        hosts: str | list[str] = ["::", "0.0.0.0"] if host == "::" else host
        for listener in wanted:
            kind, secure = listener.kind, listener.tls
            extra: dict[str, Any] = {}
            if secure:
                extra = {"ssl": self.tls_context, "ssl_handshake_timeout": TLS_HANDSHAKE_TIMEOUT}
            factory: Callable[[], asyncio.Protocol]
            if listener.websocket:
                factory = functools.partial(WebSocketProtocol, self, secure)
            else:
                factory = functools.partial(ClientProtocol, self, kind, secure)
            try:
                listener.server = await self.loop.create_server(
                    factory,
                    hosts,
                    listener.port,
                    reuse_address=True,
                    reuse_port=bool(self.worker) or None,
                    backlog=4096,
                    **extra,
                )
            except OSError as exc:
                await self.close_listeners()
                self._close_db()
                raise StartupError(
                    f"cannot listen on {host}:{listener.port} ({listener.name}): {_reason(exc)}"
                ) from None
            self.listeners.append(listener)
        # Logged only once every listener is bound, so that a failed start prints one line.
        for note in self._notes:
            log.info("%s", note)
        for listener in self.listeners:
            # uvloop's Server is not an asyncio.Server, but has the same ``sockets``.
            sockets = getattr(listener.server, "sockets", None) or ()
            where = ", ".join(_address(sock.getsockname()) for sock in sockets)
            log.info("listening for %s on %s", listener.name, where or f"{host}:{listener.port}")
        self._timer = self.loop.call_later(TICK, self._tick)

    def _open_postgres(self, pg: PostgresSection) -> Any:
        """The PostgreSQL store of [postgres], whose shared secrets (cloaking key, the key
        of unknown-user SCRAM exchanges) every node uses (raises StartupError). psycopg is
        imported here only: a server without [postgres] never loads it."""
        try:
            from salon.store import postgres
        except ImportError:
            raise StartupError(
                "PostgreSQL support is not installed: pip install 'salon[postgres]'"
            ) from None
        password = _postgres_password(pg)
        try:
            if pg.dsn:
                dsn = postgres.conninfo(pg.dsn, password=password)
            else:
                dsn = postgres.conninfo(
                    host=pg.host, port=pg.port, dbname=pg.dbname, user=pg.user, password=password
                )
        except ValueError as exc:
            raise StartupError(f"postgres.dsn: {exc}") from None
        try:
            store = postgres.PostgresStore(
                dsn,
                self.config.history.query_budget,
                timeout=pg.connect_timeout,
                retry_for=pg.retry_for,
            )
            if self.config.cloak.enabled:
                self.server.cloak_key = store.secret(postgres.CLOAK_KEY)
            self.server.accounts.secret = store.secret(postgres.ACCOUNT_SECRET)
        except postgres.Error as exc:
            raise StartupError(f"cannot use PostgreSQL: {postgres.first_line(exc)}") from None
        log.info("store: PostgreSQL %s", _where(store.conn.info))
        return store

    def _secrets(self, data: Path) -> None:
        """The cloaking key (with PostgreSQL: from the database, see _open_postgres) and
        the TLS context (raises StartupError or OSError)."""
        cfg = self.config
        if cfg.cloak.enabled and cfg.postgres is None:
            try:
                self.server.cloak_key = tls.load_secret(data / CLOAK_KEY)
            except tls.TlsError as exc:
                raise StartupError(f"cannot use the cloaking key: {exc}") from None
        if not (cfg.listen.tls_port or cfg.listen.https_port):
            return
        try:
            if cfg.tls.cert:
                cert, key = Path(cfg.tls.cert), Path(cfg.tls.key)
                self.tls_context = tls.server_context(cert, key)
                if cfg.tls.sts and cfg.listen.tls_port:
                    self.server.sts = (cfg.listen.tls_port, cfg.tls.sts_duration)
            else:
                cert, key, created = tls.self_signed(data, cfg.server.name)
                if created:
                    self._notes.append(f"made a self-signed TLS certificate: {cert}")
                self.tls_context = tls.server_context(cert, key)
            where = "configured" if cfg.tls.cert else "self-signed"
            fp = tls.colon_fingerprint(tls.pem_to_der(cert))
            self._notes.append(f"TLS certificate ({where}) SHA-256 fingerprint {fp}")
        except tls.TlsError as exc:
            raise StartupError(f"TLS: {exc}") from None

    def _close_db(self) -> None:
        if self.filehost is not None:
            self.filehost.close()
            self.filehost = None
        if self.storage is not None:
            with contextlib.suppress(Exception):
                self.storage.drain()
                self.storage.close()
            self.storage = None
        if self._lock is not None:
            datadir.unlock(self._lock)
            self._lock = None

    def bound_ports(self) -> dict[str, int]:
        ports = {}
        for listener in self.listeners:
            sockets = getattr(listener.server, "sockets", None)
            if sockets:
                ports[listener.name] = int(sockets[0].getsockname()[1])
        return ports

    async def close_listeners(self) -> None:
        for listener in self.listeners:
            if listener.server is not None:
                listener.server.close()
        for listener in self.listeners:
            if listener.server is not None:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(listener.server.wait_closed(), 0.5)
        self.listeners = []

    async def shutdown(self) -> None:
        """Stop accepting, send every client ERROR, close within the grace period."""
        if self.closing:
            return
        self.closing = True
        self.write_journal()  # what happened before, before the line that says so
        log.info("shutting down")
        if self._timer is not None:
            self._timer.cancel()
        for listener in self.listeners:
            if listener.server is not None:
                listener.server.close()
        self.server.shutdown(time.time())
        self.flush()
        if self.bus is not None:
            self._release_bus()
            await self.bus.close()
        deadline = self.loop.time() + SHUTDOWN_GRACE
        while self.transports and self.loop.time() < deadline:
            await asyncio.sleep(0.02)
            self._sweep(self.loop.time())  # _tick no longer runs
        for transport in list(self.transports.values()):
            transport.abort()
        await self.close_listeners()
        self._close_db()
        self.write_journal()
        self.stopped.set()


async def serve(config: Config, ready: Any = None, worker: int = 0) -> None:
    """Run until SIGINT or SIGTERM. ``ready(shell)`` is called once listening. ``worker``:
    this process's number under ``salon serve --workers`` (0: not a worker)."""
    loop = asyncio.get_running_loop()
    shell = Shell(config, loop, worker)
    stop = asyncio.Event()
    # Installed before starting, so that a signal during start-up still ends in shutdown().
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    shell.on_stop = stop.set
    try:
        await shell.start()
    except StartupError:
        # A node that joined the cluster and then could not listen leaves it at once; its
        # bus tasks would otherwise keep the loop, and the process, running.
        if shell.bus is not None:
            await shell.bus.close()
        raise
    # Everything loaded at start lives as long as the process: keep it out of the cyclic
    # GC's scans, and collect the young generation rarely. A chat server allocates many
    # short-lived objects and few cycles, and the young generation's count is objects made
    # minus objects freed: it crosses the threshold when the messages waiting for their
    # commit (up to PIPELINE per sender, a few objects each) outnumber it, and then every
    # collection walks them all. A high threshold makes collections rare, each walking at
    # most that many young objects (the figures: docs/BENCHMARKS.md, "History of speed",
    # 13:11, and "Comments that held figures").
    gc.collect()
    gc.freeze()
    gc.set_threshold(1_000_000, 50, 100)
    # The storage thread must get the GIL soon after its commit is ready, or every message
    # waits up to the default 5 ms switch interval before delivery.
    sys.setswitchinterval(0.0005)
    if ready is not None:
        ready(shell)
    try:
        await stop.wait()
    finally:
        await shell.shutdown()
    if shell.fenced:
        raise SystemExit(3)


def run(config: Config, ready: Any = None, worker: int = 0) -> None:
    """Run the server on uvloop (when available) until a signal stops it."""
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency on POSIX
        asyncio.run(serve(config, ready, worker))
    else:
        uvloop.run(serve(config, ready, worker))
