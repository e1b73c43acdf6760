"""The cluster's bus on Redis (issue 19): the only code that talks to Redis.

The core (salon.server.cluster) makes entries and applies the entries of the network's
one order; this module carries them. Redis holds, under the cluster's key prefix:

- a Function library (``salon.lua``, loaded at start with FUNCTION LOAD REPLACE) whose
  ``salon_turn`` appends one event-loop turn's entries to the log stream (as one stream
  entry: see SEPARATOR); Redis runs one function at a time, so the log is one total order
  for every node;
- the log stream itself, read by every node with XREAD BLOCK (its own entries too);
- each node's heartbeat key (PX ``node_ttl``, renewed every second). A node whose key is
  gone is dead: the first node to see it calls ``salon_reap``, which adds the entry that
  makes every node quit the dead node's users. A node that comes back (a pause, a cut
  link) is fenced: its turn calls and heartbeats are refused, and it closes its clients.

One ``salon_turn`` call is in flight at a time; entries made meanwhile wait and go in the
next call (a node's entries keep their order). Four connections: turn calls and the
blocking reader (made every turn, on salon.net.resp's bare connections), the other calls
(start, replay, leave), and the heartbeat with the reaper.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
from collections.abc import Callable
from dataclasses import dataclass
from importlib import resources
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import RedisError, ResponseError

from salon.config import ClusterSection
from salon.net.resp import Link

log = logging.getLogger("salon.net.bus")

BEAT_EVERY = 1.0  # seconds between heartbeats (the key lives node_ttl)
REAP_EVERY = 0.5  # seconds between looks for dead nodes
READ_BLOCK_MS = 1000
READ_COUNT = 2000
REPLAY_COUNT = 10000
RETRY_EVERY = 0.2  # seconds between tries while Redis cannot be reached
LAG_LIMIT = 100000  # entries counted behind a node, at most
# Between the entries of one turn, all in one entry of the log stream: Redis then adds one
# stream entry per turn and not per message, and a reader gets a turn's entries as one
# string (JSON escapes a newline inside a string, so none is ever in an entry).
SEPARATOR = "\n"


def library() -> str:
    return resources.files("salon.net").joinpath("salon.lua").read_text(encoding="utf-8")


class BusError(Exception):
    """Redis cannot be used (unreachable, refused the library): one line for the user."""


class RedisBus:
    """This node's link to the bus; ``on_entries(entries)`` gets the log's entries in
    order, ``on_fenced(reason)`` is called once if Redis declares this node dead."""

    def __init__(
        self,
        cfg: ClusterSection,
        on_entries: Callable[[list[str]], None],
        on_fenced: Callable[[str], None],
        users: Callable[[], int] = lambda: 0,
    ) -> None:
        self.cfg = cfg
        self.name = cfg.node or f"{socket.gethostname()}/{os.getpid()}"
        self.ttl_ms = int(cfg.node_ttl * 1000)
        self.on_entries = on_entries
        self.on_fenced = on_fenced
        self.users = users
        self.node = 0
        self.last_id = "0-0"
        self.fenced = False
        self.closing = False
        self._queue: list[str] = []
        self._sender: asyncio.Task[None] | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._calls: Any = None
        self._turns: Link | None = None
        self._reader: Link | None = None
        self._beater: Any = None

    def key(self, *parts: str | int) -> str:
        return ":".join((self.cfg.prefix, *(str(p) for p in parts)))

    # ------------------------------------------------------------------ start

    async def connect(self) -> int:
        """Load the library and take a node number (raises BusError)."""
        url = self.cfg.redis
        try:
            self._calls = aioredis.from_url(url, decode_responses=True)
            # The two calls made every turn on a connection of their own, without redis-py
            # (salon.net.resp): the turns and the reader.
            self._turns = Link(url)
            self._reader = Link(url)
            self._beater = aioredis.from_url(url, decode_responses=True)
            await self._calls.function_load(library(), replace=True)
            node = await self._calls.fcall(
                "salon_join",
                2,
                self.key("epoch"),
                self.key("nodes"),
                self.name,
                self.ttl_ms,
                self.cfg.prefix,
            )
        except (RedisError, OSError) as exc:
            await self.close(clean=False)
            raise BusError(f"cannot use Redis at {url}: {exc}") from None
        self.node = int(node)
        log.info(
            "cluster node %d (%s) on %s, prefix %s", self.node, self.name, url, self.cfg.prefix
        )
        return self.node

    async def replay(self) -> list[str]:
        """Every entry of the log so far (a new node rebuilds the network's state from
        them before it accepts connections); reading goes on after the last."""
        entries: list[str] = []
        start = "-"
        while True:
            items = await self._calls.xrange(self.key("log"), start, "+", count=REPLAY_COUNT)
            if not items:
                break
            for _id, fields in items:
                entries.extend(fields["e"].split(SEPARATOR))
            self.last_id = items[-1][0]
            start = "(" + self.last_id
        return entries

    def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._tasks = [loop.create_task(self._read()), loop.create_task(self._beat())]

    # ------------------------------------------------------------------ turns

    def send(self, entries: list[str]) -> None:
        """Entries of one event-loop turn, for the log (in this order, after earlier ones)."""
        if self.fenced:
            return
        self._queue.extend(entries)
        if self._sender is None or self._sender.done():
            self._sender = asyncio.get_running_loop().create_task(self._send())

    async def _send(self) -> None:
        while self._queue and not self.fenced:
            batch = self._queue
            self._queue = []
            while True:
                try:
                    assert self._turns is not None
                    await self._turns.call(
                        "FCALL",
                        "salon_turn",
                        2,
                        self.key("node", self.node),
                        self.key("log"),
                        self.cfg.log_maxlen,
                        SEPARATOR.join(batch),
                    )
                    break
                except ResponseError as exc:
                    if "FENCED" in str(exc):
                        self._fence(str(exc))
                        return
                    log.error("the bus refused a turn: %s", exc)
                    break
                except (RedisError, OSError) as exc:
                    log.warning("bus unreachable, turn waits: %s", exc)
                    await asyncio.sleep(RETRY_EVERY)
                except Exception:
                    log.exception("bug sending a turn to the bus")
                    break

    async def flush(self) -> None:
        """Wait until every entry handed to :meth:`send` is in the log."""
        while self._sender is not None and not self._sender.done():
            await asyncio.wait({self._sender})

    # ------------------------------------------------------------------ reading

    async def _read(self) -> None:
        stream = self.key("log")
        reader = self._reader
        assert reader is not None
        while not self.closing:
            try:
                # [[stream, [[id, [field, value, ...]], ...]]], or None when the block ran out
                answer = await reader.call(
                    "XREAD", "COUNT", READ_COUNT, "BLOCK", READ_BLOCK_MS,
                    "STREAMS", stream, self.last_id,
                )  # fmt: skip
            except asyncio.CancelledError:
                raise
            except (RedisError, OSError) as exc:
                if self.closing:
                    return
                log.warning("bus reader: %s", exc)
                await asyncio.sleep(RETRY_EVERY)
                continue
            for _name, items in answer or ():
                if not items:
                    continue
                self.last_id = items[-1][0]
                entries = []
                for _id, fields in items:
                    entries.extend(fields[1].split(SEPARATOR))
                try:
                    self.on_entries(entries)
                except Exception:
                    log.exception("bug applying bus entries")

    # ------------------------------------------------------------------ liveness

    async def _beat(self) -> None:
        loop = asyncio.get_running_loop()
        next_beat = loop.time() + BEAT_EVERY
        while not self.fenced and not self.closing:
            await asyncio.sleep(REAP_EVERY)
            try:
                if loop.time() >= next_beat:
                    next_beat = loop.time() + BEAT_EVERY
                    alive = await self._beater.fcall(
                        "salon_beat",
                        2,
                        self.key("node", self.node),
                        self.key("state"),
                        self.name,
                        self.ttl_ms,
                        self.node,
                        f"{self.last_id} {self.users()}",
                    )
                    if not int(alive):
                        self._fence("heartbeat refused: this node was declared dead")
                        return
                await self._reap()
            except asyncio.CancelledError:
                raise
            except (RedisError, OSError) as exc:
                log.warning("bus heartbeat: %s", exc)

    async def _reap(self) -> None:
        nodes = await self._beater.hgetall(self.key("nodes"))
        for number in nodes:
            if int(number) == self.node:
                continue
            if await self._beater.exists(self.key("node", number)):
                continue
            reaped = await self._beater.fcall(
                "salon_reap",
                4,
                self.key("nodes"),
                self.key("node", number),
                self.key("log"),
                self.key("state"),
                number,
                self.cfg.log_maxlen,
            )
            if int(reaped):
                log.warning("cluster node %s is dead: its users quit", number)

    def _fence(self, reason: str) -> None:
        if self.fenced:
            return
        self.fenced = True
        log.error("cluster node %d fenced: %s", self.node, reason)
        self.on_fenced(reason)

    # ------------------------------------------------------------------ stop

    async def close(self, clean: bool = True) -> None:
        """Stop; ``clean``: send what is queued, then leave the network at once."""
        if clean and self.node and not self.fenced:
            with contextlib.suppress(RedisError, OSError, asyncio.TimeoutError):
                await asyncio.wait_for(self.flush(), 2.0)
                await self._calls.fcall(
                    "salon_leave",
                    4,
                    self.key("nodes"),
                    self.key("node", self.node),
                    self.key("log"),
                    self.key("state"),
                    self.node,
                    self.cfg.log_maxlen,
                )
        self.closing = True
        tasks = [t for t in (*self._tasks, self._sender) if t is not None]
        for task in tasks:
            task.cancel()
        if tasks:
            # (a cancelled blocking read may take its connection down slowly: not waited for)
            await asyncio.wait(tasks, timeout=1.0)
        self._tasks = []
        for link in (self._turns, self._reader):
            if link is not None:
                link.close()
        for conn in (self._calls, self._beater):
            if conn is not None:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(conn.aclose(), 1.0)


@dataclass(frozen=True, slots=True)
class NodeStatus:
    """One node as ``salon cluster status`` shows it."""

    number: int
    name: str
    ttl: float  # seconds its heartbeat key has left (negative: gone, not yet reaped)
    users: int
    lag: int  # entries of the log (turns) it had not applied at its last heartbeat


async def status(cfg: ClusterSection) -> tuple[list[NodeStatus], int]:
    """The nodes of the network and the log's length (raises BusError)."""
    # (redis-py types replies as bytes or str: decode_responses makes them str)
    conn: Any = aioredis.from_url(cfg.redis, decode_responses=True)
    prefix = cfg.prefix
    try:
        nodes = await conn.hgetall(f"{prefix}:nodes")
        state = await conn.hgetall(f"{prefix}:state")
        length = int(await conn.xlen(f"{prefix}:log"))
        found = []
        for number, name in sorted(nodes.items(), key=lambda item: int(item[0])):
            ttl_ms = int(await conn.pttl(f"{prefix}:node:{number}"))
            last_id, _, users = state.get(number, "0-0 0").partition(" ")
            later = await conn.xrange(f"{prefix}:log", "(" + last_id, "+", count=LAG_LIMIT)
            found.append(
                NodeStatus(int(number), name, ttl_ms / 1000, int(users or 0), len(later or ()))
            )
        return found, length
    except (RedisError, OSError) as exc:
        raise BusError(f"cannot use Redis at {cfg.redis}: {exc}") from None
    finally:
        with contextlib.suppress(Exception):
            await conn.aclose()
