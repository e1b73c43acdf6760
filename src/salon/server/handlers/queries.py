"""Queries: WHO, WHOIS, WHOWAS, USERHOST, ISON, MONITOR and the server information commands."""

from __future__ import annotations

import contextlib
import time
from typing import TYPE_CHECKING

from salon import __version__
from salon.errors import CommandError
from salon.proto import numerics as n
from salon.proto.casemap import casefold
from salon.proto.limits import MAX_LINE
from salon.proto.message import Message
from salon.server import caps, metadata
from salon.server.channel import Channel, mask_matches
from salon.server.client import Client
from salon.server.responsebuffer import ResponseBuffer

if TYPE_CHECKING:
    from salon.server.core import Server


def cmd_lusers(server: Server, client: Client, msg: Message, rb: ResponseBuffer) -> None:
    server.lusers(rb)


def cmd_motd(server: Server, client: Client, msg: Message, rb: ResponseBuffer) -> None:
    _check_server_param(server, msg, 0)
    server.send_motd(rb)


def _check_server_param(server: Server, msg: Message, index: int) -> None:
    if len(msg.params) > index:
        target = msg.params[index]
        if not mask_matches(target, server.name) and casefold(target) not in server.nicks:
            raise CommandError(n.ERR_NOSUCHSERVER, target, "No such server")


def cmd_time(server: Server, client: Client, msg: Message, rb: ResponseBuffer) -> None:
    _check_server_param(server, msg, 0)
    stamp = time.strftime("%A %B %d %Y -- %H:%M:%S +00:00", time.gmtime(server.now))
    rb.numeric(n.RPL_TIME, server.name, stamp)


def cmd_version(server: Server, client: Client, msg: Message, rb: ResponseBuffer) -> None:
    _check_server_param(server, msg, 0)
    rb.numeric(n.RPL_VERSION, f"salon-{__version__}", server.name, "salon IRC server")
    for line in server.isupport_lines:
        rb.numeric(n.RPL_ISUPPORT, *line)


def cmd_info(server: Server, client: Client, msg: Message, rb: ResponseBuffer) -> None:
    _check_server_param(server, msg, 0)
    for line in (
        f"salon {__version__}: a self-hosted chat server that speaks IRC.",
        "Written in Python, on asyncio and uvloop.",
        f"Up since {time.strftime('%Y-%m-%d %H:%M:%S UTC', time.gmtime(server.started))}.",
    ):
        rb.numeric(n.RPL_INFO, line)
    rb.numeric(n.RPL_ENDOFINFO, "End of INFO list")


def cmd_admin(server: Server, client: Client, msg: Message, rb: ResponseBuffer) -> None:
    _check_server_param(server, msg, 0)
    rb.numeric(n.RPL_ADMINME, server.name, "Administrative info")
    rb.numeric(n.RPL_ADMINLOC1, server.config.server.description)
    rb.numeric(n.RPL_ADMINLOC2, f"Network {server.config.server.network}")
    rb.numeric(n.RPL_ADMINEMAIL, "admin@" + server.name)


HELP_TOPICS: dict[str, list[str]] = {
    "": [
        "salon speaks IRC. Common commands:",
        "JOIN #channel, PART #channel, PRIVMSG <target> :<text>, NICK <nick>,",
        "TOPIC, NAMES, LIST, WHO, WHOIS, AWAY, MODE, INVITE, KICK, MONITOR, QUIT.",
        "HELP <command> tells more about one of them.",
    ],
    "JOIN": [
        "JOIN <#channel>[,<#channel>...] [<key>[,<key>...]]",
        "Joins channels. JOIN 0 leaves all.",
    ],
    "PART": ["PART <#channel>[,...] [:<reason>]", "Leaves channels."],
    "PRIVMSG": ["PRIVMSG <target>[,...] :<text>", "Sends a message to a nick or a channel."],
    "NOTICE": ["NOTICE <target>[,...] :<text>", "Like PRIVMSG; never answered automatically."],
    "NICK": ["NICK <nickname>", "Changes your nickname."],
    "TOPIC": ["TOPIC <#channel> [:<topic>]", "Shows or sets a channel's topic."],
    "NAMES": ["NAMES <#channel>", "Lists who is in a channel."],
    "LIST": [
        "LIST [<mask>|<filters>]",
        "Lists channels. Filters: >n, <n, C>n, C<n, T>n, T<n, !mask.",
    ],
    "WHO": ["WHO <mask> [%<fields>[,<token>]]", "Lists users matching a mask (WHOX supported)."],
    "WHOIS": ["WHOIS <nick>", "Shows information about a user."],
    "WHOWAS": ["WHOWAS <nick> [<count>]", "Shows information about a user who left."],
    "AWAY": ["AWAY [:<message>]", "Marks you away, or back with no message."],
    "MODE": ["MODE <target> [<modes> [<params>]]", "Shows or changes user or channel modes."],
    "INVITE": ["INVITE <nick> <#channel>", "Invites a user to a channel."],
    "KICK": ["KICK <#channel> <nick> [:<reason>]", "Removes a user from a channel."],
    "MONITOR": ["MONITOR {+|-} <nick>[,...] | C | L | S", "Tracks when nicks come and go."],
    "QUIT": ["QUIT [:<reason>]", "Disconnects."],
    "OPER": ["OPER <name> <password>", "Gains operator privileges."],
    "KILL": ["KILL <nick> :<reason>", "Operators only: disconnects a user."],
    "WALLOPS": ["WALLOPS :<text>", "Operators only: a message to everyone with user mode +w."],
}


