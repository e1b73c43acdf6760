"""Scale-out (issue 19): this server as one node of a network that many processes share.

Every node keeps the whole network's state (users, nicks, channels, members, modes) in the
core's own structures; the users of other nodes are :class:`Client`\\ s without a
connection (``closed``, so nothing is ever written to them, and every delivery loop skips
them as it is). A bus puts everything that changes that state, and every message, in one
order for the whole network; each node applies the entries in that order, its own
included. So the replicas go through the same states, and every recipient on every node
sees the same sequence.

That is state-machine replication: a command is checked against this node's replica (the
errors are as ever), its event is sent (a :class:`~salon.server.effects.BusOp`), and
nothing changes until the event comes back in its turn (:meth:`Cluster.entries`). Then
:func:`check` looks at it again against the replica, which by then holds everything ordered
before it: the first of two claims of one nick wins and the second is refused with 433, on
every node alike, and of two JOINs that create a channel the first makes its founder. The
command's replies (what its :class:`ResponseBuffer` holds, with its label) are held until
its events are applied, and the client's further input waits meanwhile.

Applying an entry is deterministic: the clock is the entry's (the origin's time when it
was made) and the msgids drawn meanwhile come from a range the origin reserved for it, so
the JOIN, QUIT or MODE lines are byte for byte the same on every node.

Entries are JSON arrays ``[node, token, time, base, kind, ...]``: ``"E"`` an event
(:mod:`salon.server.events`' codec), ``"M"`` a message (PRIVMSG, NOTICE, TAGMSG, after its
commit; the commonest, one line to one target, is a compact text instead: see
:func:`_compact_message`), ``"D"`` a node declared dead by the bus (its users quit), ``"F"`` a fence (a PING's PONG
waits for it).
"""

from __future__ import annotations

import json
import logging
from base64 import b64decode, b64encode
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cache
from typing import TYPE_CHECKING, Any

from salon.errors import CommandError, FailError
from salon.proto import numerics as n
from salon.proto.casemap import casefold
from salon.proto.message import Message
from salon.server import apply, history
from salon.server.channel import PREFIX_MODES
from salon.server.channels import admit, get_channel
from salon.server.client import Client, Kind
from salon.server.delivery import Delivery, body_bytes, deliver_message, new_event, new_message
from salon.server.effects import BusOp, StoreCall
from salon.server.events import (
    ChannelMode,
    Event,
    Intro,
    Invite,
    Join,
    Kick,
    Kill,
    Nick,
    Part,
    Quit,
    Rename,
    Topic,
)
from salon.server.events import decode as decode_event
from salon.server.events import encode as encode_event
from salon.server.responsebuffer import Held, ResponseBuffer
from salon.store.base import AccountRecord, HistoryEvent, ScramCredentials

if TYPE_CHECKING:
    from salon.server.core import Server

log = logging.getLogger("salon.cluster")

# A user's id is its node's number above these bits, the node's connection counter below.
NODE_SHIFT = 40
# msgids an entry's application may draw (a QUIT, a JOIN or a MODE draws one).
MSGIDS_PER_ENTRY = 16
# The reason other nodes' users see when a node dies: clients show it as a netsplit.
SPLIT_REASON = "*.net *.split"


def node_of(uid: int) -> int:
    return uid >> NODE_SHIFT


@cache
def msgid_prefix(node: int, applied: bool) -> str:
    """The part of a msgid that names its node (16 bits of the node number, then 0 for the
    node's own messages, 1 for lines drawn while applying an entry): msgids stay unique
    across the network."""
    return f"{node & 0xFFFF:04x}{int(applied)}"


@dataclass(slots=True)
class Step:
    """A local command's event waiting for its turn: the command's buffer, what to do
    after it applied, and where its lines go among what the buffer holds."""

    rb: ResponseBuffer | None
    then: Callable[[ResponseBuffer | None], None] | None
    index: int


