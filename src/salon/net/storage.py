"""The storage threads: the writer runs the core's store calls, one transaction per
batch; readers run its history reads beside it.

At most one write transaction is in flight. Calls that arrive meanwhile wait and go
together in the next one, so commits group naturally when the disk is slow ("group
commit"). A sender whose message waits is blocked by the core (see StoreCall), which
bounds the queue. Background calls (a purge's steps) run alone, when no other call
waits (or once they have waited BACKGROUND_PATIENCE), and the store may end one early when
a call arrives (``yield_to``).

Reads (``StoreCall.read``) go to READERS threads, each with a connection of its own
(``store.reader()``), so that a slow read never delays a commit and the deliveries that
wait for it. A client has at most one read in flight (its input waits for the answer), so
the read queue is bounded by the number of clients. A store without readers (in memory)
runs reads on the writer.

A store whose connection can be lost (PostgreSQL: ``reconnect`` and ``committed``) gets a
failed batch run again on a new connection, for ``store.retry_for`` seconds; calls that
arrive meanwhile wait. A batch whose COMMIT was sent but not answered is looked up
first, so that it is never stored twice: each message is stored once and delivered, or
refused when the time is up.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import queue
import threading
import time
from collections.abc import Callable
from typing import Any

from salon.errors import QueryTooBroad
from salon.server.effects import StoreCall
from salon.store.base import Store

log = logging.getLogger("salon.storage")

MAINTAIN_EVERY = 0.25  # seconds between looks at the indexing backlog (Storage._upkeep)
INDEX_EVERY = 1.0  # seconds a backlog smaller than FLOOD_ROWS may wait to be indexed
UPKEEP_SLICE = 1000  # rows indexed at a time while no call waits: a few milliseconds
FLOOD_ROWS = 2000  # a backlog this large is indexed at once
CHECKPOINT_EVERY = 0.5  # seconds between WAL checkpoints, on a thread of their own
READERS = 2  # reading threads: one slow reader leaves the other to everyone else
# Seconds a background call waits for a moment when no other call waits; past that it goes
# next anyway (a store that yields ends it after a bite), or steady traffic would starve it.
BACKGROUND_PATIENCE = 1.0


class StorageFailed:
    """The result a call gets when it raised: the core sees it as a failure, not a crash."""

    def __init__(self, exc: BaseException) -> None:
        # Without its traceback (logged already): the traceback's frames hold the list of
        # results that holds this, a cycle that would keep a failed batch alive until the
        # cyclic GC's next (rare) young collection.
        self.exc = exc.with_traceback(None)

    def __bool__(self) -> bool:
        return False


class CallAborted(Exception):
    """A store call failed and ended the store's transaction with it (``index``: its place
    in the batch): the batch runs again without it."""

    def __init__(self, index: int, exc: Exception) -> None:
        super().__init__(index)
        self.index = index
        self.exc = exc


class Outage:
    """Failures of one kind in a row (a full disk fails every transaction until space is
    freed): logged once when they start, with the error, and once when they end, with a
    count, so that a failing disk does not also fill the log."""

    def __init__(self, what: str) -> None:
        self.what = what
        self.failures = 0
        self.since = 0.0

    def failed(self, exc: BaseException) -> None:
        if not self.failures:
            self.since = time.monotonic()
            log.error("%s failing: %s: %s", self.what, type(exc).__name__, exc)
        self.failures += 1

    def worked(self) -> None:
        if self.failures:
            log.warning(
                "%s recovered after %d failures in %.1f s",
                self.what,
                self.failures,
                time.monotonic() - self.since,
            )
            self.failures = 0


class Storage:
    def __init__(
        self,
        store: Store,
        loop: asyncio.AbstractEventLoop,
        complete: Callable[[StoreCall[Any], Any], None],
        clock: Callable[[], float] = time.monotonic,
        readers: int = READERS,
        ordered_reads: bool = False,
    ) -> None:
        self.store = store
        self.loop = loop
        self.complete = complete
        self.clock = clock
        # One thread and a plain queue of jobs (no executor futures: the hand-over costs
        # a queue put one way and a call_soon_threadsafe the other, per transaction).
        self._jobs: queue.SimpleQueue[Callable[[], None] | None] = queue.SimpleQueue()
        self._worker = threading.Thread(target=self._work, name="salon-store", daemon=True)
        self._worker.start()
        self.waiting: list[StoreCall[Any]] = []
        # Background calls (StoreCall.background): run alone, when nothing else waits.
        self.background: list[StoreCall[Any]] = []
        self._background_since = 0.0
        self.outage = Outage("storage")
        # What the store raises when its storage fails (a full disk), as opposed to bugs.
        self._outages: tuple[type[BaseException], ...] = getattr(store, "OUTAGES", ())
        # A store whose connection can be lost (PostgreSQL): a new one until a deadline,
        # and whether the last transaction took effect after its COMMIT went unanswered.
        self._reconnect: Callable[[float], bool] | None = getattr(store, "reconnect", None)
        self._committed: Callable[[], bool] = getattr(store, "committed", lambda: False)
        # Whether the store's transaction is over after a call failed: PostgreSQL ends it at
        # the first error, and COMMIT would then roll back the calls before.
        self._aborted: Callable[[], bool] = getattr(store, "aborted", lambda: False)
        self._reads: queue.SimpleQueue[StoreCall[Any] | None] = queue.SimpleQueue()
        # ``ordered_reads``: a read sees every write submitted before it. A cluster node
        # with a store of its own stores another node's message after delivering it, so
        # what a client was delivered is in the history it asks for next only if its read
        # waits for those writes (never the other way round, and never for a background
        # call). Off, reads never wait for the writer at all.
        self._ordered = ordered_reads
        self._written = 0  # writes (not background) submitted
        self._done = 0  # writes finished
        self._parked: collections.deque[tuple[int, StoreCall[Any]]] = collections.deque()
        self._readers: list[threading.Thread] = []
        # Each reader opened here (None: the store has none), then used by its thread alone.
        open_reader: Callable[[], Any] | None = getattr(store, "reader", None)
        first = open_reader() if open_reader is not None else None
        if open_reader is not None and first is not None:
            for i in range(readers):
                reader = first if i == 0 else open_reader()
                thread = threading.Thread(
                    target=self._read, args=(reader,), name=f"salon-read-{i}", daemon=True
                )
                thread.start()
                self._readers.append(thread)
        self.busy = False
        self.transactions = 0
        self.calls = 0
        self._maintained = self._indexed = clock()
        # Indexing between transactions (SQLiteStore.maintain); None: nothing to do.
        self._index: Callable[[int], int] | None = getattr(store, "maintain", None)
        self._stop = threading.Event()
        self._checkpointer: threading.Thread | None = None
        elsewhere = getattr(store, "checkpoints_elsewhere", None)
        checkpoint = getattr(store, "checkpoint", None)
        yield_to = getattr(store, "yield_to", None)
        if yield_to is not None:
            # Read on the storage thread, set on the loop's: a background call sees the
            # calls that wait for it (a list's truth is read atomically).
            yield_to(lambda: bool(self.waiting))
        if elsewhere is not None and checkpoint is not None:
            elsewhere()
            self._checkpointer = threading.Thread(
                target=self._checkpoints, args=(checkpoint,), name="salon-checkpoint", daemon=True
            )
            self._checkpointer.start()

    def _work(self) -> None:
        """The storage thread: runs jobs until the None that stop() puts."""
        while True:
            job = self._jobs.get()
            if job is None:
                return
            job()

    def _stop_worker(self) -> None:
        if self._worker.is_alive():
            self._jobs.put(None)
            self._worker.join()
        for _ in self._readers:
            self._reads.put(None)
        for thread in self._readers:
            thread.join()
        self._readers = []

    def _read(self, reader: Any) -> None:
        """A reading thread: runs reads on its own connection until stop() puts None."""
        try:
            while True:
                call = self._reads.get()
                if call is None:
                    return
                result = self._read_one(reader, call)
                try:
                    self.loop.call_soon_threadsafe(self.complete, call, result)
                except RuntimeError:
                    return  # the loop is closed: shutting down
        finally:
            reader.close()

    def _read_one(self, reader: Any, call: StoreCall[Any]) -> Any:
        """A read's result. One whose connection turns out lost (the database restarted
        since the last read: ``reader.lost()``) runs once more, on a new connection."""
        lost: Callable[[], bool] = getattr(reader, "lost", lambda: False)
        for again in (True, False):
            try:
                with reader.transaction():
                    return call.call(reader)
            except QueryTooBroad:
                log.info("a history read ran out of its budget")
                return StorageFailed(QueryTooBroad("history"))
            except Exception as exc:
                if again and isinstance(exc, self._outages) and lost():
                    log.warning("history reader reconnecting: %s", exc)
                    continue
                log.exception("history read failed")
                return StorageFailed(exc)
        raise AssertionError("unreachable")  # pragma: no cover

    def _checkpoints(self, checkpoint: Callable[[], None]) -> None:
        """The checkpointing thread: the WAL goes back into the database file beside the
        writer, so that no commit (and no message waiting for it) waits for fsync."""
        checkpoints = Outage("checkpoint")
        while not self._stop.wait(CHECKPOINT_EVERY):
            try:
                checkpoint()
            except Exception as exc:
                checkpoints.failed(exc)
            else:
                checkpoints.worked()

    def _stop_checkpoints(self) -> None:
        self._stop.set()
        if self._checkpointer is not None:
            self._checkpointer.join()
            self._checkpointer = None

    def submit(self, calls: list[StoreCall[Any]]) -> None:
        for call in calls:
            if call.read and self._readers:
                if not self._ordered or self._done >= self._written:
                    self._reads.put(call)
                else:
                    self._parked.append((self._written, call))
            elif call.background:
                if not self.background:
                    self._background_since = self.clock()
                self.background.append(call)
            else:
                self.waiting.append(call)
                self._written += 1
        if not self.busy:
            self._start()

    def _start(self) -> None:
        """The calls that wait, in one transaction; when none does, or they have waited
        BACKGROUND_PATIENCE, the background ones, in one of their own (a message never
        shares a transaction with one)."""
        late = self.clock() - self._background_since > BACKGROUND_PATIENCE
        if self.background and (not self.waiting or late):
            batch = self.background
            self.background = []
        elif self.waiting:
            batch = self.waiting
            self.waiting = []
        else:
            return
        self.busy = True
        self._jobs.put(lambda: self._run_and_report(batch))

    def _run_and_report(self, batch: list[StoreCall[Any]]) -> None:
        """On the storage thread: run a batch, hand the results to the loop."""
        results = self._attempt(batch)
        try:
            self.loop.call_soon_threadsafe(self._finished, batch, results)
        except RuntimeError:
            pass  # the loop is closed: shutting down, drain() takes over

    def _attempt(self, batch: list[StoreCall[Any]]) -> list[Any]:
        """The results of a batch, run again on a new connection while the store can make
        one (within its ``retry_for``); each call's StorageFailed when the transaction
        failed (disk full, I/O error, the database away): nothing was committed then."""
        reconnect, committed = self._reconnect, self._committed
        deadline: float | None = None
        # The results of an attempt whose COMMIT was sent but went unanswered: it may have
        # taken effect, and is looked up before the batch runs again.
        unanswered: list[Any] | None = None
        # Calls that failed and ended the transaction: the batch runs again without them.
        failed: dict[int, StorageFailed] = {}
        while True:
            try:
                if unanswered is not None:
                    if committed():
                        self.outage.worked()
                        return unanswered
                    unanswered = None
                results: list[Any] = []
                self._run(batch, results, failed)
                self.outage.worked()
                return results
            except CallAborted as aborted:
                failed[aborted.index] = StorageFailed(aborted.exc)
            except Exception as exc:
                self.outage.failed(exc)
                if reconnect is None or not isinstance(exc, self._outages):
                    return [StorageFailed(exc)] * len(batch)
                if unanswered is None and len(results) == len(batch):
                    unanswered = results
                if deadline is None:
                    deadline = time.monotonic() + float(getattr(self.store, "retry_for", 0.0))
                if not reconnect(deadline):
                    return [StorageFailed(exc)] * len(batch)

    def _run(
        self,
        batch: list[StoreCall[Any]],
        results: list[Any] | None = None,
        failed: dict[int, StorageFailed] | None = None,
    ) -> list[Any]:
        """Run ``batch`` in one transaction, but the calls in ``failed`` (by index)."""
        if results is None:
            results = []
        aborted = self._aborted
        started = time.perf_counter()
        with self.store.transaction():
            for i, call in enumerate(batch):
                if failed and i in failed:
                    results.append(failed[i])
                    continue
                try:
                    results.append(call.call(self.store))
                except self._outages:
                    raise  # the storage fails (a full disk): the whole batch with it
                except Exception as exc:
                    log.exception("store call failed")
                    if aborted():
                        raise CallAborted(i, exc) from None
                    results.append(StorageFailed(exc))
        elapsed = time.perf_counter() - started
        if elapsed > 0.5:
            log.warning("slow storage: %d calls took %.3f s", len(batch), elapsed)
        return results

    def _finished(self, batch: list[StoreCall[Any]], results: list[Any]) -> None:
        self.busy = False
        self.transactions += 1
        self.calls += len(batch)
        for call, result in zip(batch, results, strict=True):
            self.complete(call, result)
        if batch and not batch[0].background:  # (a batch is of one kind: see _start)
            self._done += len(batch)
            parked = self._parked
            while parked and parked[0][0] <= self._done:
                self._reads.put(parked.popleft()[1])
        if self.clock() - self._maintained > MAINTAIN_EVERY:
            # Upkeep after the batch's results are out (a message never waits for it), and
            # under steady load too, when calls are waiting: they start when it is done.
            self._maintain()
        else:
            self._start()

    def _maintain(self) -> None:
        """Upkeep (indexing) on the storage thread, then the calls that wait, if any."""
        self._maintained = self.clock()
        if self._index is None:
            self._start()
            return
        self.busy = True
        self._jobs.put(self._upkeep_and_report)

    def _upkeep_and_report(self) -> None:
        self._upkeep()
        try:
            self.loop.call_soon_threadsafe(self._upkept)
        except RuntimeError:
            pass  # the loop is closed: shutting down

    def _upkept(self) -> None:
        self.busy = False
        self._start()

    def _upkeep(self) -> None:
        """Index what was stored since the last upkeep (on the storage thread).

        Indexing costs per page touched, so it is cheap per row only in big batches, and
        a slice's transaction delays the call that arrives while it runs. A backlog of
        FLOOD_ROWS or more (thousands of messages a second) is indexed in one go. A smaller
        one waits until it is INDEX_EVERY old, then goes in slices of UPKEEP_SLICE rows
        while no call waits: small slices often held up more messages than one slice a
        second (docs/BENCHMARKS.md, "Comments that held figures").
        """
        maintain = self._index
        if maintain is None:
            return
        try:
            left = maintain(0)  # how many rows wait
            if not left or (left < FLOOD_ROWS and self.clock() - self._indexed < INDEX_EVERY):
                return
            self._indexed = self.clock()
            left = maintain(left if left >= FLOOD_ROWS else UPKEEP_SLICE)
            while left >= FLOOD_ROWS or (left and not self.waiting):
                left = maintain(left if left >= FLOOD_ROWS else UPKEEP_SLICE)
        except Exception:
            log.exception("storage maintenance failed")

    def stop(self) -> None:
        """Stop the storage and checkpoint threads (after the job in hand)."""
        self._stop_checkpoints()
        self._stop_worker()

    def drain(self, timeout: float = 5.0) -> None:
        """Run what is still waiting, synchronously (at shutdown)."""
        self.stop()
        if self.waiting or self.background:
            batch, self.waiting, self.background = self.waiting + self.background, [], []
            for call, result in zip(batch, self._attempt(batch), strict=True):
                self.complete(call, result)

    def close(self) -> None:
        self.stop()
        self.store.close()
