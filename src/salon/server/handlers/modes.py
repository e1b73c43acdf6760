"""MODE for users and channels.

RFC 2812 3.1.5 and 3.2.3; modern.ircdocs.horse "Channel Modes" and "User Modes".
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from salon.errors import CommandError
from salon.proto import numerics as n
from salon.proto.casemap import casefold
from salon.proto.message import Message
from salon.server.channel import (
    FLAG_MODES,
    LIST_MODES,
    PARAM_MODES,
    PREFIX_MODES,
    SET_PARAM_MODES,
    Channel,
    normalize_mask,
)
from salon.server.channels import require_member
from salon.server.client import Client
from salon.server.events import ChannelMode, UserMode
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
    order: list[str] = []
    modes = set(client.modes)
    unknown = False
    for ch in msg.params[1]:
        if ch in "+-":
            adding = ch == "+"
        elif ch in _SELF_MODES or (ch == "o" and not adding):
            # Checked against the modes as the changes so far leave them (the event
            # applies them in this order).
            if adding and ch not in modes:
                modes.add(ch)
                added.append(ch)
                order.append("+" + ch)
            elif not adding and ch in modes:
                modes.discard(ch)
                removed.append(ch)
                order.append("-" + ch)
        elif ch == "o":
            continue
        else:
            unknown = True
    if unknown:
        rb.numeric(n.ERR_UMODEUNKNOWNFLAG, "Unknown MODE flag")
    if added or removed:
        server.emit(UserMode(client.id, "".join(order)), rb)


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
    # The state as the changes so far leave it: each change is checked against it, and
    # the event applies them all, in order.
    lists = {m: {casefold(e.mask): e.mask for e in chan.list_for(m)} for m in LIST_MODES}
    prefixes: dict[Client, str] = {}
    key = chan.key
    limit = chan.limit
    flag_modes = set(chan.modes)
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
            entries = lists[ch]
            existing = entries.get(casefold(mask))
            if adding:
                if existing is not None:
                    continue
                if len(entries) >= server.config.limits.max_list_entries:
                    rb.numeric(n.ERR_BANLISTFULL, chan.name, mask, "Channel list is full")
                    continue
                entries[casefold(mask)] = mask
            else:
                if existing is None:
                    continue
                del entries[casefold(mask)]
                mask = existing
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
            current = prefixes.get(target, chan.members[target])
            if adding != (ch in current):
                wanted = set(current) | {ch} if adding else set(current) - {ch}
                prefixes[target] = "".join(m for m in PREFIX_MODES if m in wanted)
                applied.append((adding, ch, target.nick))
        elif ch in PARAM_MODES:  # k
            if adding:
                if not args:
                    rb.numeric(n.ERR_NEEDMOREPARAMS, "MODE", "Not enough parameters")
                    continue
                new_key = args.pop(0)
                if not is_op:
                    denied = True
                    continue
                if not new_key or " " in new_key or "," in new_key or ":" in new_key[:1]:
                    rb.numeric(n.ERR_INVALIDKEY, chan.name, "Key is not well-formed")
                    continue
                key = new_key
                applied.append((True, ch, new_key))
            else:
                if args:
                    args.pop(0)
                if not is_op:
                    denied = True
                    continue
                if key is not None:
                    key = None
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
                limit = int(raw)
                applied.append((True, ch, raw))
            else:
                if not is_op:
                    denied = True
                    continue
                if limit is not None:
                    limit = None
                    applied.append((False, ch, None))
        elif ch in FLAG_MODES:
            if not is_op:
                denied = True
                continue
            if adding and ch not in flag_modes:
                flag_modes.add(ch)
                applied.append((True, ch, None))
            elif not adding and ch in flag_modes:
                flag_modes.discard(ch)
                applied.append((False, ch, None))
        else:
            rb.numeric(n.ERR_UNKNOWNMODE, ch, "is an unknown mode char to me")
    if denied:
        if client not in chan.members:
            require_member(chan, client)
        rb.numeric(n.ERR_CHANOPRIVSNEEDED, chan.name, "You're not channel operator")
    if applied:
        server.emit(ChannelMode(client.id, chan.name, tuple(applied), server.now), rb)