class Cluster:
    """This server's side of the bus (``Server.cluster``; None when clustering is off)."""

    def __init__(self, server: Server, node: int, shared_store: bool = False) -> None:
        self.server = server
        self.node = node
        # Whether every node writes to one store (PostgreSQL): then only the node where
        # a change or a message was made stores it; with a store per node (SQLite), each
        # node stores what it applies.
        self.shared_store = shared_store
        self.steps: dict[int, Step] = {}
        # token -> (sender, command, deliveries, echo, held replies) of a local message
        # waiting for its turn.
        self.sent: dict[int, tuple[Client, str, Sequence[Delivery], bool, Held | None]] = {}
        # uids of local clients whose Intro is on its way (a drop then needs a Quit).
        self.introducing: set[int] = set()
        # True while another node's account deletion is applied here (not sent again).
        self.applying_account = False
        self._token = 0
        self._reserved = 0
        self.op: BusOp | None = None
        self.applied = 0

    # ------------------------------------------------------------------ out

    def _publish(self, entry: list[Any]) -> None:
        op = self.op
        if op is None:
            op = self.op = BusOp([])
            self.server.effects.append(op)
        op.entries.append(_json(entry))

    def _next_token(self) -> int:
        self._token += 1
        return self._token

    def submit(
        self,
        event: Event,
        rb: ResponseBuffer | None,
        then: Callable[[ResponseBuffer | None], None] | None,
    ) -> None:
        """Send ``event`` to the network's order (see :func:`salon.server.apply.emit`)."""
        server = self.server
        token = self._next_token()
        base = self._reserved
        self._reserved += MSGIDS_PER_ENTRY
        self._publish([self.node, token, server.now, base, "E", encode_event(event)])
        if isinstance(event, Intro):
            self.introducing.add(event.uid)
        if rb is not None:
            step = Step(rb, then, len(rb.messages))
            if rb.steps is None:
                rb.steps = []
            rb.steps.append(step)
            rb.client.blocked = True
            self.steps[token] = step
        elif then is not None:
            self.steps[token] = Step(None, then, 0)

    def fence(self, rb: ResponseBuffer) -> None:
        """Hold what ``rb`` answers until this node has applied everything the network
        ordered before now: a PONG then follows every message and change sent before its
        PING, on any node (one-process salon promises that within the process)."""
        token = self._next_token()
        self._publish([self.node, token, self.server.now, 0, "F"])
        step = Step(rb, None, len(rb.messages))
        if rb.steps is None:
            rb.steps = []
        rb.steps.append(step)
        rb.client.blocked = True
        self.steps[token] = step

    def submit_account(self, record: AccountRecord) -> None:
        """An account made or changed here: every node keeps the record (the last in the
        order wins everywhere, this node's own included)."""
        self._publish([self.node, 0, self.server.now, 0, "A", _account_data(record)])

    def submit_account_gone(self, name: str) -> None:
        self._publish([self.node, 0, self.server.now, 0, "a", name])

    def submit_message(
        self,
        client: Client,
        command: str,
        deliveries: Sequence[Delivery],
        echo: bool,
        held: Held | None,
        events: Sequence[HistoryEvent] | None = None,
    ) -> None:
        """Send committed messages (messaging.Delivery values) to the network's order;
        they are delivered, and echoed, when they come back. ``events``: their history
        rows as the origin stored them, which the other nodes store too (each node has a
        store of its own). The origin delivers its own from what it keeps here, not from
        the entry (which only the other nodes decode)."""
        token = self._next_token()
        text = _compact_message(self.node, token, client, command, deliveries, events)
        if text is None:
            targets = [
                [
                    chan.cf if chan is not None else None,
                    other.id if other is not None else None,
                    status,
                    list(out.params),
                    out.tags,
                ]
                for out, _wire, chan, other, status in deliveries
            ]
            rows = [list(event) for event in events] if events else []
            text = _json(
                [
                    self.node, token, self.server.now, 0, "M", client.id, command,
                    client.prefix, targets, rows,
                ]
            )  # fmt: skip
        op = self.op
        if op is None:
            op = self.op = BusOp([])
            self.server.effects.append(op)
        op.entries.append(text)
        self.sent[token] = (client, command, deliveries, echo, held)

    # ------------------------------------------------------------------ in

    def entries(self, entries: Sequence[str]) -> None:
        """Apply entries of the network's order (see ``Server.bus_entries``)."""
        for text in entries:
            try:
                if text[0] == "M":  # (a message, compact: see _compact_message)
                    self._compact_message(text)
                    continue
                entry = json.loads(text)
                kind = entry[4]
                if kind == "E":
                    self._event(entry)
                elif kind == "M":
                    self._message(entry)
                elif kind == "D":
                    self.node_down(int(entry[5]), float(entry[2]))
                elif kind == "F":
                    self._fence_passed(entry)
                elif kind == "A":
                    self._account(int(entry[0]), entry[5])
                elif kind == "a":
                    self._account_gone(int(entry[0]), str(entry[5]))
                else:
                    log.error("bus entry of unknown kind %r", kind)
            except Exception:
                log.exception("bug applying bus entry %.200s", text)
            finally:
                self.applied += 1

    def _apply(
        self, event: Event, node: int, time: float, base: int, out: ResponseBuffer | None
    ) -> bool:
        """Check and apply ``event`` as its origin made it (its clock, its msgids)."""
        server = self.server
        saved = server.now, server._msgid_prefix, server._msgid_counter, server._msgid_ms
        server.now = time
        server._msgid_prefix = msgid_prefix(node, True)
        server._msgid_counter = base
        server._msgid_ms = -1
        try:
            try:
                check(server, event)
            except CommandError as exc:
                if out is not None:
                    out.numeric(exc.numeric, *exc.params)
                return False
            except FailError as exc:
                if out is not None:
                    out.fail(exc.command, exc.code, *exc.context)
                return False
            if server.event_log is not None:
                server.event_log.append(event)
            apply.APPLY[type(event)](server, event, out)
            return True
        finally:
            server.now, server._msgid_prefix, server._msgid_counter, server._msgid_ms = saved
            server._msgid_ms = -1

    def _event(self, entry: list[Any]) -> None:
        server = self.server
        node, token, time, base = int(entry[0]), int(entry[1]), float(entry[2]), int(entry[3])
        event = decode_event(entry[5])
        step = self.steps.pop(token, None) if node == self.node else None
        rb = step.rb if step is not None else None
        out = ResponseBuffer(server, rb.client, None, rb.command) if rb is not None else None
        if self.shared_store and node != self.node:
            mark = len(server.effects)
            ok = self._apply(event, node, time, base, out)
            self._unstore(mark)
        else:
            ok = self._apply(event, node, time, base, out)
        if node == self.node:
            self._own_event(event, ok, out)
        if ok and step is not None and step.then is not None:
            try:
                step.then(out)
            except CommandError as exc:
                if out is not None:
                    out.numeric(exc.numeric, *exc.params)
            except Exception:
                log.exception("bug finishing %s", type(event).__name__)
        if rb is not None and step is not None and out is not None:
            self._finish_step(rb, step, out)

    def _fence_passed(self, entry: list[Any]) -> None:
        if int(entry[0]) != self.node:
            return
        step = self.steps.pop(int(entry[1]), None)
        if step is not None and step.rb is not None:
            rb = step.rb
            self._finish_step(rb, step, ResponseBuffer(self.server, rb.client, None))

    def _account(self, node: int, data: dict[str, Any]) -> None:
        record = _account_record(data)
        server = self.server
        server.accounts._index(record)  # (again on its own node: the order decides)
        if node != self.node and not self.shared_store:
            server.store(lambda store: store.save_account(record))

    def _account_gone(self, node: int, name: str) -> None:
        if node == self.node:
            return
        server = self.server
        mark = len(server.effects)
        self.applying_account = True
        try:
            server.accounts.delete(name)
        finally:
            self.applying_account = False
        if self.shared_store:
            self._unstore(mark)

    def _unstore(self, mark: int) -> None:
        """Drop the store calls made since ``server.effects[mark]``: the one store is
        written by the node where the change was made."""
        effects = self.server.effects
        if len(effects) > mark:
            effects[mark:] = [e for e in effects[mark:] if not isinstance(e, StoreCall)]

    def _own_event(self, event: Event, ok: bool, out: ResponseBuffer | None) -> None:
        """What only the origin does when its event had its turn."""
        server = self.server
        if isinstance(event, Intro):
            self.introducing.discard(event.uid)
            client = server.clients.get(event.uid)
            if not ok and client is not None:
                # Another node's user took the nick first: this one must choose again.
                if server.nicks.get(client.nick_cf) is client:
                    del server.nicks[client.nick_cf]
                client.nick, client.nick_cf = "*", ""
                client.update_prefix()
                if out is not None:
                    out.messages = [
                        Message(m.command, ("*", *m.params[1:]), m.source, m.tags)
                        for m in out.messages
                    ]
        elif isinstance(event, Quit) and not ok:
            server.leaving.pop(event.uid, None)

    def _finish_step(self, rb: ResponseBuffer, step: Step, out: ResponseBuffer) -> None:
        steps = rb.steps or []
        added = out.messages
        rb.messages[step.index : step.index] = added
        if step in steps:
            steps.remove(step)
        for later in steps:
            later.index += len(added)
        if steps:
            return
        rb.steps = None
        client = rb.client
        rb.flush()
        if client.pending_commits == 0:
            client.blocked = False
        if not client.closed and not client.blocked and client.inbuf:
            self.server._process_input(client)

    def _message(self, entry: list[Any]) -> None:
        server = self.server
        node, token = int(entry[0]), int(entry[1])
        if node == self.node:
            self._own_message(token)
            return
        sender_id, command, source, targets = int(entry[5]), str(entry[6]), str(entry[7]), entry[8]
        deliveries: list[Delivery] = []
        for cf, uid, status, params, tags in targets:
            out = Message(command, tuple(params), source, tags)
            text = params[1] if len(params) > 1 else None
            wire = body_bytes(source, command, params[0], text)
            chan = server.channels.get(cf) if cf is not None else None
            other = server.clients.get(uid) if uid is not None else None
            deliveries.append((out, wire, chan, other, status))
        deliver_message(server, _sender(server, sender_id), command, deliveries)
        if len(entry) > 9 and entry[9] and not self.shared_store:
            history.record(server, [_history_event(row) for row in entry[9]])

    def _compact_message(self, text: str) -> None:
        """Apply an entry of :func:`_compact_message`."""
        f = text.split("\0")
        if int(f[1]) == self.node:
            self._own_message(int(f[2]))
            return
        server = self.server
        command, source, target, body = f[4], f[5], f[9], f[10]
        tags = {"time": f[11], "msgid": f[12]}
        account = f[13] or None
        if account is not None:
            tags["account"] = account
        if f[14]:
            tags["bot"] = ""
        params = (target, body)
        out = new_message((command, params, source, tags))
        chan = server.channels.get(f[6]) if f[6] else None
        other = server.clients.get(int(f[7])) if f[7] else None
        wire = body_bytes(source, command, target, body)
        deliver_message(
            server, _sender(server, int(f[3])), command, [(out, wire, chan, other, f[8])]
        )
        if f[15] and not self.shared_store:
            row = (f[12], float(f[15]), f[16], command, source, account, params, (), f[17], f[18])
            history.record(server, [new_event(row)])

    def _own_message(self, token: int) -> None:
        """This node's message has its turn: delivered (to this node's users) and echoed
        from what submit_message kept, the targets looked up again as another node's
        entry's are (a channel may be gone, a user quit, since)."""
        sent = self.sent.pop(token, None)
        if sent is None:
            return
        server = self.server
        client, command, kept, echo, held = sent
        deliveries: list[Delivery] = []
        for out, wire, chan, other, status in kept:
            if chan is not None:
                chan = server.channels.get(chan.cf)
            if other is not None:
                # (a user of another node is kept for the echo only: it is closed)
                other = server.clients.get(other.id) or server.remote.get(other.id)
            deliveries.append((out, wire, chan, other, status))
        deliver_message(server, client, command, deliveries)
        if held is None or held.empty():
            if echo:
                for out, wire, *_ in deliveries:
                    server.send(client, out, wire)
            return
        out_rb = held.resume()
        if echo:
            for out, *_ in deliveries:
                out_rb.add(out)
        out_rb.flush()

    # ------------------------------------------------------------------ deaths

    def node_down(self, dead: int, time: float) -> None:
        """The bus declared node ``dead`` gone: each of its users quits, here as on every
        other node, in the order of their ids."""
        if dead == self.node:
            return  # the shell closes this node's clients (fenced)
        server = self.server
        gone = sorted(uid for uid in server.remote if node_of(uid) == dead)
        mark = len(server.effects)
        for i, uid in enumerate(gone):
            self._apply(Quit(uid, SPLIT_REASON), dead, time, (1 << 30) + i * MSGIDS_PER_ENTRY, None)
        if self.shared_store:
            # (no node made these QUITs: the one store does not get them from every node)
            self._unstore(mark)
        server.settle()


