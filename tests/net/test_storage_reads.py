"""The store thread (net/storage.py) at scale (issue 17): reads beside the writer, a failing disk said once."""

from __future__ import annotations

import asyncio
import logging
import threading
from pathlib import Path
from typing import Any

import pytest
from storehelpers import append, event, fill, said, until

from salon.net.storage import Storage, StorageFailed
from salon.server.effects import StoreCall
from salon.store.base import HistoryQuery
from salon.store.sqlite import SQLiteStore


def write_then_read(tmp_path: Path, ordered_reads: bool) -> tuple[list[str], bool]:
    """A write held inside its transaction, then a read of the same conversation: what the
    read found, and whether it answered while the write was still held."""
    store = SQLiteStore(tmp_path / "salon.db")
    fill(store, [said(1, "#c", "before")])
    inside, release = threading.Event(), threading.Event()

    def slow_write(s: Any) -> bool:
        s.append_history([said(2, "#c", "uncommitted")])
        inside.set()
        assert release.wait(10)
        return True

    read = StoreCall(lambda s: s.history(HistoryQuery("#c", limit=10)), read=True)
    results: dict[int, Any] = {}
    early: list[bool] = []

    async def main() -> None:
        loop = asyncio.get_running_loop()
        done = results.__setitem__
        storage = Storage(
            store, loop, lambda call, r: done(id(call), r), ordered_reads=ordered_reads
        )
        try:
            write = StoreCall(slow_write)
            storage.submit([write])
            await until(inside.is_set)
            storage.submit([read])
            if ordered_reads:
                await asyncio.sleep(0.2)
            else:
                await until(lambda: id(read) in results)  # while the writer still waits
            early.append(id(read) in results)
            assert id(write) not in results
            release.set()
            await until(lambda: id(write) in results and id(read) in results)
        finally:
            release.set()
            storage.stop()

    asyncio.run(main())
    store.close()
    return [e.text for e in results[id(read)]], early[0]


def test_a_read_does_not_wait_for_the_writer(tmp_path: Path) -> None:
    """A read runs on a reader of its own while the writer is inside a transaction: it
    answers with what was committed before, and the commit is not held up by it."""
    texts, early = write_then_read(tmp_path, ordered_reads=False)
    assert early
    assert texts == ["before"]


def test_a_held_read_does_not_delay_a_commit(tmp_path: Path) -> None:
    """The other way round (issue 17, point 1): a read held open on a reader, inside its
    snapshot, while writes are committed one after another on the writer. None waits
    for the read, and the read, let go, still answers from its snapshot."""
    store = SQLiteStore(tmp_path / "salon.db")
    fill(store, [said(1, "#c", "before")])
    inside, release = threading.Event(), threading.Event()

    def slow_read(s: Any) -> list[str]:
        first = [e.text for e in s.history(HistoryQuery("#c", limit=10))]  # the snapshot
        inside.set()
        assert release.wait(10)
        return first + [e.text for e in s.history(HistoryQuery("#c", limit=10))]

    read = StoreCall(slow_read, read=True)
    results: dict[int, Any] = {}

    async def main() -> None:
        loop = asyncio.get_running_loop()
        storage = Storage(store, loop, lambda call, r: results.__setitem__(id(call), r))
        try:
            storage.submit([read])
            await until(inside.is_set)
            for i in range(2, 7):
                write = append(said(i, "#c", f"while reading {i}"))
                storage.submit([write])
                await until(lambda w=write: id(w) in results, timeout=2)  # not the read's 10 s
                assert results[id(write)] is True
            assert id(read) not in results
            # Committed: another connection sees every write while the read is still held.
            other = store.reader()
            assert other is not None
            with other.transaction():
                assert len(other.history(HistoryQuery("#c", limit=10))) == 6
            other.close()
            release.set()
            await until(lambda: id(read) in results)
        finally:
            release.set()
            storage.stop()

    asyncio.run(main())
    store.close()
    assert results[id(read)] == ["before", "before"]


def test_an_ordered_read_waits_for_the_writes_before_it(tmp_path: Path) -> None:
    """``ordered_reads`` (a cluster node with a store of its own): a read submitted after a
    write answers once that write is committed, and sees it."""
    texts, early = write_then_read(tmp_path, ordered_reads=True)
    assert not early  # it waits for the write
    assert texts == ["before", "uncommitted"]


class Held:
    """A write that holds the writer inside its transaction until ``release`` is set."""

    def __init__(self) -> None:
        self.inside, self.release = threading.Event(), threading.Event()

    def __call__(self, s: Any) -> bool:
        self.inside.set()
        assert self.release.wait(10)
        return True


