"""How long a message's commit waits during a retention purge, in-process (issue 17, point 5).

``python -m bench.purge_latency --db DIR/salon.db`` runs salon's storage threads
(``salon.net.storage.Storage``, with its checkpointer) on a copy of a data set (the database
is modified: purge a copy, e.g. of a ``bench.history`` data set), submits one private
message every ``1/--rate`` s and one purge step of ``retention_days = --days`` every
``--tick`` s as ``Server.later`` does, and prints the time from each message's submission
to its commit (p50, p90, p99, max) and the events removed. No sockets and no event loop of
the server's: only what the storage thread makes a message wait for. ``--target CONV``
deletes that conversation's whole history instead (as an emptied private channel's is:
``history.forget_channel``). It also prints the WAL file's largest size (looked at every
step) and the database's pages and free pages before and after: pages the purge frees
are free pages, which the messages stored after it take before the file grows. ``--every S``
also prints a time line, a row per S seconds: the messages' waits, the steps and events
removed, and the checkpoints (on their thread) with the longest, to see which part of a
long purge makes messages wait. With code from before
background store calls (``StoreCall.background``) the step goes in with the messages, as
the server then did; run the two alternately (``PYTHONPATH=<other>/src``).
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import dataclasses
import math
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from salon.net.storage import Storage
from salon.server.effects import StoreCall
from salon.store.base import HistoryEvent, dm_key
from salon.store.sqlite import SQLiteStore


def quantile(values: Sequence[float], q: float) -> float:
    return sorted(values)[min(len(values) - 1, int(q * len(values)))]


def pages(store: SQLiteStore) -> tuple[int, int]:
    """(pages in the database file, free pages among them)."""
    count = store.conn.execute("PRAGMA page_count").fetchone()[0]
    free = store.conn.execute("PRAGMA freelist_count").fetchone()[0]
    return int(count), int(free)


def wal_bytes(db: Path) -> int:
    try:
        return os.path.getsize(f"{db}-wal")
    except OSError:
        return 0


async def drive(
    store: SQLiteStore,
    seconds: float,
    rate: float,
    tick: float,
    days: float,
    target: str | None = None,
    line: Timeline | None = None,
) -> tuple[list[float], int, int]:
    """(each message's wait in seconds, events removed, the WAL's largest size); ``line``
    gets each message, step and checkpoint as it ends."""
    loop = asyncio.get_running_loop()
    background = "background" in {f.name for f in dataclasses.fields(StoreCall)}
    before = math.inf if target is not None else time.time() - days * 86400
    wal = 0
    sent: dict[int, float] = {}
    latencies: list[float] = []
    state: dict[str, Any] = {"after": "", "busy": False, "removed": 0}
    keep: list[StoreCall[Any]] = []

    def done(call: StoreCall[Any], result: Any) -> None:
        if id(call) in sent:
            at = sent.pop(id(call))
            latencies.append(time.perf_counter() - at)
            if line is not None:
                line.messages.append((at, latencies[-1]))
            return
        state["busy"] = False
        if hasattr(result, "removed"):
            state["removed"] += result.removed
            if line is not None:
                line.steps.append((time.perf_counter(), result.removed))
            # None: the purge is over (a conversation's history is all gone).
            state["after"] = result.next if target is not None else result.next or ""

    if line is not None:
        line.time(store)
    storage = Storage(store, loop, done)
    key = dm_key("lat_a", "lat_b")
    n = 0
    end = time.perf_counter() + seconds
    next_message = next_tick = time.perf_counter()
    try:
        while time.perf_counter() < end:
            now = time.perf_counter()
            if now >= next_message:
                n += 1
                event = HistoryEvent(
                    f"{int(time.time() * 1000):011x}beef{n:x}", time.time(), key, "PRIVMSG",
                    "lat_a!~a@host", None, ("lat_b", f"message {n} of the conversation"),
                    (), "", "lat_a",
                )  # fmt: skip
                call: StoreCall[Any] = StoreCall(lambda s, e=event: s.append_history([e]))
                keep.append(call)
                sent[id(call)] = now
                storage.submit([call])
                next_message += 1 / rate
            if now >= next_tick:
                next_tick += tick
                wal = max(wal, wal_bytes(store.path))
                if not state["busy"] and state["after"] is not None:
                    state["busy"] = True
                    after = state["after"]
                    options = {"background": True} if background else {}
                    step = StoreCall(
                        lambda s, a=after: s.purge_step(before, target, (), a), **options
                    )
                    storage.submit([step])
            await asyncio.sleep(max(0.0, min(next_message, next_tick) - time.perf_counter()))
        while sent:
            await asyncio.sleep(0.01)
    finally:
        storage.stop()
    return latencies, int(state["removed"]), wal


@dataclasses.dataclass
class Timeline:
    """What ended when, in ``time.perf_counter()`` seconds: each message (sent at, its
    wait), each step (ended at, events removed), each checkpoint (began at, its length)."""

    messages: list[tuple[float, float]] = dataclasses.field(default_factory=list)
    steps: list[tuple[float, int]] = dataclasses.field(default_factory=list)
    checkpoints: list[tuple[float, float]] = dataclasses.field(default_factory=list)

    def time(self, store: SQLiteStore) -> None:
        """Time the store's checkpoints (the storage's checkpointing thread calls them)."""
        plain = store.checkpoint

        def checkpoint() -> None:
            began = time.perf_counter()
            try:
                plain()
            finally:
                self.checkpoints.append((began, time.perf_counter() - began))

        store.checkpoint = checkpoint  # type: ignore[method-assign]

    def rows(self, every: float) -> list[str]:
        """A row per ``every`` seconds from the first message."""
        if not self.messages:
            return []
        start = self.messages[0][0]
        # Each list sorted into its windows once (a whole purge is hundreds of thousands
        # of messages and hundreds of windows).
        waits: collections.defaultdict[int, list[float]] = collections.defaultdict(list)
        steps: collections.defaultdict[int, list[int]] = collections.defaultdict(list)
        ckpts: collections.defaultdict[int, list[float]] = collections.defaultdict(list)
        for at, wait in self.messages:
            waits[int((at - start) // every)].append(wait * 1000)
        for at, removed in self.steps:
            steps[int((at - start) // every)].append(removed)
        for at, took in self.checkpoints:
            ckpts[int((at - start) // every)].append(took * 1000)
        out = [
            "from s | messages | wait p99 ms | max ms | steps | events removed "
            "| checkpoints | longest ms"
        ]
        for w in range(max(waits) + 1):
            head = f"{w * every:6.0f} | {len(waits[w])}"
            tail = f"{len(steps[w])} | {sum(steps[w])} | {len(ckpts[w])} | "
            tail += f"{max(ckpts[w], default=0.0):.1f}"
            if not waits[w]:
                out.append(f"{head} | | | {tail}")
                continue
            out.append(f"{head} | {quantile(waits[w], 0.99):.2f} | {max(waits[w]):.1f} | {tail}")
        return out


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.purge_latency", description=__doc__)
    ap.add_argument("--db", type=Path, required=True, help="a copy of a data set's salon.db")
    ap.add_argument("--seconds", type=float, default=30.0)
    ap.add_argument("--rate", type=float, default=100.0, help="messages a second (100)")
    ap.add_argument("--tick", type=float, default=0.1, help="seconds between steps (0.1)")
    ap.add_argument("--days", type=float, default=365.0, help="retention_days (365)")
    ap.add_argument("--target", help="delete this conversation's whole history instead")
    ap.add_argument("--every", type=float, help="also a time line, a row per EVERY seconds")
    args = ap.parse_args(argv)
    if not args.db.exists():
        ap.error(f"--db: no such file: {args.db}")
    if args.every is not None and args.every <= 0:
        ap.error("--every: must be more than 0")
    line = None if args.every is None else Timeline()
    store = SQLiteStore(args.db)
    try:
        first = pages(store)
        latencies, removed, wal = asyncio.run(
            drive(store, args.seconds, args.rate, args.tick, args.days, args.target, line)
        )
        last = pages(store)
    finally:
        store.close()
    ms = [v * 1000 for v in latencies]
    print(
        f"{len(ms)} messages: p50 {quantile(ms, 0.5):.2f} ms, p90 {quantile(ms, 0.9):.2f}, "
        f"p99 {quantile(ms, 0.99):.2f}, max {max(ms):.1f}; {removed} events removed; "
        f"WAL at most {wal / 2**20:.1f} MiB; pages {first[0]} ({first[1]} free) before, "
        f"{last[0]} ({last[1]} free) after; load average {os.getloadavg()[0]:.1f}"
    )
    if line is not None:
        print("\n".join(line.rows(args.every)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
