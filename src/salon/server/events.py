"""The changes of shared state, as values.

Every change of what the network shares (who is on it and under which nick, the channels,
their members, modes and topics, who is away, logged in or K-lined) is one of these
events. A command checks what it asks for against the current state (with the same errors
as ever), makes the event, and hands it to ``Server.emit``; ``salon.server.apply`` holds the
one function per kind that changes the state and renders the lines this process's clients
get. Applying an event is the only way that state changes, so replaying the same events in
the same order on another ``Server`` gives the same state (the scale-out of issue 19 sends
them through Redis in one sequenced order to every node).

An event is plain data: users are named by their id (``uid``, the connection id of the
process that introduced them), channels by name, modes as strings. No ``Client`` or
``Channel`` object is held, so an event can be serialized as it is.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, fields
from typing import Any, get_args


@dataclass(frozen=True, slots=True)
class Intro:
    """A user finished registration and joins the network."""

    uid: int
    nick: str
    user: str
    host: str
    ip: str
    realname: str
    account: str | None
    modes: str
    signon: float
    tls: bool
    certfp: str | None


@dataclass(frozen=True, slots=True)
class Nick:
    uid: int
    nick: str


@dataclass(frozen=True, slots=True)
class Quit:
    uid: int
    reason: str


@dataclass(frozen=True, slots=True)
class Join:
    """``uid`` joins ``channel``; it is created (the joiner its operator) when missing.
    ``key``: the key the JOIN gave, checked again in the event's turn (a ``+k`` set on
    another node just before must refuse it on every node alike)."""

    uid: int
    channel: str
    time: float
    key: str | None = None


@dataclass(frozen=True, slots=True)
class Part:
    uid: int
    channel: str
    reason: str


@dataclass(frozen=True, slots=True)
class Kick:
    uid: int
    channel: str
    target: int
    reason: str


@dataclass(frozen=True, slots=True)
class Topic:
    uid: int
    channel: str
    text: str
    time: float


@dataclass(frozen=True, slots=True)
class ChannelMode:
    """Channel mode changes, in order: (adding, letter, parameter). A list entry's
    parameter is its mask, a prefix mode's the member's nick, ``k``'s the key (``*`` when
    removed), ``l``'s the limit; flags have none."""

    uid: int
    channel: str
    changes: tuple[tuple[bool, str, str | None], ...]
    time: float


@dataclass(frozen=True, slots=True)
class UserMode:
    """User mode changes in the order they apply (``+i-w``, a sign before each letter);
    ``oper``: the operator block of OPER."""

    uid: int
    changes: str
    oper: str | None = None


@dataclass(frozen=True, slots=True)
class Invite:
    """``uid`` invites ``target`` to ``channel`` (which may not exist)."""

    uid: int
    target: int
    channel: str


@dataclass(frozen=True, slots=True)
class Away:
    """``text`` None: back."""

    uid: int
    text: str | None


@dataclass(frozen=True, slots=True)
class Setname:
    uid: int
    realname: str


@dataclass(frozen=True, slots=True)
class Account:
    """A user logs in to ``account`` (None: logs out)."""

    uid: int
    account: str | None


@dataclass(frozen=True, slots=True)
class Rename:
    """draft/channel-rename: ``channel`` is now called ``new``."""

    uid: int
    channel: str
    new: str
    reason: str


@dataclass(frozen=True, slots=True)
class Metadata:
    """draft/metadata-3: ``uid`` sets ``key`` to ``value`` (None: removes it) on itself,
    or on ``channel`` when one is named."""

    uid: int
    channel: str | None
    key: str
    value: str | None


@dataclass(frozen=True, slots=True)
class Ban:
    """A server ban (not a channel's ``+b``): a K-line (``kind`` "K", a ``user@host``
    mask) or a D-line ("D", an IP address or CIDR network). ``setter`` is the operator
    block (or nick) that set it; ``expires`` None: permanent."""

    kind: str
    mask: str
    reason: str
    setter: str
    created: float
    expires: float | None


