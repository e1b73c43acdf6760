"""The bus's turn calls on a real redis-server (salon.net.bus): a long queue of entries
goes in several ``salon_turn`` calls of TURN_CHARS at most, in order; after Redis lost
its data, the entries before the round of restatements may take several calls, and what
waits for the round still waits until it is over."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from salon.config import ClusterSection
from salon.net.bus import TURN_CHARS, RedisBus
from tests.cluster.test_redis_restart import running_redis

pytestmark = pytest.mark.e2e

ENTRY = 1000  # characters of each entry the tests send
COUNT = 3 * TURN_CHARS // ENTRY  # entries enough for three calls


@pytest.fixture
def empty_redis() -> Iterator[Any]:
    """A redis-server of this test alone, without persistence: it comes back empty."""
    yield from running_redis(False)


def entries(tag: str, count: int = COUNT) -> list[str]:
    return [f"{tag}{i:08d}".ljust(ENTRY, "x") for i in range(count)]


def log_turns(url: str, prefix: str) -> list[list[str]]:
    """The log's stream entries, each as the entries of one salon_turn call."""
    import redis

    conn = redis.Redis.from_url(url, decode_responses=True)
    try:
        return [fields["e"].split("\n") for _id, fields in conn.xrange(f"{prefix}:log")]
    finally:
        conn.close()


async def until(test: Callable[[], bool], timeout: float = 20.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not test():
        assert loop.time() < deadline, "timed out"
        await asyncio.sleep(0.05)


def test_a_long_queue_goes_in_calls_of_bounded_size(redis_server: Any, redis_prefix: str) -> None:
    """Entries sent at once (a restatement of a large store) reach the log in order, in
    stream entries of TURN_CHARS at most; an entry longer than that goes alone."""
    cfg = ClusterSection(redis=redis_server.url, node="t", prefix=redis_prefix)
    sent = [*entries("a"), "b" * (TURN_CHARS + 10), *entries("c", 10)]

    async def run() -> None:
        bus = RedisBus(cfg, lambda got: None, lambda reason: None)
        await bus.connect()
        try:
            bus.send(sent)
            await bus.flush()
        finally:
            await bus.close(clean=False)

    asyncio.run(run())
    turns = log_turns(redis_server.url, redis_prefix)
    assert [e for turn in turns for e in turn] == sent
    assert len(turns) >= 4
    for turn in turns:
        assert len(turn) == 1 or sum(len(e) + 1 for e in turn) <= TURN_CHARS


def test_entries_before_the_round_take_several_calls_and_the_rest_waits(
    empty_redis: Any,
) -> None:
    """Redis comes back empty: what the node sends before the round of restatements (its
    restatement of a large store) goes in several calls, and what it holds for after the
    round goes only once the round is over."""
    cfg = ClusterSection(redis=empty_redis.url, node="t", prefix="q", node_ttl=30.0)
    first, later = entries("first"), entries("later", 3)
    done = [False]

    async def run() -> None:
        bus = RedisBus(
            cfg,
            lambda got: None,
            lambda reason: None,
            on_lost=lambda sent, read: (first, later),
            round_done=lambda: done[0],
        )
        await bus.connect()
        bus.start()
        try:
            bus.send(["before"])
            await bus.flush()
            empty_redis.halt()
            empty_redis.start(empty_redis.port)
            await until(lambda: bus.recoveries > 0)

            def sent() -> list[str]:
                return [e for t in log_turns(empty_redis.url, "q") for e in t]

            await until(lambda: len(sent()) >= len(first))
            await asyncio.sleep(0.5)
            assert sent() == first
            assert len(log_turns(empty_redis.url, "q")) >= 3
            done[0] = True
            await until(lambda: len(sent()) == len(first) + len(later))
            assert sent() == [*first, *later]
        finally:
            await bus.close(clean=False)

    asyncio.run(run())
