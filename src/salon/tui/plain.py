"""``salon chat --plain``: no TUI. Lines from stdin are sent, one line per event is printed.

Works in pipes: ``echo hello | salon chat --plain --nick bot '#lobby'`` joins, sends,
and after the end of stdin flushes, quits and exits 0. Typing ``bye`` leaves too.
"""

from __future__ import annotations

import asyncio
import sys
import threading
from datetime import tzinfo
from typing import TextIO

from salon.client import Buffer, Session
from salon.client.model import (
    Event,
    Fatal,
    Focus,
    Joined,
    JoinFailed,
    LineAdded,
    QuitRequested,
    Registered,
)
from salon.tui.connection import AskTrust, Connection, Target
from salon.tui.format import plain

_EOF = None


class PlainClient:
    def __init__(
        self,
        session: Session,
        target: Target,
        *,
        stdin: TextIO,
        stdout: TextIO,
        stderr: TextIO,
        colour: bool,
        pins: dict[str, str],
        ask_trust: AskTrust | None = None,
        save_pin: object = None,
        tz: tzinfo | None = None,
        backoff: tuple[float, float] = (1.0, 60.0),
    ) -> None:
        self.session = session
        self.stdin = stdin
        self.stdout = stdout
        self.stderr = stderr
        self.colour = colour
        self.tz = tz
        self.current = ""  # where typed lines go
        self.waiting = {session.key(c) for c in session.settings.channels}
        self.ready = asyncio.Event()
        self._reader: threading.Thread | None = None
        self.connection = Connection(
            session,
            target,
            self.on_events,
            pins=pins,
            ask_trust=ask_trust,
            save_pin=save_pin,  # type: ignore[arg-type]
            backoff=backoff,
        )

    async def run(self) -> int:
        lines: asyncio.Queue[str | None] = asyncio.Queue()
        loop = asyncio.get_running_loop()

        def read() -> None:
            try:
                for line in self.stdin:
                    loop.call_soon_threadsafe(lines.put_nowait, line)
                loop.call_soon_threadsafe(lines.put_nowait, _EOF)
            except (RuntimeError, OSError, ValueError):
                pass  # the loop is gone: we are exiting

        self._reader = threading.Thread(target=read, name="salon-stdin", daemon=True)
        conn_task = asyncio.create_task(self.connection.run())
        feed_task = asyncio.create_task(self._feed(lines))
        done, _ = await asyncio.wait({conn_task, feed_task}, return_when=asyncio.FIRST_COMPLETED)
        if feed_task in done and not conn_task.done():
            fatal = await conn_task
        else:
            feed_task.cancel()
            fatal = conn_task.result()
        if fatal:
            print(f"salon chat: {fatal}", file=self.stderr)
            return 1
        return 0

    async def _feed(self, lines: asyncio.Queue[str | None]) -> None:
        # stdin is read only once we are in: a certificate question may need the terminal.
        await self.ready.wait()
        if self._reader is not None:
            self._reader.start()
        while True:
            line = await lines.get()
            if line is _EOF:
                self.connection.quit()
                return
            self.connection.input(line.rstrip("\r\n"), self.current or self.session.server.name)
            if self.session.quitting:
                return

    def on_events(self, events: list[Event]) -> None:
        for event in events:
            if isinstance(event, LineAdded):
                self._print(event.buffer, event)
            elif isinstance(event, Registered):
                if not self.waiting:
                    self.ready.set()
            elif isinstance(event, Joined | JoinFailed):
                name = event.buffer.name if isinstance(event, Joined) else event.channel
                if isinstance(event, Joined) and not self.current:
                    self.current = event.buffer.name
                self.waiting.discard(self.session.key(name))
                if not self.waiting:
                    self.ready.set()
            elif isinstance(event, Focus):
                self.current = event.buffer.name
            elif isinstance(event, Fatal | QuitRequested):
                self.ready.set()

    def _print(self, buf: Buffer, event: LineAdded) -> None:
        line = event.line
        if buf.kind == "server" and line.kind == "info":
            return  # the welcome and MOTD are noise in a pipe
        channels = [b for b in self.session.buffers.values() if b.kind != "server"]
        where = ""
        if buf.kind == "server":
            where = ""
        elif len(channels) > 1 or self.session.key(buf.name) != self.session.key(
            self.current or buf.name
        ):
            where = buf.name
        self.stdout.write(plain(line, self.tz, colour=self.colour, where=where) + "\n")
        self.stdout.flush()


async def run_plain(client: PlainClient) -> int:
    return await client.run()


def is_tty(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


def default_streams() -> tuple[TextIO, TextIO, TextIO]:
    return sys.stdin, sys.stdout, sys.stderr
