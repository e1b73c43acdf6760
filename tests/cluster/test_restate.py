"""Issue 19 point 7 on real processes, what the restatement after Redis lost its data
must carry besides the users and channels (tests/cluster/test_redis_restart.py): each
``salon serve`` node has its own SQLite data directory, on a redis-server of the test's
own that comes back empty."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import LineClient, SalonProcess

from tests.cluster.test_crossnode_loopback import register_channel, settings_hold, synced
from tests.cluster.test_redis_restart import running_redis
from tests.nodehelpers import opers

pytestmark = pytest.mark.e2e

Start = Callable[..., SalonProcess]


@pytest.fixture
def empty_redis() -> Iterator[Any]:
    """A redis-server of this test alone, without persistence: it comes back empty."""
    yield from running_redis(False)


@pytest.fixture
def nodes(tmp_path: Path, empty_redis: Any) -> Iterator[Start]:
    started: list[SalonProcess] = []

    def factory(name: str, **sections: Any) -> SalonProcess:
        sub = tmp_path / f"{name}{len(started)}"
        sub.mkdir()
        cluster = {"redis": empty_redis.url, "node": name, "prefix": "p"}
        node = SalonProcess(
            sub,
            cluster=cluster,
            accounts={"registration_throttle": 0},
            opers=opers(),  # type: ignore[arg-type]
            **sections,
        )
        started.append(node.start())
        return node

    yield factory
    for node in started:
        node.stop()


def restart_empty(redis: Any, *watchers: tuple[SalonProcess, LineClient]) -> None:
    """Stop Redis and start it again empty; return once every node restated (its log
    says so) and its PONG, which follows the round of restatements, came back."""
    redis.halt()
    redis.start(redis.port)
    for node, client in watchers:
        node.wait_log("Redis lost data", timeout=15)
        synced(client)


def test_a_node_started_after_redis_came_back_empty_knows_accounts_and_registrations(
    nodes: Start, empty_redis: Any
) -> None:
    """An account, a ChanServ registration with its settings (AMODE, TOPICLOCK) and a
    K-line made before Redis lost its data hold on a node started afterwards on a fresh
    data directory: SCRAM login, ChanServ INFO, the access list's op, the topic lock."""
    a, b = nodes("a"), nodes("b")
    alice = register_channel(a, "#reg")
    alice.send("PART #reg")  # (an empty registered channel: no node lists it in its users')
    alice.expect(r" PART #reg")
    root = LineClient(b.irc_port)
    root.register("root")
    root.send("OPER root pw")
    root.expect(r" 381 ")
    root.send("KLINE *@10.9.9.9 :spam")
    root.expect(r"K-line added")
    synced(alice)
    restart_empty(empty_redis, (a, alice), (b, root))
    c = nodes("c")
    settings_hold(c, "#reg")
    root_c = LineClient(c.irc_port)
    root_c.register("root2")
    root_c.send("OPER root pw")
    root_c.expect(r" 381 ")
    root_c.send("KLINE LIST")
    root_c.expect(r"K-line \*@10\.9\.9\.9 ")
