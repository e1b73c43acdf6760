"""PRIVMSG, NOTICE, TAGMSG, AWAY and SETNAME: the hot path lives here."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable

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


def _client_tags(msg: Message) -> dict[str, str]:
    """message-tags: client-only tags (``+`` prefix) are relayed; others are dropped."""
    return {k: v for k, v in msg.tags.items() if k[:1] == "+"} if msg.tags else {}


def cmd_privmsg(server: Server, client: Client, msg: Message, rb: ResponseBuffer) -> None:
    relay(server, client, msg, rb, msg.command)


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
    extra = _client_tags(msg)
    if client.account is not None:
        extra["account"] = client.account
    if "B" in client.modes:
        extra["bot"] = ""
    echo = bool(client.capmask & caps.ECHO_MESSAGE)
    keep = history.enabled(server) and history.storable(msg)
    deliveries: list[Callable[[ResponseBuffer], None]] = []
    events: list[HistoryEvent] = []
    for target in targets:
        tags = server.server_tags()
        if extra:
            tags.update(extra)
        try:
            deliveries.append(
                _prepare(server, client, command, target, text, tags, rb, echo, keep, events)
            )
        except CommandError as exc:
            if not notice:
                rb.numeric(exc.numeric, *exc.params)
    if not deliveries:
        return
    if events:
        # Durability: committed to the database before it is echoed or delivered.
        history.commit_then(server, rb, events, _all(deliveries), command)
    else:
        for deliver in deliveries:
            deliver(rb)


def _all(deliveries: list[Callable[[ResponseBuffer], None]]) -> Callable[[ResponseBuffer], None]:
    def run(out: ResponseBuffer) -> None:
        for deliver in deliveries:
            deliver(out)

    return run


def _prepare(
    server: Server,
    client: Client,
    command: str,
    target: str,
    text: str | None,
    tags: dict[str, str],
    rb: ResponseBuffer,
    echo: bool,
    keep: bool,
    events: list[HistoryEvent],
) -> Callable[[ResponseBuffer], None]:
    """Check one target; return what delivers the message to it (now or after commit)."""
    status = ""
    name = target
    while name[:1] in PREFIX_TO_MODE and name[1:2] in ("#", "@", "+"):
        status = status if status else name[0]
        name = name[1:]
    params = (target,) if text is None else (target, text)
    out = Message(command, params, client.prefix, tags)
    if text is not None:
        # RFC 1459 2.3: a relayed line must fit in 512 bytes with the sender's prefix added.
        # Refuse it (nothing is cut silently) and say by how much it is over.
        colon = 0 if text and " " not in text and text[0] != ":" else 1
        size = len(client.prefix) + len(command) + len(target) + len(text.encode()) + 6 + colon
        if size > MAX_LINE:
            raise CommandError(
                n.ERR_INPUTTOOLONG,
                f"Message too long to relay: {size - MAX_LINE} bytes over (with your "
                f"nick!user@host added, lines are at most {MAX_LINE} bytes)",
            )
    if name.startswith("#"):
        chan = server.channels.get(casefold(name))
        if chan is None:
            raise CommandError(n.ERR_NOSUCHCHANNEL, name, "No such channel")
        check_can_send(chan, client, text)
        if text is not None:
            server.abuse.check_channel_flood(chan, client)
        if keep and not status:
            # A status message (@#chan) is not stored: history would show it to everyone.
            events.append(history.message_event(server, out, chan.cf))
        if server.log_messages and text is not None:
            server.note(f"{command} {chan.name} <{client.nick}> {text}")

        def to_channel(out_rb: ResponseBuffer) -> None:
            recipients: Iterable[Client] = chan.members
            if status:
                rank = "ov".index(PREFIX_TO_MODE[status])
                allowed = "ov"[: rank + 1]
                recipients = [
                    m for m, modes in chan.members.items() if modes and modes[0] in allowed
                ]
            if command == "TAGMSG":
                recipients = [m for m in recipients if m.capmask & caps.MESSAGE_TAGS]
            server.deliver(recipients, out, skip=client)
            if echo:
                out_rb.add(out)

        return to_channel
    other = server.nicks.get(casefold(name))
    if other is None or not other.registered:
        raise CommandError(n.ERR_NOSUCHNICK, name, "No such nick/channel")
    check_private_message(server, client, other)  # user mode +R
    if other.away is not None and command == "PRIVMSG":
        rb.numeric(n.RPL_AWAY, other.nick, other.away)
    if keep:
        mine = history.party(server, client)
        key = dm_key(mine, history.party(server, other))
        # Correspondent names are stored for CHATHISTORY TARGETS only when they change.
        names = (target, client.nick)
        display = target if server.dm_names.get(key) != names else ""
        server.dm_names[key] = names
        events.append(history.message_event(server, out, key, display=display, party_key=mine))
    if server.log_messages and text is not None:
        server.note(f"{command} {other.nick} <{client.nick}> {text}")

    def to_user(out_rb: ResponseBuffer) -> None:
        if not other.closed and (command != "TAGMSG" or other.capmask & caps.MESSAGE_TAGS):
            server.send(other, out)
        if echo:
            out_rb.add(out)

    return to_user


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
