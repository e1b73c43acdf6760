"""History commands: CHATHISTORY, MARKREAD, REDACT, SEARCH; and RENAME.

Specs: IRCv3 draft/chathistory, draft/event-playback, draft/read-marker,
draft/message-redaction, draft/channel-rename, and soju.im/search.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from salon.errors import CommandError, FailError, QueryTooBroad
from salon.proto import numerics as n
from salon.proto.casemap import casefold
from salon.proto.message import Message, parse_tags
from salon.proto.names import valid_channel
from salon.server import caps, history
from salon.server.channel import Channel
from salon.server.client import Client
from salon.server.events import ReadMarker, Redact, Rename
from salon.server.history import (
    format_ms,
    marker_message,
    ms_time,
    parse_ms,
    party,
    party_of,
)
from salon.server.responsebuffer import ResponseBuffer
from salon.store.base import HistoryEvent, HistoryQuery, HistoryStore, SearchQuery, dm_key

if TYPE_CHECKING:
    from salon.server.core import Server

log = logging.getLogger("salon.server")

SUBCOMMANDS = ("LATEST", "BEFORE", "AFTER", "AROUND", "BETWEEN", "TARGETS")
# What the costlier queries take from the sender's flood budget besides the line itself:
# a client that repeats them is slowed down (its next lines wait), never refused.
SEARCH_COST = 3.0
TARGETS_COST = 1.0
TOO_BROAD = "too broad"  # a search that ran out of its budget and found nothing


def _require_history(server: Server, command: str) -> None:
    if not history.enabled(server):
        raise FailError(command, "UNKNOWN_COMMAND", "History is turned off on this server")


# ---------------------------------------------------------------------------- targets


def conversation(server: Server, client: Client, target: str, command: str, sub: str) -> str:
    """The key of a conversation the client may read, or FAIL INVALID_TARGET."""
    if target.startswith("#"):
        chan = server.channels.get(casefold(target))
        if chan is None or client not in chan.members:
            raise FailError(
                command, "INVALID_TARGET", sub, target, "You cannot read the history of this target"
            )
        return chan.cf
    if not target or target == "*" or "," in target:
        raise FailError(command, "INVALID_TARGET", sub, target or "*", "Invalid target")
    return dm_key(party(server, client), party_of(server, target))


@dataclass(frozen=True, slots=True)
class Ref:
    """A message reference: ``*``, ``msgid=...`` or ``timestamp=...``."""

    star: bool = False
    msgid: str | None = None
    time: float | None = None


def parse_ref(text: str, *, star_ok: bool) -> Ref | None:
    if text == "*":
        return Ref(star=True) if star_ok else None
    kind, _, value = text.partition("=")
    if kind == "msgid" and value:
        return Ref(msgid=value)
    if kind == "timestamp":
        ms = parse_ms(value)
        if ms is not None:
            return Ref(time=ms_time(ms))
    return None


def resolve(store: HistoryStore, key: str, ref: Ref) -> tuple[float, int | None] | None:
    """The position a reference stands for (in the storage thread): a time, plus for a
    msgid the message's place among those of the same millisecond."""
    if ref.time is not None:
        return ref.time, None
    if ref.msgid is not None:
        found: tuple[float, int] | None = store.history_position(key, ref.msgid)
        return found
    return None


# ---------------------------------------------------------------------------- CHATHISTORY