def cmd_help(server: Server, client: Client, msg: Message, rb: ResponseBuffer) -> None:
    topic = msg.params[0].upper() if msg.params else ""
    lines = HELP_TOPICS.get(topic)
    if lines is None:
        raise CommandError(n.ERR_HELPNOTFOUND, topic, "No help available on this topic")
    subject = topic or "*"
    rb.numeric(n.RPL_HELPSTART, subject, lines[0])
    for line in lines[1:]:
        rb.numeric(n.RPL_HELPTXT, subject, line)
    rb.numeric(n.RPL_ENDOFHELP, subject, "End of /HELP")


def cmd_links(server: Server, client: Client, msg: Message, rb: ResponseBuffer) -> None:
    rb.numeric(n.RPL_LINKS, server.name, server.name, f"0 {server.config.server.description}")
    services = server.config.accounts.services_server
    if services and server.config.accounts.enabled:
        rb.numeric(n.RPL_LINKS, services, server.name, "1 Built-in services")
    rb.numeric(n.RPL_ENDOFLINKS, "*", "End of /LINKS list")


def cmd_userhost(server: Server, client: Client, msg: Message, rb: ResponseBuffer) -> None:
    replies = []
    for nick in msg.params[:5]:
        other = server.nicks.get(casefold(nick))
        if other is None or not other.registered:
            continue
        oper = "*" if other.oper is not None else ""
        away = "-" if other.away is not None else "+"
        replies.append(f"{other.nick}{oper}={away}{other.user}@{other.host}")
    rb.numeric(n.RPL_USERHOST, " ".join(replies))


def cmd_ison(server: Server, client: Client, msg: Message, rb: ResponseBuffer) -> None:
    online = []
    for param in msg.params:
        for nick in param.split():
            other = server.nicks.get(casefold(nick))
            if other is not None and other.registered:
                online.append(other.nick)
    rb.numeric(n.RPL_ISON, " ".join(online))


# ---------------------------------------------------------------------------------- WHO

WHOX_ORDER = "tcuihsnfdlaor"


def _visible_ip(viewer: Client, target: Client) -> str:
    return target.ip if viewer is target or viewer.oper is not None else "255.255.255.255"


def _who_flags(server: Server, target: Client, chan: Channel | None, multi: bool) -> str:
    flags = "G" if target.away is not None else "H"
    if target.oper is not None:
        flags += "*"
    if chan is not None:
        flags += chan.prefix_of(target, multi)
    if "B" in target.modes:
        flags += "B"
    return flags


def _who_reply(
    server: Server,
    client: Client,
    target: Client,
    chan: Channel | None,
    fields: str | None,
    token: str,
    rb: ResponseBuffer,
) -> None:
    multi = bool(client.capmask & caps.MULTI_PREFIX)
    channame = chan.name if chan is not None else "*"
    flags = _who_flags(server, target, chan, multi)
    if fields is None:
        rb.numeric(
            n.RPL_WHOREPLY,
            channame,
            target.user,
            target.host,
            server.name,
            target.nick,
            flags,
            f"0 {target.realname}",
        )
        return
    values = []
    for f in WHOX_ORDER:
        if f not in fields:
            continue
        if f == "t":
            values.append(token or "0")
        elif f == "c":
            values.append(channame)
        elif f == "u":
            values.append(target.user)
        elif f == "i":
            values.append(_visible_ip(client, target))
        elif f == "h":
            values.append(target.host)
        elif f == "s":
            values.append(server.name)
        elif f == "n":
            values.append(target.nick)
        elif f == "f":
            values.append(flags)
        elif f == "d":
            values.append("0")
        elif f == "l":
            values.append(str(max(0, int(server.now - target.last_message))))
        elif f == "a":
            values.append(target.account or "0")
        elif f == "o":
            values.append("n/a")
        elif f == "r":
            values.append(target.realname)
    if values:
        rb.numeric(n.RPL_WHOSPCRPL, *values)


