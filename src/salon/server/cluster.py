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
:func:`_compact_message`), ``"B"`` a draft/multiline batch (after its commit), ``"f"`` a
change to the file host's records (Files.apply), ``"D"`` a node declared dead by the bus
(its users quit), ``"F"`` a fence (a PING's PONG waits for it), ``"K"`` another node's
acknowledgement of a fence, ``"N"`` a node that started (the nodes a PONG waits for are
those seen in the order and not declared dead), ``"S"`` a node's restatement of its users
and their channels (sent when Redis lost the log: :meth:`Cluster.restate`), ``"P"`` with a
store per node, its restatement of what every store holds (accounts, registered channels,
K- and D-lines: :meth:`Cluster.restate_durable`).

Every node applies an entry once: an origin's entries carry increasing tokens, and one
whose token is not above the last applied of its origin is a repeat (the bus sends again
what Redis may have lost) and is dropped.

A PONG is a barrier for the whole network, as a PING is for one process: its fence goes in
the order after this node's earlier messages (once they are committed), every other node
acknowledges it once it has applied everything before it and sent what it had (its own
messages still being committed included), and the PONG goes when every live node has. So a
client that saw its PONG can act on another node, which then knows everything the network
ordered before that PING: irctest synchronizes every step of its tests so, and a
conversation between users of two nodes keeps the order one process gives it.
"""

from __future__ import annotations

import json
import logging
from base64 import b64decode, b64encode
from collections.abc import Callable, Sequence
from dataclasses import asdict, astuple, dataclass
from functools import cache, partial
from typing import TYPE_CHECKING, Any, cast

from salon.errors import CommandError, FailError
from salon.proto import numerics as n
from salon.proto.casemap import casefold
from salon.proto.message import Message
from salon.server import apply, history
from salon.server.channel import PREFIX_MODES, Channel, ListEntry
from salon.server.channels import admit, get_channel
from salon.server.client import Client, Kind
from salon.server.delivery import (
    Delivery,
    Line,
    body_bytes,
    deliver_and_echo,
    deliver_message,
    deliver_multiline,
    multiline_batch,
    new_event,
    new_message,
)
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
from salon.store.base import (
    AccountRecord,
    ChannelRecord,
    HistoryEvent,
    ScramCredentials,
    ServerBan,
    list_records,
)

if TYPE_CHECKING:
    from salon.server.core import Server

log = logging.getLogger("salon.cluster")

# A user's id is its node's number above these bits, the node's connection counter below.
NODE_SHIFT = 40
# msgids an entry's application may draw (a QUIT, a JOIN or a MODE draws one).
MSGIDS_PER_ENTRY = 16
# The reason other nodes' users see when a node dies: clients show it as a netsplit.
SPLIT_REASON = "*.net *.split"
# Entries this node may have waiting for their turn (while Redis is away) by default.
MAX_WAITING = 20000
# Quits a restatement may make (of users its origin no longer has), msgids reserved for.
RESTATE_QUITS = 4096
# The reason of a KICK that makes a channel's members those the furthest restatement lists.
RESTATE_KICK = "Membership restated after the network's log was lost"
# Seconds before a node found Redis lost data in which another node's restatement counts
# for this round (it may have read the new log before its own call failed).
RESEND_WINDOW = 10.0
# Records (accounts, registered channels, server bans) per restatement entry of the stores.
DURABLE_CHUNK = 500
# Seconds a PONG waits for the other nodes' acknowledgements (ClusterSection.node_ttl's
# default: a node silent for longer is being declared dead anyway).
FENCE_WAIT = 3.0
# Seconds an origin's entry may reach the log after a later-made one of the same origin
# (it waited for the commit group in flight): see Census.
ORDER_SLACK = 5.0


def node_of(uid: int) -> int:
    return uid >> NODE_SHIFT


@cache
def msgid_prefix(node: int, applied: bool) -> str:
    """The part of a msgid that names its node (16 bits of the node number, then 0 for the
    node's own messages, 1 for lines drawn while applying an entry): msgids stay unique
    across the network."""
    return f"{node & 0xFFFF:04x}{int(applied)}"


@dataclass(slots=True)
class Census:
    """What a replayed log holds of each origin's messages: ``started``, the time of the
    entry with which each origin joined (``"N"``), ``first``, the time of its first
    entry in the log, each by the prefix of its own messages' msgids (msgid_prefix), and
    ``msgids``, those of every message's history rows.

    A node with a store of its own commits its user's message before it sends it to the
    log; killed in between, its store keeps a message that nobody received and no other
    store holds. :meth:`unordered` tells such a row on the node's restart: a message of
    an origin the log holds from its start that is not in the log was never ordered. An
    origin whose start is trimmed away is judged from its first entry still in the log
    (``ORDER_SLACK`` later: entries of one origin reach the log nearly in time order)."""

    started: dict[str, float]
    first: dict[str, float]
    msgids: set[str]

    def note(self, origin: int, kind: str, entry: list[Any]) -> None:
        """One entry of the log, as :meth:`Cluster.entries` parsed it."""
        if not origin or not entry:
            return
        prefix = msgid_prefix(origin, False)
        if kind == "m":  # (a compact message: _compact_message)
            when = float(entry[19])
            self.msgids.add(entry[12])
        else:
            when = float(entry[2])
            rows = entry[9] if kind == "M" and len(entry) > 9 else entry[13] if kind == "B" else ()
            for row in rows:
                self.msgids.add(str(row[0]))
            if kind == "N":
                self.started.setdefault(prefix, when)
        self.first.setdefault(prefix, when)

    def since(self) -> float | None:
        """The time from which :meth:`unordered` may say yes (None: never)."""
        return min(self.first.values(), default=None)

    def unordered(self, msgid: str, time: float) -> bool:
        """Whether the stored message ``msgid`` of ``time`` was committed by its origin
        but never ordered (msgids: Server.new_msgid, 11 digits of time then the prefix)."""
        prefix = msgid[11:16]
        start = self.started.get(prefix)
        if start is None:
            first = self.first.get(prefix)
            if first is None:
                return False
            start = first + ORDER_SLACK
        return time > start and msgid not in self.msgids


@dataclass(slots=True)
class Step:
    """A local command's event waiting for its turn: the command's buffer, what to do
    after it applied, and where its lines go among what the buffer holds."""

    rb: ResponseBuffer | None
    then: Callable[[ResponseBuffer | None], None] | None
    index: int


@dataclass(slots=True)
class Barrier:
    """A PING's fence that had its turn here, waiting for the other nodes to acknowledge
    it (until ``deadline``)."""

    step: Step
    nodes: set[int]
    deadline: float


class Cluster:
    """This server's side of the bus (``Server.cluster``; None when clustering is off)."""

    def __init__(
        self,
        server: Server,
        node: int,
        shared_store: bool = False,
        max_waiting: int = MAX_WAITING,
    ) -> None:
        self.server = server
        self.node = node
        self.max_waiting = max_waiting
        # origin node -> the last token of its entries applied here (repeats are dropped)
        self.seen: dict[int, int] = {}
        # The round of restatements applied here (the run of Redis's data they name: a
        # round per loss of the log), the nodes whose restatement of it came so far, the
        # furthest log position read by the origin of one of them, and the members
        # (uid -> status) of the channels that one listed.
        self.round_run = ""
        self.round_nodes: set[int] = set()
        self.read_furthest: tuple[int, ...] = (0, 0)
        self.furthest_members: dict[str, dict[int, str]] = {}
        self.furthest_node = 0
        # Nodes whose restatement this node waits for, and those it applied (recover()).
        self.awaited: set[int] = set()
        self.restated: dict[int, float] = {}  # node -> when its last restatement came
        self.round_start = 0.0
        # Whether every node writes to one store (PostgreSQL): then only the node where
        # a change or a message was made stores it; with a store per node (SQLite), each
        # node stores what it applies.
        self.shared_store = shared_store
        self.steps: dict[int, Step] = {}
        # token -> (sender, command, deliveries, echo, held replies) of a local message
        # waiting for its turn.
        self.sent: dict[int, tuple[Client, str, Sequence[Delivery], bool, Held | None]] = {}
        # token -> (sender, echo, held replies) of a local multiline batch waiting for its
        # turn.
        self.messages: dict[int, tuple[Client, bool, Held | None]] = {}
        # uids of local clients whose Intro is on its way (a drop then needs a Quit).
        self.introducing: set[int] = set()
        # True while another node's account deletion is applied here (not sent again).
        self.applying_account = False
        # The times of the entries that introduced each user (by uid) and created each
        # channel (by casefolded name; dropped lazily once gone): see needs().
        self.introduced: dict[int, float] = {}
        self.created: dict[str, float] = {}
        self._token = 0
        self._reserved = 0
        # How this node's own compact message entries begin (see _compact_message).
        self._own_prefix = f"M\0{node}\0"
        self.op: BusOp | None = None
        self.applied = 0
        # The other nodes seen in the order and not declared dead: the ones a PONG waits for.
        self.nodes: set[int] = set()
        self.dead: set[int] = set()
        self.barriers: dict[int, Barrier] = {}
        # after_barrier()'s steps with their deadlines (a step's index is -1 once done).
        self.closing: list[tuple[float, Step]] = []
        # Entries that go out once the commit groups started before them are committed
        # (a fence or its acknowledgement must follow this node's earlier messages):
        # (the number of groups finished by then, entry). Groups finish in order.
        self.after_commits: list[tuple[int, list[Any], Step | None]] = []
        # Each other node's unregistered connections (LUSERS 253), as of its last fence or
        # acknowledgement: right after a barrier, every node's count.
        self.unknown: dict[int, int] = {}
        self.commits_done = 0
        cfg = server.config.cluster
        self.fence_wait = cfg.node_ttl if cfg is not None else FENCE_WAIT
        # Set while the shell replays the log at start (a store per node): see Census.
        self.census: Census | None = None
        self._publish([node, 0, server.now, 0, "N"])

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

    @property
    def waiting(self) -> int:
        """This node's entries sent and not yet back (all of them while Redis is away)."""
        return self._token - self.seen.get(self.node, 0)

    def room(self, command: str) -> None:
        """Refuse a command that would add an entry when too many wait already: a client
        gets an answer, never a wait without a bound (issue 19 point 7)."""
        if self.waiting >= self.max_waiting:
            raise FailError(
                command, "TEMPORARILY_UNAVAILABLE", "The network is unavailable; try again later"
            )

    def submit(
        self,
        event: Event,
        rb: ResponseBuffer | None,
        then: Callable[[ResponseBuffer | None], None] | None,
    ) -> None:
        """Send ``event`` to the network's order (see :func:`salon.server.apply.emit`)."""
        server = self.server
        if rb is not None and not isinstance(event, (Quit, Intro)):
            # (a QUIT always goes; a registration is not cut in the middle of its burst)
            self.room(rb.command or "*")
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

    def fence(
        self, rb: ResponseBuffer, then: Callable[[ResponseBuffer | None], None] | None = None
    ) -> None:
        """Hold what ``rb`` answers until every node has applied everything the network
        ordered before now: a PONG then follows every message and change sent before its
        PING, on any node (one-process salon promises that within the process). ``then``:
        the query to answer at that point (a read fence)."""
        server = self.server
        step = Step(rb, then, len(rb.messages))
        if rb.steps is None:
            rb.steps = []
        rb.steps.append(step)
        rb.client.blocked = True
        self._publish_after_commits([self.node, 0, server.now, 0, "F", server.unregistered], step)

    def _publish_after_commits(self, entry: list[Any], step: Step | None = None) -> None:
        """Publish ``entry`` once the commit groups started so far are done; with ``step``,
        it is a fence whose token is drawn then (tokens go out in increasing order: a
        lower one after a higher one would be taken for a repeat)."""
        pending = self.server.uncommitted
        if pending == 0 and not self.after_commits:
            self._publish_now(entry, step)
        else:
            self.after_commits.append((self.commits_done + pending, entry, step))

    def _publish_now(self, entry: list[Any], step: Step | None) -> None:
        if step is not None:
            token = entry[1] = self._next_token()
            entry[2] = self.server.now
            self.steps[token] = step
        self._publish(entry)

    def committed(self) -> None:
        """A commit group finished (its messages went out): send what waited for it."""
        self.commits_done += 1
        waiting = self.after_commits
        while waiting and waiting[0][0] <= self.commits_done:
            _done, entry, step = waiting.pop(0)
            self._publish_now(entry, step)

    def after_barrier(self, then: Callable[[], None]) -> None:
        """Run ``then`` once every node has applied what this node sent so far (a PING's
        barrier without a client), or after ``fence_wait`` twice at most (Redis away)."""
        step = Step(None, lambda _out: then(), 0)
        self.closing.append((self.server.now + 2 * self.fence_wait, step))
        self._publish_after_commits(
            [self.node, 0, self.server.now, 0, "F", self.server.unregistered], step
        )

    def tick(self, now: float) -> None:
        """A PONG whose acknowledgements are overdue goes without them."""
        for token, barrier in list(self.barriers.items()):
            if now >= barrier.deadline:
                self._barrier_passed(token)
        while self.closing and (self.closing[0][0] <= now or self.closing[0][1].index < 0):
            _deadline, step = self.closing.pop(0)
            if step.index >= 0:
                self._pong(step)

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
        now = self.server.now
        text = _compact_message(self.node, token, client, command, deliveries, events, now)
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
                    self.node, token, now, 0, "M", client.id, command,
                    client.prefix, targets, rows,
                ]
            )  # fmt: skip
        op = self.op
        if op is None:
            op = self.op = BusOp([])
            self.server.effects.append(op)
        op.entries.append(text)
        self.sent[token] = (client, command, deliveries, echo, held)

    def submit_multiline(
        self,
        client: Client,
        target: str,
        chan: Channel | None,
        other: Client | None,
        head_tags: dict[str, str],
        lines: Sequence[Line],
        fallback: Sequence[Message],
        echo: bool,
        held: Held | None,
        events: Sequence[HistoryEvent],
    ) -> None:
        """Send a committed draft/multiline batch to the network's order (as
        :meth:`submit_message` does a message)."""
        token = self._next_token()
        self._publish(
            [
                self.node, token, self.server.now, 0, "B", client.id, client.prefix, target,
                chan.cf if chan is not None else None, other.id if other is not None else None,
                head_tags, [list(line) for line in lines],
                [[m.command, m.params[1], m.tags] for m in fallback],
                [list(event) for event in events],
            ]
        )  # fmt: skip
        if echo or (held is not None and not held.empty()):
            self.messages[token] = (client, echo, held)

    def needs(self) -> float:
        """The time of the oldest entry this replica still depends on: the introduction of
        the longest-connected user, or the JOIN that made the oldest channel (registered
        channels come from the store). A node that starts on a log trimmed past this
        would rebuild a different network (salon.net.bus refuses it)."""
        channels = self.server.channels
        for cf in [cf for cf in self.created if cf not in channels]:
            del self.created[cf]
        kept = self.server.services.keeps
        made = [t for cf, t in self.created.items() if not kept(channels[cf])]
        return min([*self.introduced.values(), *made, self.server.now])

    def submit_files(self, op: list[Any]) -> None:
        """A change to the file host's state (Files.apply on the other nodes)."""
        self._publish([self.node, 0, self.server.now, 0, "f", op])

    # ------------------------------------------------------------------ in

    def entries(self, entries: Sequence[str]) -> None:
        """Apply entries of the network's order (see ``Server.bus_entries``)."""
        seen = self.seen
        census = self.census
        own = self._own_prefix
        skip = len(own)
        for text in entries:
            try:
                entry: list[Any]
                again = False
                if text.startswith(own):
                    # This node's own compact message: its token is all it needs (it
                    # delivers from what it kept: _own_message).
                    entry = []
                    kind = "o"
                    origin = self.node
                    token = int(text[skip : text.index("\0", skip)])
                elif text[0] == "M":  # (a message, compact: see _compact_message)
                    entry = cast("list[Any]", text.split("\0"))
                    kind = "m"
                    origin, token = int(entry[1]), int(entry[2])
                else:
                    entry = json.loads(text)
                    kind = entry[4]
                    again = kind == "R"
                    if again:
                        # A change sent again after a restatement round: applied where it
                        # was already too (checked again, it changes nothing there; a
                        # restatement may have undone it where it had been applied).
                        entry = json.loads(entry[5])
                        kind = entry[4]
                    origin = entry[0]  # (0: an entry of the bus itself)
                    token = entry[1]
                if origin and origin != self.node and origin not in self.nodes:
                    self._seen(origin)
                if census is not None:
                    census.note(origin, kind, entry)
                if again:
                    seen[origin] = max(seen.get(origin, 0), token)
                elif token:
                    if token <= seen.get(origin, 0):
                        continue  # a repeat: applied here already
                    seen[origin] = token
                if kind == "o":
                    self._own_message(token)
                elif kind == "m":
                    self._compact_message(entry)
                elif kind == "E":
                    self._event(entry)
                elif kind == "M":
                    self._message(entry)
                elif kind == "B":
                    self._multiline(entry)
                elif kind == "D":
                    self.node_down(int(entry[5]), float(entry[2]))
                elif kind == "F":
                    self._fence_passed(entry)
                elif kind == "N":
                    pass  # (the node is known now: see above)
                elif kind == "K":
                    if len(entry) > 7:
                        self.unknown[int(entry[0])] = int(entry[7])
                    self._acknowledged(int(entry[0]), int(entry[5]), int(entry[6]))
                elif kind == "A":
                    self._account(int(entry[0]), entry[5])
                elif kind == "a":
                    self._account_gone(int(entry[0]), str(entry[5]))
                elif kind == "S":
                    self._restated(entry)
                elif kind == "P":
                    self._restated_durable(entry)
                elif kind == "f":
                    if int(entry[0]) != self.node:
                        self.server.files.apply(entry[5])
                else:
                    log.error("bus entry of unknown kind %r", kind)
            except Exception:
                log.exception("bug applying bus entry %.200s", text)
            self.applied += 1

    def _apply(
        self,
        event: Event,
        node: int,
        time: float,
        base: int,
        out: ResponseBuffer | None,
        checked: bool = True,
    ) -> bool:
        """Check and apply ``event`` as its origin made it (its clock, its msgids);
        ``checked`` False: the caller knows it applies (a restatement)."""
        server = self.server
        saved = server.now, server._msgid_prefix, server._msgid_counter, server._msgid_ms
        server.now = time
        server._msgid_prefix = msgid_prefix(node, True)
        server._msgid_counter = base
        server._msgid_ms = -1
        try:
            try:
                if checked:
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
            if isinstance(event, Join) and casefold(event.channel) not in server.channels:
                self.created[casefold(event.channel)] = time
            elif isinstance(event, Rename) and casefold(event.channel) in self.created:
                self.created[casefold(event.new)] = self.created.pop(casefold(event.channel))
            apply.APPLY[type(event)](server, event, out)
            if isinstance(event, Intro):
                self.introduced[event.uid] = time
            elif isinstance(event, Quit):
                self.introduced.pop(event.uid, None)
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
        server = self.server
        origin, token = int(entry[0]), int(entry[1])
        if origin != self.node:
            if len(entry) > 5:
                self.unknown[origin] = int(entry[5])
            # Acknowledged once what this node had is sent; not for a fence long over (this
            # node replaying the log at its start).
            if server.now - float(entry[2]) < self.fence_wait:
                self._publish_after_commits(
                    [self.node, 0, server.now, 0, "K", origin, token, server.unregistered]
                )
            return
        step = self.steps.pop(token, None)
        if step is None:
            return
        if self.nodes:
            self.barriers[token] = Barrier(step, set(self.nodes), server.now + self.fence_wait)
            return
        self._pong(step)

    def _seen(self, node: int) -> None:
        if node not in self.dead:
            self.nodes.add(node)

    def _acknowledged(self, node: int, origin: int, token: int) -> None:
        if origin != self.node:
            return
        barrier = self.barriers.get(token)
        if barrier is not None:
            barrier.nodes.discard(node)
            if not barrier.nodes:
                self._barrier_passed(token)

    def _barrier_passed(self, token: int) -> None:
        barrier = self.barriers.pop(token, None)
        if barrier is not None:
            self._pong(barrier.step)

    def _pong(self, step: Step) -> None:
        rb = step.rb
        if rb is None:
            if step.index >= 0 and step.then is not None:
                step.index = -1  # (done: not again at its deadline)
                step.then(None)
            return
        out = ResponseBuffer(self.server, rb.client, None, rb.command)
        if step.then is not None and not rb.client.closed:
            try:
                step.then(out)
            except CommandError as exc:
                out.numeric(exc.numeric, *exc.params)
            except FailError as exc:
                out.fail(exc.command, exc.code, *exc.context)
            except Exception:
                log.exception("bug answering %s after its read fence", rb.command)
                out.numeric(n.ERR_UNKNOWNERROR, rb.command, "Internal error")
        self._finish_step(rb, step, out)

    def unregistered_elsewhere(self) -> int:
        """The other nodes' unregistered connections, as of their last fence or
        acknowledgement (a fenced LUSERS asks them all)."""
        return sum(self.unknown.values())

    def _account(self, node: int, data: dict[str, Any]) -> None:
        record = _account_record(data)
        server = self.server
        server.accounts._index(record)  # (again on its own node: the order decides)
        if node != self.node and not self.shared_store:
            server.store(lambda store: store.save_account(record), idempotent=True)

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
        sender = _sender(server, sender_id)
        deliver_message(server, sender, command, deliveries)
        if sender is not _NOBODY and command != "TAGMSG":
            sender.last_message = float(entry[2])  # (WHOIS idle)
        if len(entry) > 9 and entry[9] and not self.shared_store:
            history.record(server, [_history_event(row) for row in entry[9]])

    def _compact_message(self, f: list[str]) -> None:
        """Apply another node's entry of :func:`_compact_message` (split at its NULs; this
        node's own are recognised by their beginning, in :meth:`entries`)."""
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
        sender = _sender(server, int(f[3]))
        deliver_message(server, sender, command, [(out, wire, chan, other, f[8])])
        if sender is not _NOBODY:
            sender.last_message = float(f[19])  # (WHOIS idle)
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
        deliver_and_echo(server, client, command, deliveries, echo, held)

    def _multiline(self, entry: list[Any]) -> None:
        server = self.server
        node, token, time = int(entry[0]), int(entry[1]), float(entry[2])
        sender_id, source, target, cf, uid = entry[5:10]
        head_tags, lines, fallback, rows = entry[10:14]
        try:
            sender = apply.user(server, int(sender_id))
        except KeyError:
            sender = _NOBODY
        batch_lines: list[Line] = [(str(c), str(t), bool(concat)) for c, t, concat in lines]
        recipients: Sequence[Client] = ()
        if cf is not None:
            chan = server.channels.get(cf)
            recipients = list(chan.members) if chan is not None else ()
        elif uid is not None and uid in server.clients:
            recipients = (server.clients[uid],)
        singles = [Message(c, (target, text), source, tags) for c, text, tags in fallback]
        deliver_multiline(
            server, sender, recipients, source, target, head_tags, batch_lines, singles
        )
        if node != self.node:
            sender.last_message = time  # (WHOIS idle)
            if rows and not self.shared_store:
                history.record(server, [_history_event(row) for row in rows])
            return
        waiting = self.messages.pop(token, None)
        if waiting is None:
            return
        client, echo, held = waiting
        out = held.resume() if held is not None else ResponseBuffer(server, client, None)
        if echo:
            for message in multiline_batch(server, target, source, head_tags, batch_lines):
                out.add(message)
        out.flush()

    # ------------------------------------------------------------------ restatement

    def highest_node(self) -> int:
        """The highest node number this node has heard of (a Redis that lost its data
        must not give it to a new node)."""
        nodes = [self.node, *self.seen]
        if self.server.remote:
            nodes.append(node_of(max(self.server.remote)))
        return max(nodes)

    def recover(self, sent: Sequence[str], read: str, run: str = "") -> tuple[list[str], list[str]]:
        """Redis lost data (the end of the log, or all of it): what this node sends
        first, and what it sends once every node's restatement is in the log (the bus
        holds everything else until then: no new change lands among the restatements).
        ``sent``: its entries Redis took lately, in order; ``read``: the id of the last
        log entry it read; ``run``: what names Redis's new data (the bus's ``run``: every
        node that recovers from one loss gets the same).

        First: its messages again (a node that had not read them delivers them, the
        others drop the repeats), then its restatement (:meth:`restate`). After the
        round: its changes that it had not read back (a command waits for them), as
        ``R`` entries, which every node applies, checked again."""
        own = self.seen.get(self.node, 0)
        messages: list[str] = []
        changes: list[str] = []
        for text in sent:
            if text[0] == "M":  # (a compact message)
                messages.append(text)
                continue
            entry = json.loads(text)
            if entry[4] == "M":
                messages.append(text)
            elif entry[1] > own:
                changes.append(json.dumps([self.node, 0, entry[2], 0, "R", text]))
        self.awaited = {node_of(uid) for uid in self.server.remote} - {self.node}
        # (a restatement read before this node found out is counted: its bus may have
        # read the new log before its own call failed)
        self.round_start = self.server.now - RESEND_WINDOW
        durable = [] if self.shared_store else self.restate_durable(read)
        return [*messages, self.restate(read, run), *durable], changes

    def round_done(self) -> bool:
        """Whether every node this node knew users of has restated since
        :meth:`recover` (the bus then sends what it held)."""
        start = self.round_start
        return all(self.restated.get(node, start - 1) >= start for node in self.awaited)

    def restate(self, read: str = "0-0", run: str = "") -> str:
        """The entry that restates this node's part of the network: its users, the
        channels they are in, and those channels' modes, topics and members' status as
        this node holds them; ``read``: the id of the last log entry it read (who read
        further holds more of what was lost); ``run``: the round it belongs to (see
        :meth:`recover`). Every node applies it (:meth:`_restated`),
        and so does a node that starts later and replays the log."""
        server = self.server
        local = sorted(
            (c for c in server.clients.values() if c.registered and not c.closed),
            key=lambda c: c.id,
        )
        users = [[encode_event(apply.intro(c)), c.away] for c in local]
        members: list[list[Any]] = []
        channels: dict[str, list[Any]] = {}
        for client in local:
            for chan in client.channels.values():
                members.append([chan.name, chan.created, client.id])
                if chan.cf not in channels:
                    channels[chan.cf] = [
                        chan.name, "".join(sorted(chan.modes)), chan.key, chan.limit, chan.topic,
                        chan.topic_by, chan.topic_time,
                        [[m.id, status] for m, status in chan.members.items()],
                        [[e.mask, e.setter, e.time] for e in chan.bans],
                        [[e.mask, e.setter, e.time] for e in chan.excepts],
                        [[e.mask, e.setter, e.time] for e in chan.invex],
                    ]  # fmt: skip
        base = self._reserved
        # (and after the quits, the joins and kicks that make the channels' members those
        # listed: see _restate_channels; a replica holding members unknown here may need
        # more kicks than this)
        listed = sum(len(c[7]) for c in channels.values())
        self._reserved += MSGIDS_PER_ENTRY * (
            len(users) + 2 * len(members) + RESTATE_QUITS + 2 * listed
        )
        data = {
            "run": run,
            "read": _position(read),
            "users": users,
            "members": members,
            "channels": list(channels.values()),
        }
        return json.dumps([self.node, 0, server.now, base, "S", data], separators=(",", ":"))

    def _restated(self, entry: list[Any]) -> None:
        """Make this replica hold what node ``entry[0]`` restated. Its users are what it
        says: those it no longer has quit, those missing are introduced and put in their
        channels, and they leave the channels it does not list. A channel's modes,
        topic and members' status are taken from the restatement of the node that had
        read furthest (the first of equals), so every
        replica ends alike. Where the replica held it already nobody is told."""
        node, time, base, data = int(entry[0]), float(entry[2]), int(entry[3]), entry[5]
        read = tuple(data["read"])
        run = str(data.get("run", ""))
        if run != self.round_run:
            # The first restatement of a new round (Redis lost its data again): the
            # positions its restatements compare are in another log, which may have ids
            # lower than the last one's (another Redis, another clock), so the last
            # round's furthest decides nothing now. (Keyed to the entry: every replica,
            # and a node replaying the log, starts the round at the same one.)
            self.round_run = run
            self.round_nodes = set()
            self.read_furthest = (0, 0)
            self.furthest_members = {}
            self.furthest_node = 0
        self.round_nodes.add(node)
        # (between equals the first decides: a node that restates late, after changes
        # made once the round was over, knows nothing of them)
        furthest = read > self.read_furthest
        if furthest:
            self.read_furthest = read
            self.furthest_node = node
            self.furthest_members = {
                casefold(c[0]): {int(uid): letters for uid, letters in c[7]}
                for c in data["channels"]
            }
        self.restated[node] = self.server.now
        server = self.server
        # (the msgids of the changes that make a channel's members those listed come after
        # those of the quits: see restate)
        synced = base + MSGIDS_PER_ENTRY * (
            len(data["users"]) + 2 * len(data["members"]) + RESTATE_QUITS
        )
        if node == self.node:
            # (its own users are what it holds; the channels take what the furthest
            # restatement says, here as on every node)
            if furthest:
                self._restate_channels(data["channels"], (node, time, synced))
            else:
                self._kick_unlisted(node, time, synced)
            return
        mark = len(server.effects)
        turn = [0]

        def step(event: Event, checked: bool = False) -> bool:
            turn[0] += 1
            return self._apply(event, node, time, base + turn[0] * MSGIDS_PER_ENTRY, None, checked)

        intros = [
            (ev, away)
            for ev, away in ((decode_event(i), a) for i, a in data["users"])
            if isinstance(ev, Intro)
        ]
        listed = {ev.uid for ev, _away in intros}
        gone = sorted(u for u in server.remote if node_of(u) == node and u not in listed)
        for i, uid in enumerate(gone[:RESTATE_QUITS]):
            quit_base = base + MSGIDS_PER_ENTRY * (len(intros) + 2 * len(data["members"]) + i)
            self._apply(Quit(uid, SPLIT_REASON), node, time, quit_base, None, False)
        for ev, away in intros:
            if ev.uid not in server.remote:
                step(ev, checked=True)  # (a nick taken meanwhile: refused, as in its turn)
            if ev.uid in server.remote:
                server.remote[ev.uid].away = away
        wanted = {(casefold(name), int(uid)) for name, _created, uid in data["members"]}
        if not furthest:
            # In the channels the furthest restatement listed, its lists decide: its node
            # read all this one had, and a KICK or PART this one had not read yet.
            self._kick_unlisted(node, time, synced)
            decided = self.furthest_members
            wanted = {(cf, uid) for cf, uid in wanted if cf not in decided} | {
                (cf, uid) for cf, members in decided.items() for uid in members
            }
        for uid in sorted(u for u in server.remote if node_of(u) == node):
            client = server.remote[uid]
            for cf, joined in list(client.channels.items()):
                if (cf, uid) not in wanted:
                    step(Part(uid, joined.name, ""))
        made: set[str] = set()  # channels this restatement made here
        # (a member it joins here takes the status its node gives it)
        stated = {
            (casefold(c[0]), int(uid)): letters for c in data["channels"] for uid, letters in c[7]
        }
        for name, created, uid in data["members"]:
            member = server.remote.get(int(uid))
            if member is None or (casefold(name), member.id) not in wanted:
                continue
            cf = casefold(name)
            chan = server.channels.get(cf)
            if chan is not None and member in chan.members:
                continue
            if chan is None:
                made.add(cf)
            step(Join(member.id, name, float(created)))
            chan = server.channels.get(cf)
            if chan is not None and member in chan.members:
                chan.members[member] = stated.get((cf, member.id), "")
        self._restate_channels(
            [c for c in data["channels"] if furthest or casefold(c[0]) in made],
            (node, time, synced) if furthest else None,
        )
        if self.shared_store:
            self._unstore(mark)  # (its origin's store has it all)

    def restate_durable(self, read: str = "0-0") -> list[str]:
        """With a store per node: entries that restate what every node's store holds of
        the network (its accounts with their metadata, read markers and channels to
        rejoin, registered channels with their ChanServ settings, K- and D-lines, the file
        host's records and references). The log
        that carried them is lost, and a node that starts later on a fresh data directory
        learns them only from the new one."""
        server = self.server
        items: list[list[Any]] = [["a", _account_data(r)] for r in server.accounts.records.values()]
        chanserv = server.services.chanserv
        for cf, reg in chanserv.regs.items():
            chan = server.channels.get(cf)
            if chan is not None:
                items.append(["c", astuple(chanserv.record(chan, reg))])
        abuse = server.abuse
        bans = [*abuse.klines.values(), *(ban for ban, _net in abuse.dlines.values())]
        items += [["b", astuple(ban)] for ban in bans]
        items += [["m", [a, keys]] for a, keys in server.account_metadata.items() if keys]
        items += [["r", [who, target, at]] for (who, target), at in server.read_markers.items()]
        items += [["j", [account, names]] for account, names in server.rejoin.items()]
        # (the file host's records and references, as the changes Files.apply takes)
        files = server.files
        for record in files.records.values():
            items.append(["f", ["add", asdict(record)]])
            if record.deleted:
                items.append(["f", ["delete", record.id, record.deleted]])
        refs = [list(ref) for held in files.refs.values() for ref in held]
        items += [
            ["f", ["refs", refs[i : i + DURABLE_CHUNK]]] for i in range(0, len(refs), DURABLE_CHUNK)
        ]
        position = _position(read)
        return [
            _json([self.node, 0, server.now, 0, "P", {"read": position, "items": chunk}])
            for chunk in (items[i : i + DURABLE_CHUNK] for i in range(0, len(items), DURABLE_CHUNK))
        ]

    def _restated_durable(self, entry: list[Any]) -> None:
        """Hold what node ``entry[0]`` restated of the stores (:meth:`restate_durable`):
        what this node lacks is added (a node started after Redis lost its data lacks it
        all), and where this node holds another version, the restatement of the node that
        had read furthest decides (as for channels' modes). Nothing is removed: a record
        missing from a restatement may only be one its node never had."""
        node, data = int(entry[0]), entry[5]
        if node == self.node:
            return
        furthest = node == self.furthest_node  # (its S came just before)
        server = self.server
        chanserv = server.services.chanserv
        for kind, item in data["items"]:
            if kind == "a":
                held_account = server.accounts.get(str(item["name"]))
                if held_account is None or (furthest and held_account != _account_record(item)):
                    self._account(node, item)
            elif kind == "c":
                rec = _channel_record(item)
                cf = casefold(rec.name)
                reg, chan = chanserv.regs.get(cf), server.channels.get(cf)
                if reg is not None and (
                    not furthest or chan is None or chanserv.record(chan, reg) == rec
                ):
                    continue
                chan = chanserv.hold(rec)
                if not self.shared_store:
                    chanserv.save(chan)
            elif kind == "b":
                ban = ServerBan(*item)
                if server.abuse.find(ban.kind, ban.mask) is None:
                    server.abuse.add(ban)
            elif kind == "f":
                server.files.apply(item)  # (adds what is missing, deletes what was deleted)
            else:
                self._restated_account_state(kind, item, furthest)

    def _restated_account_state(self, kind: str, item: list[Any], furthest: bool) -> None:
        """An account's metadata key ("m"), read marker ("r") or channels to rejoin ("j")
        from a restatement of the stores (see _restated_durable). A read marker only moves
        forward, as MARKREAD's does."""
        server = self.server
        account = str(item[0])
        write = not self.shared_store
        if kind == "m":
            held = server.account_metadata.setdefault(account, {})
            for key, value in dict(item[1]).items():
                value = str(value)
                if key not in held or (furthest and held[key] != value):
                    held[key] = value
                    if write:
                        server.store(partial(_set_metadata, account, key, value), idempotent=True)
        elif kind == "r":
            target, at = str(item[1]), float(item[2])
            marker = server.read_markers.get((account, target))
            if marker is None or at > marker:
                server.read_markers[(account, target)] = at
                if write:
                    server.store(partial(_set_read_marker, account, target, at), idempotent=True)
        elif kind == "j":
            names = [str(name) for name in item[1]]
            rejoin = server.rejoin.get(account)
            if rejoin is None or (furthest and rejoin != names):
                server.rejoin[account] = names
                if write:
                    server.store(partial(_set_rejoin, account, names), idempotent=True)

    def _restate_channels(
        self, channels: list[list[Any]], furthest: tuple[int, float, int] | None = None
    ) -> None:
        """Channels' modes, topics and members' status, as a restatement gives them;
        ``furthest`` (its node, time and first msgid): the restatement of the node that had
        read furthest, whose lists make the channels' members too."""
        server = self.server
        turn = 0
        for name, modes, key, limit, topic, topic_by, topic_time, status, *lists in channels:
            held = server.channels.get(casefold(name))
            if held is None:
                continue
            if furthest is not None:
                node, time, base = furthest
                for event in self._restate_members(held, status):
                    self._apply(event, node, time, base + turn * MSGIDS_PER_ENTRY, None, False)
                    turn += 1
                held = server.channels.get(casefold(name))
                if held is None:
                    continue
            held.modes = set(modes)
            held.key, held.limit = key, limit
            held.topic, held.topic_by, held.topic_time = topic, topic_by, int(topic_time)
            if furthest is not None:
                # (a member it does not list, and did not kick, has no status it knows of:
                # a node's user that joined on the new log, where a replica that knew
                # nothing yet may have made it the channel's founder)
                stated = {int(uid) for uid, _letters in status}
                for unlisted in held.members:
                    if unlisted.id >= 0 and unlisted.id not in stated:
                        held.members[unlisted] = ""
            for uid, letters in status:
                member = server.remote.get(int(uid)) or server.clients.get(int(uid))
                if member is not None and member in held.members:
                    held.members[member] = letters
            for target, entries in zip((held.bans, held.excepts, held.invex), lists, strict=False):
                target[:] = [ListEntry(str(m), str(by), int(at)) for m, by, at in entries]

    def _restate_members(self, chan: Channel, status: list[list[Any]]) -> list[Event]:
        """What makes ``chan``'s members those a restatement lists: another node's users
        join (this node's own are missing only while their JOIN waits to be sent again),
        and the others of the nodes that restated in this round are kicked by ChanServ (a
        KICK or PART their node had not read when Redis lost it; without this, that
        node's restatement would undo it). A node that restates later has its users
        kicked then (:meth:`_kick_unlisted`); a node that is no part of the round (it
        started on the new log, and its users joined there, after what the lists say)
        keeps its members."""
        server = self.server
        listed = {int(uid) for uid, _letters in status}
        joins: list[Event] = [
            Join(member.id, chan.name, chan.created)
            for uid in sorted(listed)
            if (member := server.remote.get(uid)) is not None and member not in chan.members
        ]
        kicker = server.services.chanserv.client.id
        restated = self.round_nodes
        kicks: list[Event] = [
            Kick(kicker, chan.name, member.id, RESTATE_KICK)
            for member in sorted(chan.members, key=lambda m: m.id)
            if member.id >= 0 and member.id not in listed and node_of(member.id) in restated
        ]
        return [*joins, *kicks]

    def _kick_unlisted(self, node: int, time: float, base: int) -> None:
        """A restatement of node ``node`` after the furthest of its round: ChanServ kicks
        its users out of the channels the furthest listed, where it does not list them
        (as :meth:`_restate_members` kicked those of the nodes that had restated before).
        ``base``: the first msgid it may draw."""
        server = self.server
        kicker = server.services.chanserv.client.id
        turn = 0
        for cf, listed in self.furthest_members.items():
            chan = server.channels.get(cf)
            if chan is None:
                continue
            for member in sorted(chan.members, key=lambda m: m.id):
                if member.id < 0 or node_of(member.id) != node or member.id in listed:
                    continue
                kick = Kick(kicker, chan.name, member.id, RESTATE_KICK)
                self._apply(kick, node, time, base + turn * MSGIDS_PER_ENTRY, None, False)
                turn += 1

    # ------------------------------------------------------------------ deaths

    def node_down(self, dead: int, time: float) -> None:
        """The bus declared node ``dead`` gone: each of its users quits, here as on every
        other node, in the order of their ids."""
        if dead == self.node:
            return  # the shell closes this node's clients (fenced)
        server = self.server
        self.nodes.discard(dead)
        self.dead.add(dead)
        self.unknown.pop(dead, None)
        for token, barrier in list(self.barriers.items()):
            barrier.nodes.discard(dead)
            if not barrier.nodes:
                self._barrier_passed(token)
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


