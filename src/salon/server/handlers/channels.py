"""Channel membership and metadata: JOIN, PART, KICK, INVITE, TOPIC, NAMES, LIST."""

from __future__ import annotations

import logging

from salon.errors import CommandError
from salon.proto import numerics as n
from salon.proto.casemap import casefold
from salon.proto.message import Message
from salon.server import caps, history
from salon.server.channel import Channel, mask_matches
from salon.server.client import Client
from salon.server.core import Server
from salon.server.responsebuffer import ResponseBuffer

log = logging.getLogger("salon.server")

# RFC 2812's space, comma and ^G, and every other control character too (C0, DEL, C1): a
# channel name is shown in lists and window titles, where ESC or a tab would be obeyed. So
# are the invisible characters that make one name look like another or reverse the text
# after it (zero-width, bidirectional controls, line and paragraph separators).
_BAD_CHAN_CHARS = frozenset(
    " ,\x7f"
    + "".join(map(chr, range(0x20)))
    + "".join(map(chr, range(0x80, 0xA0)))
    + "\u200b\u200c\u200d\u200e\u200f\u2028\u2029\u202a\u202b\u202c\u202d\u202e"
    + "\u2060\u2066\u2067\u2068\u2069\ufeff"
)


def valid_channel(name: str, maxlen: int) -> bool:
    """RFC 2812 1.3: "Channels names are strings (beginning with a '&', '#', '+' or '!'
    character) of length up to fifty (50) characters ... shall not contain any spaces
    (' '), a control G (^G or ASCII 7), a comma (',')". salon offers only '#'."""
    return 1 < len(name) <= maxlen and name[0] == "#" and _BAD_CHAN_CHARS.isdisjoint(name)


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


def cmd_join(server: Server, client: Client, msg: Message, rb: ResponseBuffer) -> None:
    names = msg.params[0]
    if names == "0":
        for chan in list(client.channels.values()):
            part(server, client, chan, "", rb)
        return
    keys = msg.params[1].split(",") if len(msg.params) > 1 else []
    for i, name in enumerate(names.split(",")):
        if not name:
            continue
        key = keys[i] if i < len(keys) else None
        try:
            join(server, client, name, key, rb)
        except CommandError as exc:
            rb.numeric(exc.numeric, *exc.params)


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
    if chan is None:
        chan = Channel(name, cf, server.now)
        server.channels[cf] = chan
        chan.members[client] = "o"
    else:
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
        chan.members[client] = ""
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
    own = extended if client.capmask & caps.EXTENDED_JOIN else plain
    history.channel_event(server, chan, plain)
    if server.noting:
        server.note(f"join nick={client.nick} channel={chan.name}")
    out = rb if rb is not None else ResponseBuffer(server, client, None)
    out.add(own)
    server.services.on_join(chan, client, out)  # ChanServ access list (AMODE)
    if chan.topic:
        send_topic(server, chan, out)
    if client.capmask & caps.READ_MARKER:
        # read-marker: "the server MUST send MARKREAD ... before RPL_ENDOFNAMES".
        from salon.server.handlers.history import marker_for, marker_message

        out.add(marker_message(server, chan.name, marker_for(server, client, chan.cf)))
    send_names(server, client, chan, out)
    if client.away is not None:
        away = Message("AWAY", (client.away,), client.prefix)
        server.deliver([m for m in others if m.capmask & caps.AWAY_NOTIFY], away)
    if rb is None:
        out.flush()
    history.replay_on_join(server, client, chan)
    return chan


def part(server: Server, client: Client, chan: Channel, reason: str, rb: ResponseBuffer) -> None:
    params = (chan.name, reason) if reason else (chan.name,)
    msg = Message("PART", params, client.prefix, server.user_tags(client))
    rb.add(msg)
    server.deliver(chan.members, msg, skip=client)
    history.channel_event(server, chan, msg)
    leave(server, client, chan)
    if server.noting:
        server.note(f"part nick={client.nick} channel={chan.name}")


