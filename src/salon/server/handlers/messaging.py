"""PRIVMSG, NOTICE, TAGMSG, AWAY and SETNAME: the hot path lives here."""

from __future__ import annotations

import logging
import re
from typing import TYPE_CHECKING

from salon.errors import CommandError, FailError
from salon.proto import numerics as n
from salon.proto.casemap import casefold
from salon.proto.limits import MAX_BODY, MAX_LINE
from salon.proto.message import Message
from salon.server import caps, history
from salon.server.channel import PREFIX_TO_MODE, Channel
from salon.server.client import Client
from salon.server.delivery import (
    Delivery,
    body_bytes,
    deliver_and_echo,
    deliver_message,
    new_event,
    new_message,
)
from salon.server.events import Away, Setname
from salon.server.nicks import NICK_FIRST
from salon.server.responsebuffer import Held, ResponseBuffer
from salon.server.services import check_private_message
from salon.store.base import HistoryEvent, dm_key

if TYPE_CHECKING:
    from salon.server.core import Server

log = logging.getLogger("salon.messages")

# message-tags: <key> ::= '+' [ <vendor> '/' ] <key_name>, a key_name of letters, digits and
# hyphens, a vendor a host name. Client tags with any other key are not relayed.
_CLIENT_TAG = re.compile(r"\+(?:[A-Za-z0-9.-]+/)?[A-Za-z0-9-]+")


def cmd_privmsg(server: Server, client: Client, msg: Message, rb: ResponseBuffer) -> None:
    """PRIVMSG and NOTICE: those to NickServ or ChanServ are answered by the services and
    never relayed (nor logged, nor kept in history); the rest are relayed."""
    params = msg.params
    # Fast path: no service nick can be among the targets ("NickServ", "ChanServ").
    if len(params) >= 2 and "serv" in params[0].lower():
        rest = server.services.to_services(client, msg, rb)
        if rest is None:
            return
        msg = rest
    relay(server, client, msg, rb, msg.command)


