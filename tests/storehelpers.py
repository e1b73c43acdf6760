"""Store calls for the tests of the store, its thread (net/storage.py) and the commit
pipeline: numbered history events, a store call writing one, and an async wait."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from corehelpers import START

from salon.server.effects import StoreCall
from salon.store.base import HistoryEvent
from salon.store.sqlite import SQLiteStore


def event(i: int, target: str = "#c") -> HistoryEvent:
    return HistoryEvent(
        msgid=f"id{i}",
        time=START + i / 1000,
        target=target,
        command="PRIVMSG",
        source="alice!alice@localhost",
        account=None,
        params=(target, f"message {i}"),
    )


def append(e: HistoryEvent) -> StoreCall:
    """A store call writing one event, as a message commit does."""

    def write(store: Any) -> bool:
        store.append_history([e])
        return True

    return StoreCall(write)


async def until(condition: Any, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.005)


def said(i: int, target: str, text: str, when: float | None = None) -> HistoryEvent:
    """Message ``i`` at START + i (or ``when``), with a msgid as the server makes them:
    its millisecond first (store.base.msgid_time)."""
    at = START + i if when is None else when
    return event(i, target)._replace(msgid=msgid(i, at), params=(target, text), time=at)


def msgid(i: int, at: float | None = None) -> str:
    return f"{int((START + i if at is None else at) * 1000):011x}m{i}"


def fill(store: SQLiteStore, events: list[HistoryEvent]) -> None:
    with store.transaction():
        store.append_history(events)
