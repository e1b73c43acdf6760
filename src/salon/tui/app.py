"""The ``salon chat`` terminal UI (Textual).

Layout: a sidebar of buffers on the left, the topic bar and message pane in the middle, the
nick list on the right and the input line at the bottom. The IRC session is sans-I/O
(:mod:`salon.client`); the :class:`~salon.tui.connection.Connection` runs in a worker and
hands its events to :meth:`ChatApp.apply`.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from datetime import tzinfo
from pathlib import Path
from typing import ClassVar

from rich.text import Text
from textual import events, on, work
from textual.app import App, ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.message import Message
from textual.screen import ModalScreen
from textual.widgets import Input, Label, OptionList, RichLog, Static
from textual.widgets.option_list import Option

from salon.client import Buffer, Session
from salon.client.commands import completions
from salon.client.model import (
    EVENT_KINDS,
    BufferAdded,
    BufferChanged,
    BufferRemoved,
    Event,
    Focus,
    HistoryAdded,
    Line,
    LineAdded,
    LocalCommand,
    Mention,
    NickChanged,
    Registered,
    Unsent,
    UploadCancelRequested,
    UploadRequested,
)
from salon.tui.config import ChatConfig
from salon.tui.connection import Connection, Target
from salon.tui.format import irc_text, nick_colour, render
from salon.tui.upload import Cancel, UploadError, send_file
from salon.units import size_text

HISTORY_SIZE = 200
UPLOAD_PROGRESS = 0.25  # seconds between progress updates of an /upload

# Textual reads ESC+digit (how most terminals send Alt+digit) as the character macOS types
# for Option+digit, so Alt+1..9,0 arrive as these keys.
ALT_DIGITS = (
    "º",  # Alt+0
    "inverted_exclamation_mark",  # ¡
    "trade_mark_sign",  # ™
    "pound_sign",  # £
    "cent_sign",  # ¢
    "infinity",  # ∞
    "section_sign",  # §
    "pilcrow_sign",  # ¶
    "bullet",  # •
    "ª",  # Alt+9
)


class MessageLog(RichLog):
    """The message pane. Scrolling up past the top asks for older history."""

    class ScrolledToTop(Message):
        pass

    def on_mouse_scroll_up(self, event: events.MouseScrollUp) -> None:
        if self.scroll_y <= 0:
            self.post_message(self.ScrolledToTop())

    def page_up(self) -> None:
        if self.scroll_y <= 0:
            self.post_message(self.ScrolledToTop())
        else:
            self.scroll_page_up(animate=False)


class Sidebar(OptionList, can_focus=False):
    """Buffers: server, channels, private chats, with unread and mention counts."""


class NickList(OptionList, can_focus=False):
    """Members of the current channel, operators and voiced first."""


class ChatInput(Input):
    """The input line: history on Up/Down, Tab completes nicks, channels and commands, and a
    multi-line paste is sent as one multi-line message."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("tab", "complete", "Complete", show=False),
        Binding("up", "history(-1)", "Previous", show=False),
        Binding("down", "history(1)", "Next", show=False),
    ]

    class Paste(Message):
        def __init__(self, text: str) -> None:
            super().__init__()
            self.text = text

    def __init__(self, candidates: Callable[[], list[str]], **kw: object) -> None:
        super().__init__(**kw)  # type: ignore[arg-type]
        self.candidates = candidates
        self.history: list[str] = []
        self._hist_pos = 0
        self._draft = ""
        self._completing: tuple[int, str, list[str], int] | None = None  # start, word, hits, i
        self._completed_value = ""

    def check_consume_key(self, key: str, character: str | None) -> bool:
        # Leave Alt+digit (see ALT_DIGITS) to the app's window bindings.
        return key not in ALT_DIGITS and super().check_consume_key(key, character)

    def remember(self, text: str) -> None:
        if text and (not self.history or self.history[-1] != text):
            self.history.append(text)
            del self.history[:-HISTORY_SIZE]
        self._hist_pos = len(self.history)
        self._draft = ""

    def action_history(self, step: int) -> None:
        if not self.history:
            return
        if self._hist_pos == len(self.history):
            self._draft = self.value
        self._hist_pos = max(0, min(len(self.history), self._hist_pos + step))
        self.value = (
            self.history[self._hist_pos] if self._hist_pos < len(self.history) else self._draft
        )
        self.cursor_position = len(self.value)

    def action_complete(self) -> None:
        value, cursor = self.value, self.cursor_position
        state = self._completing
        if state is None or value != self._completed_value:
            start = value.rfind(" ", 0, cursor) + 1
            word = value[start:cursor]
            if not word:
                return
            hits = completions(word, self.candidates())
            if not word.startswith("/"):
                hits = [h for h in hits if not h.startswith("/")]
            if not hits:
                self.app.bell()
                return
            state = (start, word, hits, -1)
        start, word, hits, i = state
        i = (i + 1) % len(hits)
        choice = hits[i]
        suffix = ": " if start == 0 and choice[:1] not in "#&/" else " "
        old_end = cursor
        new_value = value[:start] + choice + suffix + value[old_end:].lstrip(" ")
        if state[3] >= 0:
            # Replace the previous completion, which ends where the cursor is.
            new_value = value[:start] + choice + suffix + value[cursor:]
        self.value = new_value
        self.cursor_position = start + len(choice) + len(suffix)
        self._completing = (start, word, hits, i)
        self._completed_value = self.value

    def _on_paste(self, event: events.Paste) -> None:
        if "\n" in event.text.rstrip("\n"):
            event.stop()
            event.prevent_default()
            self.post_message(self.Paste(self.value + event.text))
            self.value = ""
            return
        super()._on_paste(event)


