"""A round-robin TCP forwarder: connection 1 goes to the first target, 2 to the second,
3 to the first again... It lets a client that knows one address (irctest, which connects
every client of a test to one port) talk to several cluster nodes in turn; see
``tests/irctest_salon.py``'s two-node mode.

It runs an asyncio loop in a thread of its own, so a program with blocking sockets (irctest)
can use it. Bytes are passed on as they come, with the half-closes of either side: when a
node closes a connection (after ``ERROR``), the client sees end-of-file as if connected to
it directly.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import threading
from collections.abc import Sequence

READ_SIZE = 65536
START_TIMEOUT = 30.0  # seconds for the listeners to be up


class RoundRobin:
    """Listen on each of ``listens`` (host, port, targets); every accepted connection, on
    any of them, takes the next number of one shared count, and goes to its listener's
    target at that number modulo the number of targets."""

    def __init__(self, listens: Sequence[tuple[str, int, Sequence[tuple[str, int]]]]) -> None:
        self.listens = [(host, port, list(targets)) for host, port, targets in listens]
        self._count = itertools.count()
        self.routed: list[tuple[int, tuple[str, int]]] = []  # (listen port, target) in order
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._servers: list[asyncio.Server] = []
        self._tasks: set[asyncio.Task[None]] = set()
        self._stopped: asyncio.Event | None = None
        self._error: BaseException | None = None

    def start(self) -> RoundRobin:
        ready = threading.Event()
        self._thread = threading.Thread(
            target=self._run, args=(ready,), name="roundrobin", daemon=True
        )
        self._thread.start()
        if not ready.wait(START_TIMEOUT):
            raise RuntimeError("the round-robin forwarder did not start")
        if self._error is not None:
            self.stop()
            raise RuntimeError(f"the round-robin forwarder cannot listen: {self._error}")
        return self

    def _run(self, ready: threading.Event) -> None:
        loop = self._loop = asyncio.new_event_loop()
        try:
            loop.run_until_complete(self._main(ready))
        finally:
            loop.close()

    async def _main(self, ready: threading.Event) -> None:
        self._stopped = asyncio.Event()
        try:
            for host, port, targets in self.listens:
                self._servers.append(
                    await asyncio.start_server(
                        lambda r, w, p=port, t=targets: self._accept(r, w, p, t),  # type: ignore[misc]
                        host,
                        port,
                        reuse_address=True,
                    )
                )
        except OSError as exc:
            self._error = exc
            ready.set()
            return
        ready.set()
        await self._stopped.wait()
        for server in self._servers:
            server.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for server in self._servers:
            await server.wait_closed()

    def _accept(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        port: int,
        targets: list[tuple[str, int]],
    ) -> None:
        # The number is taken at once, in the order the connections were accepted.
        target = targets[next(self._count) % len(targets)]
        self.routed.append((port, target))
        task = asyncio.ensure_future(self._forward(reader, writer, target))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _forward(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        target: tuple[str, int],
    ) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection(*target)
        except OSError:
            writer.transport.abort()
            return
        try:
            await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))
        finally:
            for w in (writer, up_writer):
                w.transport.abort()

    def stop(self) -> None:
        loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            return
        with contextlib.suppress(RuntimeError):  # the loop has ended already
            loop.call_soon_threadsafe(self._set_stopped)
        thread.join(START_TIMEOUT)
        self._thread = None

    def _set_stopped(self) -> None:
        if self._stopped is not None:
            self._stopped.set()


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Copy until end-of-file, then half-close the other side (or close it, when a side
    was reset)."""
    try:
        while data := await reader.read(READ_SIZE):
            writer.write(data)
            await writer.drain()
        if writer.can_write_eof():
            writer.write_eof()
    except OSError:
        writer.transport.abort()
