"""History in the core: conversation keys, events from messages, and playback.

Every PRIVMSG, NOTICE and (non-typing) TAGMSG is committed to the store before anyone
sees it (``Server.hold_for_commit``: the relay path in handlers/messaging.py; multiline
batches through :func:`commit_then`); joins, parts, topics and the like are recorded after
the fact (:func:`record`) for draft/event-playback. Reads (CHATHISTORY, SEARCH, replay on
join) are store calls that answer in a batch.
"""

from __future__ import annotations

import calendar
import logging
import math
import time
from collections.abc import Callable, Sequence
from functools import partial
from typing import TYPE_CHECKING, Any

from salon.proto.casemap import casefold
from salon.proto.message import Message
from salon.server import caps
from salon.server.responsebuffer import ResponseBuffer
from salon.store.base import FileRef, HistoryEvent, HistoryQuery, PurgeProgress, Store

log = logging.getLogger("salon.history")

if TYPE_CHECKING:
    from salon.server.channel import Channel
    from salon.server.client import Client
    from salon.server.core import Server

# +typing is a transient notification: relayed, never stored (IRCv3 typing spec).
TRANSIENT_TAGS = frozenset({"+typing", "+draft/typing"})


_last: list[Any] = [-1, "", -1, ""]  # second, its text; ms, its full stamp


def format_ms(ms: int) -> str:
    """server-time: ``YYYY-MM-DDThh:mm:ss.sssZ`` from integer milliseconds."""
    if ms == _last[2]:
        cached: str = _last[3]
        return cached
    secs, frac = divmod(ms, 1000)
    if secs != _last[0]:
        _last[0], _last[1] = secs, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(secs))
    stamp = f"{_last[1]}.{frac:03d}Z"
    _last[2], _last[3] = ms, stamp
    return stamp


def parse_ms(stamp: str) -> int | None:
    """The inverse of :func:`format_ms`; None when it is not such a timestamp."""
    if stamp == _last[3]:
        return int(_last[2])
    try:
        main, _, rest = stamp.rstrip("Z").partition(".")
        secs = calendar.timegm(time.strptime(main, "%Y-%m-%dT%H:%M:%S"))
        frac = int((rest + "000")[:3]) if rest else 0
    except (ValueError, OverflowError):
        return None
    return secs * 1000 + frac


def ms_time(ms: int) -> float:
    """Stored event times are ``ms / 1000``: the same float for the same millisecond."""
    return ms / 1000


def party(server: Server, client: Client) -> str:
    """One side of a private conversation: the account when logged in, else the nick."""
    if client.account is not None:
        return "~" + casefold(client.account)
    return client.nick_cf


def private_floor(client: Client) -> float | None:
    """Where the private history a client may read starts: nowhere for an account (its
    conversations are keyed by the account), and for a user without one, the time it took
    its current nick. The nick is all that keys such a user's conversations, so a later
    holder of the nick must not read what its earlier holders said and were told."""
    return None if client.account is not None else client.nick_time


def party_of(server: Server, nick: str) -> str:
    """The conversation side of a nick, whether online or not."""
    cf = casefold(nick)
    other = server.nicks.get(cf)
    if other is not None and other.registered:
        return party(server, other)
    accounts: dict[str, Any] = getattr(server, "accounts", {})
    if cf in accounts:
        return "~" + cf
    return cf


def message_event(
    server: Server, msg: Message, target: str, *, display: str = "", party_key: str = ""
) -> HistoryEvent:
    """The stored form of a relayed message (its time and msgid come from its tags)."""
    tags = msg.tags
    ms = parse_ms(tags.get("time", "")) if tags else None
    if ms is None:
        ms = int(server.now * 1000)
    client_tags = tuple((k, v) for k, v in tags.items() if k[:1] == "+") if tags else ()
    return HistoryEvent(
        msgid=tags.get("msgid", "") if tags else "",
        time=ms_time(ms),
        target=target,
        command=msg.command,
        source=msg.source or "",
        account=tags.get("account") if tags else None,
        params=msg.params,
        tags=client_tags,
        display=display,
        party=party_key,
    )


