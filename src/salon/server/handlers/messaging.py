"""PRIVMSG, NOTICE, TAGMSG, AWAY and SETNAME: the hot path lives here."""

from __future__ import annotations

import logging
from collections.abc import Iterable

from salon.errors import CommandError, FailError
from salon.proto import numerics as n
from salon.proto.casemap import casefold
from salon.proto.limits import MAX_LINE
from salon.proto.message import Message
from salon.server import caps, history
from salon.server.channel import PREFIX_TO_MODE, Channel
from salon.server.client import Client
from salon.server.core import Server
from salon.server.responsebuffer import ResponseBuffer
from salon.server.services import check_private_message
from salon.store.base import HistoryEvent, dm_key

log = logging.getLogger("salon.messages")


def cmd_privmsg(server: Server, client: Client, msg: Message, rb: ResponseBuffer) -> None:
    relay(server, client, msg, rb, msg.command)


def cmd_tagmsg(server: Server, client: Client, msg: Message, rb: ResponseBuffer) -> None:
    relay(server, client, msg, rb, "TAGMSG")


# One target's delivery, decided before the commit and run after it:
# (message, channel or None, user or None, status prefix such as "@" or "").
Delivery = tuple[Message, "Channel | None", "Client | None", str]


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
    client_tags = tuple((k, v) for k, v in msg.tags.items() if k[:1] == "+") if msg.tags else ()
    # server-time and msgid: the same millisecond stamp for the wire and for history.
    ms = int(server.now * 1000)
    stamp = history.format_ms(ms)
    events: list[HistoryEvent] | None = (
        [] if server.config.history.enabled and history.storable(msg) else None
    )
    deliveries: list[Delivery] = []
    for target in targets:
        tags = {"time": stamp, "msgid": server.new_msgid(ms)}
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
    if events:
        # Durability: committed to the database before it is echoed or delivered.
        server.hold_for_commit(rb, events, _committed, (command, echo, deliveries))
    else:
        _deliver(server, client, command, deliveries)
        if echo:
            for out, _chan, _other, _status in deliveries:
                rb.add(out)


def _committed(
    server: Server,
    client: Client,
    ok: bool,
    label: str | None,
    held: list[Message],
    arg: tuple[str, bool, list[Delivery]],
) -> None:
    """After the commit: deliver, echo, and answer what the command held back."""
    command, echo, deliveries = arg
    if ok:
        _deliver(server, client, command, deliveries)
        if label is None and not held:
            # Nothing to label or to keep in order with: the echo goes straight out.
            if echo:
                for out, _chan, _other, _status in deliveries:
                    server.send(client, out)
            return
    out_rb = ResponseBuffer(server, client, None)
    out_rb.label = label
    out_rb.messages = held
    if not ok:
        out_rb.fail(command, "MESSAGE_NOT_STORED", "Your message could not be stored; not sent")
    elif echo:
        for out, _chan, _other, _status in deliveries:
            out_rb.add(out)
    out_rb.flush()


def _deliver(server: Server, client: Client, command: str, deliveries: list[Delivery]) -> None:
    tagmsg = command == "TAGMSG"
    for out, chan, other, status in deliveries:
        if chan is not None:
            recipients: Iterable[Client] = chan.members
            if status:
                rank = "ov".index(PREFIX_TO_MODE[status])
                allowed = "ov"[: rank + 1]
                recipients = [
                    m for m, modes in chan.members.items() if modes and modes[0] in allowed
                ]
            if tagmsg:
                recipients = [m for m in recipients if m.capmask & caps.MESSAGE_TAGS]
            server.deliver(recipients, out, skip=client)
        elif (
            other is not None
            and not other.closed
            and (not tagmsg or other.capmask & caps.MESSAGE_TAGS)
        ):
            server.send(other, out)


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
        size = len(source) + len(command) + len(target) + len(text.encode()) + 6 + colon
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
        check_can_send(chan, client, text)
        if text is not None:
            server.abuse.check_channel_flood(chan, client)
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
        return (out, chan, None, status)
    other = server.nicks.get(casefold(name))
    if other is None or not other.registered:
        raise CommandError(n.ERR_NOSUCHNICK, name, "No such nick/channel")
    check_private_message(server, client, other)  # user mode +R
    if other.away is not None and command == "PRIVMSG":
        rb.numeric(n.RPL_AWAY, other.nick, other.away)
    if events is not None:
        mine = history.party(server, client)
        key = dm_key(mine, history.party(server, other))
        # Correspondent names are stored for CHATHISTORY TARGETS only when they change.
        names = (target, client.nick)
        display = target if server.dm_names.get(key) != names else ""
        if display:
            server.dm_names[key] = names
        events.append(
            HistoryEvent(
                tags["msgid"], ms / 1000, key, command, source, client.account, params,
                client_tags, display, mine,
            )
        )  # fmt: skip
    if server.log_messages and text is not None:
        server.note(f"{command} {other.nick} <{client.nick}> {text}")
    return (out, None, other, "")


