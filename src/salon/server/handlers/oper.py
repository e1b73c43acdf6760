"""Operator commands: OPER, KILL, WALLOPS."""

from __future__ import annotations

import logging
from functools import partial
from typing import TYPE_CHECKING

from salon.errors import CommandError
from salon.passwords import verify_nothing, verify_password
from salon.proto import numerics as n
from salon.proto.casemap import casefold
from salon.proto.message import Message
from salon.server.channel import mask_matches
from salon.server.client import Client
from salon.server.effects import Offload
from salon.server.events import Kill, UserMode, Wallops
from salon.server.responsebuffer import ResponseBuffer

if TYPE_CHECKING:
    from salon.server.core import Server

log = logging.getLogger("salon.server")


def cmd_oper(server: Server, client: Client, msg: Message, rb: ResponseBuffer) -> None:
    name, password = msg.params[0], msg.params[1]
    block = next((b for b in server.config.opers if b.name == name), None)
    if block is None or not mask_matches(block.hostmask, client.prefix):
        # Same answer for a wrong name as for a wrong password: no enumeration.
        work = partial(verify_nothing, password)
    else:
        work = partial(verify_password, block.password, password)

    def done(ok: object, rb: ResponseBuffer) -> None:
        if not ok or block is None:
            log.warning("failed OPER attempt name=%s nick=%s ip=%s", name, client.nick, client.ip)
            raise CommandError(n.ERR_PASSWDMISMATCH, "Password incorrect")
        rb.numeric(n.RPL_YOUREOPER, "You are now an IRC operator")
        server.emit(UserMode(client.id, "+o", block.name), rb)
        log.info("oper nick=%s name=%s", client.nick, block.name)

    # The reply comes from done(), with the label (instead of an empty ACK now).
    server.offload(Offload(client, work, done, rb.detach(replies=False)))


def cmd_kill(server: Server, client: Client, msg: Message, rb: ResponseBuffer) -> None:
    nick, reason = msg.params[0], msg.params[1]
    target = server.nicks.get(casefold(nick))
    if target is None or not target.registered:
        raise CommandError(n.ERR_NOSUCHNICK, nick, "No such nick/channel")
    if target.id < 0:  # NickServ, ChanServ: pseudo-users, not connections
        raise CommandError(n.ERR_CANTKILLSERVER, target.nick, "You cannot kill a service")
    log.info("kill nick=%s by=%s reason=%s", target.nick, client.nick, reason)
    if server.cluster is not None:
        server.emit(Kill(client.id, target.id, reason), rb)  # its node drops it
        return
    server.drop(
        target,
        f"Killed ({client.nick} ({reason}))",
        error=f"Closing Link: {server.name} (Killed ({client.nick} ({reason})))",
    )


def cmd_wallops(server: Server, client: Client, msg: Message, rb: ResponseBuffer) -> None:
    if server.cluster is not None:
        server.emit(Wallops(client.id, msg.params[0]), rb)  # every node's +w users
        return
    wallops = Message("WALLOPS", (msg.params[0],), client.prefix)
    recipients = [c for c in server.clients.values() if c.registered and "w" in c.modes]
    server.deliver(recipients, wallops)