@dataclass(frozen=True, slots=True)
class Unban:
    """A K-line or D-line is lifted (UNKLINE, UNDLINE, or its expiry)."""

    kind: str
    mask: str


@dataclass(frozen=True, slots=True)
class Kill:
    """An operator (``uid``) kills ``target``: the node that holds its connection drops it
    (its QUIT follows as an event of its own)."""

    uid: int
    target: int
    reason: str


@dataclass(frozen=True, slots=True)
class Wallops:
    """WALLOPS from ``uid``: every user with mode +w gets it, on every node."""

    uid: int
    text: str


@dataclass(frozen=True, slots=True)
class ChannelReg:
    """ChanServ REGISTER (``founder`` the founder's account) or DROP (``founder`` None)."""

    uid: int
    channel: str
    founder: str | None
    time: float


@dataclass(frozen=True, slots=True)
class ChannelAccess:
    """ChanServ AMODE: ``account``'s access level in ``channel`` ("o" or "v"; "" removes it)."""

    uid: int
    channel: str
    account: str
    level: str


@dataclass(frozen=True, slots=True)
class TopicLock:
    """ChanServ TOPICLOCK."""

    uid: int
    channel: str
    on: bool


@dataclass(frozen=True, slots=True)
class Redact:
    """draft/message-redaction: ``uid`` redacted ``msgid`` of the conversation ``key``
    (the history key: a channel's casefolded name, or a private conversation's), shown as
    ``target``. Its origin checked the right and redacted its store first."""

    uid: int
    target: str
    key: str
    msgid: str
    reason: str | None


@dataclass(frozen=True, slots=True)
class ReadMarker:
    """draft/read-marker: ``uid``'s party has read ``target`` up to ``time``."""

    uid: int
    target: str
    time: float


Event = (
    Intro
    | Nick
    | Quit
    | Join
    | Part
    | Kick
    | Topic
    | ChannelMode
    | UserMode
    | Invite
    | Away
    | Setname
    | Account
    | Rename
    | Metadata
    | Ban
    | Unban
    | Kill
    | Wallops
    | ChannelReg
    | ChannelAccess
    | TopicLock
    | Redact
    | ReadMarker
)

# Every kind of the union, by name: a kind added to ``Event`` is one the bus carries.
KINDS: dict[str, type[Any]] = {cls.__name__: cls for cls in get_args(Event)}


# Each kind's field names, in order (dataclasses.fields() builds its answer on every call,
# and the cluster encodes and decodes an event per change).
_FIELDS: dict[type[Any], tuple[str, ...]] = {
    cls: tuple(f.name for f in fields(cls)) for cls in KINDS.values()
}


def encode(event: Event) -> list[Any]:
    """An event as JSON-ready data: its kind's name, then its fields in order."""
    cls = type(event)
    return [cls.__name__, *(getattr(event, name) for name in _FIELDS[cls])]


def decode(data: Any) -> Event:
    """The event that :func:`encode` gave ``data`` for; ValueError when it is not one."""
    if not isinstance(data, list) or not data or not isinstance(data[0], str):
        raise ValueError(f"not an event: {data!r:.80}")
    cls = KINDS.get(data[0])
    if cls is None:
        raise ValueError(f"unknown event kind {data[0]!r:.40}")
    args = data[1:]
    count = len(_FIELDS[cls])
    if len(args) != count:
        raise ValueError(f"{data[0]} takes {count} fields, not {len(args)}")
    if cls is ChannelMode:
        changes = args[2]
        if not isinstance(changes, list):
            raise ValueError("ChannelMode changes must be a list")
        args[2] = tuple((bool(a), str(m), p) for a, m, p in changes)
    event: Event = cls(*args)
    return event


def dumps(event: Event) -> str:
    return json.dumps(encode(event), separators=(",", ":"), ensure_ascii=False)


def loads(text: str) -> Event:
    return decode(json.loads(text))