def check_can_send(chan: Channel, client: Client, text: str | None) -> None:
    modes = chan.members.get(client)
    if modes is None:
        if "n" in chan.modes:
            raise CommandError(n.ERR_CANNOTSENDTOCHAN, chan.name, "Cannot send to channel (+n)")
        modes = ""
    if modes:
        return
    if "m" in chan.modes:
        raise CommandError(n.ERR_CANNOTSENDTOCHAN, chan.name, "Cannot send to channel (+m)")
    if "M" in chan.modes and client.account is None:
        raise CommandError(
            n.ERR_CANNOTSENDTOCHAN,
            chan.name,
            "Cannot send to channel (+M): you must be logged in to an account",
        )
    if chan.bans and chan.is_banned(client):
        raise CommandError(n.ERR_CANNOTSENDTOCHAN, chan.name, "Cannot send to channel (+b)")
    if chan.bans and chan.is_muted(client):
        raise CommandError(n.ERR_CANNOTSENDTOCHAN, chan.name, "Cannot send to channel (muted)")
    if (
        text is not None
        and "C" in chan.modes
        and text.startswith("\x01")
        and not text.startswith("\x01ACTION")
    ):
        raise CommandError(n.ERR_CANNOTSENDTOCHAN, chan.name, "Cannot send CTCP to channel (+C)")


def cmd_away(server: Server, client: Client, msg: Message, rb: ResponseBuffer) -> None:
    text = msg.params[0] if msg.params else ""
    if text:
        client.away = text[: server.config.limits.awaylen]
        rb.numeric(n.RPL_NOWAWAY, "You have been marked as being away")
        away = Message("AWAY", (client.away,), client.prefix)
    else:
        client.away = None
        rb.numeric(n.RPL_UNAWAY, "You are no longer marked as being away")
        away = Message("AWAY", (), client.prefix)
    # away-notify: "sent to all clients that share a channel with the user".
    recipients = [m for m in server.common_channel_members(client) if m.capmask & caps.AWAY_NOTIFY]
    server.deliver(recipients, away, skip=client)
    notify_extended_monitor(server, client, away)


def notify_extended_monitor(server: Server, client: Client, msg: Message) -> None:
    """extended-monitor: monitoring clients with the capability get the same notifications
    as if they shared a channel (AWAY, CHGHOST, SETNAME, ACCOUNT)."""
    watchers = server.monitors.get(client.nick_cf)
    if not watchers:
        return
    shared = server.common_channel_members(client)
    wanted = {
        caps.AWAY_NOTIFY: "AWAY",
        caps.SETNAME: "SETNAME",
        caps.CHGHOST: "CHGHOST",
        caps.ACCOUNT_NOTIFY: "ACCOUNT",
    }
    bit = next(b for b, c in wanted.items() if c == msg.command)
    recipients = [
        w
        for w in watchers
        if w is not client
        and w not in shared
        and w.capmask & caps.EXTENDED_MONITOR
        and w.capmask & bit
    ]
    server.deliver(recipients, msg)


def cmd_setname(server: Server, client: Client, msg: Message, rb: ResponseBuffer) -> None:
    realname = msg.params[0]
    if not realname or len(realname) > server.config.limits.realnamelen:
        raise FailError("SETNAME", "INVALID_REALNAME", "Realname is not valid")
    client.realname = realname
    change = Message("SETNAME", (realname,), client.prefix, server.user_tags(client))
    recipients = [m for m in server.common_channel_members(client) if m.capmask & caps.SETNAME]
    server.deliver(recipients, change, skip=client)
    if client.capmask & caps.SETNAME:
        rb.add(change)
    notify_extended_monitor(server, client, change)