def leave(server: Server, client: Client, chan: Channel) -> None:
    del chan.members[client]
    client.channels.pop(chan.cf, None)
    if not chan.members:
        server.remove_channel(chan)


def cmd_part(server: Server, client: Client, msg: Message, rb: ResponseBuffer) -> None:
    reason = msg.params[1] if len(msg.params) > 1 else ""
    for name in msg.params[0].split(","):
        if not name:
            continue
        try:
            chan = get_channel(server, name)
            require_member(chan, client)
        except CommandError as exc:
            rb.numeric(exc.numeric, *exc.params)
            continue
        part(server, client, chan, reason, rb)


def cmd_kick(server: Server, client: Client, msg: Message, rb: ResponseBuffer) -> None:
    """RFC 2812 3.2.8: "there MUST be either one channel parameter and multiple user
    parameter, or as many channel parameters as there are user parameters"."""
    limit = server.config.limits.max_targets
    chans = msg.params[0].split(",")
    nicks = msg.params[1].split(",")[:limit]
    if len(chans) != 1 and len(chans) != len(nicks):
        raise CommandError(n.ERR_NEEDMOREPARAMS, "KICK", "Not enough parameters")
    reason = msg.params[2] if len(msg.params) > 2 and msg.params[2] else client.nick
    reason = reason[: server.config.limits.kicklen]
    for i, nick in enumerate(nicks):
        name = chans[0] if len(chans) == 1 else chans[i]
        try:
            kick(server, client, name, nick, reason, rb)
        except CommandError as exc:
            rb.numeric(exc.numeric, *exc.params)


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
    msg = Message("KICK", (chan.name, target.nick, reason), client.prefix, server.user_tags(client))
    rb.add(msg)
    server.deliver(chan.members, msg, skip=client)
    history.channel_event(server, chan, msg)
    leave(server, target, chan)
    if server.noting:
        server.note(f"kick nick={target.nick} channel={chan.name} by={client.nick}")


def cmd_invite(server: Server, client: Client, msg: Message, rb: ResponseBuffer) -> None:
    if not msg.params:
        for invited_to in server.channels.values():
            if client.nick_cf in invited_to.invited:
                rb.numeric(n.RPL_INVITELIST, invited_to.name)
        rb.numeric(n.RPL_ENDOFINVITELIST, "End of /INVITE list")
        return
    if len(msg.params) < 2:
        raise CommandError(n.ERR_NEEDMOREPARAMS, "INVITE", "Not enough parameters")
    nick, name = msg.params[0], msg.params[1]
    target = server.nicks.get(casefold(nick))
    if target is None or not target.registered:
        raise CommandError(n.ERR_NOSUCHNICK, nick, "No such nick/channel")
    chan = server.channels.get(casefold(name))
    if chan is not None:
        require_member(chan, client)
        if "i" in chan.modes and not chan.is_op(client):
            raise CommandError(n.ERR_CHANOPRIVSNEEDED, chan.name, "You're not channel operator")
        if target in chan.members:
            raise CommandError(n.ERR_USERONCHANNEL, target.nick, chan.name, "is already on channel")
        chan.invited.add(target.nick_cf)
        name = chan.name
    rb.numeric(n.RPL_INVITING, target.nick, name)
    if target.away is not None:
        rb.numeric(n.RPL_AWAY, target.nick, target.away)
    tags = server.user_tags(client)
    invite = Message("INVITE", (target.nick, name), client.prefix, tags)
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


def send_topic(server: Server, chan: Channel, rb: ResponseBuffer) -> None:
    rb.numeric(n.RPL_TOPIC, chan.name, chan.topic)
    rb.numeric(n.RPL_TOPICWHOTIME, chan.name, chan.topic_by, str(chan.topic_time))