class NameScreen(ModalScreen[str]):
    """First start: ask for a nick."""

    DEFAULT_CSS = """
    NameScreen { align: center middle; }
    NameScreen > Vertical {
        width: 50; height: auto; border: round $accent; padding: 1 2; background: $surface;
    }
    NameScreen Input { margin-top: 1; }
    """

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Label("Welcome to salon. Your name:")
            yield Input(placeholder="a nick, like ada", id="name")

    @on(Input.Submitted)
    def done(self, event: Input.Submitted) -> None:
        name = event.value.strip().replace(" ", "_")
        if name:
            self.dismiss(name)


def wrap_fingerprint(fp: str, per_line: int = 16) -> str:
    """A colon-separated fingerprint in lines of ``per_line`` bytes, never split in a byte."""
    pairs = fp.split(":")
    return "\n".join(":".join(pairs[i : i + per_line]) for i in range(0, len(pairs), per_line))


class TrustScreen(ModalScreen[bool]):
    """A self-signed (or otherwise unverified) certificate: trust it once and pin it?"""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("y", "answer(True)", "Trust"),
        Binding("n,escape", "answer(False)", "Refuse"),
    ]
    DEFAULT_CSS = """
    TrustScreen { align: center middle; }
    TrustScreen > Vertical {
        width: 76; height: auto; border: round $warning; padding: 1 2; background: $surface;
    }
    """

    def __init__(self, where: str, fp: str, reason: str) -> None:
        super().__init__()
        self.text = (
            f"The certificate of {where} could not be verified ({reason}).\n\n"
            f"SHA-256 fingerprint:\n{wrap_fingerprint(fp)}\n\n"
            "Compare it with the one your server admin gives you.\n"
            "Trust it from now on? [y/n]"
        )

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Static(self.text)

    def action_answer(self, yes: bool) -> None:
        self.dismiss(yes)


