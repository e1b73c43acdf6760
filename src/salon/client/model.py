"""What the client shows: buffers of lines, and the events that tell a front end what changed.

Times are aware UTC datetimes; a front end converts them to local time for display.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal

LineKind = Literal[
    "message",  # <nick> text
    "action",  # * nick text (/me)
    "notice",  # -nick- text
    "join",
    "part",
    "quit",
    "kick",
    "nick",
    "mode",
    "topic",
    "info",  # the client or the server telling the user something
    "error",  # a refusal, in plain words
]
BufferKind = Literal["server", "channel", "query"]

# Kinds shown dimmed (or hidden) and never counted as unread.
EVENT_KINDS: frozenset[str] = frozenset({"join", "part", "quit", "kick", "nick", "mode"})

MAX_LINES = 5000  # kept per buffer; older lines are dropped (and fetched again on scrollback)


@dataclass(slots=True)
class Line:
    time: datetime
    kind: LineKind
    text: str
    nick: str = ""
    msgid: str = ""
    highlight: bool = False
    own: bool = False
    # The sender's draft/metadata-3 display-name when the line arrived ("" when none).
    display: str = ""

    def key(self) -> tuple[str, ...]:
        """What makes two lines the same message (for merging history)."""
        if self.msgid:
            return ("id", self.msgid)
        return ("t", self.time.isoformat(), self.kind, self.nick, self.text)


@dataclass(slots=True)
class Member:
    nick: str
    prefixes: str = ""  # highest first, e.g. "@+"
    away: bool = False


@dataclass(eq=False)
class Buffer:
    name: str
    kind: BufferKind
    lines: list[Line] = field(default_factory=list)
    unread: int = 0
    mentions: int = 0
    topic: str = ""
    members: dict[str, Member] = field(default_factory=dict)  # casefolded nick -> member
    joined: bool = False  # a channel we are in right now
    want_joined: bool = False  # a channel to rejoin after a reconnect
    history_pending: bool = False
    history_exhausted: bool = False

    @property
    def is_channel(self) -> bool:
        return self.kind == "channel"

    def sorted_members(self, prefix_order: str = "~&@%+") -> list[Member]:
        def rank(m: Member) -> tuple[int, str]:
            first = m.prefixes[:1]
            return (
                prefix_order.index(first) if first and first in prefix_order else 99,
                m.nick.lower(),
            )

        return sorted(self.members.values(), key=rank)


# ---------------------------------------------------------------------------------- events


@dataclass(frozen=True, slots=True)
class Event:
    """Base class: something the front end may want to redraw or act on."""


@dataclass(frozen=True, slots=True)
class LineAdded(Event):
    buffer: Buffer
    line: Line


@dataclass(frozen=True, slots=True)
class HistoryAdded(Event):
    """Lines were merged into ``buffer`` from CHATHISTORY; ``older`` for a scroll-back page."""

    buffer: Buffer
    count: int
    older: bool


@dataclass(frozen=True, slots=True)
class BufferAdded(Event):
    buffer: Buffer
    focus: bool = False


@dataclass(frozen=True, slots=True)
class BufferRemoved(Event):
    buffer: Buffer


@dataclass(frozen=True, slots=True)
class BufferChanged(Event):
    """Topic, members or counts of ``buffer`` changed."""

    buffer: Buffer


@dataclass(frozen=True, slots=True)
class Focus(Event):
    buffer: Buffer


@dataclass(frozen=True, slots=True)
class Mention(Event):
    """Someone said our nick, or wrote to us privately: ring the bell."""

    buffer: Buffer
    line: Line


@dataclass(frozen=True, slots=True)
class Registered(Event):
    nick: str


@dataclass(frozen=True, slots=True)
class AutoJoin(Event):
    """The channels joined on their own after the first registration (maybe none), once
    they are known: at the welcome, or at the end of the MOTD when the server's advertised
    default channel was waited for (Settings.server_default)."""

    channels: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class NickChanged(Event):
    nick: str


@dataclass(frozen=True, slots=True)
class Joined(Event):
    """We are in ``buffer`` and have its names list."""

    buffer: Buffer


@dataclass(frozen=True, slots=True)
class JoinFailed(Event):
    channel: str
    reason: str


@dataclass(frozen=True, slots=True)
class Fatal(Event):
    """Registration cannot go on (refused nick, bad password, banned): one line for the user."""

    message: str


@dataclass(frozen=True, slots=True)
class QuitRequested(Event):
    """The user asked to leave (/quit, bye); the QUIT is already queued."""

    reason: str


@dataclass(frozen=True, slots=True)
class TimedOut(Event):
    """The server has not answered our PING: the connection is dead."""


@dataclass(frozen=True, slots=True)
class Unsent(Event):
    """Text that could not be sent (not connected): the front end may keep it for later."""

    text: str


@dataclass(frozen=True, slots=True)
class LocalCommand(Event):
    """A command for the front end itself (``/joins hide``)."""

    name: str
    args: str


@dataclass(frozen=True, slots=True)
class UploadRequested(Event):
    """/upload: the front end sends ``path`` to the file host (``url``, with the
    ``authorization`` header value), then posts ``text`` and the file's URL to ``target``."""

    path: str
    text: str
    url: str
    target: str
    authorization: str


@dataclass(frozen=True, slots=True)
class UploadCancelRequested(Event):
    """/upload cancel: the front end stops its transfers under way. ``waiting``: how many
    uploads the session dropped that were still waiting for their token."""

    waiting: int
