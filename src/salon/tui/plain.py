"""``salon chat --plain``: no TUI. Lines from stdin are sent, one line per event is printed.

Works in pipes: ``echo hello | salon chat --plain --nick bot '#lobby'`` joins, sends,
and after the end of stdin flushes, quits and exits 0. Typing ``bye`` (or ``quit``,
``exit``, ``over``) leaves too.

Typed lines go to the *current* channel or private chat: the first channel joined, then
whichever ``/join`` or ``/query`` opened last ("Now talking in #rust" says so).
"""

from __future__ import annotations

import asyncio
import threading
import urllib.parse
from datetime import tzinfo
from typing import TextIO

from salon.client import Buffer, Session
from salon.client.commands import split_command
from salon.client.model import (
    AutoJoin,
    BufferAdded,
    BufferRemoved,
    Event,
    Focus,
    Joined,
    JoinFailed,
    Line,
    LineAdded,
    QuitRequested,
    UploadCancelRequested,
    UploadRequested,
)
from salon.client.slash import UPLOAD_CANCEL
from salon.client.text import utc
from salon.tui.connection import AskTrust, Connection, Target
from salon.tui.format import plain
from salon.tui.upload import Cancel, UploadError, send_file
from salon.units import size_text

_EOF = None
SWITCH_WAIT = 10.0  # seconds to wait for a typed /join (/part) before going on
TOKEN_WAIT = 10.0  # seconds to wait for the token an /upload asked for


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
        # The first channels, once the session says which (AutoJoin): typed lines wait
        # until we are in them (or refused).
        self.waiting: set[str] = set()
        self.ready = asyncio.Event()
        # Channels of a typed /join not joined yet, or of a /part not left yet: lines typed
        # after it wait (``switched`` is set when it is empty), as they are meant for where
        # the command takes us.
        self.switching: set[str] = set()
        self.switched = asyncio.Event()
        # /upload transfers under way: typed lines (and the end of input) wait for them,
        # as in a pipe what comes next is meant to come after the link.
        self.uploads: set[asyncio.Task[None]] = set()
        self.cancels: set[Cancel] = set()  # of the transfers under way (/upload cancel)
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
            if line is not _EOF and _cancels_uploads(line):
                # Meant for the uploads under way: it does not wait for them.
                self.connection.input(line.rstrip("\r\n"), self.current or self.session.server.name)
                continue
            await self._uploaded()
            if line is _EOF:
                self.connection.quit()
                return
            text = line.rstrip("\r\n")
            self._expect_switch(text)
            self.connection.input(text, self.current or self.session.server.name)
            if self.session.quitting:
                return
            if self.switching:
                # In a pipe, what comes after "/join #b" is meant for #b: wait until we are
                # in (or refused), for a while.
                try:
                    await asyncio.wait_for(self.switched.wait(), SWITCH_WAIT)
                except TimeoutError:
                    self.switching.clear()

    def _expect_switch(self, text: str) -> None:
        """A typed /join or /part: note the channels to wait for."""
        parsed = split_command(text)
        if parsed is None or not self.session.registered:
            return
        name, words = parsed[0], parsed[1].split()
        names: list[str] = []
        if name == "join" and words:
            names = [c if self.session.is_channel(c) else "#" + c for c in words[0].split(",")]
        elif name in ("part", "close"):
            names = [words[0] if words and self.session.is_channel(words[0]) else self.current]
            buf = self.session.buffer(names[0]) if names[0] else None
            if (name == "close" and words) or buf is None or not buf.joined:
                names = []
        self.switching = {self.session.key(c) for c in names if c}
        if self.switching:
            self.switched.clear()

    def _switched(self, name: str) -> None:
        self.switching.discard(self.session.key(name))
        if not self.switching:
            self.switched.set()

    def on_events(self, events: list[Event]) -> None:
        for event in events:
            if isinstance(event, LineAdded):
                self._print(event.buffer, event.line)
            elif isinstance(event, AutoJoin):
                self.waiting = {self.session.key(c) for c in event.channels}
                if not self.waiting:
                    self.ready.set()
            elif isinstance(event, Joined | JoinFailed):
                name = event.buffer.name if isinstance(event, Joined) else event.channel
                if isinstance(event, Joined) and not self.current:
                    self._talk_in(event.buffer)
                self.waiting.discard(self.session.key(name))
                if not self.waiting:
                    self.ready.set()
                self._switched(name)
            elif isinstance(event, Focus) or (isinstance(event, BufferAdded) and event.focus):
                self._talk_in(event.buffer)
            elif isinstance(event, BufferRemoved):
                self._switched(event.buffer.name)
                if self.current and self.session.key(event.buffer.name) == self.session.key(
                    self.current
                ):
                    rest = [b for b in self.session.buffers.values() if b.kind != "server"]
                    self._talk_in(rest[-1] if rest else None)
            elif isinstance(event, QuitRequested):
                self.ready.set()
            elif isinstance(event, UploadRequested):
                # Under way from now on: an /upload cancel right after it stops it too.
                cancel = Cancel()
                self.cancels.add(cancel)
                task = asyncio.get_running_loop().create_task(self._upload(event, cancel))
                self.uploads.add(task)
                task.add_done_callback(self.uploads.discard)
            elif isinstance(event, UploadCancelRequested):
                self._cancel_uploads(event.waiting)
            # A Fatal leaves ``ready`` unset: nothing typed is sent (or said to be unsent);
            # run() returns as soon as the connection gives up.

    async def _uploaded(self) -> None:
        """Wait for the uploads under way, and for the tokens they asked for."""
        waited = 0.0
        while self.session.uploads_waiting and waited < TOKEN_WAIT and self.connection.connected:
            await asyncio.sleep(0.05)
            waited += 0.05
        while self.uploads:
            await asyncio.wait(set(self.uploads))

    async def _upload(self, request: UploadRequested, cancel: Cancel) -> None:
        """Send the file, say so, and post its link (after the text) where /upload was typed."""
        now = utc(self.connection.clock())
        try:
            url, size = await asyncio.to_thread(send_file, request, cancel=cancel)
        except UploadError as exc:
            self._print(self.session.server, Line(now, "error", f"upload: {exc}"), always=True)
            return
        finally:
            self.cancels.discard(cancel)
        name = urllib.parse.unquote(url.rsplit("/", 1)[-1])
        said = f"uploaded {name} ({size_text(size)}): {url}"
        self._print(self.session.server, Line(now, "info", said), always=True)
        self.connection.input(
            "/say " + (f"{request.text} {url}" if request.text else url), request.target
        )

    def _cancel_uploads(self, waiting: int) -> None:
        """/upload cancel: each transfer under way stops (and says so)."""
        for cancel in self.cancels:
            cancel.set()
        now = utc(self.connection.clock())
        if waiting:
            self._print(self.session.server, Line(now, "error", "upload cancelled"), always=True)
        elif not self.cancels:
            said = Line(now, "error", "upload: nothing to cancel")
            self._print(self.session.server, said, always=True)

    def _talk_in(self, buf: Buffer | None) -> None:
        """Typed lines go to ``buf`` from now on; said when it changes after the start."""
        name = buf.name if buf is not None else ""
        if self.session.key(name) == self.session.key(self.current):
            self.current = name
            return
        self.current = name
        if self.ready.is_set() and not self.session.quitting:
            text = f"Now talking in {name}" if name else "Not in a channel: /join one"
            self._print(
                self.session.server, Line(utc(self.connection.clock()), "info", text), always=True
            )

    def _print(self, buf: Buffer, line: Line, *, always: bool = False) -> None:
        if (
            buf.kind == "server"
            and line.kind == "info"
            and not always
            and (not self.ready.is_set() or self.session.quitting)
        ):
            # The welcome, the MOTD and the goodbye are noise in a pipe; answers to /help
            # or /whois are not.
            return
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


def is_tty(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


def _cancels_uploads(line: str) -> bool:
    """Whether a typed line is ``/upload cancel``."""
    parsed = split_command(line.rstrip("\r\n"))
    return parsed is not None and parsed[0] == "upload" and parsed[1].strip() == UPLOAD_CANCEL