def relay_line(server: Server, client: Client, line: bytes) -> bool:
    """The fast path of the commonest line: ``PRIVMSG target :text`` (or NOTICE) from a
    registered client, no tags, one target that is a channel or a nick, and nothing to
    answer. It does what parse, dispatch and :func:`relay` would do, with the same bytes
    out (tests/server/test_fastpath.py compares the two), minus their generality.

    Returns False, having changed nothing, for any other line or any case that needs an
    answer (an error, RPL_AWAY, services, a status message, a multi-target line): the
    general path then handles it.
    """
    if line[-1:] == b"\r":
        line = line[:-1]
    if len(line) > MAX_BODY:
        return False
    if line[0] == 80:  # "P"
        command, start = "PRIVMSG", 8
    else:
        command, start = "NOTICE", 7
    try:
        s = line.decode("utf-8")
    except UnicodeDecodeError:
        return False
    colon = s.find(" :", start)
    if colon <= start:
        return False
    target = s[start:colon]
    text = s[colon + 2 :]
    if (
        not text
        or " " in target
        or "," in target
        or "\0" in s
        or "\r" in s
        or "serv" in target.lower()
    ):
        return False
    source = client.prefix
    # RFC 1459 2.3: the relayed line, prefix added, must fit in 512 bytes (see _prepare).
    if len(source) + len(line) + 4 > MAX_LINE:
        return False
    first = target[0]
    stored = server.config.history.enabled
    echo = bool(client.capmask & caps.ECHO_MESSAGE)
    event: HistoryEvent | None = None
    now = server.now
    ms = int(now * 1000)
    params = (target, text)
    chan: Channel | None = None
    other: Client | None = None
    tagged = True  # whether anyone gets the message with tags (then it needs a Message)
    cluster = server.cluster
    if cluster is not None and cluster.waiting >= cluster.max_waiting:
        return False  # (relay refuses it: Cluster.room)
    if first == "#":
        chan = server.channels.get(casefold(target))
        if chan is None:
            return False
        if not chan.members.get(client):
            try:
                chan.can_send(client, text)
            except CommandError:
                return False
            try:
                server.abuse.check_channel_flood(chan, client)
            except CommandError as exc:
                server.numeric(client, exc.numeric, *exc.params)
                return True
        msgid = server.new_msgid(ms)
        if stored:
            event = new_event(
                (msgid, ms / 1000, chan.cf, command, source, client.account, params, (), "", "")
            )
        if server.log_messages:
            server.note(f"{command} {chan.name} <{client.nick}> {text}")
    elif first in NICK_FIRST:
        other = server.nicks.get(casefold(target))
        if (
            other is None
            or not other.registered
            or (other.away is not None and command == "PRIVMSG")
            or "R" in other.modes
            or "R" in client.modes
        ):
            return False
        # One recipient: without tag capabilities (and no echo) it gets the bare line, so
        # the tags, and the msgid unless history keeps one, are not made at all.
        tagged = (
            echo
            or other.variant < 0
            or bool(other.capmask & caps.TAGGED)
            # (in a cluster the entry carries the tags: the recipient may be elsewhere)
            or cluster is not None
        )
        msgid = server.new_msgid(ms) if stored or tagged else ""
        if stored:
            event = _private_event(server, client, other, command, target, params, msgid, ms, ())
        if server.log_messages:
            server.note(f"{command} {other.nick} <{client.nick}> {text}")
    else:
        return False
    client.last_active = client.last_message = now
    out: Message | None = None
    if tagged:
        tags = {"time": history.format_ms(ms), "msgid": msgid}
        if client.account is not None:
            tags["account"] = client.account
        if "B" in client.modes:
            tags["bot"] = ""
        out = new_message((command, params, source, tags))
    if text[0] == ":" or " " in text:
        # The line as received is the relayed body: text keeps its colon (Message.body).
        body = b"".join((b":", source.encode(), b" ", line, b"\r\n"))
    else:
        body = body_bytes(source, command, target, text)
    if cluster is not None:
        assert out is not None
        _to_cluster(server, client, command, (out, body, chan, other, ""), echo, event)
    elif event is not None:
        server.hold_one(client, event, _relayed, (command, out, body, chan, other, echo))
    else:
        _relay_one(server, client, out, body, chan, other, echo)
    return True


def _to_cluster(
    server: Server,
    client: Client,
    command: str,
    delivery: Delivery,
    echo: bool,
    event: HistoryEvent | None,
) -> None:
    """relay_line's message on a cluster's node: committed first when history keeps it,
    then sent to the network's order, as relay's are (see _committed)."""
    cluster = server.cluster
    assert cluster is not None
    if event is None:
        cluster.submit_message(client, command, [delivery], echo, None)
    else:
        server.hold_one(client, event, _committed, (command, echo, [delivery], [event]))


def cmd_tagmsg(server: Server, client: Client, msg: Message, rb: ResponseBuffer) -> None:
    relay(server, client, msg, rb, "TAGMSG")


