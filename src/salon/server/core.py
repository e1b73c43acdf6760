"""The server core: state, input handling, delivery and timers. Sans-I/O.

The shell (:mod:`salon.net`) calls :meth:`Server.connect`, :meth:`Server.feed`,
:meth:`Server.disconnected`, :meth:`Server.tick` and :meth:`Server.complete`, each with the
current time, then takes what the core produced:

- ``server.dirty``: clients with bytes in their ``outbox``, to flush once per loop turn;
- ``server.effects``: :mod:`salon.server.effects` values (close a connection, run slow
  work off the loop).
"""

from __future__ import annotations

import logging
import secrets
import time
from collections import deque
from collections.abc import Callable, Iterable
from typing import Any

from salon.config import Config
from salon.errors import CommandError, LineTooLong, ProtocolError
from salon.proto import numerics as n
from salon.proto.limits import MAX_INPUT
from salon.proto.message import Message, encode_tags
from salon.server import apply, caps, commit, history, monitor, welcome, whowas
from salon.server.abuse import Abuse
from salon.server.accounts import Accounts
from salon.server.channel import Channel
from salon.server.client import Client, Kind
from salon.server.cloak import cloak_host
from salon.server.cluster import MAX_WAITING, NODE_SHIFT, Cluster, msgid_prefix
from salon.server.commands import BATCHED_LINE, COMMANDS, FAST_LINE, PARSE_FAILURES, Command
from salon.server.effects import Close, Effect, Offload, StoreCall
from salon.server.events import Event, Quit
from salon.server.files import Files
from salon.server.fileserv import FileServ
from salon.server.flood import Flood
from salon.server.personality import IRC, Personality, wire_bytes
from salon.server.responsebuffer import ResponseBuffer, answer
from salon.server.services import Services
from salon.server.textport import TEXTPORT
from salon.server.whowas import WhowasEntry

log = logging.getLogger("salon.server")


# Messages of one client that may wait for their commit at once.
PIPELINE = 64
_MESSAGE_COMMANDS = (b"PRIVMSG", b"NOTICE", b"TAGMSG")
# The usual form of those lines (no tags, no source, upper case); the first two are the
# fast path's (commands.FAST_LINE).
_MESSAGE_STARTS = tuple(command + b" " for command in _MESSAGE_COMMANDS)
_FAST_STARTS = _MESSAGE_STARTS[:2]


def _is_message_line(line: bytes) -> bool:
    """Whether a raw line is PRIVMSG, NOTICE or TAGMSG (tags and source skipped)."""
    if line.startswith(_MESSAGE_STARTS):
        return True  # the usual form: no tags, no source, upper case
    words = line.split(None, 3)
    i = 0
    if words and words[0][:1] == b"@":
        i += 1
    if len(words) > i and words[i][:1] == b":":
        i += 1
    return len(words) > i and words[i].upper() in _MESSAGE_COMMANDS


def format_time(now: float) -> str:
    """server-time: "the timestamp MUST be in the format YYYY-MM-DDThh:mm:ss.sssZ" (UTC)."""
    secs = int(now)
    return (
        time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(secs)) + f".{int((now - secs) * 1000):03d}Z"
    )


