"""Nicknames: which are valid, and changing one (before registration, a claim; after it, a
NICK seen by everyone who shares a channel, and by MONITOR). Modelled on ergo's
irc/nickname.go."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from salon.errors import CommandError
from salon.proto import numerics as n
from salon.proto.casemap import casefold
from salon.server.client import Client
from salon.server.events import Nick
from salon.server.responsebuffer import ResponseBuffer

if TYPE_CHECKING:
    from salon.server.core import Server


_SPECIAL = frozenset("[]\\`_^{|}")
# What may start a nick (RFC 2812 2.3.1: letter or special), as opposed to a channel, a
# status prefix or a server mask.
NICK_FIRST = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz") | _SPECIAL
_NICK_REST = NICK_FIRST | frozenset("0123456789-")


def valid_nick(nick: str, maxlen: int) -> bool:
    """RFC 2812 2.3.1: ``nickname = ( letter / special ) *8( letter / digit / special / "-" )``
    (salon allows up to NICKLEN characters)."""
    return (
        0 < len(nick) <= maxlen and nick[0] in NICK_FIRST and all(ch in _NICK_REST for ch in nick)
    )


def second_session_nick(server: Server, client: Client, holder: Client, nick: str) -> str | None:
    """A free variant of ``nick`` for a client registering while another session of the
    same account holds it (a second device): ``nick_``, ``nick__``, ``nick2``..."""
    if client.registered or client.account is None or holder.account is None:
        return None
    if casefold(holder.account) != casefold(client.account):
        return None
    maxlen = server.config.limits.nicklen
    for suffix in ("_", "__", *(str(i) for i in range(2, 10))):
        candidate = nick[: maxlen - len(suffix)] + suffix
        if casefold(candidate) not in server.nicks:
            return candidate
    return None


def change_nick(
    server: Server,
    client: Client,
    nick: str,
    rb: ResponseBuffer,
    then: Callable[[ResponseBuffer | None], None] | None = None,
) -> None:
    """Take ``nick``, then ``then(rb)`` (also when the nick is the same already)."""
    cf = casefold(nick)
    holder = server.nicks.get(cf)
    if holder is not None and holder is not client:
        variant = second_session_nick(server, client, holder, nick)
        if variant is None:
            raise CommandError(n.ERR_NICKNAMEINUSE, nick, "Nickname is already in use")
        rb.notice(
            f"{nick} is in use by another session of your account {client.account};"
            f" this session is {variant}"
        )
        nick, cf = variant, casefold(variant)
    if nick == client.nick:
        if then is not None:
            then(rb)
        return
    old_cf = client.nick_cf
    if not client.registered:
        # Before registration the nick is this process's reservation, not yet a user of
        # the network: the Intro event (welcome) carries it there.
        if old_cf and server.nicks.get(old_cf) is client:
            del server.nicks[old_cf]
        server.nicks[cf] = client
        client.set_nick(nick, cf, server.now)
        if then is not None:
            then(rb)
        return
    server.emit(Nick(client.id, nick), rb, then)