def _account_data(record: AccountRecord) -> dict[str, Any]:
    scram = record.scram
    return {
        "name": record.name,
        "password_hash": record.password_hash,
        "scram": None
        if scram is None
        else [b64encode(scram.salt).decode(), scram.iterations,
              b64encode(scram.stored_key).decode(), b64encode(scram.server_key).decode()],
        "email": record.email,
        "verified": record.verified,
        "created": record.created,
        "certfps": list(record.certfps),
    }  # fmt: skip


def _account_record(data: dict[str, Any]) -> AccountRecord:
    scram = data["scram"]
    return AccountRecord(
        str(data["name"]),
        str(data["password_hash"]),
        None
        if scram is None
        else ScramCredentials(
            b64decode(scram[0]), int(scram[1]), b64decode(scram[2]), b64decode(scram[3])
        ),
        str(data["email"]),
        bool(data["verified"]),
        float(data["created"]),
        tuple(str(fp) for fp in data["certfps"]),
    )


def _sender(server: Server, uid: int) -> Client:
    """The sender of another node's message, or _NOBODY when it quit before its turn."""
    try:
        return apply.user(server, uid)
    except KeyError:
        return _NOBODY


# ASCII JSON (a lone surrogate, from bytes that were no UTF-8, is escaped like the rest),
# with one encoder made once (json.dumps makes one per call when given separators).
_json = json.JSONEncoder(separators=(",", ":")).encode