class ChatApp(App[int]):
    """The chat window. ``target`` None runs offline (tests feed :meth:`feed` by hand)."""

    TITLE = "salon chat"
    ENABLE_COMMAND_PALETTE = False
    CSS = """
    Screen { layout: vertical; }
    #main { height: 1fr; }
    #buffers { width: 22; border: none; border-right: solid $primary-darken-2; }
    #center { width: 1fr; }
    #topic { height: 1; background: $primary-darken-3; color: $text; padding: 0 1; }
    #log { height: 1fr; border: none; padding: 0 1; scrollbar-size-vertical: 1; }
    #nicks { width: 18; border: none; border-left: solid $primary-darken-2; }
    #input { dock: bottom; }
    OptionList { background: $surface; }
    """
    BINDINGS: ClassVar[list[BindingType]] = [
        *[
            Binding(
                f"alt+{n},{ALT_DIGITS[n]}",
                f"goto({(n or 10) - 1})",
                f"Window {n}",
                show=False,
                priority=True,
            )
            for n in range(10)
        ],
        Binding("ctrl+n", "cycle(1)", "Next window", show=False),
        Binding("ctrl+p", "cycle(-1)", "Previous window", show=False),
        Binding("pageup", "page_up", "Scroll up", show=False),
        Binding("pagedown", "page_down", "Scroll down", show=False),
        Binding("ctrl+q", "quit_chat", "Quit", show=False, priority=True),
        Binding("ctrl+c", "ctrl_c", "Copy or quit", show=False, priority=True),
    ]
    CTRL_C_AGAIN = 3.0  # seconds in which a second Ctrl+C quits

    def __init__(
        self,
        session: Session,
        target: Target | None,
        config: ChatConfig,
        *,
        tz: tzinfo | None = None,
        clock: Callable[[], float] = time.time,
        connection_options: dict[str, object] | None = None,
    ) -> None:
        super().__init__()
        self.session = session
        self.target = target
        self.config = config
        self.tz = tz
        self.clock = clock
        self.connection_options = connection_options or {}
        self.connection: Connection | None = None
        self.fatal = ""
        self.hide_joins = config.hide_joins
        self.order: list[str] = []  # buffer keys in sidebar order
        self.uploading: set[Cancel] = set()  # /upload transfers under way
        self.current = session.server
        self._rendered: set[int] = set()  # id() of the current buffer's lines on screen
        self._ctrl_c_at = -1e9  # time.monotonic() of the last Ctrl+C

    # ------------------------------------------------------------------ layout

    def compose(self) -> ComposeResult:
        with Horizontal(id="main"):
            yield Sidebar(id="buffers")
            with Vertical(id="center"):
                yield Static("", id="topic")
                yield MessageLog(id="log", wrap=True, markup=False, auto_scroll=False)
            yield NickList(id="nicks")
        yield ChatInput(
            lambda: self.session.completion_candidates(self.current.name),
            id="input",
            placeholder="Type a message, or /help",
        )

    def on_mount(self) -> None:
        self.query_one(ChatInput).focus()
        self._rebuild_sidebar()
        self._show(self.session.server)
        if self.target is None:
            return
        if self.session.settings.nick:
            self.start()
        else:
            self.push_screen(NameScreen(), self._got_name)

    def _got_name(self, name: str | None) -> None:
        if not name:
            self.exit(2)
            return
        self.session.settings.nick = name
        self.session.nick = name
        self.config.nick = name
        self._save_config()
        self.start()

    def _save_config(self) -> None:
        try:
            self.config.save()
        except OSError as exc:
            self.notify(f"Could not save settings: {exc}", severity="warning")

    # ------------------------------------------------------------------ connection

    def start(self) -> None:
        assert self.target is not None
        self.connection = Connection(
            self.session,
            self.target,
            self.apply,
            pins=self.config.pins,
            ask_trust=self._ask_trust,
            save_pin=self._save_pin,
            clock=self.clock,
            **self.connection_options,  # type: ignore[arg-type]
        )
        self.run_connection()

    @work(exclusive=True, group="connection")
    async def run_connection(self) -> None:
        assert self.connection is not None
        self.fatal = await self.connection.run()
        code = 1 if self.fatal else 0
        self.exit(code, return_code=code)

    async def _ask_trust(self, where: str, fp: str, reason: str) -> bool:
        answer: bool = await self.push_screen_wait(TrustScreen(where, fp, reason))
        return answer

    def _save_pin(self, where: str, fp: str) -> None:
        self.config.pins[where] = fp
        self._save_config()

    def feed(self, *lines: str) -> None:
        """Offline use (snapshots, tests): lines as if the server sent them."""
        for line in lines:
            self.apply(self.session.receive_line(line, self.clock()))

    def send(self, text: str) -> None:
        """What the user typed, in the current buffer."""
        if self.connection is not None:
            self.connection.input(text, self.current.name)
        else:
            self.apply(self.session.input(text, self.current.name, self.clock()))

    # ------------------------------------------------------------------ events

    def apply(self, events: list[Event]) -> None:
        """Bring the screen up to date with what the session reports."""
        sidebar = False
        for event in events:
            if isinstance(event, LineAdded):
                if event.buffer is self.current and id(event.line) not in self._rendered:
                    self._write(event.line)
            elif isinstance(event, HistoryAdded):
                if event.buffer is self.current and event.count:
                    self._show(event.buffer, keep_position=event.older)
            elif isinstance(event, BufferAdded):
                sidebar = True
                if event.focus:
                    self.switch_to(event.buffer)
            elif isinstance(event, Focus):
                self.switch_to(event.buffer)
            elif isinstance(event, BufferRemoved):
                sidebar = True
                if event.buffer is self.current:
                    self.switch_to(self._neighbour(event.buffer))
            elif isinstance(event, BufferChanged):
                sidebar = True
                if event.buffer is self.current:
                    self._update_topic()
                    self._update_nicks()
            elif isinstance(event, Mention):
                self.bell()
            elif isinstance(event, (Registered, NickChanged)):
                self._update_topic()
                changed = isinstance(event, NickChanged) and self.config.nick != event.nick
                if changed and self.target is not None:
                    self.config.nick = self.session.nick
                    self._save_config()
            elif isinstance(event, Unsent):
                box = self.query_one(ChatInput)
                if not box.value:
                    box.value = event.text
            elif isinstance(event, LocalCommand) and event.name == "joins":
                self._toggle_joins(event.args)
            elif isinstance(event, UploadRequested):
                # Under way from now on: an /upload cancel typed at once stops it too.
                cancel = Cancel()
                self.uploading.add(cancel)
                self.run_worker(self._upload(event, cancel))
            elif isinstance(event, UploadCancelRequested):
                self._cancel_uploads(event.waiting)
        if sidebar:
            self._rebuild_sidebar()

    async def _upload(self, request: UploadRequested, cancel: Cancel) -> None:
        """/upload: the file goes in a worker thread, its progress in the topic bar (every
        UPLOAD_PROGRESS seconds); then its link, after the text, waits in the input line."""
        name = Path(request.path).name
        shown = [0.0]

        def progress(sent: int, total: int) -> None:
            now = time.monotonic()
            if now - shown[0] >= UPLOAD_PROGRESS or sent >= total:
                shown[0] = now
                self.call_from_thread(self._upload_progress, name, sent, total)

        try:
            url, size = await asyncio.to_thread(send_file, request, progress, cancel)
        except UploadError as exc:
            self.apply(self.session.note(f"upload: {exc}", self.clock(), error=True))
            return
        finally:
            self.uploading.discard(cancel)
            self._update_topic()
        box = self.query_one(ChatInput)
        text = f"{request.text} {url}" if request.text else url
        box.value = f"{box.value} {text}" if box.value else text
        box.cursor_position = len(box.value)
        self.apply(self.session.note(f"uploaded {name} ({size_text(size)})", self.clock()))

    def _cancel_uploads(self, waiting: int) -> None:
        """/upload cancel: each transfer under way stops (and says so)."""
        for cancel in self.uploading:
            cancel.set()
        if waiting:
            self.apply(self.session.note("upload cancelled", self.clock(), error=True))
        elif not self.uploading:
            self.apply(self.session.note("upload: nothing to cancel", self.clock(), error=True))

    def _upload_progress(self, name: str, sent: int, total: int) -> None:
        percent = sent * 100 // total if total else 100
        done = f"{size_text(sent)} of {size_text(total)}"
        self.query_one("#topic", Static).update(f"uploading {name}: {percent}% ({done})")

    def _neighbour(self, gone: Buffer) -> Buffer:
        keys = [k for k in self.order if k in self.session.buffers]
        if not keys:
            return self.session.server
        return self.session.buffers[keys[-1]]

    def _toggle_joins(self, args: str) -> None:
        word = args.strip().lower()
        self.hide_joins = {"hide": True, "show": False, "off": True, "on": False}.get(
            word, not self.hide_joins
        )
        self.config.hide_joins = self.hide_joins
        if self.target is not None:
            self._save_config()
        self._show(self.current)
        self.notify("Join, part and quit lines are " + ("hidden" if self.hide_joins else "shown"))

    # ------------------------------------------------------------------ drawing

    def _visible(self, kind: str) -> bool:
        return not (self.hide_joins and kind in EVENT_KINDS)

    def _write(self, line: Line) -> None:
        self._rendered.add(id(line))
        if not self._visible(line.kind):
            return
        log = self.query_one(MessageLog)
        follow = log.is_vertical_scroll_end or log.max_scroll_y == 0
        log.write(render(line, self.tz), scroll_end=follow)

    def _show(self, buf: Buffer, *, keep_position: bool = False) -> None:
        log = self.query_one(MessageLog)
        old_total, old_y = len(log.lines), log.scroll_y
        log.clear()
        self._rendered = {id(line) for line in buf.lines}
        for line in buf.lines:
            if self._visible(line.kind):
                log.write(render(line, self.tz), scroll_end=False)
        if keep_position:
            log.scroll_to(y=old_y + len(log.lines) - old_total, animate=False)
        else:
            log.scroll_end(animate=False, immediate=True)
        self._update_topic()
        self._update_nicks()

    def switch_to(self, buf: Buffer) -> None:
        if buf is self.current and self.current.name == buf.name:
            self._rebuild_sidebar()
            return
        self.current = buf
        self.apply(self.session.set_active(buf.name))
        self._show(buf)
        self._rebuild_sidebar()
        box = self.query_one(ChatInput)
        box.placeholder = (
            f"Message {buf.name}" if buf.kind != "server" else "Type /join #channel, or /help"
        )

    def _rebuild_sidebar(self) -> None:
        bufs = list(self.session.buffers.values())
        server = [b for b in bufs if b.kind == "server"]
        channels = [b for b in bufs if b.kind == "channel"]
        queries = [b for b in bufs if b.kind == "query"]
        ordered = server + channels + queries
        self.order = [self.session.key(b.name) for b in ordered]
        options = []
        for i, b in enumerate(ordered):
            label = Text()
            label.append(f"{i + 1:>2} " if i < 10 else "   ", style="dim")
            name = b.name
            style = "bold reverse" if b is self.current else ""
            if b.kind == "channel" and not b.joined:
                style += " dim"
            if b.mentions:
                style += " bold #ffcc00"
            elif b.unread:
                style += " bold"
            label.append(name, style=style.strip())
            if b.unread:
                label.append(" ")
                label.append(str(b.unread), style="bold cyan")
            if b.mentions:
                label.append(" ")
                label.append(f"!{b.mentions}", style="bold black on #ffcc00")
            options.append(Option(label, id=self.order[i]))
        sidebar = self.query_one(Sidebar)
        sidebar.set_options(options)
        if self.current is not None and self.session.key(self.current.name) in self.order:
            sidebar.highlighted = self.order.index(self.session.key(self.current.name))

    def _update_topic(self) -> None:
        buf = self.current
        bar = self.query_one("#topic", Static)
        s = self.session
        if buf.kind == "channel":
            count = len(buf.members)
            who = f"{count} {'person' if count == 1 else 'people'}"
            text = Text.assemble((buf.name, "bold"), f" · {who} · ")
            text.append_text(irc_text(buf.topic) if buf.topic else Text("(no topic)"))
        elif buf.kind == "query":
            text = Text.assemble(("private chat with ", "dim"), (buf.name, "bold"))
        else:
            where = self.target.key if self.target else buf.name
            state = "connected" if s.registered else "not connected"
            text = Text.assemble((where, "bold"), f" · {state} as {s.nick or '?'}")
        bar.update(text)

    def _update_nicks(self) -> None:
        nicks = self.query_one(NickList)
        buf = self.current
        if buf.kind != "channel":
            nicks.display = False
            return
        nicks.display = True
        _modes, chars = self.session.prefix
        options = []
        for m in buf.sorted_members(chars):
            label = Text()
            label.append(m.prefixes[:1] or " ", style="bold green")
            label.append(m.nick, style=nick_colour(m.nick) + (" dim" if m.away else ""))
            options.append(Option(label, id=m.nick))
        nicks.set_options(options)

    # ------------------------------------------------------------------ input and keys

    @on(Input.Submitted, "#input")
    def submitted(self, event: Input.Submitted) -> None:
        text = event.value
        box = self.query_one(ChatInput)
        box.value = ""
        if not text.strip():
            return
        box.remember(text)
        self.send(text)

    @on(ChatInput.Paste)
    def pasted(self, event: ChatInput.Paste) -> None:
        self.send(event.text)

    @on(Sidebar.OptionSelected, "#buffers")
    def buffer_clicked(self, event: OptionList.OptionSelected) -> None:
        key = event.option.id or ""
        if key in self.session.buffers:
            self.switch_to(self.session.buffers[key])
        self.query_one(ChatInput).focus()

    @on(NickList.OptionSelected, "#nicks")
    def nick_clicked(self, event: OptionList.OptionSelected) -> None:
        if event.option.id:
            self.send(f"/query {event.option.id}")
        self.query_one(ChatInput).focus()

    @on(MessageLog.ScrolledToTop)
    def load_older(self) -> None:
        if self.connection is not None:
            self.connection.load_older(self.current.name)
        else:
            self.apply(self.session.load_older(self.current.name, self.clock()))

    def action_goto(self, index: int) -> None:
        if 0 <= index < len(self.order):
            self.switch_to(self.session.buffers[self.order[index]])

    def action_cycle(self, step: int) -> None:
        key = self.session.key(self.current.name)
        if not self.order:
            return
        i = self.order.index(key) if key in self.order else 0
        self.action_goto((i + step) % len(self.order))

    def action_page_up(self) -> None:
        self.query_one(MessageLog).page_up()

    def action_page_down(self) -> None:
        self.query_one(MessageLog).scroll_page_down(animate=False)

    def action_ctrl_c(self) -> None:
        """Ctrl+C copies the input's selection, if any; otherwise it asks, and a second
        Ctrl+C within a few seconds quits (as Ctrl+Q does at once)."""
        focused = self.focused
        if isinstance(focused, Input) and focused.selected_text:
            focused.action_copy()
            return
        now = time.monotonic()
        if now - self._ctrl_c_at <= self.CTRL_C_AGAIN:
            self.action_quit_chat()
            return
        self._ctrl_c_at = now
        self.notify("Press Ctrl+C again, or Ctrl+Q, to quit", timeout=self.CTRL_C_AGAIN)

    def action_quit_chat(self) -> None:
        if self.connection is not None and self.connection.connected:
            self.send("/quit")
        else:
            self.exit(0)

    def on_resize(self, event: events.Resize) -> None:
        self.call_after_refresh(lambda: self._show(self.current))
