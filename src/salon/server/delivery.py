"""Delivering a relayed message (PRIVMSG, NOTICE, TAGMSG, a draft/multiline batch) to its
targets' members and users: after its commit (salon.server.handlers.messaging and .batch),
or when it has its turn in a cluster's order (salon.server.cluster)."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from functools import partial
from typing import TYPE_CHECKING, Any

from salon.errors import SerializationError
from salon.proto.message import Message
from salon.server import caps
from salon.server.channel import PREFIX_TO_MODE, Channel
from salon.server.client import Client
from salon.store.base import HistoryEvent

if TYPE_CHECKING:
    from salon.server.core import Server
    from salon.server.responsebuffer import Held

# Message(...) and HistoryEvent(...) without the named tuples' Python-level __new__ (one
# call each per relayed message): every field given, in order.
new_message: Callable[[tuple[str, tuple[str, ...], str, dict[str, str]]], Message] = partial(
    tuple.__new__, Message
)
new_event: Callable[[tuple[Any, ...]], HistoryEvent] = partial(tuple.__new__, HistoryEvent)

# One target's delivery, decided before the commit and run after it: (message, its body
# serialized, channel or None, user or None, status prefix such as "@" or "").
Delivery = tuple[Message, bytes, Channel | None, Client | None, str]

# A line of a draft/multiline batch: command, text, and whether it continues the line
# before it (draft/multiline-concat).
Line = tuple[str, str, bool]


def deliver_message(
    server: Server, client: Client, command: str, deliveries: list[Delivery]
) -> None:
    tagmsg = command == "TAGMSG"
    cluster = server.cluster is not None
    for out, wire, chan, other, status in deliveries:
        if chan is not None:
            recipients: Iterable[Client] = chan.local_members() if cluster else chan.members
            if status:
                rank = "ov".index(PREFIX_TO_MODE[status])
                allowed = "ov"[: rank + 1]
                recipients = [
                    m for m, modes in chan.members.items() if modes and modes[0] in allowed
                ]
            if tagmsg:
                recipients = [m for m in recipients if m.capmask & caps.MESSAGE_TAGS]
            server.deliver(recipients, out, client, wire)
        elif (
            other is not None
            and not other.closed
            and (not tagmsg or other.capmask & caps.MESSAGE_TAGS)
        ):
            server.send(other, out, wire)


def deliver_and_echo(
    server: Server,
    client: Client,
    command: str,
    deliveries: list[Delivery],
    echo: bool,
    held: Held | None,
) -> None:
    """Deliver a committed message, and echo it to its sender: straight out when the
    command held nothing back, else after what it held (its label) in its buffer."""
    deliver_message(server, client, command, deliveries)
    if held is None or held.empty():
        if echo:
            for out, wire, *_ in deliveries:
                server.send(client, out, wire)
        return
    rb = held.resume()
    if echo:
        for out, *_ in deliveries:
            rb.add(out)
    rb.flush()


def body_bytes(source: str, command: str, target: str, text: str | None) -> bytes:
    """``Message(command, (target, text), source).body()`` with CR LF, written directly:
    the source and command are the server's own and the target a checked middle parameter;
    only the text needs the trailing-parameter rule, and CR, LF and NUL are refused."""
    if text is None:
        line = f":{source} {command} {target}\r\n"
    elif " " in text or text[:1] == ":" or not text:
        line = f":{source} {command} {target} :{text}\r\n"
    else:
        line = f":{source} {command} {target} {text}\r\n"
    if "\0" in line or "\n" in line[:-1] or "\r" in line[:-2]:
        raise SerializationError(f"CR, LF or NUL in {command}")
    return line.encode("utf-8", "surrogateescape")


def multiline_batch(
    server: Server, target: str, source: str, head_tags: dict[str, str], lines: Iterable[Line]
) -> list[Message]:
    """A draft/multiline batch as one recipient (or the echo) gets it, under a new reference."""
    ref = server.new_batch_id()
    out = [Message("BATCH", ("+" + ref, "draft/multiline", target), server.name, head_tags)]
    for command, text, concat in lines:
        tags = {"batch": ref}
        if concat:
            tags["draft/multiline-concat"] = ""
        out.append(Message(command, (target, text), source, tags))
    out.append(Message("BATCH", ("-" + ref,), server.name))
    return out


def deliver_multiline(
    server: Server,
    sender: Client,
    recipients: Iterable[Client],
    source: str,
    target: str,
    head_tags: dict[str, str],
    lines: list[Line],
    fallback: list[Message],
) -> None:
    """The batch to recipients with draft/multiline and batch, its lines one by one (the
    ``fallback`` messages) to the others."""
    for member in recipients:
        if member is sender or member.closed:
            continue
        if member.capmask & caps.MULTILINE and member.capmask & caps.BATCH:
            for message in multiline_batch(server, target, source, head_tags, lines):
                server.send(member, message)
        else:
            for message in fallback:
                server.send(member, message)