def storable(msg: Message) -> bool:
    if msg.command != "TAGMSG":
        return True
    keys = {k for k in msg.tags if k[:1] == "+"}
    return bool(keys - TRANSIENT_TAGS)


def enabled(server: Server) -> bool:
    return server.config.history.enabled


def is_private(chan: Channel) -> bool:
    """Secret, invite-only or keyed: its history is its members' (Server.remove_channel)."""
    return chan.key is not None or "s" in chan.modes or "i" in chan.modes


def note_privacy(server: Server, chan: Channel) -> None:
    """After a mode change: remember in the store whether the channel is private now, so
    that its history can be deleted at the next start if the server dies with it."""
    if enabled(server) and not server.services.keeps(chan):
        cf, private = chan.cf, is_private(chan)
        server.store(lambda store: store.set_private_channel(cf, private))


def forget_channel(server: Server, cf: str) -> None:
    """Delete every event of the channel ``cf`` (an unregistered private channel that
    emptied: Server.remove_channel)."""
    if not enabled(server):
        return

    server.files.drop_refs(lambda ref: ref.target == cf)

    def done(count: int) -> None:
        server.store(lambda store: store.set_private_channel(cf, False))
        if count:
            log.info("history of %s removed with the channel: %d events", cf, count)

    purge(server, [(math.inf, cf, ())], done)


PurgeJob = tuple[float, str | None, tuple[str, ...]]  # before, conversation or all, except


def purge(server: Server, jobs: Sequence[PurgeJob], done: Callable[[int], None]) -> None:
    """Remove old events in steps (``store.purge_step``), one background store call each
    (run alone, when no other call waits, and cut short by the store when one arrives),
    one per tick: a purge of millions of events never holds up a message for longer than
    a part of a step. ``done(count)`` once all are removed."""
    removed = 0

    def step(job: int, after: str) -> None:
        before, target, exclude = jobs[job]

        def went(progress: Any) -> None:
            nonlocal removed
            if not isinstance(progress, PurgeProgress):
                return  # the store failed (logged there): the next purge tries again
            removed += progress.removed
            if progress.next is not None:
                # The next step waits for the next tick: between steps the checkpoints
                # catch up with the WAL (which back-to-back steps let grow without end).
                follow, after = job, progress.next
                server.later.append(lambda: step(follow, after))
            elif job + 1 < len(jobs):
                step(job + 1, "")
            else:
                done(removed)

        server.store(
            lambda store: store.purge_step(before, target, exclude, after), went, background=True
        )

    if jobs:
        step(0, "")


def forget_left_behind(server: Server, store: Store) -> None:
    """At start: the private channels of a server that died (no clean shutdown emptied
    them) are gone now, their history with them, unless they are registered."""
    for cf in store.load_private_channels():
        if cf in server.channels:
            continue  # registered: it stays, and so does its history
        if enabled(server):
            count = store.purge_history(math.inf, target=cf)
            log.info("history of %s removed with the channel (at start): %d events", cf, count)
        store.set_private_channel(cf, False)


def record(server: Server, events: Sequence[HistoryEvent]) -> None:
    """Store events after the fact (joins, parts, topics...): nothing waits for it."""
    if events and enabled(server):
        batch = list(events)
        server.store(lambda store: store.append_history(batch))


def channel_event(server: Server, chan: Channel, msg: Message) -> None:
    """Record a channel event (JOIN, PART, KICK, TOPIC, MODE) for event-playback."""
    if enabled(server):
        record(server, [message_event(server, msg, chan.cf)])


def user_event(server: Server, client: Client, msg: Message) -> None:
    """Record a user event (QUIT, NICK) in every channel the user is in."""
    if enabled(server) and client.channels:
        record(server, [message_event(server, msg, cf) for cf in client.channels])


def event_message(event: HistoryEvent, batch: str | None) -> Message:
    tags: dict[str, str] = {"time": format_ms(round(event.time * 1000)), "msgid": event.msgid}
    if event.account:
        tags["account"] = event.account
    tags.update(event.tags)
    if batch is not None:
        tags["batch"] = batch
    return Message(event.command, event.params, event.source, tags)


