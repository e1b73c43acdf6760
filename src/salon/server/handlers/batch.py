"""BATCH from clients: IRCv3 draft/multiline, a message of several lines sent as one.

A client opens ``BATCH +<ref> draft/multiline <target>``, sends PRIVMSG or NOTICE lines
tagged ``batch=<ref>`` (the core hands them to :func:`batched_line`), and closes it with
``BATCH -<ref>``; the whole batch goes to clients with the capability, its lines one by one
to the others, and it counts as one message (flood, history).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from salon.errors import CommandError, FailError
from salon.proto import numerics as n
from salon.proto.casemap import casefold
from salon.proto.limits import MAX_LINE
from salon.proto.message import Message
from salon.server import caps, history
from salon.server.channel import Channel
from salon.server.client import Client
from salon.server.delivery import Line, deliver_multiline, multiline_batch
from salon.server.history import party
from salon.server.responsebuffer import Held, ResponseBuffer
from salon.server.services import check_private_message
from salon.store.base import HistoryEvent, dm_key

if TYPE_CHECKING:
    from salon.server.core import Server


@dataclass(slots=True)
class Multiline:
    ref: str
    target: str
    held: Held  # the opening BATCH's label: the closing one answers under it
    tags: dict[str, str]
    lines: list[Line] = field(default_factory=list)
    size: int = 0


def cmd_batch(server: Server, client: Client, msg: Message, rb: ResponseBuffer) -> None:
    ref = msg.params[0]
    if ref.startswith("+"):
        if len(msg.params) < 3 or msg.params[1] != "draft/multiline":
            raise FailError("BATCH", "INVALID_PARAMS", "Unsupported batch type")
        if not client.capmask & caps.MULTILINE:
            raise FailError("BATCH", "MULTILINE_INVALID", "Negotiate draft/multiline first")
        tags = {k: v for k, v in msg.tags.items() if k[:1] == "+"} if msg.tags else {}
        client.multiline = Multiline(ref[1:], msg.params[2], rb.detach(replies=False), tags)
        return
    pending: Multiline | None = client.multiline
    client.multiline = None
    if pending is None or ref[1:] != pending.ref or not ref.startswith("-"):
        raise FailError("BATCH", "MULTILINE_INVALID", "No such batch in progress")
    pending.held.resume(rb)
    lines = pending.lines
    if not lines or any(concat and not text for _, text, concat in lines):
        raise FailError("BATCH", "MULTILINE_INVALID", "Invalid multiline batch")
    if all(not text for _, text, _ in lines):
        raise FailError("BATCH", "MULTILINE_INVALID", "Empty multiline batch")
    _deliver_multiline(server, client, pending, rb)


def batched_line(server: Server, client: Client, msg: Message, rb: ResponseBuffer) -> bool:
    """A line carrying a ``batch`` tag: add it to the client's multiline batch.

    Returns False when the line is not part of a batch the client opened.
    """
    pending: Multiline | None = client.multiline
    ref = msg.tags.get("batch")
    if pending is None or ref != pending.ref:
        client.multiline = None
        rb.fail("BATCH", "MULTILINE_INVALID", "Message for a batch that is not open")
        return True
    if msg.command not in ("PRIVMSG", "NOTICE") or len(msg.params) < 2:
        client.multiline = None
        rb.fail("BATCH", "MULTILINE_INVALID", "Only PRIVMSG and NOTICE may be in a batch")
        return True
    if casefold(msg.params[0]) != casefold(pending.target):
        client.multiline = None
        rb.fail("BATCH", "MULTILINE_INVALID_TARGET", pending.target, msg.params[0], "Wrong target")
        return True
    limits = server.config.history
    text = msg.params[1]
    # Each line goes out alone to clients without draft/multiline: RFC 1459 2.3's 512
    # bytes hold for it, with the sender's prefix added (as for PRIVMSG, see _prepare).
    relayed = f":{client.prefix} {msg.command} {pending.target} :{text}\r\n"
    if len(relayed.encode()) > MAX_LINE:
        client.multiline = None
        rb.fail("BATCH", "MULTILINE_INVALID", "A line of the batch is too long to relay")
        return True
    pending.size += len(text.encode())
    concat = "draft/multiline-concat" in msg.tags
    pending.lines.append((msg.command, text, concat))
    if len(pending.lines) > limits.multiline_max_lines:
        client.multiline = None
        rb.fail("BATCH", "MULTILINE_MAX_LINES", str(limits.multiline_max_lines), "Too many lines")
    elif pending.size > limits.multiline_max_bytes:
        client.multiline = None
        rb.fail("BATCH", "MULTILINE_MAX_BYTES", str(limits.multiline_max_bytes), "Too many bytes")
    return True


def _deliver_multiline(
    server: Server, client: Client, batch: Multiline, rb: ResponseBuffer
) -> None:
    target = batch.target
    chan: Channel | None = None
    other: Client | None = None
    if target.startswith("#"):
        chan = server.channels.get(casefold(target))
        if chan is None:
            raise CommandError(n.ERR_NOSUCHCHANNEL, target, "No such channel")
        chan.can_send(client, batch.lines[0][1])
        server.abuse.check_channel_flood(chan, client)  # one batch counts as one message
    else:
        other = server.nicks.get(casefold(target))
        if other is None or not other.registered:
            raise CommandError(n.ERR_NOSUCHNICK, target, "No such nick/channel")
        if other.id < 0:  # NickServ/ChanServ take commands one line at a time, unstored
            raise CommandError(n.ERR_NOSUCHNICK, target, "Services do not take multiline")
        check_private_message(server, client, other)  # user mode +R
    base = server.server_tags()
    msgid, stamp = base["msgid"], base["time"]
    head_tags = {"msgid": msgid, "time": stamp, **batch.tags}
    if client.account is not None:
        head_tags["account"] = client.account
    source = client.prefix

    fallback: list[Message] = []
    for command, text, _concat in batch.lines:
        if not text:
            continue
        tags = {"time": stamp, **batch.tags}
        if not fallback:
            tags["msgid"] = msgid
        fallback.append(Message(command, (target, text), source, tags))

    events: list[HistoryEvent] = []
    if history.enabled(server):
        key = (
            chan.cf if chan is not None else dm_key(party(server, client), party(server, other))  # type: ignore[arg-type]
        )
        for i, message in enumerate(fallback):
            tags = dict(message.tags)
            tags["msgid"] = msgid if i == 0 else f"{msgid}-{i}"
            events.append(
                history.message_event(
                    server,
                    message.with_tags(tags),
                    key,
                    display=target if chan is None else "",
                    party_key=party(server, client) if chan is None else "",
                )
            )

    def deliver(out: ResponseBuffer) -> None:
        echo = bool(client.capmask & caps.ECHO_MESSAGE)
        if server.cluster is not None:
            # Delivered, and echoed, in its turn in the network's order.
            server.cluster.submit_multiline(
                client, target, chan, other, head_tags, batch.lines, fallback, echo,
                out.detach(), events,
            )  # fmt: skip
            return
        recipients: list[Client] = (
            list(chan.members) if chan is not None else [other] if other is not None else []
        )
        deliver_multiline(
            server, client, recipients, source, target, head_tags, batch.lines, fallback
        )
        if echo:
            for message in multiline_batch(server, target, source, head_tags, batch.lines):
                out.add(message)

    if events:
        history.commit_then(server, rb, events, deliver, "BATCH")
    else:
        deliver(rb)
