"""Server bans: KLINE, UNKLINE, DLINE, UNDLINE (operators only; the command
table refuses others with 481).

::

    KLINE [MYSELF] [<duration>] <user@host | nick> [<reason>]
    KLINE LIST
    UNKLINE <user@host>
    DLINE [MYSELF] [<duration>] <ip | cidr | nick> [<reason>]
    DLINE LIST
    UNDLINE <ip | cidr>

A duration is minutes (``30``) or units (``90s``, ``2h``, ``1d12h``, ``1w``); without
one a ban is permanent. A ban that would match the operator issuing it is refused
unless ``MYSELF`` is given (as in ergo). A nick stands for its current host or IP.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from salon.errors import FailError
from salon.proto.casemap import casefold
from salon.proto.message import Message
from salon.server.abuse import describe, parse_network
from salon.server.channel import mask_matches
from salon.server.client import Client
from salon.server.events import Ban, Unban
from salon.server.responsebuffer import ResponseBuffer, safe_middle

if TYPE_CHECKING:
    from salon.server.core import Server

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800, "y": 31536000}
_DURATION = re.compile(r"(?:\d+[smhdwy])+")
_PART = re.compile(r"(\d+)([smhdwy])")
MAX_REASON = 300


def parse_duration(text: str) -> float | None:
    """Seconds for ``30`` (minutes) or ``1h30m``; None when ``text`` is not a duration."""
    if text.isdigit():
        return int(text) * 60.0
    lowered = text.lower()
    if _DURATION.fullmatch(lowered):
        return float(sum(int(num) * _UNITS[unit] for num, unit in _PART.findall(lowered)))
    return None


def _parse(
    server: Server, command: str, params: tuple[str, ...]
) -> tuple[bool, float | None, str, str]:
    args = list(params)
    myself = False
    if args and args[0].upper() == "MYSELF":
        myself = True
        args.pop(0)
    duration = None
    if len(args) > 1:
        duration = parse_duration(args[0])
        if duration is not None:
            args.pop(0)
            if duration <= 0:
                duration = None
    if not args or not args[0]:
        raise FailError(command, "NEED_MORE_PARAMS", "A mask is required")
    target = args[0]
    reason = " ".join(args[1:]).strip() or "No reason given"
    return myself, duration, target, reason[:MAX_REASON]


def _list(server: Server, kind: str, rb: ResponseBuffer) -> None:
    abuse = server.abuse
    bans = list(abuse.klines.values()) if kind == "K" else [ban for ban, _ in abuse.dlines.values()]
    for ban in sorted(bans, key=lambda b: b.created):
        rb.notice(f"{kind}-line {describe(ban, server.now)}")
    rb.notice(f"End of {kind}-line list ({len(bans)})")


def cmd_kline(server: Server, client: Client, msg: Message, rb: ResponseBuffer) -> None:
    if msg.params[0].upper() == "LIST":
        _list(server, "K", rb)
        return
    myself, duration, target, reason = _parse(server, "KLINE", msg.params)
    if "@" not in target:
        holder = server.nicks.get(casefold(target))
        if holder is None or holder.id < 0 or not holder.registered:
            raise FailError(
                "KLINE", "INVALID_MASK", safe_middle(target), "Give user@host or an online nick"
            )
        mask = f"*@{holder.host}"
    else:
        mask = target.rsplit("!", 1)[-1]
    user, _, host = mask.partition("@")
    if not user or not host or " " in mask or "@" in host:
        raise FailError("KLINE", "INVALID_MASK", safe_middle(mask), "The mask must be user@host")
    if not host.strip("*?."):
        raise FailError(
            "KLINE", "INVALID_MASK", safe_middle(mask), "That mask would match every host"
        )
    subjects = (f"{client.user}@{client.host}", f"{client.user}@{client.ip}")
    if not myself and any(mask_matches(mask, s) for s in subjects):
        raise FailError(
            "KLINE",
            "WOULD_BAN_YOU",
            safe_middle(mask),
            "That K-line would match you; add MYSELF to set it anyway",
        )
    now = server.now
    setter = client.oper or client.nick
    server.emit(Ban("K", mask, reason, setter, now, now + duration if duration else None), rb)


def cmd_unkline(server: Server, client: Client, msg: Message, rb: ResponseBuffer) -> None:
    mask = msg.params[0].rsplit("!", 1)[-1]
    ban = server.abuse.find("K", mask)
    if ban is None:
        raise FailError("UNKLINE", "NO_SUCH_BAN", safe_middle(mask), "No such K-line")
    server.emit(Unban("K", ban.mask), rb)
    rb.notice(f"K-line removed: {mask}")


def cmd_dline(server: Server, client: Client, msg: Message, rb: ResponseBuffer) -> None:
    if msg.params[0].upper() == "LIST":
        _list(server, "D", rb)
        return
    myself, duration, target, reason = _parse(server, "DLINE", msg.params)
    net = parse_network(target)
    if net is None:
        holder = server.nicks.get(casefold(target))
        if holder is None or holder.id < 0 or not holder.registered:
            raise FailError(
                "DLINE", "INVALID_MASK", safe_middle(target), "Give an IP, a CIDR or an online nick"
            )
        net = parse_network(holder.ip)
        if net is None:
            raise FailError("DLINE", "INVALID_MASK", safe_middle(target), "No IP for that nick")
    if net.prefixlen == 0:
        raise FailError("DLINE", "INVALID_MASK", str(net), "That D-line would match every address")
    if not myself and server.abuse.dline_for(client.ip) is None:
        own = parse_network(client.ip)
        if own is not None and own.version == net.version and own.subnet_of(net):  # type: ignore[arg-type]
            raise FailError(
                "DLINE",
                "WOULD_BAN_YOU",
                str(net),
                "That D-line would match you; add MYSELF to set it anyway",
            )
    now = server.now
    setter = client.oper or client.nick
    server.emit(Ban("D", str(net), reason, setter, now, now + duration if duration else None), rb)


def cmd_undline(server: Server, client: Client, msg: Message, rb: ResponseBuffer) -> None:
    target = msg.params[0]
    ban = server.abuse.find("D", target)
    if ban is None:
        raise FailError("UNDLINE", "NO_SUCH_BAN", safe_middle(target), "No such D-line")
    server.emit(Unban("D", ban.mask), rb)
    rb.notice(f"D-line removed: {target}")
