"""MODE for users and channels.

RFC 2812 3.1.5 and 3.2.3; modern.ircdocs.horse "Channel Modes" and "User Modes".
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from salon.errors import CommandError
from salon.proto import numerics as n
from salon.proto.casemap import casefold
from salon.proto.message import Message
from salon.server import history
from salon.server.channel import (
    FLAG_MODES,
    LIST_MODES,
    PARAM_MODES,
    PREFIX_MODES,
    SET_PARAM_MODES,
    Channel,
    ListEntry,
    normalize_mask,
)
from salon.server.channels import require_member
from salon.server.client import Client
from salon.server.responsebuffer import ResponseBuffer

if TYPE_CHECKING:
    from salon.server.core import Server

MAX_MODES = 4
_LIST_REPLIES = {
    "b": (n.RPL_BANLIST, n.RPL_ENDOFBANLIST, "End of channel ban list"),
    "e": (n.RPL_EXCEPTLIST, n.RPL_ENDOFEXCEPTLIST, "End of channel exception list"),
    "I": (n.RPL_INVEXLIST, n.RPL_ENDOFINVEXLIST, "End of channel invite list"),
}
# User modes a client may set on itself ('o' may only be removed).
_SELF_MODES = "iwBR"  # R: private messages only from users logged in to an account


def cmd_mode(server: Server, client: Client, msg: Message, rb: ResponseBuffer) -> None:
    target = msg.params[0]
    if target.startswith("#"):
        channel_mode(server, client, msg, rb)
    else:
        user_mode(server, client, msg, rb)


def user_mode(server: Server, client: Client, msg: Message, rb: ResponseBuffer) -> None:
    target = msg.params[0]
    other = server.nicks.get(casefold(target))
    if other is None:
        raise CommandError(n.ERR_NOSUCHNICK, target, "No such nick/channel")
    if other is not client:
        raise CommandError(n.ERR_USERSDONTMATCH, "Can't change mode for other users")
    if len(msg.params) < 2:
        rb.numeric(n.RPL_UMODEIS, "+" + "".join(sorted(client.modes)))
        return
    adding = True
    added: list[str] = []
    removed: list[str] = []
    unknown = False
    for ch in msg.params[1]:
        if ch in "+-":
            adding = ch == "+"
        elif ch in _SELF_MODES or (ch == "o" and not adding):
            if adding and ch not in client.modes:
                server.set_user_mode(client, ch, True)
                added.append(ch)
            elif not adding and ch in client.modes:
                server.set_user_mode(client, ch, False)
                removed.append(ch)
        elif ch == "o":
            continue
        else:
            unknown = True
    if unknown:
        rb.numeric(n.ERR_UMODEUNKNOWNFLAG, "Unknown MODE flag")
    if added or removed:
        change = ("+" + "".join(added) if added else "") + (
            "-" + "".join(removed) if removed else ""
        )
        rb.add(Message("MODE", (client.nick, change), client.prefix))


def _list_mode(
    server: Server, client: Client, chan: Channel, mode: str, rb: ResponseBuffer
) -> None:
    entry_rpl, end_rpl, end_text = _LIST_REPLIES[mode]
    # A secret channel's lists (who is banned, who may join) are for its members.
    if "s" not in chan.modes or client in chan.members or client.oper is not None:
        for entry in chan.list_for(mode):
            rb.numeric(entry_rpl, chan.name, entry.mask, entry.setter, str(entry.time))
    rb.numeric(end_rpl, chan.name, end_text)


def channel_mode(server: Server, client: Client, msg: Message, rb: ResponseBuffer) -> None:
    name = msg.params[0]
    chan = server.channels.get(casefold(name))
    if chan is None:
        raise CommandError(n.ERR_NOSUCHCHANNEL, name, "No such channel")
    if len(msg.params) < 2:
        rb.numeric(n.RPL_CHANNELMODEIS, chan.name, *chan.mode_string(client in chan.members))
        rb.numeric(n.RPL_CREATIONTIME, chan.name, str(chan.created))
        return
    args = list(msg.params[2:])
    adding = True
    applied: list[tuple[bool, str, str | None]] = []
    mask: str | None
    is_op = chan.is_op(client)
    denied = False
    changes = 0
    for ch in msg.params[1]:
        if ch in "+-":
            adding = ch == "+"
            continue
        if ch in LIST_MODES:
            if not args:
                _list_mode(server, client, chan, ch, rb)
                continue
            param = args.pop(0)
            if not is_op:
                denied = True
                continue
            changes += 1
            if changes > MAX_MODES:
                continue
            mask = normalize_mask(param)
            if " " in mask or mask.startswith(":"):
                rb.numeric(n.ERR_INVALIDMODEPARAM, chan.name, ch, "*", "Invalid mask")
                continue
            entries = chan.list_for(ch)
            existing = next((e for e in entries if casefold(e.mask) == casefold(mask)), None)
            if adding:
                if existing is not None:
                    continue
                if len(entries) >= server.config.limits.max_list_entries:
                    rb.numeric(n.ERR_BANLISTFULL, chan.name, mask, "Channel list is full")
                    continue
                entries.append(ListEntry(mask, client.prefix, int(server.now)))
            else:
                if existing is None:
                    continue
                entries.remove(existing)
                mask = existing.mask
            applied.append((adding, ch, mask))
        elif ch in PREFIX_MODES:
            if not args:
                continue
            nick = args.pop(0)
            if not is_op:
                denied = True
                continue
            target = server.nicks.get(casefold(nick))
            if target is None or not target.registered:
                rb.numeric(n.ERR_NOSUCHNICK, nick, "No such nick/channel")
                continue
            if target not in chan.members:
                rb.numeric(
                    n.ERR_USERNOTINCHANNEL, target.nick, chan.name, "They aren't on that channel"
                )
                continue
            if chan.set_prefix(target, ch, adding):
                applied.append((adding, ch, target.nick))
        elif ch in PARAM_MODES:  # k
            if adding:
                if not args:
                    rb.numeric(n.ERR_NEEDMOREPARAMS, "MODE", "Not enough parameters")
                    continue
                key = args.pop(0)
                if not is_op:
                    denied = True
                    continue
                if not key or " " in key or "," in key or ":" in key[:1]:
                    rb.numeric(n.ERR_INVALIDKEY, chan.name, "Key is not well-formed")
                    continue
                chan.key = key
                applied.append((True, ch, key))
            else:
                if args:
                    args.pop(0)
                if not is_op:
                    denied = True
                    continue
                if chan.key is not None:
                    chan.key = None
                    applied.append((False, ch, "*"))
        elif ch in SET_PARAM_MODES:  # l
            if adding:
                if not args:
                    rb.numeric(n.ERR_NEEDMOREPARAMS, "MODE", "Not enough parameters")
                    continue
                raw = args.pop(0)
                if not is_op:
                    denied = True
                    continue
                # isdigit() alone takes "²", which int() refuses.
                if not (raw.isascii() and raw.isdigit()) or int(raw) <= 0:
                    rb.numeric(n.ERR_INVALIDMODEPARAM, chan.name, "l", raw or "*", "Invalid limit")
                    continue
                chan.limit = int(raw)
                applied.append((True, ch, raw))
            else:
                if not is_op:
                    denied = True
                    continue
                if chan.limit is not None:
                    chan.limit = None
                    applied.append((False, ch, None))
        elif ch in FLAG_MODES:
            if not is_op:
                denied = True
                continue
            if adding and ch not in chan.modes:
                chan.modes.add(ch)
                applied.append((True, ch, None))
            elif not adding and ch in chan.modes:
                chan.modes.discard(ch)
                applied.append((False, ch, None))
        else:
            rb.numeric(n.ERR_UNKNOWNMODE, ch, "is an unknown mode char to me")
    if denied:
        if client not in chan.members:
            require_member(chan, client)
        rb.numeric(n.ERR_CHANOPRIVSNEEDED, chan.name, "You're not channel operator")
    if not applied:
        return
    flags = ""
    params: list[str] = []
    sign = ""
    for add, letter, arg in applied:
        want = "+" if add else "-"
        if want != sign:
            flags += want
            sign = want
        flags += letter
        if arg is not None:
            params.append(arg)
    change = Message("MODE", (chan.name, flags, *params), client.prefix, server.user_tags(client))
    rb.add(change)
    server.deliver(chan.members, change, skip=client)
    history.channel_event(server, chan, change)
    if any(letter in "sik" for _add, letter, _arg in applied):
        history.note_privacy(server, chan)
    server.services.channel_changed(chan)