def cmd_topic(server: Server, client: Client, msg: Message, rb: ResponseBuffer) -> None:
    chan = get_channel(server, msg.params[0])
    if len(msg.params) == 1:
        if client not in chan.members and "s" in chan.modes:
            raise CommandError(n.ERR_NOTONCHANNEL, chan.name, "You're not on that channel")
        if chan.topic:
            send_topic(server, chan, rb)
        else:
            rb.numeric(n.RPL_NOTOPIC, chan.name, "No topic is set")
        return
    require_member(chan, client)
    if "t" in chan.modes and not chan.is_op(client):
        raise CommandError(n.ERR_CHANOPRIVSNEEDED, chan.name, "You're not channel operator")
    server.services.check_topic(chan, client)  # ChanServ TOPICLOCK
    chan.topic = msg.params[1][: server.config.limits.topiclen]
    chan.topic_by = client.prefix
    chan.topic_time = int(server.now)
    topic = Message("TOPIC", (chan.name, chan.topic), client.prefix, server.user_tags(client))
    rb.add(topic)
    server.deliver(chan.members, topic, skip=client)
    history.channel_event(server, chan, topic)
    server.services.channel_changed(chan)


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


def cmd_names(server: Server, client: Client, msg: Message, rb: ResponseBuffer) -> None:
    if not msg.params:
        rb.numeric(n.RPL_ENDOFNAMES, "*", "End of /NAMES list")
        return
    names = [name for name in msg.params[0].split(",") if name]
    for name in names[: server.config.limits.max_targets]:
        chan = server.channels.get(casefold(name))
        if chan is not None:
            send_names(server, client, chan, rb, end=False)
    rb.numeric(n.RPL_ENDOFNAMES, msg.params[0], "End of /NAMES list")


def _list_filter(
    server: Server, spec: str
) -> tuple[list[str], list[str], list[tuple[str, str, int]]]:
    """Split LIST parameters into masks, negated masks and ELIST conditions."""
    masks: list[str] = []
    negated: list[str] = []
    conds: list[tuple[str, str, int]] = []
    for item in spec.split(","):
        if not item:
            continue
        head = item[0]
        if head in "<>" and item[1:].isascii() and item[1:].isdigit():
            conds.append(("U", head, int(item[1:])))
        elif (
            head in "CT"
            and len(item) > 2
            and item[1] in "<>"
            and item[2:].isascii()
            and item[2:].isdigit()
        ):
            conds.append((head, item[1], int(item[2:])))
        elif head == "!":
            negated.append(item[1:])
        else:
            masks.append(item)
    return masks, negated, conds


def cmd_list(server: Server, client: Client, msg: Message, rb: ResponseBuffer) -> None:
    masks: list[str] = []
    negated: list[str] = []
    conds: list[tuple[str, str, int]] = []
    if msg.params and msg.params[0]:
        masks, negated, conds = _list_filter(server, msg.params[0])
    now = server.now
    rb.numeric(n.RPL_LISTSTART, "Channel", "Users  Name")
    exact = [casefold(m) for m in masks if "*" not in m and "?" not in m]
    candidates: list[Channel]
    if exact and len(exact) == len(masks):
        found = (server.channels.get(cf) for cf in exact)
        candidates = [c for c in found if c is not None]
    else:
        candidates = list(server.channels.values())
    for chan in candidates:
        if "s" in chan.modes and client not in chan.members:
            continue
        if masks and not any(mask_matches(m, chan.name) for m in masks):
            continue
        if negated and any(mask_matches(m, chan.name) for m in negated):
            continue
        ok = True
        for kind, op, value in conds:
            if kind == "U":
                actual = len(chan.members)
                ok = actual > value if op == ">" else actual < value
            else:
                stamp = chan.created if kind == "C" else chan.topic_time
                if kind == "T" and not chan.topic_time:
                    ok = False
                    break
                minutes = (now - stamp) / 60
                # ELIST C/T: "C<val" = created less than val minutes ago.
                ok = minutes < value if op == "<" else minutes > value
            if not ok:
                break
        if not ok:
            continue
        rb.numeric(n.RPL_LIST, chan.name, str(len(chan.members)), chan.topic)
    rb.numeric(n.RPL_LISTEND, "End of /LIST")