def cmd_who(server: Server, client: Client, msg: Message, rb: ResponseBuffer) -> None:
    mask = msg.params[0] if msg.params and msg.params[0] else "*"
    fields: str | None = None
    token = ""
    opers_only = False
    if len(msg.params) > 1:
        arg = msg.params[1]
        if arg.startswith("%"):
            spec, _, token = arg[1:].partition(",")
            fields = spec
        elif "o" in arg:
            opers_only = True
    if mask.startswith("#"):
        chan = server.channels.get(casefold(mask))
        if chan is not None:
            member = client in chan.members
            if member or "s" not in chan.modes:
                for target in chan.members:
                    if not member and "i" in target.modes:
                        continue
                    if opers_only and target.oper is None:
                        continue
                    _who_reply(server, client, target, chan, fields, token, rb)
    else:
        everyone = mask in ("*", "0")
        exact = None if everyone or "*" in mask or "?" in mask else server.nicks.get(casefold(mask))
        if exact is not None and exact.registered:
            candidates = [exact]
        elif exact is None and not everyone and "*" not in mask and "?" not in mask:
            candidates = []
        else:
            candidates = [c for c in server.clients.values() if c.registered]
            candidates += server.remote.values()  # other nodes' users (a cluster)
        shared = server.common_channel_members(client)
        for target in candidates:
            if opers_only and target.oper is None:
                continue
            if (
                "i" in target.modes
                and target is not client
                and target not in shared
                and client.oper is None
                and target is not exact
            ):
                continue
            if (
                not everyone
                and target is not exact
                and not (
                    mask_matches(mask, target.nick)
                    or mask_matches(mask, target.user)
                    or mask_matches(mask, target.host)
                    or mask_matches(mask, target.realname)
                    or mask_matches(mask, server.name)
                )
            ):
                continue
            chan = next(
                (c for c in target.channels.values() if "s" not in c.modes or client in c.members),
                None,
            )
            _who_reply(server, client, target, chan if fields is None else None, fields, token, rb)
    rb.numeric(n.RPL_ENDOFWHO, mask, "End of WHO list")


# ---------------------------------------------------------------------------------- WHOIS


def cmd_whois(server: Server, client: Client, msg: Message, rb: ResponseBuffer) -> None:
    nicks = msg.params[-1]
    if len(msg.params) > 1:
        _check_server_param(server, msg, 0)
    nick = nicks.split(",")[0]
    target = server.nicks.get(casefold(nick))
    if target is None or not target.registered:
        rb.numeric(n.ERR_NOSUCHNICK, nick, "No such nick/channel")
        rb.numeric(n.RPL_ENDOFWHOIS, nick, "End of /WHOIS list")
        return
    rb.numeric(n.RPL_WHOISUSER, target.nick, target.user, target.host, "*", target.realname)
    multi = bool(client.capmask & caps.MULTI_PREFIX)
    chans = []
    for chan in target.channels.values():
        if "s" in chan.modes and client not in chan.members and client is not target:
            continue
        if "i" in target.modes and client not in chan.members and client is not target:
            continue
        chans.append(chan.prefix_of(target, multi) + chan.name)
    # Several 319s when one would pass 512 bytes.
    room = MAX_LINE - len(f":{server.name} 319 {client.nick} {target.nick} :\r\n".encode())
    for chunk in _lists(chans, " ", room):
        rb.numeric(n.RPL_WHOISCHANNELS, target.nick, chunk)
    rb.numeric(n.RPL_WHOISSERVER, target.nick, server.name, server.config.server.description)
    if target.oper is not None:
        rb.numeric(n.RPL_WHOISOPERATOR, target.nick, "is an IRC operator")
    if target.account is not None:
        rb.numeric(n.RPL_WHOISACCOUNT, target.nick, target.account, "is logged in as")
    if target.certfp and (client is target or client.oper is not None):
        rb.numeric(
            n.RPL_WHOISCERTFP,
            target.nick,
            f"has client certificate fingerprint {target.certfp}",
        )
    if target.tls:
        rb.numeric(n.RPL_WHOISSECURE, target.nick, "is using a secure connection")
    if "B" in target.modes:
        rb.numeric(n.RPL_WHOISBOT, target.nick, f"is a bot on {server.config.server.network}")
    if client is target or client.oper is not None:
        rb.numeric(
            n.RPL_WHOISACTUALLY,
            target.nick,
            f"{target.user}@{target.ip}",
            target.ip,
            "Actual user@host, Actual IP",
        )
    if target.away is not None:
        rb.numeric(n.RPL_AWAY, target.nick, target.away)
    metadata.whois(server, client, target, rb)
    rb.numeric(
        n.RPL_WHOISIDLE,
        target.nick,
        str(max(0, int(server.now - target.last_message))),
        str(int(target.created)),
        "seconds idle, signon time",
    )
    rb.numeric(n.RPL_ENDOFWHOIS, target.nick, "End of /WHOIS list")


