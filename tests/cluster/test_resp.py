"""salon.net.resp, the bare connection of the bus's turn calls and reader, on a real
redis-server: replies, error replies, a connection made again, bytes kept as they were."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from redis.exceptions import ConnectionError, ResponseError

from salon.net.resp import Link, pack


def test_pack_is_resp() -> None:
    assert pack(("XADD", "k", 5)) == b"*3\r\n$4\r\nXADD\r\n$1\r\nk\r\n$1\r\n5\r\n"


def test_a_link_calls_reconnects_and_keeps_bytes(redis_server: Any, redis_prefix: str) -> None:
    async def run() -> None:
        link = Link(redis_server.url)
        key = f"{redis_prefix}:s"
        # A byte that is no UTF-8 (surrogate-escaped) goes and comes back as it was.
        text = "é\udcff\x00 x"
        entry_id = await link.call("XADD", key, "*", "e", text)
        answer = await link.call("XREAD", "COUNT", 10, "STREAMS", key, "0-0")
        assert answer == [[key, [[entry_id, ["e", text]]]]]
        assert await link.call("XREAD", "COUNT", 1, "BLOCK", 10, "STREAMS", key, "$") is None
        with pytest.raises(ResponseError, match="Function not found"):
            await link.call("FCALL", "no_such_function", 0)
        # Redis drops the connection: the call in flight fails, the next one reconnects.
        other = Link(redis_server.url)
        mine = await link.call("CLIENT", "ID")
        waiting = asyncio.ensure_future(link.call("BLPOP", f"{redis_prefix}:none", 5))
        await asyncio.sleep(0.1)
        assert await other.call("CLIENT", "KILL", "ID", mine) == 1
        with pytest.raises(ConnectionError):
            await waiting
        assert await link.call("PING") == "PONG"
        link.close()
        other.close()

    asyncio.run(run())