def relay(server: Server, client: Client, msg: Message, rb: ResponseBuffer, command: str) -> None:
    notice = command == "NOTICE"
    params = msg.params
    if not params or not params[0]:
        if not notice:
            raise CommandError(n.ERR_NORECIPIENT, f"No recipient given ({command})")
        return
    if command != "TAGMSG" and (len(params) < 2 or not params[1]):
        if not notice:
            raise CommandError(n.ERR_NOTEXTTOSEND, "No text to send")
        return
    targets = params[0].split(",")
    if len(targets) > server.config.limits.max_targets:
        if not notice:
            raise CommandError(n.ERR_TOOMANYTARGETS, params[0], "Too many targets")
        return
    text = params[1] if command != "TAGMSG" else None
    client_tags = (
        tuple((k, v) for k, v in msg.tags.items() if k[:1] == "+" and _CLIENT_TAG.fullmatch(k))
        if msg.tags
        else ()
    )
    # server-time and msgid: the same millisecond stamp for the wire and for history.
    ms = int(server.now * 1000)
    stamp = history.format_ms(ms)
    events: list[HistoryEvent] | None = (
        [] if server.config.history.enabled and history.storable(msg) else None
    )
    deliveries: list[Delivery] = []
    for target in targets:
        # The msgid is drawn once the target is known to take the message (_prepare).
        tags = {"time": stamp, "msgid": ""}
        if client_tags:
            tags.update(client_tags)
        if client.account is not None:
            tags["account"] = client.account
        if "B" in client.modes:
            tags["bot"] = ""
        try:
            deliveries.append(
                _prepare(server, client, command, target, text, tags, rb, events, ms, client_tags)
            )
        except CommandError as exc:
            if not notice:
                rb.numeric(exc.numeric, *exc.params)
    if not deliveries:
        return
    echo = bool(client.capmask & caps.ECHO_MESSAGE)
    if server.cluster is not None:
        server.cluster.room(command)  # (before the commit: refused, never stored)
    if events:
        # Durability: committed to the database before it is echoed or delivered.
        server.hold_for_commit(rb, events, _committed, (command, echo, deliveries, events))
    elif server.cluster is not None:
        server.cluster.submit_message(client, command, deliveries, echo, rb.detach())
    else:
        deliver_message(server, client, command, deliveries)
        if echo:
            for out, *_ in deliveries:
                rb.add(out)


def _committed(
    server: Server,
    client: Client,
    ok: bool,
    held: Held | None,
    arg: tuple[str, bool, list[Delivery], list[HistoryEvent] | None],
) -> None:
    """After the commit: deliver, echo, and answer what the command held back."""
    command, echo, deliveries, events = arg
    if ok and server.cluster is not None:
        # Delivered, and echoed, in its turn in the network's order.
        server.cluster.submit_message(client, command, deliveries, echo, held, events)
        return
    if ok:
        deliver_and_echo(server, client, command, deliveries, echo, held)
        return
    out_rb = held.resume() if held is not None else ResponseBuffer(server, client, None, command)
    out_rb.fail(command, "MESSAGE_NOT_STORED", "Your message could not be stored; not sent")
    out_rb.flush()


def _relayed(
    server: Server,
    client: Client,
    ok: bool,
    held: Held | None,
    arg: tuple[str, Message | None, bytes, Channel | None, Client | None, bool],
) -> None:
    """The Finisher of relay_line's messages: what _committed does for one target, with
    no label and nothing held back (one call per message instead of three)."""
    command, out, body, chan, other, echo = arg
    if not ok:
        _committed(server, client, ok, None, (command, echo, [], None))
        return
    _relay_one(server, client, out, body, chan, other, echo)


def _relay_one(
    server: Server,
    client: Client,
    out: Message | None,
    body: bytes,
    chan: Channel | None,
    other: Client | None,
    echo: bool,
) -> None:
    """What _deliver and the echo do for relay_line's one target. ``out`` is None when
    nobody gets tags: a private message to a client without tag capabilities, no echo."""
    if out is None:
        if other is not None:
            server.write(other, body)
        return
    if other is not None:
        if not other.closed:
            server.send(other, out, body)
    elif chan is not None:
        server.deliver(chan.members, out, client, body)
    if echo:
        server.send(client, out, body)