class Server:
    def __init__(self, config: Config, now: float | None = None) -> None:
        self.config = config
        self.name = config.server.name
        self.commands: dict[str, Command] = COMMANDS
        self.parse_failures: dict[type[ProtocolError], Command] = PARSE_FAILURES
        self.personalities: dict[Kind, Personality] = {Kind.IRC: IRC, Kind.TEXTPORT: TEXTPORT}
        # A registered client's plain PRIVMSG or NOTICE line, handled without the general
        # parse and dispatch; None turns it off (tests compare both paths).
        self.fast_line: Callable[[Server, Client, bytes], bool] | None = FAST_LINE
        self.now = time.time() if now is None else now
        self.started = self.now
        self.clients: dict[int, Client] = {}
        # Users without a connection here, introduced by an event made elsewhere (a
        # replay; the scale-out's other nodes): see salon.server.apply.
        self.remote: dict[int, Client] = {}
        # This node's users that left, while their Quit waits for its turn in the
        # cluster's order (see salon.server.cluster; always empty when that is off).
        self.leaving: dict[int, Client] = {}
        # The scale-out (issue 19): None is one process, the network's only node.
        self.cluster: Cluster | None = None
        self.nicks: dict[str, Client] = {}
        self.channels: dict[str, Channel] = {}
        self.monitors: dict[str, set[Client]] = {}
        self.whowas: deque[WhowasEntry] = deque(maxlen=config.limits.whowas)
        self.dirty: list[Client] = []
        self.effects: list[Effect] = []
        # Every event applied, in order, when set to a list (tests replay it); None keeps
        # no record.
        self.event_log: list[Event] | None = None
        self._group: commit.CommitGroup | None = None
        # Commit groups made and not yet committed: while there are any, the replies to a
        # command wait for the next commit too (see dispatch).
        self.uncommitted = 0
        self._quitting: list[tuple[Client, str]] = []
        self._next_id = 0
        self._batch_counter = 0
        self._msgid_prefix = secrets.token_hex(2)
        self._msgid_counter = 0
        # Commit groups finish in order: every msgid whose counter is at most this one was
        # delivered (or refused) by now; later ones are on their way or yet to come.
        self.delivered_upto = 0
        self._msgid_ms = -1
        self._msgid_head = ""
        self.max_local = 0
        self.unregistered = 0
        self.shutting_down = False
        lim = config.limits
        self.sendq = lim.sendq
        self.recvq = lim.recvq
        self.flood = Flood(config.flood)
        self.throttled: set[Client] = set()
        # The server log of connections, registrations, joins, parts and quits: lines
        # (time, text) that the shell writes out once per loop turn (cheaper than a
        # logging call per event, and no I/O in the core).
        self.noting = log.isEnabledFor(logging.INFO)
        self.notes: list[tuple[float, str]] = []
        self.log_messages = config.log.messages and self.noting
        # Registered users with user mode +i, and operators: the LUSERS counts.
        self.invisible: set[Client] = set()
        self.opers: set[Client] = set()
        self.motd = config.motd_lines()
        self.read_markers: dict[tuple[str, str], float] = {}
        # Set by the shell at start: the IP cloaking secret (None: hosts are the IPs), and
        # the STS policy (port, duration) when a real certificate is configured.
        self.cloak_key: bytes | None = None
        self.cloak_suffix = config.cloak.suffix
        self.sts: tuple[int, int] | None = None
        self.last_purge = 0.0
        # Background work, one item per tick (history.purge's steps).
        self.later: deque[Callable[[], None]] = deque()
        # account (casefolded) -> channels its last session was in, for accounts.rejoin
        self.rejoin: dict[str, list[str]] = {}
        # account (casefolded) -> its draft/metadata-3 keys (salon.server.metadata)
        self.account_metadata: dict[str, dict[str, str]] = {}
        # Private conversation key -> (recipient, sender) names last stored for it.
        self.dm_names: dict[str, tuple[str, str]] = {}
        self.isupport_lines = welcome.isupport(config)
        self._templates: tuple[list[bytes], list[bytes]] | None = None
        # Accounts, services and bans: see salon.server.accounts, .services, .abuse.
        self.accounts = Accounts(self)
        self.services = Services(self)
        self.files = Files(self)
        if self.files.enabled:
            self.services.add(FileServ(self, -3))
        self.abuse = Abuse(self)

    def load(self, store: Any) -> None:
        """Take the persistent state from the store at start (the shell calls this once)."""
        self.read_markers = {(a, t): ts for a, t, ts in store.load_read_markers()}
        self.rejoin = dict(store.load_rejoins())
        for account, key, value in store.load_metadata():
            self.account_metadata.setdefault(account, {})[key] = value
        self.accounts.load(store)
        self.services.load(store)
        self.files.load(store)
        history.forget_left_behind(self, store)
        self.abuse.load(store)

    def dline_for(self, ip: str) -> Any:
        """The D-line (a ServerBan) matching ``ip``, if any: the shell refuses the
        connection at accept time."""
        return self.abuse.dline_for(ip)

    # ------------------------------------------------------------------ identifiers

    def new_batch_id(self) -> str:
        self._batch_counter += 1
        return f"{self._batch_counter:x}"

    def new_msgid(self, ms: int | None = None) -> str:
        """A msgid: the message's millisecond (11 hex digits: the store finds a message
        by its msgid through the conversation's time index, see salon.store.base.msgid_time),
        this process's random prefix, and a counter."""
        if ms is None:
            ms = int(self.now * 1000)
        self._msgid_counter += 1
        if ms != self._msgid_ms:
            # The head is the same for every message of a millisecond.
            self._msgid_ms = ms
            self._msgid_head = f"{ms:011x}{self._msgid_prefix}"
        return f"{self._msgid_head}{self._msgid_counter:x}"

    def delivered_counter(self) -> int:
        """The msgid counter up to which every message is delivered (or refused): what a
        member who joins now has not been sent live (see history.replay_on_join)."""
        return self._msgid_counter if not self.uncommitted else self.delivered_upto

    def made_after(self, msgid: str, counter: int) -> bool:
        """Whether ``msgid`` is one of this process's, made after its counter was
        ``counter`` (an earlier process may have drawn the same prefix: its msgids are
        older than this one's start)."""
        prefix = self._msgid_prefix
        if msgid[11 : 11 + len(prefix)] != prefix:
            return False
        try:
            ms = int(msgid[:11], 16)
            later = int(msgid[11 + len(prefix) :], 16) > counter
        except ValueError:
            return False
        return later and ms >= int(self.started * 1000)

    def user_tags(self, client: Client) -> dict[str, str]:
        """:meth:`server_tags` for a message sent by ``client``, with account-tag's
        ``account`` ("the command sender's services account") when it is logged in."""
        tags = self.server_tags()
        if client.account is not None:
            tags["account"] = client.account
        return tags

    def server_tags(self) -> dict[str, str]:
        """Tags every relayed message carries: time and msgid."""
        ms = int(self.now * 1000)
        return {"time": history.format_ms(ms), "msgid": self.new_msgid(ms)}

    # ------------------------------------------------------------------ connections

    def connect(self, kind: Kind, ip: str, port: int, now: float) -> Client:
        """A new connection was accepted."""
        self.now = now
        self._next_id += 1
        client = Client(self._next_id, kind, ip, port, now)
        client.personality = personality = self.personalities[kind]
        client.variant = personality.variant
        if self.cloak_key is not None:
            client.host = cloak_host(self.cloak_key, ip, self.cloak_suffix)
        self.flood.start(client, now)
        self.clients[client.id] = client
        self.unregistered += 1
        if self.noting:
            self.note(f"connect id={client.id} ip={ip} kind={kind.value}")
        personality.start(self, client)
        return client

    def disconnected(self, client: Client, now: float, reason: str = "Connection closed") -> None:
        """The shell lost the connection (peer closed, error, or after a Close effect)."""
        self.now = now
        if not client.closed:
            self.drop(client, reason)
        self.settle()

    def feed(self, client: Client, data: bytes, now: float) -> None:
        """Bytes arrived from a client."""
        self.now = now
        if client.closed:
            return
        client.inbuf += data
        self._process_input(client)
        self.settle()

    def _process_input(self, client: Client) -> None:
        buf = client.inbuf
        # One split for every complete line the buffer holds (a find, a slice and a copy per
        # line cost three times as much); what follows the last LF is the next line's start.
        lines = bytes(buf).split(b"\n")
        tail = lines.pop()
        done = len(lines)
        flood = self.flood.enabled and client.registered
        fast = self.fast_line
        for i, line in enumerate(lines):
            if client.closed or client.blocked:
                done = i
                break
            if client.pending_commits and (
                client.pending_commits >= PIPELINE
                # (the usual line tested inline: one call fewer per line while commits wait)
                or not (line.startswith(_MESSAGE_STARTS) or _is_message_line(line))
            ):
                # Wait for this client's messages to be committed and delivered first.
                client.blocked = True
                done = i
                break
            if flood and not self.flood.take(client, self.now):
                client.throttled = True
                self.throttled.add(client)
                done = i
                break
            if client.discarding:
                client.discarding = False
                continue
            if (
                fast is not None
                and line.startswith(_FAST_STARTS)
                and client.registered
                and client.variant >= 0  # IRC lines only (the text port reads its own)
                and fast(self, client, line)
            ):
                continue
            self._handle_line(client, line)
            if not flood and self.flood.enabled and client.registered:
                flood = True
        if done < len(lines):
            # Stopped early: the lines not handled stay, in order, ahead of the tail.
            rest = lines[done:]
            rest.append(tail)
            buf[:] = b"\n".join(rest)
        elif lines:
            buf[:] = tail
        if (
            done == len(lines)
            and len(tail) > MAX_INPUT
            and not client.closed
            and not client.blocked
        ):
            # An overlong line with no end in sight: refuse it now, drop the rest.
            self._input_too_long(client)
            client.discarding = True
            del buf[:]
        # While blocked (waiting for a commit or slow work) the shell stops reading, so the
        # buffer holds at most what one read brought; the RecvQ applies otherwise.
        limit = self.recvq if not client.blocked else max(self.recvq * 8, 1 << 20)
        if len(buf) > limit and not client.closed:
            self.drop(client, "Excess Flood" if client.throttled else "RecvQ exceeded")

    def _input_too_long(self, client: Client) -> None:
        self.dispatch(client, Message("*"), self.parse_failures[LineTooLong])

    def _handle_line(self, client: Client, line: bytes) -> None:
        if line.endswith(b"\r"):
            line = line[:-1]
        client.personality.on_line(self, client, line)

    def dispatch(self, client: Client, msg: Message, cmd: Command | None = None) -> None:
        """Run a message's command and answer it (see responsebuffer.answer). ``cmd``: the
        pseudo-command of a line that could not be parsed (commands.PARSE_FAILURES)."""
        label = msg.tags.get("label") if msg.tags else None
        rb = ResponseBuffer(self, client, label, msg.command)
        if msg.tags and "batch" in msg.tags and client.registered and msg.command != "BATCH":
            BATCHED_LINE(self, client, msg, rb)
            rb.flush()
            return
        answer(rb, self._run, client, msg, cmd)

    def _run(self, client: Client, msg: Message, cmd: Command | None, rb: ResponseBuffer) -> None:
        if cmd is None:
            cmd = self.commands.get(msg.command)
            if cmd is None:
                if client.registered:
                    raise CommandError(n.ERR_UNKNOWNCOMMAND, msg.command, "Unknown command")
                raise CommandError(n.ERR_NOTREGISTERED, "You have not registered")
        if not client.registered and not cmd.prereg:
            raise CommandError(n.ERR_NOTREGISTERED, "You have not registered")
        if len(msg.params) < cmd.min_params:
            raise CommandError(n.ERR_NEEDMOREPARAMS, msg.command, "Not enough parameters")
        if cmd.oper and client.oper is None:
            raise CommandError(n.ERR_NOPRIVILEGES, "Permission Denied - You're not an IRC operator")
        if cmd.idle:
            client.last_message = self.now
        if cmd.fenced and self.cluster is not None:
            handler = cmd.handler

            def query(out: ResponseBuffer | None) -> None:
                handler(self, client, msg, out or rb)

            self.cluster.fence(rb, query)
            return
        cmd.handler(self, client, msg, rb)
        if (
            (client.pending_commits or self.uncommitted)
            and (rb.messages or rb.label)
            and not rb.steps  # (answered once its events had their turn in the cluster)
        ):
            # Replies must not overtake the delivery of earlier, uncommitted messages:
            # this client's own, and those it may be about to receive (a PONG after
            # it means that everything the server had before the PING has arrived).
            self.after_commit(rb, [], commit.nothing_more)

    def offload(self, effect: Offload) -> None:
        """Queue slow work; the client's input waits until :meth:`complete`."""
        effect.client.blocked = True
        self.effects.append(effect)

    def store(
        self,
        call: Callable[[Any], Any],
        done: Callable[[Any], None] | None = None,
        client: Client | None = None,
        *,
        read: bool = False,
        background: bool = False,
        idempotent: bool = False,
    ) -> None:
        """Ask the shell to run ``call(store)``; see :class:`StoreCall`."""
        if client is not None:
            client.blocked = True
        self.effects.append(StoreCall(call, done, client, read, background, idempotent))

    def complete_store(self, effect: StoreCall[Any], result: object, now: float) -> None:
        """The shell ran a :class:`StoreCall`; continue in the core."""
        self._complete_store(effect, result, now)
        if effect.client is None and isinstance(effect.done, commit.GroupDone):
            for client in effect.done.group.clients():
                if not client.closed and not client.blocked and client.inbuf:
                    self._process_input(client)
            self.settle()

    def _complete_store(self, effect: StoreCall[Any], result: object, now: float) -> None:
        """The shell ran a :class:`StoreCall`; continue in the core."""
        self.now = now
        client = effect.client
        if client is not None:
            client.blocked = False
        if effect.done is not None and (client is None or not client.closed):
            try:
                effect.done(result)
            except Exception:
                log.exception("bug completing a store call")
        if client is not None and not client.closed and client.inbuf:
            self._process_input(client)
        self.settle()

    def complete(self, effect: Offload, result: object, now: float) -> None:
        """The shell finished an :class:`Offload`; continue in the core."""
        self.now = now
        client = effect.client
        client.blocked = False
        if client.closed:
            return
        held = effect.held
        answer(
            held.resume() if held is not None else ResponseBuffer(self, client, None),
            effect.done,
            result,
        )
        if client.inbuf:
            self._process_input(client)
        self.settle()

    # ------------------------------------------------------------------ timers

    def tick(self, now: float) -> None:
        """Called by the shell several times a second: flood release, and one step of
        background work (``later``: a purge's next step)."""
        self.now = now
        if self.later:
            self.later.popleft()()
        if self.cluster is not None:
            self.cluster.tick(now)
        if self.throttled:
            for client in list(self.throttled):
                if client.closed:
                    self.throttled.discard(client)
                    continue
                if self.flood.ready(client, now):
                    client.throttled = False
                    self.throttled.discard(client)
                    self._process_input(client)
        self.settle()

    def check_timeouts(self, now: float) -> None:
        """Registration and ping timeouts (the shell calls this about once a second)."""
        self.now = now
        if now - self.last_purge >= history.RETENTION_EVERY:
            self.last_purge = now
            history.purge_expired(self)
        lim = self.config.limits
        reg_deadline = now - lim.registration_timeout
        idle_deadline = now - lim.ping_interval
        for client in list(self.clients.values()):
            if client.closed:
                continue
            if not client.registered:
                if client.created < reg_deadline:
                    self.drop(client, "Registration timed out")
                continue
            if client.ping_sent:
                if client.last_active >= client.ping_sent:
                    client.ping_sent = 0.0
                elif now - client.ping_sent > lim.ping_timeout:
                    self.drop(client, f"Ping timeout: {int(now - client.last_active)} seconds")
            elif client.last_active < idle_deadline:
                client.ping_sent = now
                client.personality.keepalive(self, client)
        self.accounts.tick(now)
        self.abuse.tick(now)
        self.files.tick(now)
        self.settle()

    # ------------------------------------------------------------------ output

    def write(self, client: Client, data: bytes) -> None:
        """Append ready bytes to a client's outbox (the only way output leaves the core)."""
        if client.closed:
            return
        client.outbox.append(data)
        client.outbytes += len(data)
        if not client.dirty:
            client.dirty = True
            self.dirty.append(client)
        if client.outbytes > self.sendq:
            self.drop(client, "SendQ exceeded")

    def send(self, client: Client, msg: Message, wire: bytes | None = None) -> None:
        """Send one message to one client, with the tags its capabilities allow.
        ``wire``: the message's body already serialized (CR LF included), when known."""
        if client.closed:
            return
        data = client.personality.render(self, client, msg, wire)
        if data:
            self.write(client, data)

    def deliver(
        self,
        recipients: Iterable[Client],
        msg: Message,
        skip: Client | None = None,
        wire: bytes | None = None,
    ) -> None:
        """Fan a message out: serialized once per variant, appended to each outbox.
        ``wire``: as for :meth:`send`."""
        if wire is None:
            wire = wire_bytes(msg)
        variants: dict[int, bytes] = {0: wire}
        tags = msg.tags
        dirty = self.dirty
        sendq = self.sendq
        over: list[Client] = []
        # The hot loop: one dict lookup and one list append per recipient (write() inlined).
        for client in recipients:
            if client is skip or client.closed:
                continue
            key = client.variant
            data = variants.get(key)
            if data is None:
                if key < 0:
                    # Rendered by the client's personality (the text port's depends on
                    # the user's current room): once per such recipient.
                    rendered = client.personality.render(self, client, msg)
                    if rendered:
                        self.write(client, rendered)
                    continue
                allowed = caps.allowed_tags(dict(tags), key) if tags else None
                data = ("@" + encode_tags(allowed) + " " if allowed else "").encode() + wire
                variants[key] = data
            client.outbox.append(data)
            client.outbytes += len(data)
            if not client.dirty:
                client.dirty = True
                dirty.append(client)
            if client.outbytes > sendq:
                over.append(client)
        for client in over:
            self.drop(client, "SendQ exceeded")

    def numeric(self, client: Client, numeric: str, *params: str) -> None:
        self.send(client, Message(numeric, (client.nick, *params), self.name))

    def notice(self, client: Client, text: str) -> None:
        self.send(client, Message("NOTICE", (client.nick, text), self.name))

    def take_dirty(self) -> list[Client]:
        dirty = self.dirty
        self.dirty = []
        return dirty

    def note(self, text: str) -> None:
        """Add a line to the server log (callers check ``self.noting`` first)."""
        self.notes.append((self.now, text))

    def take_notes(self) -> list[tuple[float, str]]:
        notes = self.notes
        self.notes = []
        return notes

    def take_effects(self) -> list[Effect]:
        effects = self.effects
        self.effects = []
        group = self._group
        if group is not None:
            group.upto = self._msgid_counter
            self._group = None  # the turn's commit group is sealed: it is on its way
            self.files.observe(group)
        if self.cluster is not None:
            self.cluster.op = None  # and so are the turn's bus entries
        return effects

    # ------------------------------------------------------------------ quitting

    def drop(self, client: Client, reason: str, *, error: str | None = None) -> None:
        """Disconnect a client: tell it why, and remove it once the current work is done.

        ``reason`` is what other users see in QUIT; ``error`` the ERROR line's text.
        """
        if client.closed:
            return
        if reason == "SendQ exceeded":
            client.outbox.clear()
            client.outbytes = 0
        line = client.personality.closing_line(client, reason, error)
        if line:
            self.write(client, line)
        client.closed = True
        self._quitting.append((client, reason))

    def settle(self) -> None:
        """Finish the disconnections that the current work decided."""
        while self._quitting:
            batch = self._quitting
            self._quitting = []
            for client, reason in batch:
                self._remove(client, reason)

    def _remove(self, client: Client, reason: str) -> None:
        if client.id not in self.clients:
            return
        self.throttled.discard(client)
        if client.registered:
            apply.remember_rejoin(self, client)
            if self.cluster is not None:
                self.leaving[client.id] = client  # until its Quit has its turn
            self.emit(Quit(client.id, reason))
            del self.clients[client.id]
            if self.noting:
                self.note(f"quit id={client.id} nick={client.nick} reason={reason}")
        else:
            del self.clients[client.id]
            self.invisible.discard(client)
            self.opers.discard(client)
            self.unregistered -= 1
            # An unregistered client's nick is this process's reservation, not yet a user
            # of the network (its Intro event takes it there).
            if client.nick_cf and self.nicks.get(client.nick_cf) is client:
                del self.nicks[client.nick_cf]
            if self.noting:
                self.note(f"disconnect id={client.id} unregistered reason={reason}")
            if self.cluster is not None and client.id in self.cluster.introducing:
                # Its Intro is on its way to every node: so must its Quit be.
                self.leaving[client.id] = client
                self.emit(Quit(client.id, reason))
        self.unmonitor(client, list(client.monitoring))
        self.accounts.client_gone(client)
        self.abuse.client_gone(client)
        if self.cluster is not None and client.id in self.leaving and not self.shutting_down:
            # Closed once every node has applied its Quit: what its user does next, on any
            # node (take the nick again), comes after it everywhere.
            self.cluster.after_barrier(lambda: self.effects.append(Close(client)))
        else:
            self.effects.append(Close(client))

    def remove_channel(self, chan: Channel) -> None:
        if self.services.keeps(chan):
            return  # a registered channel stays, empty
        self.channels.pop(chan.cf, None)
        if history.is_private(chan):
            # The history of a secret, keyed or invite-only channel is its members'. Once
            # the last one has left, nobody can admit anyone to it: whoever creates the
            # channel again must not read what was said in it. (A public channel's history
            # stays: anyone could have joined and read it.)
            history.forget_channel(self, chan.cf)

    def shutdown(self, now: float, reason: str = "Server shutting down") -> None:
        """Tell every client we are going away; the shell then closes the connections."""
        self.now = now
        self.shutting_down = True
        for client in list(self.clients.values()):
            self.drop(client, reason, error=reason)
        self.settle()

    # ------------------------------------------------------------------ shared helpers

    def common_channel_members(self, client: Client) -> set[Client]:
        members: set[Client] = set()
        for chan in client.channels.values():
            members.update(chan.members)
        return members

    def user_count(self) -> int:
        return len(self.clients) - self.unregistered + len(self.remote) + len(self.leaving)

    # ------------------------------------------------------------------ cluster

    def join_cluster(self, node: int, shared_store: bool = False) -> None:
        """Become node ``node`` of a cluster (before any connection): user ids and msgids
        are made unique across the network, and state changes go through the bus.
        ``shared_store``: every node uses one store (PostgreSQL)."""
        section = self.config.cluster
        self.cluster = Cluster(
            self, node, shared_store, section.max_waiting if section is not None else MAX_WAITING
        )
        self._next_id = max(self._next_id, node << NODE_SHIFT)
        self._msgid_prefix = msgid_prefix(node, False)
        self._msgid_ms = -1

    def bus_entries(self, entries: list[str], now: float) -> None:
        """Entries of the network's order arrived from the bus (see salon.server.cluster)."""
        self.now = now
        if self.cluster is not None:
            self.cluster.entries(entries)
        self.settle()

    # Methods written in modules of their own: the commit pipeline, flood control, the
    # welcome burst, MONITOR and WHOWAS.
    defer = commit.defer
    after_commit = commit.after_commit
    hold_for_commit = commit.hold_for_commit
    hold = commit.hold
    hold_one = commit.hold_one
    commit_group = commit.commit_group
    lusers = welcome.send_lusers
    send_motd = welcome.send_motd
    welcome = welcome.welcome  # (last: the name is the module's until here)
    unmonitor = monitor.unmonitor
    notify_monitors = monitor.notify
    remember_whowas = whowas.remember
    emit = apply.emit

    def penalize(self, client: Client, cost: float) -> None:
        """A costly command takes ``cost`` more from the client's flood budget."""
        self.flood.penalize(client, cost)

    def set_user_mode(self, client: Client, mode: str, on: bool) -> None:
        """Change a user mode, keeping the LUSERS counts (invisible, operators) current."""
        if on:
            client.modes.add(mode)
        else:
            client.modes.discard(mode)
            if mode == "o":
                client.oper = None
        counted = self.invisible if mode == "i" else self.opers if mode == "o" else None
        if counted is not None:
            if on:
                counted.add(client)
            else:
                counted.discard(client)
