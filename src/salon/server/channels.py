"""Channel operations: joining, leaving, kicking, and what a member is told of a channel
(its topic and names). The handlers of JOIN, PART, KICK, TOPIC and NAMES call these, and so
do the plain-text port, services and the server's rejoin. Modelled on ergo's
irc/channel.go (``Join``, ``Part``, ``Kick``, ``SendTopic``, ``Names``)."""

from __future__ import annotations

from functools import partial
from typing import TYPE_CHECKING

from salon.errors import CommandError
from salon.proto import numerics as n
from salon.proto.casemap import casefold
from salon.proto.names import valid_channel
from salon.server import caps, history, metadata
from salon.server.channel import Channel
from salon.server.client import Client
from salon.server.events import Join, Kick, Part
from salon.server.responsebuffer import ResponseBuffer

if TYPE_CHECKING:
    from salon.server.core import Server


def get_channel(server: Server, name: str) -> Channel:
    chan = server.channels.get(casefold(name))
    if chan is None:
        raise CommandError(n.ERR_NOSUCHCHANNEL, name, "No such channel")
    return chan


def require_member(chan: Channel, client: Client) -> None:
    if client not in chan.members:
        raise CommandError(n.ERR_NOTONCHANNEL, chan.name, "You're not on that channel")


def require_op(chan: Channel, client: Client) -> None:
    require_member(chan, client)
    if not chan.is_op(client):
        raise CommandError(n.ERR_CHANOPRIVSNEEDED, chan.name, "You're not channel operator")


def join(
    server: Server, client: Client, name: str, key: str | None, rb: ResponseBuffer | None
) -> Channel | None:
    """Join ``client`` to channel ``name``; replies go to ``rb`` (or straight out when None)."""
    lim = server.config.limits
    if not valid_channel(name, lim.channellen):
        raise CommandError(n.ERR_NOSUCHCHANNEL, name, "No such channel")
    cf = casefold(name)
    chan = server.channels.get(cf)
    if chan is not None and client in chan.members:
        return None
    if len(client.channels) >= lim.max_channels:
        raise CommandError(n.ERR_TOOMANYCHANNELS, name, "You have joined too many channels")
    if chan is not None:
        admit(chan, client, key)
    out = rb if rb is not None else ResponseBuffer(server, client, None)
    joining = Join(client.id, name, server.now, key)
    server.emit(joining, out, partial(_joined, server, client, cf, rb))
    return server.channels.get(cf)


def admit(chan: Channel, client: Client, key: str | None) -> None:
    """Raise the error that keeps ``client`` out of ``chan`` (+i, +k, +l, +b, +R), if any."""
    invited = chan.is_invex(client)
    if "i" in chan.modes and not invited:
        raise CommandError(n.ERR_INVITEONLYCHAN, chan.name, "Cannot join channel (+i)")
    if chan.key is not None and key != chan.key and client.nick_cf not in chan.invited:
        raise CommandError(n.ERR_BADCHANNELKEY, chan.name, "Cannot join channel (+k)")
    if chan.limit is not None and len(chan.members) >= chan.limit and not invited:
        raise CommandError(n.ERR_CHANNELISFULL, chan.name, "Cannot join channel (+l)")
    if chan.is_banned(client) and not invited:
        raise CommandError(n.ERR_BANNEDFROMCHAN, chan.name, "Cannot join channel (+b)")
    if "R" in chan.modes and client.account is None and not invited:
        raise CommandError(
            n.ERR_NEEDREGGEDNICK,
            chan.name,
            "Cannot join channel (+R): you must be logged in to an account",
        )


def _joined(
    server: Server,
    client: Client,
    cf: str,
    rb: ResponseBuffer | None,
    out: ResponseBuffer | None,
) -> None:
    """What the joiner alone is told once it joined (its own JOIN came from the event).
    ``rb``: the command's buffer (None: the replies go straight out)."""
    chan = server.channels[cf]
    if out is None:
        out = ResponseBuffer(server, client, None)
    server.services.on_join(chan, client, out)  # ChanServ access list (AMODE)
    if chan.topic:
        send_topic(server, chan, out)
    if client.capmask & caps.READ_MARKER:
        # read-marker: "the server MUST send MARKREAD ... before RPL_ENDOFNAMES".
        out.add(
            history.marker_message(server, chan.name, history.marker_for(server, client, chan.cf))
        )
    send_names(server, client, chan, out)
    metadata.join_burst(server, client, chan, out)
    if rb is None:
        out.flush()
    history.replay_on_join(server, client, chan)


def part(server: Server, client: Client, chan: Channel, reason: str, rb: ResponseBuffer) -> None:
    server.emit(Part(client.id, chan.name, reason), rb)


def kick(
    server: Server, client: Client, name: str, nick: str, reason: str, rb: ResponseBuffer
) -> None:
    chan = get_channel(server, name)
    require_op(chan, client)
    target = server.nicks.get(casefold(nick))
    if target is None or not target.registered:
        raise CommandError(n.ERR_NOSUCHNICK, nick, "No such nick/channel")
    if target not in chan.members:
        raise CommandError(n.ERR_USERNOTINCHANNEL, nick, chan.name, "They aren't on that channel")
    server.emit(Kick(client.id, chan.name, target.id, reason), rb)


def send_topic(server: Server, chan: Channel, rb: ResponseBuffer) -> None:
    rb.numeric(n.RPL_TOPIC, chan.name, chan.topic)
    rb.numeric(n.RPL_TOPICWHOTIME, chan.name, chan.topic_by, str(chan.topic_time))


def names_entry(chan: Channel, member: Client, mask: int) -> str:
    prefix = chan.prefix_of(member, bool(mask & caps.MULTI_PREFIX))
    if mask & caps.USERHOST_IN_NAMES:
        return prefix + member.prefix
    return prefix + member.nick


def send_names(
    server: Server, client: Client, chan: Channel, rb: ResponseBuffer, *, end: bool = True
) -> None:
    member = client in chan.members
    if "s" in chan.modes and not member:
        if end:
            rb.numeric(n.RPL_ENDOFNAMES, chan.name, "End of /NAMES list")
        return
    symbol = "@" if "s" in chan.modes else "="
    mask = client.capmask
    entries = [names_entry(chan, m, mask) for m in chan.members if member or "i" not in m.modes]
    budget = 400 - len(server.name) - len(client.nick) - len(chan.name)
    line: list[str] = []
    size = 0
    for entry in entries:
        if line and size + len(entry) + 1 > budget:
            rb.numeric(n.RPL_NAMREPLY, symbol, chan.name, " ".join(line))
            line = []
            size = 0
        line.append(entry)
        size += len(entry) + 1
    if line:
        rb.numeric(n.RPL_NAMREPLY, symbol, chan.name, " ".join(line))
    if end:
        rb.numeric(n.RPL_ENDOFNAMES, chan.name, "End of /NAMES list")
