"""Applying an event: one function per kind of :mod:`salon.server.events`, found in
``APPLY`` by the event's type. Only these functions change the shared state (the nick
registry, the channels, their members, modes, topics and lists, a user's nick, away
message, realname, account and modes, the K-lines), and each renders the lines that this
process's clients get for it.

Each takes the server, the event and the response buffer of the command that made it
(None when the event was made elsewhere, as in a replay: then the user it names is not
the origin here, and gets nothing of its own). ``Server.emit`` records the event and calls
the function; that is the only way these states change.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from salon.proto.casemap import casefold
from salon.proto.message import Message
from salon.server import caps, history, metadata, monitor
from salon.server.abuse import describe
from salon.server.accounts import set_account
from salon.server.channel import LIST_MODES, PREFIX_MODES, Channel, ListEntry
from salon.server.channels import send_names, send_topic
from salon.server.client import Client, Kind
from salon.server.events import (
    Account,
    Away,
    Ban,
    ChannelAccess,
    ChannelMode,
    ChannelReg,
    Event,
    Intro,
    Invite,
    Join,
    Kick,
    Kill,
    Metadata,
    Nick,
    Part,
    Quit,
    ReadMarker,
    Redact,
    Rename,
    Setname,
    Topic,
    TopicLock,
    Unban,
    UserMode,
    Wallops,
)
from salon.server.responsebuffer import ResponseBuffer
from salon.store.base import ServerBan

if TYPE_CHECKING:
    from salon.server.core import Server

log = logging.getLogger("salon.server")


def user(server: Server, uid: int) -> Client:
    """The user ``uid``: a connection of this process, a user without one (introduced
    by an event made elsewhere), or a service (ChanServ changes modes)."""
    client = server.clients.get(uid)
    if client is not None:
        return client
    remote = server.remote.get(uid)
    if remote is not None:
        return remote
    leaving = server.leaving.get(uid)
    return leaving if leaving is not None else server.services.by_id[uid]


def intro(client: Client) -> Intro:
    """The event that makes a registering ``client`` a user of the network."""
    return Intro(
        client.id,
        client.nick,
        client.user,
        client.host,
        client.ip,
        client.realname,
        client.account,
        "".join(sorted(client.modes)),
        client.created,
        client.tls,
        client.certfp,
    )


def apply_intro(server: Server, ev: Intro, rb: ResponseBuffer | None) -> None:
    client = server.clients.get(ev.uid)
    if client is None and ev.uid in server.leaving:
        # This node's client, gone while its Intro waited for its turn in the cluster's
        # order (already counted out of ``unregistered``): its Quit follows.
        client = server.leaving[ev.uid]
    elif client is None:
        # A user of another process (or of a replay): a Client without a connection.
        client = Client(ev.uid, Kind.IRC, ev.ip, 0, ev.signon)
        client.host = ev.host
        client.user = ev.user
        client.realname = ev.realname
        client.tls = ev.tls
        client.certfp = ev.certfp
        client.closed = True  # nothing is ever written to it
        server.remote[ev.uid] = client
        set_account(server.accounts, client, ev.account)
    else:
        server.unregistered -= 1
    cf = casefold(ev.nick)
    client.set_nick(ev.nick, cf, client.nick_time)
    client.registered = True
    client.update_prefix()
    server.nicks[cf] = client
    # The most users at once (LUSERS 265/266), counted as each arrives on any node: a
    # count taken only when LUSERS is asked misses the other nodes' peaks.
    server.max_local = max(server.max_local, server.user_count())
    for mode in ev.modes:
        server.set_user_mode(client, mode, True)
    server.notify_monitors(client, online=True)


def apply_nick(server: Server, ev: Nick, rb: ResponseBuffer | None) -> None:
    client = user(server, ev.uid)
    cf = casefold(ev.nick)
    old_cf = client.nick_cf
    change = Message("NICK", (ev.nick,), client.prefix, server.user_tags(client))
    server.remember_whowas(client)
    recipients = server.common_channel_members(client)
    recipients.discard(client)
    renamed = old_cf != cf  # a change of case only is not a new nick for MONITOR
    if renamed:
        server.notify_monitors(client, online=False)
        del server.nicks[old_cf]
        server.nicks[cf] = client
    client.set_nick(ev.nick, cf, server.now)
    if rb is not None:
        rb.add(change)
    server.deliver(recipients, change)
    history.user_event(server, client, change)
    if renamed:
        server.notify_monitors(client, online=True)


def remember_rejoin(server: Server, client: Client) -> None:
    """A user of an account leaves: its channels are remembered for the account's return
    (accounts.rejoin), across restarts."""
    if client.account is not None and client.channels and server.config.accounts.rejoin:
        account, names = casefold(client.account), [c.name for c in client.channels.values()]
        server.rejoin[account] = names
        server.store(lambda store: store.set_rejoin(account, names), idempotent=True)


def apply_quit(server: Server, ev: Quit, rb: ResponseBuffer | None) -> None:
    client = user(server, ev.uid)
    if ev.uid in server.remote:
        # Another node's user: it may come back on this node (the origin remembered it in
        # Server._remove, before its channels were left).
        remember_rejoin(server, client)
    server.invisible.discard(client)
    server.opers.discard(client)
    if client.channels:
        try:
            quit_msg = Message("QUIT", (ev.reason,), client.prefix, server.user_tags(client))
            history.user_event(server, client, quit_msg)
            seen: set[Client] = {client}
            for chan in client.channels.values():
                recipients = [m for m in chan.members if m not in seen]
                seen.update(recipients)
                server.deliver(recipients, quit_msg)
        except Exception:
            # A bug (a QUIT that cannot be serialized): the user still leaves every
            # channel below, or it would stay in them, a ghost holding its nick.
            log.exception("bug telling the channels of %s that it quit", client.nick)
        for chan in list(client.channels.values()):
            del chan.members[client]
            chan.local = None
            if not chan.members:
                server.remove_channel(chan)
        client.channels.clear()
    if server.nicks.get(client.nick_cf) is client:
        del server.nicks[client.nick_cf]
    server.remember_whowas(client)
    try:
        server.notify_monitors(client, online=False)
    except Exception:
        log.exception("bug telling the monitors of %s that it quit", client.nick)
    if server.remote.pop(ev.uid, None) is not None:
        server.accounts.leave_session(client)
    elif server.leaving:
        server.leaving.pop(ev.uid, None)


def apply_join(server: Server, ev: Join, rb: ResponseBuffer | None) -> None:
    client = user(server, ev.uid)
    cf = casefold(ev.channel)
    chan = server.channels.get(cf)
    if chan is None:
        chan = Channel(ev.channel, cf, ev.time)
        server.channels[cf] = chan
        chan.members[client] = "o"
    else:
        chan.members[client] = ""
        chan.local = None
        chan.invited.discard(client.nick_cf)
    client.channels[cf] = chan
    tags = server.user_tags(client)
    plain = Message("JOIN", (chan.name,), client.prefix, tags)
    extended = Message(
        "JOIN", (chan.name, client.account or "*", client.realname), client.prefix, tags
    )
    others = [m for m in chan.members if m is not client]
    server.deliver([m for m in others if not m.capmask & caps.EXTENDED_JOIN], plain)
    server.deliver([m for m in others if m.capmask & caps.EXTENDED_JOIN], extended)
    history.channel_event(server, chan, plain)
    if server.noting:
        server.note(f"join nick={client.nick} channel={chan.name}")
    if rb is not None:
        rb.add(extended if client.capmask & caps.EXTENDED_JOIN else plain)
    if client.away is not None:
        away = Message("AWAY", (client.away,), client.prefix)
        server.deliver([m for m in others if m.capmask & caps.AWAY_NOTIFY], away)
    metadata.joined(server, client, chan)


def leave(server: Server, client: Client, chan: Channel) -> None:
    del chan.members[client]
    chan.local = None
    client.channels.pop(chan.cf, None)
    if not chan.members:
        server.remove_channel(chan)


def apply_part(server: Server, ev: Part, rb: ResponseBuffer | None) -> None:
    client = user(server, ev.uid)
    chan = server.channels[casefold(ev.channel)]
    params = (chan.name, ev.reason) if ev.reason else (chan.name,)
    msg = Message("PART", params, client.prefix, server.user_tags(client))
    if rb is not None:
        rb.add(msg)
    server.deliver(chan.members, msg, skip=client)
    history.channel_event(server, chan, msg)
    leave(server, client, chan)
    if server.noting:
        server.note(f"part nick={client.nick} channel={chan.name}")


def apply_kick(server: Server, ev: Kick, rb: ResponseBuffer | None) -> None:
    client = user(server, ev.uid)
    target = user(server, ev.target)
    chan = server.channels[casefold(ev.channel)]
    msg = Message(
        "KICK", (chan.name, target.nick, ev.reason), client.prefix, server.user_tags(client)
    )
    if rb is not None:
        rb.add(msg)
    server.deliver(chan.members, msg, skip=client)
    history.channel_event(server, chan, msg)
    leave(server, target, chan)
    if server.noting:
        server.note(f"kick nick={target.nick} channel={chan.name} by={client.nick}")


def apply_topic(server: Server, ev: Topic, rb: ResponseBuffer | None) -> None:
    client = user(server, ev.uid)
    chan = server.channels[casefold(ev.channel)]
    chan.topic = ev.text
    chan.topic_by = client.prefix
    chan.topic_time = int(ev.time)
    topic = Message("TOPIC", (chan.name, chan.topic), client.prefix, server.user_tags(client))
    if rb is not None:
        rb.add(topic)
    server.deliver(chan.members, topic, skip=client)
    history.channel_event(server, chan, topic)
    server.services.channel_changed(chan)


def apply_channel_mode(server: Server, ev: ChannelMode, rb: ResponseBuffer | None) -> None:
    client = user(server, ev.uid)
    chan = server.channels[casefold(ev.channel)]
    flags = ""
    params: list[str] = []
    sign = ""
    for adding, letter, arg in ev.changes:
        if letter in LIST_MODES:
            assert arg is not None
            entries = chan.list_for(letter)
            if adding:
                entries.append(ListEntry(arg, client.prefix, int(ev.time)))
            else:
                folded = casefold(arg)
                entries[:] = [e for e in entries if casefold(e.mask) != folded]
        elif letter in PREFIX_MODES:
            assert arg is not None
            chan.set_prefix(server.nicks[casefold(arg)], letter, adding)
        elif letter == "k":
            chan.key = arg if adding else None
        elif letter == "l":
            chan.limit = int(arg) if adding and arg is not None else None
        elif adding:
            chan.modes.add(letter)
        else:
            chan.modes.discard(letter)
        want = "+" if adding else "-"
        if want != sign:
            flags += want
            sign = want
        flags += letter
        if arg is not None:
            params.append(arg)
    change = Message("MODE", (chan.name, flags, *params), client.prefix, server.user_tags(client))
    if rb is not None:
        rb.add(change)
    # The buffer's client has its copy there: the setter, or the member ChanServ opped
    # as it joined (its MODE after its JOIN).
    server.deliver(chan.members, change, skip=rb.client if rb is not None else client)
    history.channel_event(server, chan, change)
    if any(letter in "sik" for _add, letter, _arg in ev.changes):
        history.note_privacy(server, chan)
    if any(letter not in PREFIX_MODES for _add, letter, _arg in ev.changes):
        # A registered channel's record has no members, so +o/+v alone need no write.
        server.services.channel_changed(chan)


def apply_user_mode(server: Server, ev: UserMode, rb: ResponseBuffer | None) -> None:
    client = user(server, ev.uid)
    if ev.oper is not None:
        client.oper = ev.oper
    added = removed = ""
    for sign, mode in zip(ev.changes[::2], ev.changes[1::2], strict=True):
        server.set_user_mode(client, mode, sign == "+")
        if sign == "+":
            added += mode
        else:
            removed += mode
    change = ("+" + added if added else "") + ("-" + removed if removed else "")
    if rb is not None:
        rb.add(Message("MODE", (client.nick, change), client.prefix))


def apply_invite(server: Server, ev: Invite, rb: ResponseBuffer | None) -> None:
    client = user(server, ev.uid)
    target = user(server, ev.target)
    chan = server.channels.get(casefold(ev.channel))
    if chan is not None:
        chan.invited.add(target.nick_cf)
    invite = Message("INVITE", (target.nick, ev.channel), client.prefix, server.user_tags(client))
    server.send(target, invite)
    if chan is not None:
        # invite-notify: sent to other members who could have invited the user themselves.
        notify = [
            m
            for m in chan.members
            if m is not client
            and m is not target
            and m.capmask & caps.INVITE_NOTIFY
            and (chan.is_op(m) or "i" not in chan.modes)
        ]
        server.deliver(notify, invite)


def apply_away(server: Server, ev: Away, rb: ResponseBuffer | None) -> None:
    client = user(server, ev.uid)
    client.away = ev.text
    away = Message("AWAY", (ev.text,) if ev.text is not None else (), client.prefix)
    # away-notify: "sent to all clients that share a channel with the user".
    recipients = [m for m in server.common_channel_members(client) if m.capmask & caps.AWAY_NOTIFY]
    server.deliver(recipients, away, skip=client)
    monitor.notify_extended(server, client, away)


def apply_setname(server: Server, ev: Setname, rb: ResponseBuffer | None) -> None:
    client = user(server, ev.uid)
    client.realname = ev.realname
    change = Message("SETNAME", (ev.realname,), client.prefix, server.user_tags(client))
    recipients = [m for m in server.common_channel_members(client) if m.capmask & caps.SETNAME]
    server.deliver(recipients, change, skip=client)
    if rb is not None and client.capmask & caps.SETNAME:
        rb.add(change)
    monitor.notify_extended(server, client, change)


def apply_account(server: Server, ev: Account, rb: ResponseBuffer | None) -> None:
    client = user(server, ev.uid)
    if not set_account(server.accounts, client, ev.account):
        server.accounts.notify(client, ev.account or "*")
        metadata.logged_in(server, client)


def apply_rename(server: Server, ev: Rename, rb: ResponseBuffer | None) -> None:
    client = user(server, ev.uid)
    old_cf, new, new_cf = casefold(ev.channel), ev.new, casefold(ev.new)
    chan = server.channels.pop(old_cf)
    old_name = chan.name
    chan.name, chan.cf = new, new_cf
    server.channels[new_cf] = chan
    for member in chan.members:
        member.channels.pop(old_cf, None)
        member.channels[new_cf] = chan
        state = member.textport
        if state is not None and getattr(state, "room", None) == old_cf:
            state.room = new_cf
    reason = ev.reason
    params = (old_name, new, reason) if reason else (old_name, new)
    rename = Message("RENAME", params, client.prefix, server.server_tags())
    for member in list(chan.members):
        own = rb if member is client else None
        if member.capmask & caps.CHANNEL_RENAME:
            if own is not None:
                own.add(rename)
            else:
                server.send(member, rename)
            continue
        # Without the capability: the channel seems to be left and a new one joined.
        out = own if own is not None else ResponseBuffer(server, member, None)
        part_reason = f"Channel renamed to {new}" + (f": {reason}" if reason else "")
        out.add(Message("PART", (old_name, part_reason), member.prefix))
        out.add(Message("JOIN", (new,), member.prefix))
        if chan.topic:
            send_topic(server, chan, out)
        send_names(server, member, chan, out)
        if out is not own:
            out.flush()


def apply_metadata(server: Server, ev: Metadata, rb: ResponseBuffer | None) -> None:
    client = user(server, ev.uid)
    chan = server.channels[casefold(ev.channel)] if ev.channel is not None else None
    keys = chan.metadata if chan is not None else client.metadata
    if ev.value is None:
        keys.pop(ev.key, None)
    else:
        keys[ev.key] = ev.value
    if chan is None:
        metadata.remember(server, client, ev.key, ev.value)
        metadata.user_changed(server, client, ev.key, ev.value)
    else:
        metadata.channel_changed(server, chan, client, ev.key, ev.value)
        server.services.channel_changed(chan)  # a registered channel keeps its keys


def apply_ban(server: Server, ev: Ban, rb: ResponseBuffer | None) -> None:
    ban = ServerBan(ev.kind, ev.mask, ev.reason, ev.setter, ev.created, ev.expires)
    hit = server.abuse.add(ban)  # kept, stored, and this process's matching users dropped
    if rb is not None:
        rb.notice(f"{ban.kind}-line added: {describe(ban, server.now)}")
        if hit:
            rb.notice(f"{len(hit)} connection(s) disconnected")
    # Other operators with +w hear about it.
    asker = rb.client if rb is not None else None
    note = Message(
        "NOTICE", ("*", f"{ban.setter} added {ban.kind}-line {ban.mask}: {ban.reason}"), server.name
    )
    server.deliver(
        [
            c
            for c in server.clients.values()
            if c.oper is not None and c is not asker and "w" in c.modes
        ],
        note,
    )


def apply_unban(server: Server, ev: Unban, rb: ResponseBuffer | None) -> None:
    server.abuse.remove(ev.kind, ev.mask)


def apply_kill(server: Server, ev: Kill, rb: ResponseBuffer | None) -> None:
    target = server.clients.get(ev.target)
    if target is None:
        return  # another node's user: that node drops it, and its Quit follows
    killer = user(server, ev.uid).nick
    server.drop(
        target,
        f"Killed ({killer} ({ev.reason}))",
        error=f"Closing Link: {server.name} (Killed ({killer} ({ev.reason})))",
    )


def apply_wallops(server: Server, ev: Wallops, rb: ResponseBuffer | None) -> None:
    wallops = Message("WALLOPS", (ev.text,), user(server, ev.uid).prefix)
    recipients = [c for c in server.clients.values() if c.registered and "w" in c.modes]
    server.deliver(recipients, wallops)


def apply_channel_reg(server: Server, ev: ChannelReg, rb: ResponseBuffer | None) -> None:
    chanserv = server.services.chanserv
    if ev.founder is None:
        chanserv.unregister(casefold(ev.channel))
    else:
        chanserv.register(ev.channel, ev.founder, ev.time)


def apply_channel_access(server: Server, ev: ChannelAccess, rb: ResponseBuffer | None) -> None:
    server.services.chanserv.set_access(ev.channel, ev.account, ev.level)


def apply_topic_lock(server: Server, ev: TopicLock, rb: ResponseBuffer | None) -> None:
    server.services.chanserv.set_topiclock(ev.channel, ev.on)


def apply_redact(server: Server, ev: Redact, rb: ResponseBuffer | None) -> None:
    client = user(server, ev.uid)
    key, msgid = ev.key, ev.msgid
    if rb is None and history.enabled(server):
        # Made on another node, which redacted its store: this node's store too (with one
        # store for every node, the cluster keeps only the origin's write).
        server.store(lambda store: store.redact_history(key, msgid), idempotent=True)
    server.files.drop_refs(lambda ref: ref.target == key and ref.msgid == msgid)
    params = (ev.target, msgid, ev.reason) if ev.reason else (ev.target, msgid)
    redaction = Message("REDACT", params, client.prefix, server.server_tags())
    seen: Iterable[Client] = ()
    if ev.target.startswith("#"):
        chan = server.channels.get(casefold(ev.target))
        seen = chan.members if chan is not None else ()
    else:
        other = server.nicks.get(casefold(ev.target))
        seen = (other,) if other is not None else ()
    recipients = [m for m in seen if m.capmask & caps.MESSAGE_REDACTION]
    server.deliver(recipients, redaction, skip=client)
    if rb is not None and client.capmask & caps.MESSAGE_REDACTION:
        rb.add(redaction)


def apply_read_marker(server: Server, ev: ReadMarker, rb: ResponseBuffer | None) -> None:
    client = user(server, ev.uid)
    me, cf = history.party(server, client), casefold(ev.target)
    current = server.read_markers.get((me, cf))
    if current is not None and ev.time <= current:
        return
    server.read_markers[(me, cf)] = stamp = ev.time
    server.store(lambda store: store.set_read_marker(me, cf, stamp), idempotent=True)
    # read-marker: the server "SHOULD" tell the user's other sessions too.
    others = [
        c
        for c in server.clients.values()
        if c is not client
        and c.registered
        and c.capmask & caps.READ_MARKER
        and history.party(server, c) == me
    ]
    server.deliver(others, history.marker_message(server, ev.target, stamp))


APPLY: dict[type[Any], Callable[[Server, Any, ResponseBuffer | None], None]] = {
    Intro: apply_intro,
    Nick: apply_nick,
    Quit: apply_quit,
    Join: apply_join,
    Part: apply_part,
    Kick: apply_kick,
    Topic: apply_topic,
    ChannelMode: apply_channel_mode,
    UserMode: apply_user_mode,
    Invite: apply_invite,
    Away: apply_away,
    Setname: apply_setname,
    Account: apply_account,
    Rename: apply_rename,
    Metadata: apply_metadata,
    Ban: apply_ban,
    Unban: apply_unban,
    Kill: apply_kill,
    Wallops: apply_wallops,
    ChannelReg: apply_channel_reg,
    ChannelAccess: apply_channel_access,
    TopicLock: apply_topic_lock,
    Redact: apply_redact,
    ReadMarker: apply_read_marker,
}


def emit(
    server: Server,
    event: Event,
    rb: ResponseBuffer | None = None,
    then: Callable[[ResponseBuffer | None], None] | None = None,
) -> None:
    """Apply ``event`` now (and record it when the server keeps a log of events), then
    run ``then(rb)``: what the command does once its change is made (a joiner's NAMES).

    In a cluster (``server.cluster``) the event is sent to the network's one order
    instead: it is applied when it comes back in its turn, on every node alike, and
    ``then`` runs after it, with what ``rb`` answers held until then (see
    salon.server.cluster)."""
    cluster = server.cluster
    if cluster is not None:
        cluster.submit(event, rb, then)
        return
    if server.event_log is not None:
        server.event_log.append(event)
    APPLY[type(event)](server, event, rb)
    if then is not None:
        then(rb)