# The tags of a message that carries no client tags, in the order relay makes them.
_PLAIN_TAGS = {
    (False, False): ("time", "msgid"),
    (True, False): ("time", "msgid", "account"),
    (False, True): ("time", "msgid", "bot"),
    (True, True): ("time", "msgid", "account", "bot"),
}


def _compact_message(
    node: int,
    token: int,
    client: Client,
    command: str,
    deliveries: Sequence[Delivery],
    events: Sequence[HistoryEvent] | None,
) -> str | None:
    """The commonest message entry without JSON: one PRIVMSG or NOTICE to one target,
    with no client tags, and the one history row it makes. Fields joined by NUL, which
    no IRC line holds (body_bytes refuses it) and JSON never writes: ``M``, node, token,
    sender, command, source, channel, user, status, target, text, time, msgid, account,
    bot, and the row's time, conversation, display name and party ("" when not stored).
    None when the message is any other: it goes as JSON."""
    if len(deliveries) != 1 or command == "TAGMSG":
        return None
    out, _wire, chan, other, status = deliveries[0]
    params, tags = out.params, out.tags
    account = tags.get("account")
    bot = "bot" in tags
    if len(params) != 2 or tuple(tags) != _PLAIN_TAGS[account is not None, bot]:
        return None
    target, text = params
    if "\0" in text or "\n" in text:
        return None
    row: tuple[str, ...] = ("", "", "", "")
    if events:
        event = events[0]
        if (
            len(events) != 1
            or event.msgid != tags["msgid"]
            or event.command != command
            or event.source != client.prefix
            or event.account != account
            or event.params != params
            or event.tags
        ):
            return None
        row = (repr(event.time), event.target, event.display, event.party)
    return "\0".join(
        (
            "M", str(node), str(token), str(client.id), command, client.prefix,
            chan.cf if chan is not None else "", str(other.id) if other is not None else "",
            status, target, text, tags["time"], tags["msgid"], account or "",
            "1" if bot else "", *row,
        )
    )  # fmt: skip


