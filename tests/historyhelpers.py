"""History and SEARCH tests, on the core and on a real process: the capabilities a history
client asks for, and how it reads what comes back."""

from __future__ import annotations

from salon.proto.message import Message
from salon.server.history import format_ms

CAPS = ("batch", "draft/chathistory", "echo-message", "message-tags", "server-time")
EVENTS = (*CAPS, "draft/event-playback")
ALL = (*EVENTS, "draft/message-redaction")
SEARCH = (*CAPS, "soju.im/search", "draft/message-redaction")


def texts(messages: list[Message]) -> list[str]:
    return [m.params[-1] for m in messages if m.command in ("PRIVMSG", "NOTICE")]


def stamp(t: float) -> str:
    return format_ms(round(t * 1000))
