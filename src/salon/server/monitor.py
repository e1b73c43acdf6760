"""MONITOR (IRCv3 monitor and extended-monitor), as ergo's irc/monitor.go: who watches
which nick, and the notices they get.

``server.monitors`` maps a casefolded nick to the clients monitoring it; each client's
``monitoring`` is the other side. The MONITOR command itself is in handlers/queries.py.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

from salon.proto import numerics as n
from salon.proto.message import Message
from salon.server import caps
from salon.server.client import Client

if TYPE_CHECKING:
    from salon.server.core import Server

# extended-monitor: the capability a watcher needs for each notification it may get.
_NOTIFY_CAP = {
    "AWAY": caps.AWAY_NOTIFY,
    "SETNAME": caps.SETNAME,
    "CHGHOST": caps.CHGHOST,
    "ACCOUNT": caps.ACCOUNT_NOTIFY,
}


def unmonitor(server: Server, client: Client, targets: Iterable[str]) -> None:
    """Stop ``client`` monitoring the (casefolded) nicks ``targets``."""
    for cf in targets:
        client.monitoring.discard(cf)
        watchers = server.monitors.get(cf)
        if watchers is not None:
            watchers.discard(client)
            if not watchers:
                del server.monitors[cf]


def notify(server: Server, client: Client, *, online: bool) -> None:
    """RPL_MONONLINE or RPL_MONOFFLINE to those monitoring ``client``'s nick."""
    watchers = server.monitors.get(client.nick_cf)
    if not watchers:
        return
    for watcher in list(watchers):
        if online:
            server.numeric(watcher, n.RPL_MONONLINE, client.prefix)
        else:
            server.numeric(watcher, n.RPL_MONOFFLINE, client.nick)


def notify_extended(server: Server, client: Client, msg: Message) -> None:
    """extended-monitor: monitoring clients with the capability get the same notifications
    as if they shared a channel (AWAY, CHGHOST, SETNAME, ACCOUNT)."""
    watchers = server.monitors.get(client.nick_cf)
    if not watchers:
        return
    shared = server.common_channel_members(client)
    bit = _NOTIFY_CAP[msg.command]
    recipients = [
        w
        for w in watchers
        if w is not client
        and w not in shared
        and w.capmask & caps.EXTENDED_MONITOR
        and w.capmask & bit
    ]
    server.deliver(recipients, msg)