def cmd_whowas(server: Server, client: Client, msg: Message, rb: ResponseBuffer) -> None:
    nicks = msg.params[0]
    count = 0
    if len(msg.params) > 1:
        with contextlib.suppress(ValueError):  # "²" or "--5": no count
            count = int(msg.params[1])
    for nick in nicks.split(","):
        cf = casefold(nick)
        found = 0
        for entry in server.whowas:
            if casefold(entry.nick) != cf:
                continue
            rb.numeric(n.RPL_WHOWASUSER, entry.nick, entry.user, entry.host, "*", entry.realname)
            rb.numeric(
                n.RPL_WHOISSERVER,
                entry.nick,
                server.name,
                time.strftime("%a %b %d %H:%M:%S %Y", time.gmtime(entry.time)),
            )
            found += 1
            if count > 0 and found >= count:
                break
        if not found:
            rb.numeric(n.ERR_WASNOSUCHNICK, nick, "There was no such nickname")
        rb.numeric(n.RPL_ENDOFWHOWAS, nick, "End of WHOWAS")


# ---------------------------------------------------------------------------------- MONITOR


def cmd_monitor(server: Server, client: Client, msg: Message, rb: ResponseBuffer) -> None:
    sub = msg.params[0]
    limit = server.config.limits.monitor
    if sub in ("+", "-"):
        if len(msg.params) < 2:
            raise CommandError(n.ERR_NEEDMOREPARAMS, "MONITOR", "Not enough parameters")
        targets = [t for t in msg.params[1].split(",") if t]
        if sub == "-":
            server.unmonitor(client, [casefold(nick) for nick in targets])
            return
        online: list[str] = []
        offline: list[str] = []
        found: list[Client] = []
        for i, nick in enumerate(targets):
            cf = casefold(nick)
            if cf in client.monitoring:
                continue
            if len(client.monitoring) >= limit:
                rb.numeric(
                    n.ERR_MONLISTFULL, str(limit), ",".join(targets[i:]), "Monitor list is full."
                )
                break
            client.monitoring.add(cf)
            server.monitors.setdefault(cf, set()).add(client)
            other = server.nicks.get(cf)
            if other is not None and other.registered:
                online.append(other.prefix)
                found.append(other)
            else:
                offline.append(nick)
        _monitor_status(rb, online, offline)
        for other in found:
            metadata.monitored(server, client, other, rb)
    elif sub in ("C", "c"):
        server.unmonitor(client, list(client.monitoring))
    elif sub in ("L", "l"):
        for chunk in _lists(sorted(client.monitoring)):
            rb.numeric(n.RPL_MONLIST, chunk)
        rb.numeric(n.RPL_ENDOFMONLIST, "End of MONITOR list")
    elif sub in ("S", "s"):
        online = []
        offline = []
        for cf in sorted(client.monitoring):
            other = server.nicks.get(cf)
            if other is not None and other.registered:
                online.append(other.prefix)
            else:
                offline.append(cf)
        _monitor_status(rb, online, offline)


def _lists(items: list[str], sep: str = ",", budget: int = 400) -> list[str]:
    """``items`` joined by ``sep`` in lists of at most ``budget`` bytes each: with the
    server name and the nicks around it, a reply stays within RFC 1459's 512 bytes."""
    lists: list[str] = []
    current: list[str] = []
    size = 0
    for item in items:
        length = len(item.encode()) + 1
        if current and size + length > budget:
            lists.append(sep.join(current))
            current, size = [], 0
        current.append(item)
        size += length
    if current:
        lists.append(sep.join(current))
    return lists


def _monitor_status(rb: ResponseBuffer, online: list[str], offline: list[str]) -> None:
    for chunk in _lists(online):
        rb.numeric(n.RPL_MONONLINE, chunk)
    for chunk in _lists(offline):
        rb.numeric(n.RPL_MONOFFLINE, chunk)