def cmd_chathistory(server: Server, client: Client, msg: Message, rb: ResponseBuffer) -> None:
    _require_history(server, "CHATHISTORY")
    p = msg.params
    sub = p[0].upper()
    if sub not in SUBCOMMANDS:
        raise FailError("CHATHISTORY", "INVALID_PARAMS", sub, "Unknown subcommand")
    maximum = server.config.history.chathistory_limit
    need = 4 if sub in ("TARGETS", "LATEST", "BEFORE", "AFTER", "AROUND") else 5
    if len(p) < need:
        raise FailError("CHATHISTORY", "NEED_MORE_PARAMS", sub, "Not enough parameters")
    try:
        limit = int(p[-1])
    except ValueError:
        raise FailError("CHATHISTORY", "INVALID_PARAMS", sub, p[-1], "Invalid limit") from None
    if limit <= 0:
        raise FailError("CHATHISTORY", "INVALID_PARAMS", sub, p[-1], "Invalid limit")
    limit = min(limit, maximum)
    if sub == "TARGETS":
        _targets(server, client, p[1], p[2], limit, rb)
        return
    target = p[1]
    key = conversation(server, client, target, "CHATHISTORY", sub)
    refs = []
    for raw in p[2 : need - 1]:
        ref = parse_ref(raw, star_ok=sub == "LATEST")
        if ref is None:
            raise FailError("CHATHISTORY", "INVALID_PARAMS", sub, raw, "Invalid message reference")
        refs.append(ref)
    events_too = bool(client.capmask & caps.EVENT_PLAYBACK)
    since = None if key.startswith("#") else history.private_floor(client)

    def query(store: HistoryStore) -> list[HistoryEvent] | None:
        def read(q: HistoryQuery) -> list[HistoryEvent]:
            found: list[HistoryEvent] = store.history(
                q if since is None else replace(q, since=since)
            )
            return found

        spots = [resolve(store, key, ref) for ref in refs]
        if any(s is None and not ref.star for s, ref in zip(spots, refs, strict=True)):
            return None
        first = spots[0]
        t0, s0 = first if first is not None else (None, None)
        result: list[HistoryEvent]
        if sub == "LATEST":
            q = HistoryQuery(key, start=t0, start_seq=s0, limit=limit, events=events_too)
            result = read(q)
            return result
        if sub == "BEFORE":
            q = HistoryQuery(key, end=t0, end_seq=s0, limit=limit, events=events_too)
            result = read(q)
            return result
        if sub == "AFTER":
            q = HistoryQuery(
                key, start=t0, start_seq=s0, limit=limit, newest_first=False, events=events_too
            )
            result = read(q)
            return result
        if sub == "AROUND":
            assert t0 is not None
            before = read(
                HistoryQuery(key, end=t0, end_seq=s0, limit=(limit - 1) // 2, events=events_too)
            )
            # The centre itself and what follows it.
            start, start_seq = (t0, s0 - 1) if s0 is not None else (t0 - 0.0005, None)
            after = read(
                HistoryQuery(
                    key,
                    start=start,
                    start_seq=start_seq,
                    limit=limit - len(before),
                    newest_first=False,
                    events=events_too,
                )
            )
            return list(before) + list(after)
        # BETWEEN: exclusive bounds; the results nearest the first reference.
        second = spots[1]
        assert first is not None and second is not None
        backwards = (first[0], first[1] or 0) > (second[0], second[1] or 0)
        lo, hi = (second, first) if backwards else (first, second)
        q = HistoryQuery(
            key,
            start=lo[0],
            start_seq=lo[1],
            end=hi[0],
            end_seq=hi[1],
            limit=limit,
            newest_first=backwards,
            events=events_too,
        )
        result = read(q)
        return result

    def done(result: Any, out: ResponseBuffer) -> None:
        if result is None:
            out.fail("CHATHISTORY", "INVALID_PARAMS", sub, "Unknown message reference")
            return
        if not isinstance(result, list):
            out.fail("CHATHISTORY", "MESSAGE_ERROR", sub, target, "History is unavailable")
            return
        history.send_batch(server, out, "chathistory", (target,), result)

    server.defer(rb, query, done, read=True)


def _targets(
    server: Server, client: Client, first: str, second: str, limit: int, rb: ResponseBuffer
) -> None:
    refs = [parse_ref(first, star_ok=False), parse_ref(second, star_ok=False)]
    times = [r.time if r is not None else None for r in refs]
    if times[0] is None or times[1] is None:
        raise FailError("CHATHISTORY", "INVALID_PARAMS", "TARGETS", "Timestamps are required")
    start, end = times[0], times[1]
    me = party(server, client)
    channels = {chan.cf: chan.name for chan in client.channels.values()}
    floor = history.private_floor(client)
    server.penalize(client, TARGETS_COST)

    def query(store: HistoryStore) -> list[tuple[str, str, float]]:
        names = dict(channels)
        for conv, partner in store.dm_partners(me):
            names[conv] = partner
        found = store.history_targets(list(names), start, end, limit, floor)
        return [(names[key], key, last) for key, last in found]

    def done(result: Any, out: ResponseBuffer) -> None:
        if not isinstance(result, list):
            out.fail("CHATHISTORY", "MESSAGE_ERROR", "TARGETS", "History is unavailable")
            return
        # batch: "Servers MUST NOT send BATCH commands to clients that have not
        # negotiated" the capability; without it the lines come alone.
        ref = server.new_batch_id() if client.capmask & caps.BATCH else None
        if ref is not None:
            out.add(Message("BATCH", ("+" + ref, "draft/chathistory-targets"), server.name))
        for name, _key, last in result:
            stamp = format_ms(round(last * 1000))
            tags = {"batch": ref} if ref is not None else {}
            out.add(Message("CHATHISTORY", ("TARGETS", name, stamp), server.name, tags))
        if ref is not None:
            out.add(Message("BATCH", ("-" + ref,), server.name))

    server.defer(rb, query, done, read=True)


# ---------------------------------------------------------------------------- MARKREAD


def cmd_markread(server: Server, client: Client, msg: Message, rb: ResponseBuffer) -> None:
    if not msg.params:
        raise FailError("MARKREAD", "NEED_MORE_PARAMS", "Missing target")
    target = msg.params[0]
    if not target or target == "*" or " " in target or target[0] == ":":
        # The target is echoed in the MARKREAD reply, as a middle parameter.
        raise FailError("MARKREAD", "INVALID_PARAMS", target or "*", "Invalid target")
    cf = casefold(target)
    me = party(server, client)
    if len(msg.params) < 2:
        rb.add(marker_message(server, target, server.read_markers.get((me, cf))))
        return
    ref = parse_ref(msg.params[1], star_ok=False)
    if ref is None or ref.time is None:
        raise FailError("MARKREAD", "INVALID_PARAMS", target, "Invalid timestamp")
    current = server.read_markers.get((me, cf))

    def answer(out: ResponseBuffer | None) -> None:
        if out is not None:
            out.add(marker_message(server, target, server.read_markers.get((me, cf))))

    if current is None or ref.time > current:
        # (in a cluster, the marker may have moved on another node meanwhile: its turn decides)
        server.emit(ReadMarker(client.id, target, ref.time), rb, answer)
    else:
        answer(rb)


# ---------------------------------------------------------------------------- REDACT


def cmd_redact(server: Server, client: Client, msg: Message, rb: ResponseBuffer) -> None:
    p = msg.params
    if len(p) < 2:
        raise FailError("REDACT", "NEED_MORE_PARAMS", "Not enough parameters")
    target, msgid = p[0], p[1]
    reason = p[2] if len(p) > 2 and p[2] else None
    chan: Channel | None = None
    if target.startswith("#"):
        chan = server.channels.get(casefold(target))
        if chan is None or client not in chan.members:
            raise FailError("REDACT", "INVALID_TARGET", target, "You are not in that channel")
        key = chan.cf
    else:
        other = server.nicks.get(casefold(target))
        if other is None and not history.enabled(server):
            raise FailError("REDACT", "INVALID_TARGET", target, "No such nick")
        key = dm_key(party(server, client), party_of(server, target))
    if not history.enabled(server):
        raise FailError("REDACT", "UNKNOWN_MSGID", target, msgid, "This message is not stored")
    me = party(server, client)
    is_op = chan is not None and chan.is_op(client)
    floor = history.private_floor(client)

    def redact(store: HistoryStore) -> str:
        event: HistoryEvent | None = store.history_event(key, msgid)
        if event is None:
            return "unknown"
        nick = casefold(event.source.split("!")[0])
        author = event.party or ("~" + casefold(event.account) if event.account else nick)
        # The nick identifies the author only of a message sent without an account: whoever
        # takes a logged-in author's nick later must not redact her messages.
        mine = author == me or (event.account is None and nick == client.nick_cf)
        if floor is not None and event.time < floor:
            mine = False  # said by an earlier holder of the nick
        if not mine and not is_op:
            return "forbidden"
        store.redact_history(key, msgid)
        return "ok"

    def done(result: Any, out: ResponseBuffer) -> None:
        if result == "unknown":
            out.fail("REDACT", "UNKNOWN_MSGID", target, msgid, "No such message")
            return
        if result == "forbidden":
            out.fail("REDACT", "REDACT_FORBIDDEN", target, msgid, "You may not redact this message")
            return
        if result != "ok":
            out.fail("REDACT", "REDACT_FORBIDDEN", target, msgid, "History is unavailable")
            return
        server.emit(Redact(client.id, target, key, msgid, reason), out)
        log.info("redact by=%s target=%s msgid=%s", client.nick, target, msgid)

    server.defer(rb, redact, done)


# ---------------------------------------------------------------------------- SEARCH


def cmd_search(server: Server, client: Client, msg: Message, rb: ResponseBuffer) -> None:
    """soju.im/search: ``SEARCH in=<target>;from=<nick>;after=<ts>;before=<ts>;text=...;limit=N``.

    Only conversations the asker may read are searched: channels they are in, and their
    own private conversations.
    """
    _require_history(server, "SEARCH")
    attrs = parse_tags(msg.params[0]) if msg.params else {}
    maximum = server.config.history.chathistory_limit
    try:
        limit = min(int(attrs.get("limit", "100")), maximum)
    except ValueError:
        raise FailError("SEARCH", "INVALID_PARAMS", "limit", "Invalid limit") from None
    if limit <= 0:
        raise FailError("SEARCH", "INVALID_PARAMS", "limit", "Invalid limit")
    bounds: dict[str, float | None] = {"after": None, "before": None}
    for name in bounds:
        if name in attrs:
            ms = parse_ms(attrs[name])
            if ms is None:
                raise FailError("SEARCH", "INVALID_PARAMS", name, "Invalid timestamp")
            bounds[name] = ms_time(ms)
    me = party(server, client)
    where = attrs.get("in")
    channels = [chan.cf for chan in client.channels.values()]
    floor = history.private_floor(client)
    sender = casefold(attrs["from"]) if attrs.get("from") else None
    text = attrs.get("text", "")
    server.penalize(client, SEARCH_COST)

    def search(store: HistoryStore) -> list[HistoryEvent] | str:
        if where is None:
            keys = channels + [conv for conv, _ in store.dm_partners(me)]
        elif where.startswith("#"):
            keys = [casefold(where)] if casefold(where) in channels else []
        else:
            keys = [dm_key(me, party_of(server, where))]
        query = SearchQuery(
            text=text,
            targets=tuple(keys),
            sender=sender,
            start=bounds["after"],
            end=bounds["before"],
            limit=limit,
            private_since=floor,
        )
        try:
            return list(store.search_history(query))
        except QueryTooBroad:
            return TOO_BROAD

    def done(result: Any, out: ResponseBuffer) -> None:
        if result is TOO_BROAD:
            out.fail(
                "SEARCH",
                "TOO_BROAD",
                "Too many messages to look through: add words, or in=, from=, after=, before=",
            )
            return
        if not isinstance(result, list):
            out.fail("SEARCH", "INTERNAL_ERROR", "Search is unavailable")
            return
        history.send_batch(server, out, "soju.im/search", (), result)

    server.defer(rb, search, done, read=True)


# ---------------------------------------------------------------------------- RENAME


def cmd_rename(server: Server, client: Client, msg: Message, rb: ResponseBuffer) -> None:
    """draft/channel-rename: ``RENAME <old> <new> [:reason]``; chanops only."""
    old, new = msg.params[0], msg.params[1]
    reason = msg.params[2] if len(msg.params) > 2 else ""
    chan = server.channels.get(casefold(old))
    if chan is None:
        raise CommandError(n.ERR_NOSUCHCHANNEL, old, "No such channel")
    if client not in chan.members:
        raise CommandError(n.ERR_NOTONCHANNEL, chan.name, "You're not on that channel")
    if not chan.is_op(client):
        raise CommandError(n.ERR_CHANOPRIVSNEEDED, chan.name, "You're not channel operator")
    if not valid_channel(new, server.config.limits.channellen):
        raise FailError("RENAME", "CANNOT_RENAME", old, new, "Invalid channel name")
    if server.services.keeps(chan):
        # ChanServ's registration, access list and stored settings are under the old
        # name: a registered channel is not renamed (DROP it first).
        raise FailError(
            "RENAME", "CANNOT_RENAME", old, new, "A registered channel cannot be renamed"
        )
    new_cf = casefold(new)
    if new_cf in server.channels and server.channels[new_cf] is not chan:
        raise FailError("RENAME", "CHANNEL_NAME_IN_USE", old, new, "Channel already exists")
    old_name, old_cf = chan.name, chan.cf
    server.emit(Rename(client.id, old_name, new, reason), rb)
    if history.enabled(server):
        server.store(lambda store: store.rename_history(old_cf, new_cf))
    log.info("rename %s to %s by=%s", old_name, new, client.nick)
