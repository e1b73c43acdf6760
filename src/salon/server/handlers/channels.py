"""Channel membership and metadata: JOIN, PART, KICK, INVITE, TOPIC, NAMES, LIST."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from salon.errors import CommandError
from salon.proto import numerics as n
from salon.proto.casemap import casefold
from salon.proto.message import Message
from salon.server.channel import Channel, mask_matches
from salon.server.channels import (
    get_channel,
    join,
    kick,
    part,
    require_member,
    send_names,
    send_topic,
)
from salon.server.client import Client
from salon.server.events import Invite, Topic
from salon.server.responsebuffer import ResponseBuffer

if TYPE_CHECKING:
    from salon.server.core import Server

log = logging.getLogger("salon.server")


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
        name = chan.name
    server.emit(Invite(client.id, target.id, name))
    rb.numeric(n.RPL_INVITING, target.nick, name)
    if target.away is not None:
        rb.numeric(n.RPL_AWAY, target.nick, target.away)


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
    text = msg.params[1][: server.config.limits.topiclen]
    server.emit(Topic(client.id, chan.name, text, server.now), rb)


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
