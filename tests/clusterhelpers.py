"""Two or three sans-I/O cores as the nodes of one network, in one test process.

``MemoryBus`` is the sequencer: every node's :class:`~salon.server.effects.BusOp` is
appended to one log, which is the network's one order, and every node is then given the
entries it has not seen (its own included), as the Redis bus does between processes::

    net = ClusterNet(2)
    alice = net.register(0, "alice")
    bob = net.register(1, "bob")
    alice.send("JOIN #c")

By default the bus runs after every input (the network settles at once). Inside
``with net.hold():`` the nodes' ops wait, and :meth:`ClusterNet.release` sequences them in
an order the test chooses (a race).
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any

from corehelpers import START, Conn, Net

from salon.server.client import Client, Kind
from salon.server.effects import BusOp, Effect
from salon.store.memory import MemoryStore


class MemoryBus:
    """One log of entries: the order every node applies."""

    def __init__(self) -> None:
        self.log: list[str] = []

    def append(self, entries: Iterable[str]) -> None:
        self.log.extend(entries)

    def node_down(self, node: int, now: float) -> None:
        self.log.append(json.dumps([0, 0, now, 0, "D", node]))


class Node(Net):
    """One node: a Net whose bus ops wait in ``queued`` for the cluster to sequence them."""

    def __init__(
        self, cluster: ClusterNet, number: int, shared: MemoryStore | None, **sections: Any
    ) -> None:
        super().__init__(now=cluster.now, **sections)
        self.cluster = cluster
        self.number = number
        if shared is not None:
            self.store = shared  # one store for every node, as PostgreSQL is
        self.server.join_cluster(number, shared_store=shared is not None)
        self.queued: list[BusOp] = []
        self.seen = 0
        self.alive = True

    def collect_effects(self) -> list[Effect]:
        effects = super().collect_effects()
        ops = [e for e in self.pending if isinstance(e, BusOp)]
        if ops:
            self.pending = [e for e in self.pending if not isinstance(e, BusOp)]
            self.queued += ops
        if self.queued:
            self.cluster.pump()
        return effects

    def receive(self) -> bool:
        """Apply the log's entries this node has not seen; whether there were any."""
        log = self.cluster.bus.log
        if self.seen >= len(log) or not self.alive:
            return False
        entries = log[self.seen :]
        self.seen = len(log)
        self.server.bus_entries(entries, self.now)
        self.collect_effects()
        return True


class ClusterNet:
    """``nodes`` servers on one MemoryBus, with one clock."""

    def __init__(
        self, nodes: int = 2, now: float = START, shared_store: bool = False, **sections: Any
    ) -> None:
        """``shared_store``: every node writes to one store (as with [postgres]), not to a
        store of its own."""
        self.now = now
        self.bus = MemoryBus()
        self._holding = 0
        self._pumping = False
        self.nodes: list[Node] = []
        shared = MemoryStore() if shared_store else None
        for number in range(1, nodes + 1):
            self.nodes.append(Node(self, number, shared, **sections))

    def __getitem__(self, i: int) -> Node:
        return self.nodes[i]

    # -------------------------------------------------------------- the bus

    def pump(self) -> None:
        """Sequence every queued op (node by node, in queue order) and deliver until the
        network is quiet; nothing while held."""
        if self._holding or self._pumping:
            return
        self._pumping = True
        try:
            while True:
                moved = False
                for node in self.nodes:
                    if node.queued and node.alive:
                        ops, node.queued = node.queued, []
                        for op in ops:
                            self.bus.append(op.entries)
                        moved = True
                for node in self.nodes:
                    moved = node.receive() or moved
                if not moved:
                    break
        finally:
            self._pumping = False

    @contextmanager
    def hold(self) -> Iterator[None]:
        """Ops made inside wait (each node keeps its own in order) until release()."""
        self._holding += 1
        try:
            yield
        finally:
            self._holding -= 1

    def release(self, order: Iterable[int] | None = None, seed: int | None = None) -> None:
        """Sequence the held ops: one op at a time from the nodes in ``order`` (indexes,
        repeated as needed), or interleaved at random with ``seed``; then settle."""
        queues = {i: list(node.queued) for i, node in enumerate(self.nodes)}
        for node in self.nodes:
            node.queued = []
        picks: list[int] = []
        if order is not None:
            picks = list(order)
        rng = random.Random(seed)
        while any(queues.values()):
            i = picks.pop(0) if picks else rng.choice([k for k, q in queues.items() if q])
            if queues[i]:
                self.bus.append(queues[i].pop(0).entries)
        self.pump()

    def kill(self, i: int) -> None:
        """Node ``i`` dies: it applies nothing more, and the bus declares it down."""
        node = self.nodes[i]
        node.alive = False
        node.queued = []
        self.bus.node_down(node.number, self.now)
        self.pump()

    # -------------------------------------------------------------- time

    def advance(self, seconds: float) -> None:
        self.now += seconds
        for node in self.nodes:
            node.now = self.now

    # -------------------------------------------------------------- clients

    def connect(self, i: int, kind: Kind = Kind.IRC, ip: str = "127.0.0.1") -> Conn:
        return self.nodes[i].connect(kind, ip)

    def register(self, i: int, nick: str, caps: Iterable[str] = (), ip: str = "127.0.0.1") -> Conn:
        """Register an IRC client on node ``i`` (its welcome burst read and cleared)."""
        conn = self.nodes[i].register(nick, caps, ip)
        return conn

    def users(self, i: int) -> dict[str, Client]:
        return {
            c.nick_cf: c for c in self.nodes[i].server.nicks.values() if c.registered and c.id >= 0
        }