def send_batch(
    server: Server,
    rb: ResponseBuffer,
    kind: str,
    params: tuple[str, ...],
    events: Sequence[HistoryEvent],
) -> None:
    """Events as a batch of ``kind`` (``chathistory``...) when the client has batch."""
    client = rb.client
    if client.capmask & caps.BATCH:
        ref = server.new_batch_id()
        rb.add(Message("BATCH", ("+" + ref, kind, *params), server.name))
        for event in events:
            rb.add(event_message(event, ref))
        rb.add(Message("BATCH", ("-" + ref,), server.name))
    else:
        for event in events:
            rb.add(event_message(event, None))


RETENTION_EVERY = 3600.0


def purge_expired(server: Server) -> None:
    """Retention: drop history older than the server's and each channel's limit."""
    if not enabled(server):
        return
    hist = server.config.history
    now = server.now
    overrides = dict(hist.channel_retention)
    jobs: list[PurgeJob] = []
    if hist.retention_days > 0:
        jobs.append((now - hist.retention_days * 86400, None, tuple(overrides)))
    for chan, days in overrides.items():
        if days > 0:
            jobs.append((now - days * 86400, chan, ()))
    if not jobs:
        return
    for job in jobs:
        server.files.drop_refs(partial(_expired_ref, job))

    def done(count: int) -> None:
        if count:
            log.info("history retention: removed %d old events", count)

    purge(server, jobs, done)


def _expired_ref(job: PurgeJob, ref: FileRef) -> bool:
    """Whether a job of the retention purge removes the message of a file reference."""
    before, target, exclude = job
    if ref.time >= before:
        return False
    return ref.target == target if target is not None else ref.target not in exclude


# Extra rows the replay reads, for the live messages it leaves out.
REPLAY_SLACK = 16


def replay_on_join(server: Server, client: Client, chan: Channel) -> None:
    """A client without draft/chathistory gets the last lines of a channel on join."""
    lines = server.config.history.replay_lines
    if not enabled(server) or lines <= 0 or client.capmask & caps.CHATHISTORY:
        return
    # Up to the join: a message whose commit is still on its way, or said later (in the
    # same millisecond, too), reaches the new member live. The read runs beside the writer
    # and may see such messages stored: they are left out by their msgid.
    until = ms_time(int(server.now * 1000) + 1)
    upto = server.delivered_counter()
    query = HistoryQuery(chan.cf, end=until, limit=lines + REPLAY_SLACK, events=False)

    def done(events: Any) -> None:
        if not isinstance(events, list) or client.closed:
            return
        events = [e for e in events if not server.made_after(e.msgid, upto)][-lines:]
        if not events:
            return
        if client.personality.replay(server, client, chan, events):
            return  # shown in the personality's own way (the text port's: lines with times)
        rb = ResponseBuffer(server, client, None)
        send_batch(server, rb, "chathistory", (chan.name,), events)
        rb.flush()

    server.store(lambda store: store.history(query), done, read=True)


def commit_then(
    server: Server,
    rb: ResponseBuffer,
    events: list[HistoryEvent],
    deliver: Callable[[ResponseBuffer], None],
    command: str,
) -> None:
    """Commit ``events``; only then run ``deliver`` (which sends and echoes).

    The messages of one event-loop turn form one commit group: one store call appends all
    their events, and its completion delivers them in order (see Server.commit_group).
    """

    def then(ok: bool, out: ResponseBuffer) -> None:
        if ok:
            deliver(out)
        else:
            out.fail(command, "MESSAGE_NOT_STORED", "Your message could not be stored; not sent")

    server.after_commit(rb, events, then)


def marker_message(server: Server, target: str, value: float | None) -> Message:
    stamp = "*" if value is None else "timestamp=" + format_ms(round(value * 1000))
    return Message("MARKREAD", (target, stamp), server.name)


def marker_for(server: Server, client: Client, cf: str) -> float | None:
    return server.read_markers.get((party(server, client), cf))
