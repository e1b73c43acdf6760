"""How a connection speaks: a client's personality reads its lines, renders what it is
sent and says goodbye when it is closed.

Two personalities share one core, as websockets' ServerProtocol and ClientProtocol share
its Protocol: :data:`IRC` (every IRC port, and IRC over WebSocket) and the text port's
(:mod:`salon.server.textport`, for nc and telnet). The core asks the client's personality
instead of testing what kind of connection it is, but for the sign of ``variant``, tested
where a call per message or line would cost (``Server.deliver``'s hot loop, the fast
path): a negative one means "rendered by the personality", so IRC recipients cost no call.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from salon.errors import ProtocolError, SerializationError
from salon.proto.limits import MAX_LINE
from salon.proto.message import Message, encode_tags, parse
from salon.server import caps

if TYPE_CHECKING:
    from salon.server.channel import Channel
    from salon.server.client import Client
    from salon.server.core import Server
    from salon.store.base import HistoryEvent

log = logging.getLogger("salon.server")


class Personality:
    """The IRC personality; the text port's overrides what it does otherwise."""

    __slots__ = ()

    # The client's variant to start with: 0 for IRC (its capabilities add bits); a
    # negative one has every message rendered by :meth:`render`.
    variant = 0

    def start(self, server: Server, client: Client) -> None:
        """A new connection: IRC clients speak first."""

    def on_line(self, server: Server, client: Client, line: bytes) -> None:
        """A line the client sent (without its CR LF): parsed, then run by dispatch. A line
        that cannot be parsed is answered by dispatch too, as a pseudo-command (as ergo's
        invalidUtf8Command)."""
        if not line.strip(b" "):
            return
        try:
            msg = parse(line)
        except ProtocolError as exc:
            failure = server.parse_failures.get(type(exc))
            if failure is not None:
                server.dispatch(client, _unparsed(exc), failure)
            return
        client.last_active = server.now
        server.dispatch(client, msg)

    def render(
        self, server: Server, client: Client, msg: Message, wire: bytes | None = None
    ) -> bytes | None:
        """``msg`` as the client gets it: with the tags its capabilities allow. ``wire``:
        the message's body already serialized (CR LF included), when known."""
        tags = msg.tags
        try:
            data = wire if wire is not None else wire_bytes(msg)
            if tags and client.capmask & caps.TAGGED:
                allowed = caps.allowed_tags(tags, client.capmask)
                if allowed:
                    data = ("@" + encode_tags(allowed) + " ").encode() + data
        except SerializationError:
            log.exception("bug: unserializable reply %r to %r", msg, client)
            return None
        return data

    def closing_line(self, client: Client, reason: str, error: str | None) -> bytes | None:
        """The last line before the connection closes (see Server.drop)."""
        text = error if error is not None else f"Closing Link: {client.host} ({reason})"
        return wire_bytes(Message("ERROR", (text,)))

    def keepalive(self, server: Server, client: Client) -> None:
        """The client has been quiet for a ping interval: PING it (it must answer)."""
        server.send(client, Message("PING", (server.name,)))

    def replay(
        self, server: Server, client: Client, chan: Channel, events: list[HistoryEvent]
    ) -> bool:
        """Show the last lines of a channel on join in the personality's own way; False:
        as IRC, a chathistory batch (history.replay_on_join)."""
        return False


IRC = Personality()


def _unparsed(exc: ProtocolError) -> Message:
    """The stand-in message of a line that could not be parsed: its command word, and
    its label when the tags could be read (InvalidUTF8's second argument)."""
    command = _command_word(exc.args[0] if exc.args else None)
    tags = exc.args[1] if len(exc.args) > 1 else {}
    label = tags.get("label")
    return Message(command, (), None, {"label": label} if label else {})


def _command_word(word: str | None) -> str:
    """The command of a line that could not be parsed, fit to be echoed in the error reply
    (a middle parameter): a command is letters or three digits (RFC 1459 2.3.1)."""
    if word and len(word) <= 32 and word.isascii() and word.isalnum():
        return word
    return "*"


def wire_bytes(msg: Message) -> bytes:
    """A message's line without tags, CR LF included. RFC 1459 2.3: "messages SHALL NOT
    exceed 512 characters in length, counting all characters including the trailing
    CR-LF". Whatever echoes a client's words (a PART or QUIT reason, a topic, an away
    text, an unknown command) is cut at the end of its last parameter, on a character
    boundary, to fit; relayed PRIVMSG and NOTICE are refused instead (ERR_INPUTTOOLONG)."""
    data = msg.body().encode("utf-8", "surrogateescape") + b"\r\n"
    for _ in range(len(msg.params) + 2):
        over = len(data) - MAX_LINE
        if over <= 0:
            break
        params = list(msg.params)
        last = params[-1].encode("utf-8", "surrogateescape")
        if len(last) > over:
            # (Cut to nothing or to a trailing space, the parameter gains a ':': once more.)
            params[-1] = last[: len(last) - over].decode("utf-8", "ignore")
        elif len(params) > 1:
            # The middle parameters alone are too long (an echoed 500-byte channel name):
            # the longest is cut, keeping at least its first character.
            i = max(range(len(params) - 1), key=lambda j: len(params[j].encode()))
            word = params[i].encode("utf-8", "surrogateescape")
            params[i] = word[: max(len(word) - over, 1)].decode("utf-8", "ignore") or "*"
        else:
            break
        msg = Message(msg.command, tuple(params), msg.source)
        data = msg.body().encode("utf-8", "surrogateescape") + b"\r\n"
    return data