def test_a_background_call_runs_alone_and_sees_the_calls_that_wait(tmp_path: Path) -> None:
    """A background call (a purge's step) never shares a transaction with a write that
    waits; while it runs, the store sees that a write waits (and may end it early)."""
    store = SQLiteStore(tmp_path / "salon.db")
    slow_write = Held()
    inside, release = slow_write.inside, slow_write.release
    seen: list[bool] = []

    def background(s: Any) -> bool:
        seen.append(s._waiting())
        inside.set()
        assert release.wait(10)
        seen.append(s._waiting())
        return True

    results: dict[int, Any] = {}

    async def main() -> None:
        loop = asyncio.get_running_loop()
        storage = Storage(store, loop, lambda call, result: results.__setitem__(id(call), result))
        try:
            first, purge, second = (
                StoreCall(slow_write),
                StoreCall(background, background=True),
                append(event(1)),
            )
            storage.submit([first])
            await until(inside.is_set)
            inside.clear()
            storage.submit([purge, second])  # both wait: the write goes first
            release.set()
            await until(lambda: id(purge) in results)
            assert id(second) in results
            assert storage.transactions == 3
            release.clear()
            inside.clear()
            storage.submit([purge])
            await until(inside.is_set)
            storage.submit([second])
            await asyncio.sleep(0.01)
            release.set()
            await until(lambda: storage.transactions == 5)
        finally:
            release.set()
            storage.stop()

    asyncio.run(main())
    assert seen == [False, False, False, True]
    store.close()


def test_a_background_call_waits_for_a_quiet_moment_but_not_for_ever(tmp_path: Path) -> None:
    """Calls that wait go before a background one, unless it has waited
    BACKGROUND_PATIENCE: under steady traffic (always a call waiting) it would never run."""
    from salon.net import storage as storage_module

    store = SQLiteStore(tmp_path / "salon.db")
    now = [0.0]
    hold = Held()
    inside, release = hold.inside, hold.release
    order: list[str] = []

    def named(name: str, call: StoreCall[Any]) -> StoreCall[Any]:
        names[id(call)] = name
        return call

    names: dict[int, str] = {}
    seen: list[bool] = []  # what each step saw: a write waiting for the writer

    def done(name: str, result: Any) -> None:
        order.append(name)
        if name == "step":
            seen.append(result)

    async def main() -> None:
        loop = asyncio.get_running_loop()
        storage = Storage(
            store, loop, lambda call, result: done(names[id(call)], result), clock=lambda: now[0]
        )
        try:
            for late in (0.0, storage_module.BACKGROUND_PATIENCE + 1):
                inside.clear()
                release.clear()
                storage.submit([named("hold", StoreCall(hold))])
                await until(inside.is_set)
                step = StoreCall(lambda s: s._waiting(), background=True)
                storage.submit([named("step", step), named("write", append(event(1)))])
                now[0] += late
                release.set()
                await until(lambda: len(order) % 3 == 0 and not storage.busy)
        finally:
            release.set()
            storage.stop()

    asyncio.run(main())
    assert order == ["hold", "write", "step", "hold", "step", "write"]
    assert seen == [False, True]
    store.close()


def test_a_full_disk_is_logged_once_and_its_end_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    store = SQLiteStore(tmp_path / "salon.db")
    pages = store.conn.execute("PRAGMA page_count").fetchone()[0]
    results: list[Any] = []

    async def main() -> None:
        loop = asyncio.get_running_loop()
        storage = Storage(store, loop, lambda call, result: results.append(result))
        try:
            store.conn.execute(f"PRAGMA max_page_count = {pages}")  # SQLite's own "disk full"
            for i in range(1, 21):
                storage.submit([append(event(i)._replace(params=("#c", "x" * 5000)))])
                await until(lambda n=i: len(results) == n and not storage.busy)
            store.conn.execute("PRAGMA max_page_count = 1073741823")
            storage.submit([append(event(99))])
            await until(lambda: len(results) == 21 and not storage.busy)
        finally:
            storage.stop()

    with caplog.at_level(logging.INFO, logger="salon.storage"):
        asyncio.run(main())
    assert all(isinstance(r, StorageFailed) for r in results[:20]) and results[20] is True
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 2, lines
    assert lines[0].startswith("storage failing: OperationalError: database or disk is full")
    assert lines[1].startswith("storage recovered after 20 failures")
    assert not any(r.exc_info for r in caplog.records)
    store.close()