def _history_event(row: list[Any]) -> HistoryEvent:
    msgid, time, target, command, source, account, params, tags, display, party = row
    return HistoryEvent(
        str(msgid), float(time), str(target), str(command), str(source), account,
        tuple(params), tuple((str(k), str(v)) for k, v in tags), str(display), str(party),
    )  # fmt: skip


# The sender of a message whose sender quit before it was delivered: skips nobody.
_NOBODY = Client(-1, Kind.IRC, "", 0, 0.0)


def _known(server: Server, uid: int) -> Client:
    try:
        return apply.user(server, uid)
    except KeyError:
        raise CommandError(n.ERR_NOSUCHNICK, "*", "No such nick/channel") from None


def _nick_free(server: Server, client: Client, nick: str) -> None:
    holder = server.nicks.get(casefold(nick))
    if holder is not None and holder is not client and holder.registered:
        raise CommandError(n.ERR_NICKNAMEINUSE, nick, "Nickname is already in use")


def check(server: Server, event: Event) -> None:
    """Raise the error that makes ``event`` void, now that it has its turn: what changed
    since its origin checked it (a nick taken, a user gone, a channel gone or closed)
    decides the same way on every node, since every replica is in the same state here."""
    if isinstance(event, Intro):
        client = server.clients.get(event.uid) or server.leaving.get(event.uid)
        if client is None and event.uid in server.remote:
            raise CommandError(n.ERR_ALREADYREGISTERED, "You may not reregister")
        holder = server.nicks.get(casefold(event.nick))
        if holder is not None and holder is not client and holder.registered:
            raise CommandError(n.ERR_NICKNAMEINUSE, event.nick, "Nickname is already in use")
        return
    if isinstance(event, Nick):
        client = _known(server, event.uid)
        _nick_free(server, client, event.nick)
        return
    if isinstance(event, Quit):
        if not _known(server, event.uid).registered:
            raise CommandError(n.ERR_NOSUCHNICK, "*", "No such nick/channel")
        return
    if isinstance(event, Join):
        client = _known(server, event.uid)
        chan = server.channels.get(casefold(event.channel))
        if chan is not None:
            if client in chan.members:
                raise CommandError(
                    n.ERR_USERONCHANNEL, client.nick, chan.name, "is already on channel"
                )
            admit(chan, client, None, check_key=False)
        return
    if isinstance(event, Part):
        client = _known(server, event.uid)
        chan = get_channel(server, event.channel)
        if client not in chan.members:
            raise CommandError(n.ERR_NOTONCHANNEL, chan.name, "You're not on that channel")
        return
    if isinstance(event, Kick):
        client = _known(server, event.uid)
        target = _known(server, event.target)
        chan = get_channel(server, event.channel)
        if target not in chan.members:
            raise CommandError(
                n.ERR_USERNOTINCHANNEL, target.nick, chan.name, "They aren't on that channel"
            )
        if event.uid >= 0 and not chan.is_op(client):
            raise CommandError(n.ERR_CHANOPRIVSNEEDED, chan.name, "You're not channel operator")
        return
    if isinstance(event, (Topic, ChannelMode)):
        _known(server, event.uid)
        chan = get_channel(server, event.channel)
        if isinstance(event, ChannelMode):
            for _adding, letter, arg in event.changes:
                if letter in PREFIX_MODES:
                    member = server.nicks.get(casefold(arg or ""))
                    if member is None or member not in chan.members:
                        raise CommandError(
                            n.ERR_USERNOTINCHANNEL,
                            arg or "*",
                            chan.name,
                            "They aren't on that channel",
                        )
        return
    if isinstance(event, Invite):
        _known(server, event.uid)
        _known(server, event.target)
        return
    if isinstance(event, Rename):
        _known(server, event.uid)
        get_channel(server, event.channel)
        if casefold(event.new) in server.channels and casefold(event.new) != casefold(
            event.channel
        ):
            raise FailError(
                "RENAME", "CHANNEL_NAME_IN_USE", event.channel, event.new, "Channel already exists"
            )
        return
    if isinstance(event, Kill):
        _known(server, event.uid)
        _known(server, event.target)
        return
    uid = getattr(event, "uid", None)
    if uid is not None:
        _known(server, uid)