def _prepare(
    server: Server,
    client: Client,
    command: str,
    target: str,
    text: str | None,
    tags: dict[str, str],
    rb: ResponseBuffer,
    events: list[HistoryEvent] | None,
    ms: int,
    client_tags: tuple[tuple[str, str], ...],
) -> Delivery:
    """Check one target; return how to deliver the message to it (now or after commit),
    and add its history event to ``events`` (None: not stored)."""
    status = ""
    name = target
    while name[:1] in PREFIX_TO_MODE and name[1:2] in ("#", "@", "+"):
        status = status if status else name[0]
        name = name[1:]
    params = (target,) if text is None else (target, text)
    source = client.prefix
    out = Message(command, params, source, tags)
    if text is not None:
        # RFC 1459 2.3: a relayed line must fit in 512 bytes with the sender's prefix added.
        # Refuse it (nothing is cut silently) and say by how much it is over.
        colon = 0 if text and " " not in text and text[0] != ":" else 1
        size = len(source.encode()) + len(command) + len(target.encode()) + len(text.encode())
        size += 6 + colon
        if size > MAX_LINE:
            raise CommandError(
                n.ERR_INPUTTOOLONG,
                f"Message too long to relay: {size - MAX_LINE} bytes over (with your "
                f"nick!user@host added, lines are at most {MAX_LINE} bytes)",
            )
    if name[:1] == "#":
        chan = server.channels.get(casefold(name))
        if chan is None:
            raise CommandError(n.ERR_NOSUCHCHANNEL, name, "No such channel")
        chan.can_send(client, text)
        if text is not None:
            server.abuse.check_channel_flood(chan, client)
        tags["msgid"] = server.new_msgid(ms)
        if events is not None and not status:
            # A status message (@#chan) is not stored: history would show it to everyone.
            events.append(
                HistoryEvent(
                    tags["msgid"], ms / 1000, chan.cf, command, source, client.account,
                    params, client_tags,
                )
            )  # fmt: skip
        if server.log_messages and text is not None:
            server.note(f"{command} {chan.name} <{client.nick}> {text}")
        return (out, body_bytes(source, command, target, text), chan, None, status)
    other = server.nicks.get(casefold(name))
    if other is None or not other.registered:
        raise CommandError(n.ERR_NOSUCHNICK, name, "No such nick/channel")
    check_private_message(server, client, other)  # user mode +R
    if other.away is not None and command == "PRIVMSG":
        rb.numeric(n.RPL_AWAY, other.nick, other.away)
    tags["msgid"] = msgid = server.new_msgid(ms)
    if events is not None:
        events.append(
            _private_event(server, client, other, command, target, params, msgid, ms, client_tags)
        )
    if server.log_messages and text is not None:
        server.note(f"{command} {other.nick} <{client.nick}> {text}")
    return (out, body_bytes(source, command, target, text), None, other, "")


def _private_event(
    server: Server,
    client: Client,
    other: Client,
    command: str,
    target: str,
    params: tuple[str, ...],
    msgid: str,
    ms: int,
    client_tags: tuple[tuple[str, str], ...],
) -> HistoryEvent:
    """The history event of a private message from ``client`` to ``other``."""
    # The conversation's key depends on the parties' nicks and accounts only: kept from
    # this client's last private message while they are the same objects.
    last = client.dm_last
    if (
        last is not None
        and last[0] is client.nick_cf
        and last[1] is client.account
        and last[2] is other.nick_cf
        and last[3] is other.account
    ):
        key, mine = last[4], last[5]
    else:
        mine = history.party(server, client)
        key = dm_key(mine, history.party(server, other))
        client.dm_last = (client.nick_cf, client.account, other.nick_cf, other.account, key, mine)
    # Correspondent names are stored for CHATHISTORY TARGETS only when they change.
    names = (target, client.nick)
    display = target if server.dm_names.get(key) != names else ""
    if display:
        server.dm_names[key] = names
    return new_event((
        msgid, ms / 1000, key, command, client.prefix, client.account, params,
        client_tags, display, mine,
    ))  # fmt: skip


def cmd_away(server: Server, client: Client, msg: Message, rb: ResponseBuffer) -> None:
    text = msg.params[0] if msg.params else ""
    if text:
        rb.numeric(n.RPL_NOWAWAY, "You have been marked as being away")
        server.emit(Away(client.id, text[: server.config.limits.awaylen]), rb)
    else:
        rb.numeric(n.RPL_UNAWAY, "You are no longer marked as being away")
        server.emit(Away(client.id, None), rb)


def cmd_setname(server: Server, client: Client, msg: Message, rb: ResponseBuffer) -> None:
    realname = msg.params[0]
    if not realname or len(realname) > server.config.limits.realnamelen:
        raise FailError("SETNAME", "INVALID_REALNAME", "Realname is not valid")
    server.emit(Setname(client.id, realname), rb)