def _channel_record(item: list[Any]) -> ChannelRecord:
    """A registered channel as :meth:`Cluster.restate_durable` gives it (dataclasses.astuple)."""
    name, founder, created, topic, topic_by, topic_time, modes, key, limit, *rest = item
    bans, excepts, invex, access, topiclock, metadata = rest
    return ChannelRecord(
        str(name), str(founder), float(created), str(topic), str(topic_by), int(topic_time),
        str(modes), key, limit, list_records(bans), list_records(excepts), list_records(invex),
        tuple((str(a), str(lv)) for a, lv in access), bool(topiclock),
        tuple((str(k), str(v)) for k, v in metadata),
    )  # fmt: skip


def _set_metadata(account: str, key: str, value: str, store: Any) -> None:
    store.set_metadata(account, key, value)


def _set_read_marker(account: str, target: str, at: float, store: Any) -> None:
    store.set_read_marker(account, target, at)


def _set_rejoin(account: str, names: list[str], store: Any) -> None:
    store.set_rejoin(account, names)


def _position(read: str) -> list[int]:
    """A log entry's id ("ms-seq") as the restatements compare them."""
    ms, _, seq = read.partition("-")
    return [int(ms), int(seq or 0)]


def entry_origin(text: str) -> int:
    """The number of the node that made an entry, in either form (0: the bus itself)."""
    if text[0] == "M":
        return int(text.split("\0", 2)[1])
    return int(json.loads(text)[0])


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
    now: float,
) -> str | None:
    """The commonest message entry without JSON: one PRIVMSG or NOTICE to one target,
    with no client tags, and the one history row it makes. Fields joined by NUL, which
    no IRC line holds (body_bytes refuses it) and JSON never writes: ``M``, node, token,
    sender, command, source, channel, user, status, target, text, time, msgid, account,
    bot, the row's time, conversation, display name and party ("" when not stored), and
    the origin's clock (WHOIS idle).
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
            "1" if bot else "", *row, repr(now),
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
            admit(chan, client, event.key)
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
