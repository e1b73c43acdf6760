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
next call (a node's entries keep their order), ``TURN_CHARS`` at most per call. Four connections: turn calls and the
blocking reader (made every turn, on salon.net.resp's bare connections), the other calls
(start, replay, recovery, leave), and the heartbeat with the reaper.

Any failure (Redis unreachable, a turn or heartbeat refused, the library missing) stops
the three until :meth:`RedisBus._recover` finds out what Redis still holds. A node that
Redis declared dead while Redis stayed up (the same ``run_id``) is fenced. A Redis that
restarted (a new ``run_id``) is no verdict on the node: it takes its place again under
its own number (``salon_rejoin``, refused if it was reaped). If Redis lost data (the
``run`` key gone or another, the log shorter than what this node read), the node sends
again its messages of the last ``RESEND_FOR`` seconds (every node applies an entry once:
salon.server.cluster drops repeats) and then its restatement (an ``S`` entry: its users,
their channels and those channels' modes), so that every replica, and a node that starts
later and replays the log, holds the network again. Everything else waits, in order,
until every node has restated (or 2 x ``node_ttl``). The node counter is lost with the
data: a node that finds Redis empty waits ``SETTLE_FOR`` before it uses the number it drew,
so that a running node holding it can take it back first (each heartbeat key names the
process holding the number: ``ident``). After ``redis_grace`` seconds of
failure the node gives up as if fenced: no client waits without a bound.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import secrets
import socket
import time
from bisect import bisect_right
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from importlib import resources
from itertools import accumulate
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
RETRY_EVERY = 0.2  # seconds before the first try while Redis cannot be reached
RETRY_MAX = 1.0  # seconds between tries, at most (the wait doubles up to this)
RESEND_FOR = 10.0  # seconds a sent entry is kept, to send again if Redis loses it
RESEND_MAX = 20000  # entries kept for that, at most (but the last call's, whole)
RESEND_CHARS = 16 << 20  # and characters of them, at most (but the last call's, whole)
# Characters of entries one salon_turn call carries, at most (one entry longer than this
# goes alone): a node's restatement of its store (thousands of entries) or a long backlog
# after an outage goes in several calls, each of them one log entry that every node reads
# whole and that Redis's single thread adds in one go.
TURN_CHARS = 1 << 20
# Seconds a node that found Redis empty waits before it uses the number it drew: the nodes
# that were running when Redis lost its data take their places again within RETRY_MAX of
# its return, and one of them may hold that number (see connect).
SETTLE_FOR = RETRY_MAX + 0.5
JOIN_TRIES = 5  # numbers drawn at start at most (each taken back by a running node)
ROUND_POLL = 0.05  # seconds between looks whether every node has restated
LAG_LIMIT = 100000  # entries counted behind a node, at most
# Between the entries of one turn, all in one entry of the log stream: Redis then adds one
# stream entry per turn and not per message, and a reader gets a turn's entries as one
# string (JSON escapes a newline inside a string, and a compact message entry holds none).
SEPARATOR = "\n"


def library() -> str:
    return resources.files("salon.net").joinpath("salon.lua").read_text(encoding="utf-8")


class BusError(Exception):
    """Redis cannot be used (unreachable, refused the library): one line for the user."""


def _turn(entries: list[str]) -> tuple[list[str], int]:
    """The first of ``entries`` that one salon_turn call carries (TURN_CHARS), one at
    least, and their characters."""
    chars = sum(map(len, entries))
    if chars + len(entries) <= TURN_CHARS:
        return entries, chars
    ends = list(accumulate(len(entry) + 1 for entry in entries))
    count = max(1, bisect_right(ends, TURN_CHARS))
    return entries[:count], ends[count - 1] - count


def _id(entry_id: str) -> tuple[int, int]:
    ms, _, seq = entry_id.partition("-")
    return int(ms), int(seq or 0)


class RedisBus:
    """This node's link to the bus; ``on_entries(entries)`` gets the log's entries in
    order, ``on_fenced(reason)`` is called once if Redis declares this node dead (or
    stays away past ``redis_grace``). ``on_lost(sent, read)`` gives what to send first
    when Redis lost data, and what to send once ``round_done()`` (every node restated,
    or 2 x ``node_ttl`` passed), from the entries Redis took lately and the id of the
    last entry read (salon.server.cluster.Cluster.recover); ``highest()`` the highest
    node number this node knows."""

    def __init__(
        self,
        cfg: ClusterSection,
        on_entries: Callable[[list[str]], None],
        on_fenced: Callable[[str], None],
        users: Callable[[], int] = lambda: 0,
        on_lost: Callable[[list[str], str], tuple[list[str], list[str]]] = lambda s, r: (s, []),
        highest: Callable[[], int] = lambda: 0,
        needs: Callable[[], float] = lambda: 0.0,
        round_done: Callable[[], bool] = lambda: True,
    ) -> None:
        self.cfg = cfg
        self.name = cfg.node or f"{socket.gethostname()}/{os.getpid()}"
        # The value of this node's heartbeat key: which process holds its number.
        self.ident = f"{self.name} {secrets.token_hex(8)}"
        self.ttl_ms = int(cfg.node_ttl * 1000)
        self.on_entries = on_entries
        self.on_fenced = on_fenced
        self.users = users
        self.on_lost = on_lost
        self.highest = highest
        self.needs = needs
        self.round_done = round_done
        # After Redis lost data: entries at the queue's front to send before the rest
        # waits for the round of restatements (0: none), and until when it waits.
        self._gate = 0
        self._gate_until = 0.0
        self.node = 0
        self.last_id = "0-0"
        self.fenced = False
        self.closing = False
        # time.monotonic() until which this node is surely alive (see alive()).
        self.alive_until = 0.0
        self._confirmed: list[Callable[[], None]] = []
        self._confirming: asyncio.Task[None] | None = None
        # What this node knows of Redis: its process (INFO run_id) and its data (P:run).
        self.run_id = ""
        self.run = ""
        self._queue: list[str] = []
        # The turns Redis took (each a list of entries), with when and their characters:
        # sent again if Redis loses them; and how many entries and characters they hold.
        self._sent: deque[tuple[float, list[str], int]] = deque()
        self._kept = 0
        self._kept_chars = 0
        # Cleared while Redis fails this node; the sender, reader and heartbeat wait.
        self._healthy = asyncio.Event()
        self._healthy.set()
        self._recovery: asyncio.Task[None] | None = None
        self._trouble_since: float | None = None
        self.recoveries = 0
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
            self.run_id = str((await self._calls.info("server"))["run_id"])
            for _try in range(JOIN_TRIES):
                sent = time.monotonic()
                fresh = secrets.token_hex(8)
                node, run = await self._calls.fcall(
                    "salon_join",
                    3,
                    self.key("epoch"),
                    self.key("nodes"),
                    self.key("run"),
                    self.name,
                    self.ttl_ms,
                    self.cfg.prefix,
                    fresh,
                    self.ident,
                )
                # This node found Redis empty (it set the run): the first node of a new
                # network, or one that started as Redis came back without its data, before
                # the nodes that were running took their places again. One of them may
                # hold the number drawn (the counter was lost too): that one keeps it
                # (salon_rejoin), and this node draws again.
                if run != fresh:
                    break
                held = await self._settle(int(node))
                if held is not None:
                    sent = held
                    break
                log.warning("cluster node number %s is held by a running node; drawing again", node)
            else:
                raise BusError(f"cannot take a node number in Redis at {url}")
        except (RedisError, OSError, BusError) as exc:
            await self.close(clean=False)
            if isinstance(exc, BusError):
                raise
            raise BusError(f"cannot use Redis at {url}: {exc}") from None
        self.node = int(node)
        self.run = str(run)
        self.alive_until = sent + self.cfg.node_ttl
        log.info(
            "cluster node %d (%s) on %s, prefix %s", self.node, self.name, url, self.cfg.prefix
        )
        return self.node

    async def _settle(self, node: int) -> float | None:
        """Wait SETTLE_FOR seconds, renewing number ``node``'s heartbeat; None when a
        running node took the number meanwhile, else when the last renewal was sent."""
        loop = asyncio.get_running_loop()
        until = loop.time() + SETTLE_FOR
        sent = time.monotonic()
        while (left := until - loop.time()) > 0:
            await asyncio.sleep(min(left, self.cfg.node_ttl / 3))
            sent = time.monotonic()
            beat = await self._calls.fcall(
                "salon_beat", 2, self.key("node", node), self.key("state"),
                self.ident, self.ttl_ms, node, "0-0 0",
            )  # fmt: skip
            if not int(beat):
                return None
        return sent

    async def check_log(self) -> None:
        """Raise BusError when the log was trimmed (``log_maxlen``) past what the running
        nodes' replicas depend on (the oldest live user's introduction, the oldest channel's
        creation, as their heartbeats report it): a replay would build a different network,
        and nothing later would tell."""
        try:
            info = await self._calls.xinfo_stream(self.key("log"))
            states = await self._calls.hgetall(self.key("state"))
        except ResponseError:
            return  # no log yet
        except (RedisError, OSError) as exc:
            raise BusError(f"cannot use Redis at {self.cfg.redis}: {exc}") from None
        added = info.get("entries-added")  # (Redis 7 and later)
        first = info.get("first-entry")
        if added is None or added <= info["length"] or not first:
            return  # nothing trimmed yet
        # The log's first entry is a turn: its first line's time (a compact message entry,
        # salon.server.cluster._compact_message, ends with its origin's clock).
        head = first[1]["e"].split(SEPARATOR, 1)[0]
        first_time = float(head.rsplit("\0", 1)[1] if head[:1] == "M" else json.loads(head)[2])
        needed = [
            float(parts[2])
            for number, text in states.items()
            if int(number) != self.node and len(parts := text.split()) > 2
        ]
        if needed and min(needed) < first_time:
            await self.close()
            raise BusError(
                f"cannot join the network: its log (cluster.log_maxlen {self.cfg.log_maxlen}) "
                "no longer reaches back to what the running nodes hold (a user or channel "
                f"made {first_time - min(needed):.1f} s before its oldest entry); raise "
                "log_maxlen on every node, or stop every node and start them again"
            )

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
        while self._queue and not self.fenced and not self.closing:
            await self._healthy.wait()
            if self.fenced or self.closing:
                return
            # (the batch leaves the queue only once Redis took it: after a failure it is
            # sent again, after what recovery puts in front of it)
            gate = self._gate
            batch, chars = _turn(self._queue[:gate] if gate else self._queue[:])
            assert self._turns is not None
            try:
                await self._turns.call(
                    "FCALL",
                    "salon_turn",
                    2,
                    self.key("node", self.node),
                    self.key("log"),
                    self.cfg.log_maxlen,
                    self.ident,
                    SEPARATOR.join(batch),
                )
            except asyncio.CancelledError:
                raise
            except (RedisError, OSError) as exc:
                self._trouble(f"turn: {exc}")
                continue
            except Exception:
                log.exception("bug sending a turn to the bus")
                self._trouble("turn: a bug")
                continue
            del self._queue[: len(batch)]
            self._trouble_since = None
            self._keep(batch, chars)
            if gate:
                # (the entries before the round may take several calls: see _turn)
                self._gate = gate - len(batch)
                if not self._gate:
                    await self._round()

    async def _round(self) -> None:
        """Hold what waits until every node's restatement is in the log (or until
        ``_gate_until``): no change lands among them."""
        loop = asyncio.get_running_loop()
        while not self.closing and loop.time() < self._gate_until and not self.round_done():
            await asyncio.sleep(ROUND_POLL)

    def _keep(self, batch: list[str], chars: int) -> None:
        """Keep a turn Redis took (a list no one changes later), as one item: a turn holds
        many entries under traffic, and this runs once per turn."""
        now = time.monotonic()
        sent = self._sent
        sent.append((now, batch, chars))
        self._kept += len(batch)
        self._kept_chars += chars
        # (the newest call stays whole, however many entries it holds)
        while sent and (
            sent[0][0] < now - RESEND_FOR
            or (len(sent) > 1 and (self._kept > RESEND_MAX or self._kept_chars > RESEND_CHARS))
        ):
            _at, gone, gone_chars = sent.popleft()
            self._kept -= len(gone)
            self._kept_chars -= gone_chars

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
            await self._healthy.wait()
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
                self._trouble(f"reader: {exc}")
                continue
            if not self._healthy.is_set():
                continue  # (recovery may move the reading position: read again from it)
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
        # (a short node_ttl needs beats closer together than it: three per TTL at least)
        every = min(BEAT_EVERY, self.cfg.node_ttl / 3)
        next_beat = loop.time() + every
        while not self.fenced and not self.closing:
            await asyncio.sleep(min(REAP_EVERY, every))
            await self._healthy.wait()
            try:
                if loop.time() >= next_beat:
                    next_beat = loop.time() + every
                    if not await self._heartbeat():
                        continue
                await self._reap()
            except asyncio.CancelledError:
                raise
            except (RedisError, OSError) as exc:
                self._trouble(f"heartbeat: {exc}")

    async def _heartbeat(self) -> bool:
        """Renew this node's heartbeat key; False (and recovery under way) when it was
        gone. Raises RedisError while Redis cannot be used."""
        sent = time.monotonic()
        alive = await self._beater.fcall(
            "salon_beat",
            2,
            self.key("node", self.node),
            self.key("state"),
            self.ident,
            self.ttl_ms,
            self.node,
            f"{self.last_id} {self.users()} {self.needs():.3f}",
        )
        if not int(alive):
            self._trouble("heartbeat refused: this node's key is gone")
            return False
        self._trouble_since = None
        self.alive_until = max(self.alive_until, sent + self.cfg.node_ttl)
        confirmed, self._confirmed = self._confirmed, []
        for then in confirmed:
            then()
        return True

    def alive(self) -> bool:
        """Whether this node is surely still part of the network: its heartbeat key, last
        renewed before ``alive_until - node_ttl``, cannot have expired yet. After a pause
        or a stall longer than that, the other nodes may have declared it dead and given
        its users' nicks to others: its copy of the network is not to be trusted until
        :meth:`confirm` has heard from Redis."""
        return time.monotonic() < self.alive_until

    def confirm(self, then: Callable[[], None]) -> None:
        """Renew the heartbeat now; ``then()`` once Redis took it (never when this node
        is fenced instead)."""
        self._confirmed.append(then)
        if self._confirming is None or self._confirming.done():
            self._confirming = asyncio.get_running_loop().create_task(self._confirm())

    async def _confirm(self) -> None:
        while self._confirmed and not self.fenced and not self.closing:
            await self._healthy.wait()
            if self.fenced or self.closing:
                return
            try:
                await self._heartbeat()
            except asyncio.CancelledError:
                raise
            except (RedisError, OSError) as exc:
                self._trouble(f"heartbeat: {exc}")

    async def _reap(self) -> None:
        nodes = await self._beater.hgetall(self.key("nodes"))
        for number in nodes:
            if int(number) == self.node:
                continue
            if await self._beater.exists(self.key("node", number)):
                continue
            if not self._healthy.is_set():
                return
            # A heartbeat gone because Redis restarted is no death: look first.
            run_id = str((await self._beater.info("server"))["run_id"])
            if run_id != self.run_id:
                self._trouble("Redis restarted")
                return
            reaped = await self._beater.fcall(
                "salon_reap",
                5,
                self.key("nodes"),
                self.key("node", number),
                self.key("log"),
                self.key("state"),
                self.key("calm"),
                number,
                self.cfg.log_maxlen,
            )
            if int(reaped):
                log.warning("cluster node %s is dead: its users quit", number)

    # ------------------------------------------------------------------ recovery

    def _trouble(self, what: str) -> None:
        """Redis failed this node: stop using it until :meth:`_recover` has looked."""
        if self.fenced or self.closing:
            return
        loop = asyncio.get_running_loop()
        if self._trouble_since is None:
            self._trouble_since = loop.time()
        self._healthy.clear()
        if self._recovery is None or self._recovery.done():
            log.warning("bus: %s; waiting for Redis", what)
            self._recovery = loop.create_task(self._recover())

    async def _recover(self) -> None:
        loop = asyncio.get_running_loop()
        delay = RETRY_EVERY
        while not self.fenced and not self.closing:
            await asyncio.sleep(delay)
            since = self._trouble_since if self._trouble_since is not None else loop.time()
            if loop.time() - since > self.cfg.redis_grace:
                self._fence(f"Redis failed for more than redis_grace ({self.cfg.redis_grace:g} s)")
                return
            try:
                if await self._look():
                    break
            except asyncio.CancelledError:
                raise
            except ResponseError as exc:
                if "FENCED" in str(exc):
                    self._fence(str(exc))
                    return
                log.warning("bus recovery: %s", exc)
            except (RedisError, OSError) as exc:
                log.debug("bus recovery: %s", exc)
            delay = min(delay * 2, RETRY_MAX)
        if not self.fenced:
            self._healthy.set()

    async def _look(self) -> bool:
        """Redis answers again: find out what it kept and take this node's place again
        (False: fenced). Raises RedisError while it cannot be used."""
        conn = self._calls
        run_id = str((await conn.info("server"))["run_id"])
        # (cheap, and the only cure for a Redis that lost its functions)
        await conn.function_load(library(), replace=True)
        run = await conn.get(self.key("run"))
        tail = await conn.xrevrange(self.key("log"), "+", "-", count=1)
        tail_id = tail[0][0] if tail else "0-0"
        lost = run != self.run or _id(tail_id) < _id(self.last_id)
        restarted = run_id != self.run_id
        if not restarted and not lost:
            held = await conn.get(self.key("node", self.node))
            if held == self.ident:
                log.warning("bus: Redis answers again")
                return True
            self._fence(
                "heartbeat refused: "
                + (
                    "this node was declared dead"
                    if held is None
                    else "another node took its number"
                )
            )
            return False
        new_run = await conn.fcall(
            "salon_rejoin",
            5,
            self.key("nodes"),
            self.key("node", self.node),
            self.key("epoch"),
            self.key("run"),
            self.key("calm"),
            self.node,
            self.name,
            self.ttl_ms,
            secrets.token_hex(8),
            max(self.highest(), self.node),
            self.run,
            self.ident,
        )
        self.run_id = run_id
        self.run = str(new_run)
        self.recoveries += 1
        if not lost:
            log.warning("bus: Redis restarted with its data; node %d carries on", self.node)
            return True
        sent = [entry for _t, batch, _chars in self._sent for entry in batch]
        self._sent.clear()
        self._kept = self._kept_chars = 0
        first, later = self.on_lost(sent, self.last_id)
        self._queue[:0] = [*first, *later]
        self._gate = len(first)
        self._gate_until = asyncio.get_running_loop().time() + 2 * self.cfg.node_ttl
        # (entries after what Redis kept are read again: every node drops repeats)
        if _id(tail_id) < _id(self.last_id):
            self.last_id = tail_id
        log.warning(
            "bus: Redis lost data; node %d restates (%d entries before the round, %d after)",
            self.node,
            len(first),
            len(later),
        )
        if self._sender is None or self._sender.done():
            self._sender = asyncio.get_running_loop().create_task(self._send())
        return True

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
        self._healthy.set()  # (what waits for it sees closing and ends)
        tasks = [
            t
            for t in (*self._tasks, self._sender, self._recovery, self._confirming)
            if t is not None
        ]
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
            last_id, users, *_needs = state.get(number, "0-0 0").split()
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
