"""The IRC client session, sans-I/O.

A :class:`Session` is fed what the server sent (:meth:`Session.receive`) and what the user
typed (:meth:`Session.input`), each with the current time, and answers with events
(:mod:`salon.client.model`) for the front end; the bytes to send wait in
:meth:`Session.data_to_send`. It owns the model: the buffers, their lines and members.

It speaks IRCv3 capability negotiation (CAP LS 302), SASL (PLAIN, SCRAM-SHA-256), batch,
server-time, echo-message, multi-prefix, away-notify, draft/chathistory (LATEST on join and
after a reconnect, BEFORE for scrolling back), draft/multiline, draft/account-registration
and draft/metadata-3 (it subscribes to display-name: lines carry the sender's display name).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime

from salon.client import commands as cmds
from salon.client import history, slash
from salon.client.history import History
from salon.client.link import LinkEvent, Phase, next_phase
from salon.client.model import (
    MAX_LINES,
    AutoJoin,
    Buffer,
    BufferAdded,
    BufferChanged,
    BufferRemoved,
    Event,
    Fatal,
    Focus,
    Joined,
    JoinFailed,
    Line,
    LineAdded,
    LineKind,
    Member,
    Mention,
    NickChanged,
    QuitRequested,
    Registered,
    TimedOut,
    Unsent,
    UploadRequested,
)
from salon.client.sasl import ChunkReader, SaslError, ScramSha256, encode_chunks, plain_payload
from salon.client.text import (
    UNSAFE_BYTES,
    casefold,
    ctcp,
    describe_fail,
    describe_numeric,
    mentions,
    nick_of,
    parse_time,
    split_utf8,
    utc,
    visible,
)
from salon.errors import ProtocolError
from salon.proto import Message, parse
from salon.proto.isupport import DEFAULT_CHANNEL, unescape_value
from salon.proto.names import valid_channel

VERSION_REPLY = "salon chat"

# Capabilities the client asks for when offered ("sasl" only with credentials).
WANTED_CAPS = (
    "message-tags",
    "server-time",
    "batch",
    "echo-message",
    "multi-prefix",
    "away-notify",
    "account-notify",
    "extended-join",
    "chghost",
    "setname",
    "invite-notify",
    "cap-notify",
    "standard-replies",
    "labeled-response",
    "draft/chathistory",
    "draft/multiline",
    "draft/account-registration",
    "draft/metadata-3",
)
# draft/metadata-3 keys the client shows (it subscribes to them).
METADATA_KEYS = ("display-name",)

REGISTER_TIMEOUT = 30.0  # seconds from connecting to the welcome (001) before giving up
PING_IDLE = 60.0  # seconds of silence before we PING the server
PING_TIMEOUT = 60.0  # seconds to wait for the answer before calling the link dead
MAX_NICK_RETRIES = 3

WHOIS = {"311", "312", "313", "317", "318", "319", "301", "330", "338", "671", "276", "378"}
WHOIS |= {"379", "307", "320", "335", "369", "314", "760"}
SERVER_INFO = {"001", "002", "003", "004", "251", "252", "253", "254", "255", "265", "266"}
SERVER_INFO |= {"375", "372", "376", "422", "250", "396", "900", "901", "903"}


@dataclass
class Settings:
    nick: str
    username: str = ""
    realname: str = ""
    password: str = ""  # server password (PASS)
    sasl_account: str = ""
    sasl_password: str = ""
    sasl_mechanism: str = ""  # "", "PLAIN" or "SCRAM-SHA-256"; "" picks the best offered
    channels: tuple[str, ...] = ("#lobby",)
    # True when the user named no channel: the server's meeting place, advertised as the
    # ISUPPORT token salon.chat/DEFAULTCHANNEL, is joined in place of ``channels`` when the
    # server has one (the join then waits for the end of the MOTD: 005 comes after 001).
    server_default: bool = False
    history: int = 50  # lines of CHATHISTORY per request
    server_name: str = "server"  # the name of the server buffer
    register_timeout: float = REGISTER_TIMEOUT
    # The last line of /help: the keys of the front end (the TUI's by default).
    help_keys: str = cmds.TUI_KEYS


class Session:
    """One user's IRC session; survives reconnects (the buffers stay, the link state resets)."""

    _phase: Phase
    error_reason: str

    def __init__(self, settings: Settings, nonce: Callable[[], str] | None = None) -> None:
        self.settings = settings
        self._nonce = nonce
        self.peer = settings.server_name  # who we talk to, in messages ("host:port")
        self.tls = False  # the front end says when the link is TLS (for hints)
        self.nick = settings.nick
        self.isupport: dict[str, str] = {}
        self.offered: dict[str, str] = {}  # CAP LS: name -> value
        self.caps: set[str] = set()  # acknowledged
        self.connected = False
        # Fed lines before any connection_made (the snapshot tests do), it reads them as a link.
        self._phase = Phase.GREETING
        self.ever_registered = False
        self.autojoined = False  # the first channels were joined (AutoJoin emitted)
        self._await_default = False  # for the end of the MOTD, for the server's default
        self.quitting = False
        # /upload requests waiting for their TOKEN GENERATE FILEHOST answer (slash.upload).
        self.uploads_waiting: list[UploadRequested] = []
        self._out: list[bytes] = []
        self._events: list[Event] = []
        self._batch_counter = 0
        self._inbuf = b""
        self._reset_link(0.0)
        self.buffers: dict[str, Buffer] = {}
        self.server = self._add_buffer(settings.server_name, "server", emit=False)
        self.active = self.server.name

    # ------------------------------------------------------------------ public interface

    def data_to_send(self) -> bytes:
        out = b"".join(self._out)
        self._out = []
        return out

    def connection_made(self, now: float) -> list[Event]:
        """A new connection: start registration (CAP LS 302, PASS, NICK, USER)."""
        self._reset_link(now)
        self._to(LinkEvent.CONNECT)
        self.connected = True
        self.nick = self.settings.nick
        self._send("CAP", "LS", "302")
        if self.settings.password:
            self._send("PASS", self.settings.password)
        self._send("NICK", self.nick)
        user = self.settings.username or self.nick
        self._send("USER", user, "0", "*", self.settings.realname or self.nick)
        return self._flush_events()

    def connection_lost(self, now: float, reason: str = "") -> list[Event]:
        """The link is gone: channels are remembered for the rejoin, members forgotten."""
        was = self.connected
        failed = self._failed
        self.connected = False
        self._to(LinkEvent.LOST)
        self._out = []
        if was and not self.quitting and not failed:
            text = "Disconnected" + (f": {reason}" if reason else "")
            for buf in self.buffers.values():
                if buf.kind == "server" or buf.joined:
                    self._add(buf, self._line(now, "error", text), live=False)
        for buf in self.buffers.values():
            buf.history_pending = False
            if buf.joined:
                buf.joined = False
                buf.members.clear()
                self._emit(BufferChanged(buf))
        return self._flush_events()

    def receive(self, data: bytes, now: float) -> list[Event]:
        if self._failed:
            return []
        self._last_recv = now
        self._ping_sent = 0.0
        self._inbuf += data
        lines = self._inbuf.split(b"\n")
        self._inbuf = lines.pop()
        if self._phase is Phase.GREETING:
            # The first line the peer says shows whether it speaks IRC at all.
            first = next((line for line in lines if line.strip()), None)
            if first is None and _binary(self._inbuf):
                first = self._inbuf
            if first is not None:
                self._to(LinkEvent.HEARD)
                if not _looks_like_irc(first.strip(b" \r")):
                    self._inbuf = b""
                    self._not_irc(first.strip(b" \r"))
                    return self._flush_events()
        for raw in lines:
            if self._failed:
                break
            if not raw.strip():
                continue
            try:
                msg = parse(raw, max_body=8191)
            except ProtocolError:
                continue
            if UNSAFE_BYTES.search(raw):
                msg = msg._replace(params=tuple(visible(p) for p in msg.params))
            self._dispatch(msg, now)
        self._check_registration(now)
        return self._flush_events()

    def receive_line(self, line: str, now: float) -> list[Event]:
        """Convenience for tests: one line without CR LF."""
        return self.receive(line.encode() + b"\r\n", now)

    def tick(self, now: float) -> list[Event]:
        """Keepalive: PING after a quiet minute, report the link dead a minute later."""
        if not self.connected:
            return []
        self._check_registration(now)
        if self._ping_sent and now - self._ping_sent > PING_TIMEOUT:
            self._emit(TimedOut())
        elif not self._ping_sent and now - self._last_recv > PING_IDLE:
            self._ping_sent = now
            self._send("PING", f"salon-{int(now)}")
        return self._flush_events()

    def note(
        self, text: str, now: float, *, error: bool = False, everywhere: bool = False
    ) -> list[Event]:
        """A line from the front end (connecting, reconnecting...) in the server buffer, or in
        every buffer we are in."""
        targets = [self.server]
        if everywhere:
            targets += [b for b in self.buffers.values() if b.kind == "channel" and b.want_joined]
        for buf in targets:
            self._add(buf, self._line(now, "error" if error else "info", text), live=False)
        return self._flush_events()

    def set_active(self, name: str) -> list[Event]:
        buf = self.buffer(name)
        if buf is not None:
            self.active = buf.name
            if buf.unread or buf.mentions:
                buf.unread = buf.mentions = 0
                self._emit(BufferChanged(buf))
        return self._flush_events()

    def buffer(self, name: str) -> Buffer | None:
        return self.buffers.get(self._key(name))

    def input(self, text: str, buffer_name: str, now: float) -> list[Event]:
        """What the user typed in ``buffer_name``: a /command, a quit word, or text to send.
        Text with newlines (a paste) goes out as one draft/multiline message when offered."""
        buf = self.buffer(buffer_name) or self.server
        self.active = buf.name  # where the user types is where answers go
        text = text.rstrip("\r\n")
        if "\n" in text:
            self._say_lines(buf, text.split("\n"), now)
            return self._flush_events()
        if not text.strip():
            return []
        if text.strip().lower() in cmds.QUIT_WORDS:
            self._quit("", now)
            return self._flush_events()
        parsed = cmds.split_command(text)
        if parsed is None:
            self._say(buf, text[1:] if text.startswith("//") else text, now)
        else:
            self._command(parsed[0], parsed[1], buf, now)
        return self._flush_events()

    def load_older(self, buffer_name: str, now: float) -> list[Event]:
        """Scrolled to the top: ask for the page before the oldest line (CHATHISTORY BEFORE)."""
        buf = self.buffer(buffer_name)
        if buf is not None and buf.kind != "server" and not buf.history_exhausted:
            self._history.request(self, buf, "BEFORE")
        return self._flush_events()

    @property
    def has_history(self) -> bool:
        return "draft/chathistory" in self.caps and "batch" in self.caps

    def completion_candidates(self, buffer_name: str) -> list[str]:
        """Nicks of the buffer (recent speakers first), then channels, then commands."""
        buf = self.buffer(buffer_name)
        nicks: list[str] = []
        if buf is not None:
            seen: set[str] = set()
            for line in reversed(buf.lines[-200:]):
                key = self._key(line.nick)
                if line.nick and key in buf.members and key not in seen:
                    seen.add(key)
                    nicks.append(line.nick)
            rest = sorted((m.nick for k, m in buf.members.items() if k not in seen), key=str.lower)
            nicks += rest
            if buf.kind == "query":
                nicks.append(buf.name)
        nicks = [n for n in nicks if self._key(n) != self._key(self.nick)]
        chans = [b.name for b in self.buffers.values() if b.kind == "channel"]
        return nicks + chans + cmds.command_names()

    # ------------------------------------------------------------------ plumbing

    def _reset_link(self, now: float) -> None:
        self._connected_at = now
        self._await_default = False
        self.error_reason = ""  # the text of the server's ERROR, when it sent one
        self.isupport = {}
        self.offered = {}
        self.caps = set()
        self._inbuf = b""
        self._history = History()  # open batches, CHATHISTORY requests in flight
        self._cap_pending = 0
        self._last_recv = now
        self._ping_sent = 0.0
        self._nick_tries = 0
        self._sasl: ScramSha256 | None = None
        self._sasl_mech = ""
        self._sasl_mechs: list[str] = []
        self._sasl_reader = ChunkReader()
        self._sasl_retry = False
        self._pending_joins: set[str] = set()
        self._focus_joins: set[str] = set()
        self._names_building: set[str] = set()
        self._names_show: set[str] = set()
        # draft/metadata-3: display names of users (casefolded nick -> name), and whether
        # this link subscribed to the keys shown.
        self.display_names: dict[str, str] = {}
        self._meta_subscribed = False
        self._display_pending = False  # /displayname waits for the server's answer

    @property
    def registered(self) -> bool:
        """The server welcomed us (001) on this link."""
        return self._phase is Phase.REGISTERED

    @property
    def _failed(self) -> bool:
        """A Fatal was emitted for this link: nothing more is read from it."""
        return self._phase is Phase.FAILED

    def _to(self, event: LinkEvent) -> None:
        self._phase = next_phase(self._phase, event)

    def _emit(self, event: Event) -> None:
        self._events.append(event)

    def _fatal(self, message: str) -> None:
        """Registration cannot go on: one Fatal per link; nothing more is read from it."""
        if not self._failed:
            self._to(LinkEvent.FATAL)
            self._emit(Fatal(message))

    def _check_registration(self, now: float) -> None:
        timeout = self.settings.register_timeout
        if self._failed or not self.connected or self.registered:
            return
        if now - self._connected_at <= timeout:
            return
        if self.ever_registered:
            # A server we were on is slow to take us back: drop the link and try again.
            self._connected_at = now
            self._emit(TimedOut())
            return
        self._fatal(
            f"{self.peer} did not welcome us within {timeout:.0f} s: "
            "is it an IRC server, and the right port?"
        )

    def _not_irc(self, first: bytes) -> None:
        if _binary(first):
            said = "it answered with binary data" + ("" if self.tls else " (a TLS port? try --tls)")
        else:
            text = first.decode("utf-8", "replace")
            said = f"it said {text[:60] + ('...' if len(text) > 60 else '')!r}"
        self._fatal(f"{self.peer} does not speak IRC: {said}")

    def _flush_events(self) -> list[Event]:
        events, self._events = self._events, []
        return events

    def _send(self, command: str, *params: str, tags: dict[str, str] | None = None) -> None:
        msg = Message(command, tuple(params), tags=tags or {})
        self._out.append(msg.serialize())

    def _send_raw(self, line: str) -> None:
        self._out.append(line.encode("utf-8", "replace") + b"\r\n")

    @property
    def casemapping(self) -> str:
        return self.isupport.get("CASEMAPPING", "rfc1459")

    def _key(self, name: str) -> str:
        return casefold(name, self.casemapping)

    def key(self, name: str) -> str:
        """How the server compares names (its CASEMAPPING): the key of :attr:`buffers`."""
        return casefold(name, self.casemapping)

    @property
    def chantypes(self) -> str:
        return self.isupport.get("CHANTYPES", "#&")

    def is_channel(self, name: str) -> bool:
        return bool(name) and name[0] in self.chantypes

    @property
    def prefix(self) -> tuple[str, str]:
        """(modes, chars) from ISUPPORT PREFIX, e.g. ("ov", "@+")."""
        value = self.isupport.get("PREFIX", "(ov)@+")
        if value.startswith("(") and ")" in value:
            modes, _, chars = value[1:].partition(")")
            if len(modes) == len(chars):
                return modes, chars
        return "ov", "@+"

    def _line(
        self, now: float | datetime, kind: LineKind, text: str, nick: str = "", **kw: object
    ) -> Line:
        when = now if isinstance(now, datetime) else utc(now)
        return Line(when, kind, text, nick, **kw)  # type: ignore[arg-type]

    def _add_buffer(
        self, name: str, kind: str, *, emit: bool = True, focus: bool = False
    ) -> Buffer:
        key = self._key(name)
        buf = self.buffers.get(key)
        if buf is None:
            buf = Buffer(name, kind)  # type: ignore[arg-type]
            self.buffers[key] = buf
            if emit:
                self._emit(BufferAdded(buf, focus))
        elif focus:
            self._emit(Focus(buf))
        return buf

    def _remove_buffer(self, buf: Buffer) -> None:
        if buf is self.server:
            return
        self.buffers.pop(self._key(buf.name), None)
        if self._key(self.active) == self._key(buf.name):
            self.active = self.server.name
        self._emit(BufferRemoved(buf))

    def _add(self, buf: Buffer, line: Line, *, live: bool = True, mention: bool = False) -> None:
        buf.lines.append(line)
        if len(buf.lines) > MAX_LINES:
            del buf.lines[: len(buf.lines) - MAX_LINES]
            buf.history_exhausted = False
        self._emit(LineAdded(buf, line))
        if not live or line.own:
            return
        counted = line.kind in ("message", "action", "notice")
        changed = False
        if counted and self._key(buf.name) != self._key(self.active):
            buf.unread += 1
            changed = True
            if line.highlight or mention:
                buf.mentions += 1
        if counted and (line.highlight or mention):
            self._emit(Mention(buf, line))
        if changed:
            self._emit(BufferChanged(buf))

    def _error(self, text: str, now: float, buf: Buffer | None = None) -> None:
        self._add(buf or self._active_buffer(), self._line(now, "error", text), live=False)

    def _info(self, text: str, now: float, buf: Buffer | None = None) -> None:
        self._add(buf or self._active_buffer(), self._line(now, "info", text), live=False)

    def _active_buffer(self) -> Buffer:
        return self.buffer(self.active) or self.server

    # ------------------------------------------------------------------ dispatch

    def _dispatch(self, msg: Message, now: float) -> None:
        ref = msg.tags.get("batch")
        if ref and msg.command != "BATCH" and self._history.collect(ref, msg):
            return
        if msg.command.isdigit():
            self._numeric(msg, now)
            return
        handler = _INBOUND.get(msg.command.upper())
        if handler is not None:
            handler(self, msg, now)

    def _on_ping(self, msg: Message, now: float) -> None:
        self._send("PONG", *msg.params[:1])

    def _on_pong(self, msg: Message, now: float) -> None:
        self._ping_sent = 0.0

    def _on_error(self, msg: Message, now: float) -> None:
        text = msg.params[-1] if msg.params else "closing"
        self.error_reason = text
        if not self.registered and not self.quitting:
            self._fatal(f"the server closed the connection: {text}")
        kind: LineKind = "info" if self.quitting else "error"
        self._add(self.server, self._line(now, kind, f"Server: {text}"), live=False)

    # ------------------------------------------------------------------ CAP and SASL

    def _on_cap(self, msg: Message, now: float) -> None:
        if len(msg.params) < 2:
            return
        sub = msg.params[1].upper()
        more = len(msg.params) > 3 and msg.params[2] == "*"
        names = msg.params[-1].split()
        if sub == "LS":
            for item in names:
                name, _, value = item.partition("=")
                self.offered[name] = value
            if not more and self._phase is Phase.CAP_LS:
                self._to(LinkEvent.CAPS_LISTED)
                self._request_caps(self._wanted(self.offered))
        elif sub == "ACK":
            for name in names:
                if name.startswith("-"):
                    self.caps.discard(name[1:])
                else:
                    self.caps.add(name)
            before = "before-connect" in _cap_values(self.offered.get("draft/metadata-3", ""))
            if before or self.registered:
                # Subscribed before registering when the server allows it: the join
                # bursts (and the rejoin after a reconnect) then carry the names.
                self._subscribe_metadata()
            self._cap_answered()
        elif sub == "NAK":
            if len(names) > 1 and not self.registered:
                self._request_caps(names, single=True)
            self._cap_answered()
        elif sub == "NEW":
            new: dict[str, str] = {}
            for item in names:
                name, _, value = item.partition("=")
                self.offered[name] = value
                new[name] = value
            self._request_caps([n for n in self._wanted(new) if n != "sasl"])
        elif sub == "DEL":
            for name in names:
                self.caps.discard(name)
                self.offered.pop(name, None)

    def _wanted(self, offered: dict[str, str]) -> list[str]:
        wanted = [c for c in WANTED_CAPS if c in offered]
        if self.settings.sasl_account and "sasl" in offered and not self.registered:
            wanted.append("sasl")
        return wanted

    def _request_caps(self, names: list[str], single: bool = False) -> None:
        groups: list[list[str]] = []
        if single:
            groups = [[n] for n in names]
        else:
            current: list[str] = []
            for name in names:
                if current and len(" ".join([*current, name])) > 400:
                    groups.append(current)
                    current = []
                current.append(name)
            if current:
                groups.append(current)
        for group in groups:
            self._cap_pending += 1
            self._send("CAP", "REQ", " ".join(group))
        if not groups:
            self._cap_pending += 0
            self._maybe_end_caps()

    def _cap_answered(self) -> None:
        self._cap_pending = max(0, self._cap_pending - 1)
        if self._cap_pending == 0:
            self._maybe_end_caps()

    def _maybe_end_caps(self) -> None:
        if self._phase not in (Phase.CAP_LS, Phase.CAP_REQ, Phase.SASL) or self._cap_pending:
            return
        # Not past CAP END, so not logged in yet: a 903 ends the negotiation.
        if self.settings.sasl_account:
            if "sasl" not in self.caps:
                self._sasl_failed("the server does not offer SASL")
            elif self._phase is not Phase.SASL:
                self._start_sasl()
            return
        self._end_caps()

    def _sasl_failed(self, reason: str) -> None:
        """SASL was asked for and did not work: never go on as someone else. Registration
        stops here (no CAP END, so the server has not registered us) and the link is
        given up with a Fatal."""
        if reason.startswith("SASL login failed: "):
            reason = reason[len("SASL login failed: ") :]
        self._send("QUIT", "SASL login failed")
        self._fatal(f"SASL login as {self.settings.sasl_account} failed: {reason}")

    def _end_caps(self) -> None:
        if self._phase in (Phase.CAP_LS, Phase.CAP_REQ, Phase.SASL):
            self._to(LinkEvent.CAP_END)
            self._send("CAP", "END")

    def _start_sasl(self) -> None:
        offered = [m.upper() for m in self.offered.get("sasl", "").split(",") if m]
        wanted = self.settings.sasl_mechanism.upper()
        order = [wanted] if wanted else ["SCRAM-SHA-256", "PLAIN"]
        self._sasl_mechs = [m for m in order if not offered or m in offered]
        if not self._sasl_mechs:
            self._sasl_failed(f"the server offers {', '.join(offered)}, not {' or '.join(order)}")
            return
        self._to(LinkEvent.SASL)
        self._next_sasl_mech()

    def _next_sasl_mech(self) -> None:
        self._sasl_mech = self._sasl_mechs.pop(0)
        self._sasl_reader = ChunkReader()
        self._sasl = None
        if self._sasl_mech == "SCRAM-SHA-256":
            self._sasl = ScramSha256(
                self.settings.sasl_account, self.settings.sasl_password, self._nonce
            )
        self._send("AUTHENTICATE", self._sasl_mech)

    def _on_authenticate(self, msg: Message, now: float) -> None:
        if not msg.params or not self._sasl_mech:
            return
        try:
            payload = self._sasl_reader.feed(msg.params[0])
            if payload is None:
                return
            if self._sasl_mech == "PLAIN":
                out = plain_payload(self.settings.sasl_account, self.settings.sasl_password)
            else:
                assert self._sasl is not None
                if not payload and not self._sasl.nonce_sent:
                    out = self._sasl.client_first()
                    self._sasl.nonce_sent = True
                elif not self._sasl.done and not self._sasl.final_sent:
                    out = self._sasl.client_final(payload)
                    self._sasl.final_sent = True
                else:
                    self._sasl.verify_server_final(payload)
                    self._send("AUTHENTICATE", "+")
                    return
        except SaslError as exc:
            self._send("AUTHENTICATE", "*")
            self._sasl_failed(str(exc))
            return
        for chunk in encode_chunks(out):
            self._send("AUTHENTICATE", chunk)

    def _sasl_finished(self, msg: Message, now: float) -> None:
        code = msg.command
        if code == "908":
            self._sasl_retry = True
            mechs = [m.upper() for m in (msg.params[1] if len(msg.params) > 2 else "").split(",")]
            self._sasl_mechs = [m for m in self._sasl_mechs if m in mechs]
            return
        if code in ("904", "905") and self._sasl_retry and self._sasl_mechs:
            self._sasl_retry = False
            self._next_sasl_mech()
            return
        if code in ("903", "907"):
            self._info("Logged in (SASL)", now, self.server)
            self._end_caps()
        elif self.settings.sasl_account and not self.registered:
            self._sasl_failed(describe_numeric(msg))
        else:
            self._error(describe_numeric(msg), now, self.server)

    # ------------------------------------------------------------------ numerics

    # Numerics with a handler of their own (the _NUMERICS table): each says whether it
    # handled the reply, or left it to be shown as information or as an error.

    def _names_reply_at(self, msg: Message, now: float) -> None:
        self._names_reply(msg)

    def _isupport(self, msg: Message, now: float) -> bool:
        for token in msg.params[1:-1]:
            name, _, value = token.partition("=")
            if name.startswith("-"):
                self.isupport.pop(name[1:], None)
            else:
                self.isupport[name] = unescape_value(value)
        return True

    def _motd_end(self, msg: Message, now: float) -> bool:
        if self._await_default:
            # modern.ircdocs.horse: on registration the server sends the MOTD (375, 372, 376)
            # or ERR_NOMOTD, after the ISUPPORT lines: every token is known by now.
            self._await_default = False
            default = self._advertised_default()
            self._autojoin([default] if default else list(self.settings.channels), now)
        return False  # shown too

    def _nick_refused_early(self, msg: Message, now: float) -> bool:
        if self.registered:
            return False
        self._nick_refused(msg, now)
        return True

    def _refused_early(self, msg: Message, now: float) -> bool:
        if self.registered:
            return False
        self._fatal(describe_numeric(msg))
        return True

    def _away_reply(self, msg: Message, now: float) -> bool:
        self._info(msg.params[-1], now)
        return True

    def _modes_reply(self, msg: Message, now: float) -> bool:
        params = msg.params
        if len(params) < 3:
            return False
        buf = self.buffer(params[1]) or self._active_buffer()
        self._info(f"Modes of {params[1]}: {' '.join(params[2:])}", now, buf)
        return True

    def _inviting(self, msg: Message, now: float) -> bool:
        params = msg.params
        if len(params) < 3:
            return False
        self._info(f"You invited {params[1]} to {params[2]}", now)
        return True

    def _numeric(self, msg: Message, now: float) -> None:
        code = msg.command
        params = msg.params
        handler = _NUMERICS.get(code)
        if handler is not None and handler(self, msg, now):
            return
        if code in SERVER_INFO or code < "400":
            if code == "004":
                return
            text = params[-1] if len(params) > 1 else ""
            if len(params) > 2 and code in ("252", "253", "254"):
                text = " ".join(params[1:])
            where = self.server if code in SERVER_INFO else self._buffer_for_params(params[1:-1])
            self._info(text, now, where)
            return
        # An error or refusal: plain words, in the buffer it is about.
        self._error(describe_numeric(msg), now, self._buffer_for_params(params[1:-1]))
        if code in ("403", "405", "471", "473", "474", "475", "476", "477") and len(params) > 2:
            key = self._key(params[1])
            if key in self._pending_joins:
                self._pending_joins.discard(key)
                self._emit(JoinFailed(params[1], describe_numeric(msg)))

    def _buffer_for_params(self, params: Iterable[str]) -> Buffer:
        for p in params:
            buf = self.buffer(p)
            if buf is not None:
                return buf
        return self._active_buffer()

    def _welcome(self, msg: Message, now: float) -> None:
        if self.settings.sasl_account and self._phase not in (Phase.CAP_END, Phase.REGISTERED):
            # A server without CAP registered us before any SASL: do not go on unnoticed.
            self._sasl_failed("the server does not offer SASL")
            return
        self._to(LinkEvent.WELCOME)
        if msg.params:
            self.nick = msg.params[0]
        first = not self.ever_registered
        self.ever_registered = True
        self._emit(Registered(self.nick))
        self._subscribe_metadata()
        if msg.params[1:]:
            self._info(msg.params[-1], now, self.server)
        if not self.autojoined:
            if self.settings.server_default:
                self._await_default = True
            else:
                self._autojoin(list(self.settings.channels), now)
        else:
            channels = [
                b.name for b in self.buffers.values() if b.kind == "channel" and b.want_joined
            ]
            if channels:
                self._join(channels, now, focus=False)
        if not first:
            for buf in self.buffers.values():
                if buf.kind == "query":
                    self._history.request(self, buf, "LATEST")

    def _subscribe_metadata(self) -> None:
        if "draft/metadata-3" in self.caps and not self._meta_subscribed:
            self._meta_subscribed = True
            self._send("METADATA", "*", "SUB", *METADATA_KEYS)

    def _keyvalue(self, msg: Message, now: float) -> bool:
        """RPL_KEYVALUE / RPL_KEYNOTSET (draft/metadata-3): a user's display name, as
        the server told it (on joining, on a change, or answering GET)."""
        if len(msg.params) < 4 or self.is_channel(msg.params[1]):
            return True
        target, key = msg.params[1], msg.params[2]
        if key != "display-name" or target == "*":
            return True
        name = msg.params[4].strip() if msg.command == "761" and len(msg.params) > 4 else ""
        if name:
            self.display_names[self._key(target)] = name
        else:
            self.display_names.pop(self._key(target), None)
        if self._display_pending and self._key(target) == self._key(self.nick):
            self._display_pending = False
            text = f"Your display name is now {name}" if name else "You have no display name now"
            self._info(text, now)
        return True

    def _sync_later(self, msg: Message, now: float) -> bool:
        """RPL_METADATASYNCLATER: ask for the target's keys now (they are few here)."""
        if len(msg.params) > 1:
            self._send("METADATA", msg.params[1], "SYNC")
        return True

    def _autojoin(self, channels: list[str], now: float) -> None:
        """The first join of the session: what the user asked for, or the server's default."""
        self.autojoined = True
        if channels:
            self._join(channels, now, focus=True)
        self._emit(AutoJoin(tuple(c if self.is_channel(c) else "#" + c for c in channels if c)))

    def _advertised_default(self) -> str:
        """The server's default channel (ISUPPORT salon.chat/DEFAULTCHANNEL), if it names
        one that is a channel name; "" if not."""
        name = self.isupport.get(DEFAULT_CHANNEL, "")
        return name if valid_channel(name, len(name)) and self.is_channel(name) else ""

    def _nick_refused(self, msg: Message, now: float) -> None:
        nick = msg.params[1] if len(msg.params) > 2 else self.nick
        if msg.command in ("433", "436", "437") and self._nick_tries < MAX_NICK_RETRIES:
            self._nick_tries += 1
            self.nick = self.settings.nick + "_" * self._nick_tries
            self._info(f"The nick {nick} is taken; trying {self.nick}", now, self.server)
            self._send("NICK", self.nick)
            return
        reason = describe_numeric(msg)
        self._fatal(f"the server refused the nick {nick!r}: {reason}")

    def _names_reply(self, msg: Message) -> None:
        # 353 <me> <symbol> <channel> :<names>
        if len(msg.params) < 4:
            return
        channel = msg.params[2]
        buf = self.buffer(channel)
        if buf is None:
            if self._key(channel) in self._names_show:
                buf = self.server
            else:
                return
        key = self._key(channel)
        if buf.kind == "channel" and key not in self._names_building:
            self._names_building.add(key)
            buf.members.clear()
        _modes, chars = self.prefix
        for item in msg.params[3].split():
            i = 0
            while i < len(item) and item[i] in chars:
                i += 1
            nick = nick_of(item[i:])
            if nick and buf.kind == "channel":
                buf.members[self._key(nick)] = Member(nick, item[:i])
        if key in self._names_show:
            self._info(f"In {channel}: {msg.params[3]}", self._last_recv, buf)

    def _names_end(self, msg: Message, now: float) -> None:
        if len(msg.params) < 2:
            return
        key = self._key(msg.params[1])
        self._names_building.discard(key)
        self._names_show.discard(key)
        buf = self.buffer(msg.params[1])
        if buf is not None:
            self._emit(BufferChanged(buf))
            if key in self._pending_joins:
                self._pending_joins.discard(key)
                self._emit(Joined(buf))

    def _topic_reply(self, msg: Message, now: float) -> None:
        if len(msg.params) < 3:
            return
        buf = self.buffer(msg.params[1])
        if buf is None:
            return
        buf.topic = msg.params[2] if msg.command == "332" else ""
        text = f"Topic: {buf.topic}" if buf.topic else "No topic is set"
        self._add(buf, self._line(now, "topic", text), live=False)
        self._emit(BufferChanged(buf))

    def _whois(self, msg: Message, now: float) -> None:
        p = msg.params
        code = msg.command
        text = p[-1]
        who = p[1] if len(p) > 2 else ""
        if code == "311" and len(p) >= 6:
            text = f"{p[1]} is {p[2]}@{p[3]} ({p[5]})"
        elif code == "312" and len(p) >= 4:
            text = f"{p[1]} is on {p[2]} ({p[3]})"
        elif code == "319":
            text = f"{who} is in {text}"
        elif code == "317" and len(p) >= 4:
            text = f"{who} has been idle {_duration(p[2])}"
        elif code == "330" and len(p) >= 4:
            text = f"{who} is logged in as {p[2]}"
        elif code == "760" and len(p) >= 5:  # RPL_WHOISKEYVALUE (draft/metadata-3)
            text = f"{who} has {p[2]}: {p[4]}"
        elif code == "301":
            text = f"{who} is away: {text}"
            buf = self.buffer(who)
            if buf is not None:
                self._info(text, now, buf)
                return
        elif code in ("318", "369"):
            return
        elif who and not text.startswith(who):
            text = f"{who} {text}"
        self._info(text, now)

    # ------------------------------------------------------------------ messages

    def _message_line(
        self, msg: Message, received: datetime, *, history: bool = False
    ) -> tuple[Buffer, Line] | None:
        """The buffer and line for a PRIVMSG or NOTICE (creating a query buffer if needed)."""
        if msg.command not in ("PRIVMSG", "NOTICE") or len(msg.params) < 2:
            return None
        target, text = msg.params[0], msg.params[1]
        nick = nick_of(msg.source)
        own = bool(nick) and self._key(nick) == self._key(self.nick)
        when = parse_time(msg.tags.get("time"), received)
        msgid = msg.tags.get("msgid", "")
        stripped = target.lstrip(self.prefix[1])
        buf: Buffer | None
        if self.is_channel(stripped):
            buf = self.buffer(stripped) or self._add_buffer(stripped, "channel")
        elif not msg.source or "!" not in msg.source or target == "*" or not self.registered:
            buf = self.server  # from the server itself, or before we have a nick
        else:
            other = target if own else nick
            buf = self.buffer(other)
            if buf is None:
                if msg.command == "NOTICE" and not history:
                    buf = self._active_buffer()
                else:
                    buf = self._add_buffer(other, "query")
        kind: LineKind = "notice" if msg.command == "NOTICE" else "message"
        request = ctcp(text)
        if request is not None:
            name, arg = request
            if name == "ACTION":
                kind, text = "action", arg
            elif msg.command == "NOTICE":
                kind, text = "notice", f"CTCP {name} reply: {arg}"
            else:
                kind, text = "info", f"{nick} sent a CTCP {name}"
        highlight = not own and kind != "info" and mentions(text, self.nick)
        display = self.display_names.get(self._key(nick), "") if nick else ""
        line = Line(when, kind, text, nick, msgid, highlight, own, display)
        return buf, line

    def _on_privmsg(self, msg: Message, now: float) -> None:
        pair = self._message_line(msg, utc(now))
        if pair is None:
            return
        buf, line = pair
        nick = nick_of(msg.source)
        request = ctcp(msg.params[1])
        if request is not None and msg.command == "PRIVMSG" and not line.own:
            name, arg = request
            if name == "VERSION":
                self._send("NOTICE", nick, f"\x01VERSION {VERSION_REPLY}\x01")
            elif name == "PING":
                self._send("NOTICE", nick, f"\x01PING {arg}\x01")
        private = buf.kind == "query" and not line.own and line.kind != "info"
        self._add(buf, line, mention=private)

    # ------------------------------------------------------------------ membership

    def _on_join(self, msg: Message, now: float) -> None:
        if not msg.params:
            return
        nick = nick_of(msg.source)
        channel = msg.params[0]
        when = parse_time(msg.tags.get("time"), utc(now))
        if self._key(nick) == self._key(self.nick):
            key = self._key(channel)
            focus = key in self._focus_joins
            self._focus_joins.discard(key)
            existed = self.buffer(channel) is not None
            buf = self._add_buffer(channel, "channel", focus=focus)
            buf.joined = buf.want_joined = True
            buf.members.clear()
            buf.members[self._key(nick)] = Member(nick)
            self._pending_joins.add(key)
            self._add(buf, self._line(when, "join", f"You joined {buf.name}", nick), live=False)
            if focus and existed:
                self._emit(Focus(buf))
            self._history.request(self, buf, "LATEST")
            return
        buf_or_none = self.buffer(channel)
        if buf_or_none is None:
            return
        buf = buf_or_none
        buf.members[self._key(nick)] = Member(nick)
        host = msg.source.split("!", 1)[1] if msg.source and "!" in msg.source else ""
        text = f"{nick} joined" + (f" ({host})" if host else "")
        self._add(buf, self._line(when, "join", text, nick))
        self._emit(BufferChanged(buf))

    def _on_part(self, msg: Message, now: float) -> None:
        if not msg.params:
            return
        nick = nick_of(msg.source)
        reason = msg.params[1] if len(msg.params) > 1 else ""
        when = parse_time(msg.tags.get("time"), utc(now))
        for channel in msg.params[0].split(","):
            buf = self.buffer(channel)
            if buf is None:
                continue
            if self._key(nick) == self._key(self.nick):
                buf.joined = buf.want_joined = False
                buf.members.clear()
                self._remove_buffer(buf)
                continue
            buf.members.pop(self._key(nick), None)
            text = f"{nick} left" + (f" ({reason})" if reason else "")
            self._add(buf, self._line(when, "part", text, nick))
            self._emit(BufferChanged(buf))

    def _on_kick(self, msg: Message, now: float) -> None:
        if len(msg.params) < 2:
            return
        by = nick_of(msg.source)
        buf = self.buffer(msg.params[0])
        if buf is None:
            return
        victim = msg.params[1]
        reason = msg.params[2] if len(msg.params) > 2 else ""
        when = parse_time(msg.tags.get("time"), utc(now))
        suffix = f" ({reason})" if reason and reason != by else ""
        if self._key(victim) == self._key(self.nick):
            buf.joined = buf.want_joined = False
            buf.members.clear()
            self._add(buf, self._line(when, "error", f"{by} kicked you from {buf.name}{suffix}"))
        else:
            buf.members.pop(self._key(victim), None)
            self._add(buf, self._line(when, "kick", f"{by} kicked {victim}{suffix}", by))
        self._emit(BufferChanged(buf))

    def _on_quit(self, msg: Message, now: float) -> None:
        nick = nick_of(msg.source)
        key = self._key(nick)
        reason = msg.params[0] if msg.params else ""
        when = parse_time(msg.tags.get("time"), utc(now))
        text = f"{nick} quit" + (f" ({reason})" if reason else "")
        self.display_names.pop(key, None)
        for buf in list(self.buffers.values()):
            if key in buf.members or (buf.kind == "query" and self._key(buf.name) == key):
                buf.members.pop(key, None)
                self._add(buf, self._line(when, "quit", text, nick))
                self._emit(BufferChanged(buf))

    def _on_nick(self, msg: Message, now: float) -> None:
        if not msg.params:
            return
        old, new = nick_of(msg.source), msg.params[0]
        old_key = self._key(old)
        when = parse_time(msg.tags.get("time"), utc(now))
        mine = old_key == self._key(self.nick)
        display = self.display_names.pop(old_key, None)
        if display is not None:
            self.display_names[self._key(new)] = display
        if mine:
            self.nick = new
            self._emit(NickChanged(new))
            self._add(self.server, self._line(when, "nick", f"You are now {new}", new))
        text = f"{'You are' if mine else old + ' is'} now known as {new}"
        for buf in list(self.buffers.values()):
            member = buf.members.pop(old_key, None)
            if member is not None:
                member.nick = new
                buf.members[self._key(new)] = member
                self._add(buf, self._line(when, "nick", text, new))
                self._emit(BufferChanged(buf))
            elif buf.kind == "query" and self._key(buf.name) == old_key and not mine:
                self.buffers.pop(old_key, None)
                buf.name = new
                self.buffers[self._key(new)] = buf
                self._add(buf, self._line(when, "nick", text, new))
                self._emit(BufferChanged(buf))

    def _on_away(self, msg: Message, now: float) -> None:
        key = self._key(nick_of(msg.source))
        for buf in self.buffers.values():
            member = buf.members.get(key)
            if member is not None:
                member.away = bool(msg.params)
                self._emit(BufferChanged(buf))

    def _on_topic(self, msg: Message, now: float) -> None:
        if len(msg.params) < 2:
            return
        buf = self.buffer(msg.params[0])
        if buf is None:
            return
        nick = nick_of(msg.source)
        buf.topic = msg.params[1]
        when = parse_time(msg.tags.get("time"), utc(now))
        text = f"{nick} set the topic: {buf.topic}" if buf.topic else f"{nick} cleared the topic"
        self._add(buf, self._line(when, "topic", text, nick))
        self._emit(BufferChanged(buf))

    def _on_invite(self, msg: Message, now: float) -> None:
        if len(msg.params) < 2:
            return
        nick = nick_of(msg.source)
        who, channel = msg.params[0], msg.params[1]
        if self._key(who) == self._key(self.nick):
            self._add(
                self._active_buffer(),
                self._line(now, "info", f"{nick} invites you to {channel} (/join {channel})"),
                mention=True,
            )
        else:
            buf = self.buffer(channel) or self.server
            self._info(f"{nick} invited {who} to {channel}", now, buf)

    def _on_mode(self, msg: Message, now: float) -> None:
        if len(msg.params) < 2:
            return
        target = msg.params[0]
        nick = nick_of(msg.source) or "The server"
        when = parse_time(msg.tags.get("time"), utc(now))
        changes = " ".join(msg.params[1:])
        if not self.is_channel(target):
            self._add(self.server, self._line(when, "mode", f"Your modes: {changes}", nick))
            return
        buf = self.buffer(target)
        if buf is None:
            return
        self._apply_modes(buf, msg.params[1], list(msg.params[2:]))
        self._add(buf, self._line(when, "mode", f"{nick} sets mode {changes}", nick))
        self._emit(BufferChanged(buf))

    def _apply_modes(self, buf: Buffer, modestr: str, args: list[str]) -> None:
        modes, chars = self.prefix
        groups = self.isupport.get("CHANMODES", "beI,k,l,imnpst").split(",")
        always = (groups[0] if groups else "") + (groups[1] if len(groups) > 1 else "")
        on_set = groups[2] if len(groups) > 2 else ""
        adding = True
        for ch in modestr:
            if ch in "+-":
                adding = ch == "+"
                continue
            if ch in modes:
                if not args:
                    return
                member = buf.members.get(self._key(args.pop(0)))
                if member is not None:
                    symbol = chars[modes.index(ch)]
                    have = set(member.prefixes)
                    if adding:
                        have.add(symbol)
                    else:
                        have.discard(symbol)
                    member.prefixes = "".join(c for c in chars if c in have)
            elif (ch in always or (ch in on_set and adding)) and args:
                args.pop(0)

    # ------------------------------------------------------------------ replies

    def _on_fail(self, msg: Message, now: float) -> None:
        text = describe_fail(msg)
        command = msg.params[0] if msg.params else ""
        buf: Buffer | None = None
        if command == "METADATA":
            self._display_pending = False
        if command == "CHATHISTORY":
            for p in msg.params[2:-1]:
                buf = self.buffer(p)
                if buf is not None:
                    buf.history_pending = False
                    if msg.params[1:2] == ("INVALID_TARGET",):
                        buf.history_exhausted = True
                    break
        if command == "TOKEN" and msg.command == "FAIL":
            self.uploads_waiting.clear()  # no token: the uploads cannot go
        if msg.command == "FAIL":
            self._error(text, now, buf or self._buffer_for_params(msg.params[2:-1]))
        else:
            self._info(text, now, buf or self._buffer_for_params(msg.params[2:-1]))

    def _on_register(self, msg: Message, now: float) -> None:
        # REGISTER SUCCESS <account> :<message> | REGISTER VERIFICATION_REQUIRED <account> :msg
        if len(msg.params) >= 2:
            self._info(msg.params[-1], now)

    # ------------------------------------------------------------------ user commands

    def _join(self, channels: list[str], now: float, *, key: str = "", focus: bool = True) -> None:
        names = [c if self.is_channel(c) else "#" + c for c in channels if c]
        if not names:
            return
        for i, name in enumerate(names):
            self._pending_joins.add(self._key(name))
            if focus and i == 0:
                self._focus_joins.add(self._key(name))
            buf = self.buffer(name)
            if buf is not None and buf.joined and focus and i == 0:
                self._emit(Focus(buf))
        params = [",".join(names)] + ([key] if key else [])
        self._send("JOIN", *params)

    def _not_connected(self, text: str, now: float) -> bool:
        if self.registered:
            return False
        self._error("Not connected: not sent (it is kept in the input line)", now)
        self._emit(Unsent(text))
        return True

    def _max_text(self, command: str, target: str) -> int:
        # 512 minus ":nick!user@host COMMAND target :" and CR LF, with a generous host.
        overhead = 1 + len(self.nick) + 1 + 10 + 1 + 63 + 1 + len(command) + 1 + len(target) + 2
        return 512 - overhead - 2

    def _say(self, buf: Buffer, text: str, now: float, *, kind: str = "message") -> None:
        if buf.kind == "server":
            self._error("This is the server window: /join a channel or /query someone to talk", now)
            return
        self._send_text(buf.name, text, now, kind=kind, original=text)

    def _send_text(
        self, target: str, text: str, now: float, *, kind: str = "message", original: str = ""
    ) -> None:
        if self._not_connected(original or text, now):
            return
        command = "NOTICE" if kind == "notice" else "PRIVMSG"
        if kind == "action":
            pieces = [
                f"\x01ACTION {p}\x01" for p in split_utf8(text, self._max_text(command, target) - 9)
            ]
        else:
            pieces = split_utf8(text, self._max_text(command, target))
        for piece in pieces:
            self._send(command, target, piece)
        if "echo-message" not in self.caps:
            buf = self._target_buffer(target)
            for piece in pieces:
                self._own_line(buf, piece, kind, now)

    def _target_buffer(self, target: str) -> Buffer:
        stripped = target.lstrip(self.prefix[1])
        buf = self.buffer(stripped)
        if buf is None:
            buf = self._add_buffer(stripped, "channel" if self.is_channel(stripped) else "query")
        return buf

    def _own_line(self, buf: Buffer, text: str, kind: str, now: float) -> None:
        line_kind: LineKind = "notice" if kind == "notice" else "message"
        body = text
        act = ctcp(text)
        if act is not None and act[0] == "ACTION":
            line_kind, body = "action", act[1]
        self._add(buf, Line(utc(now), line_kind, body, self.nick, own=True))

    def _say_lines(self, buf: Buffer, lines: list[str], now: float) -> None:
        lines = [line.rstrip("\r") for line in lines]
        while lines and not lines[-1].strip():
            lines.pop()
        if not lines:
            return
        if buf.kind == "server":
            self._error("This is the server window: nowhere to send that text", now)
            return
        if self._not_connected("\n".join(lines), now):
            return
        limits = _cap_values(self.offered.get("draft/multiline", ""))
        max_bytes = _int(limits.get("max-bytes"), 4096)
        max_lines = _int(limits.get("max-lines"), 100)
        size = sum(len(line.encode()) for line in lines) + len(lines) - 1
        per_line = self._max_text("PRIVMSG", buf.name)
        fits = all(len(line.encode()) <= per_line for line in lines)
        if (
            "draft/multiline" in self.caps
            and "batch" in self.caps
            and len(lines) <= max_lines
            and size <= max_bytes
            and fits
        ):
            self._batch_counter += 1
            ref = f"ml{self._batch_counter}"
            self._send("BATCH", "+" + ref, "draft/multiline", buf.name)
            for line in lines:
                # An empty line is sent as a space-less empty trailing parameter.
                self._send("PRIVMSG", buf.name, line, tags={"batch": ref})
            self._send("BATCH", "-" + ref)
            if "echo-message" not in self.caps:
                self._add(buf, Line(utc(now), "message", "\n".join(lines), self.nick, own=True))
            return
        for line in lines:
            if line.strip():
                self._send_text(buf.name, line, now)

    def _quit(self, reason: str, now: float) -> None:
        self.quitting = True
        if self.connected:
            self._send("QUIT", reason or "bye")
        self._emit(QuitRequested(reason))

    def _command(self, name: str, args: str, buf: Buffer, now: float) -> None:
        command = cmds.COMMANDS.get(name)
        if (command is None or command.link) and self._not_connected(
            "/" + name + (" " + args if args else ""), now
        ):
            return
        if command is None:
            slash.unknown(self, slash.Call(name, args, buf, now))
        else:
            command.run(self, slash.Call(name, args, buf, now, command.usage))

    def _help(self, name: str, now: float) -> None:
        for text in cmds.help_lines(name, keys=self.settings.help_keys):
            self._info(text, now)


# The command of each message the session acts on -> its handler (numerics go to
# ``Session._numeric``); anything else is ignored.
_INBOUND: dict[str, Callable[[Session, Message, float], None]] = {
    "PING": Session._on_ping,
    "PONG": Session._on_pong,
    "ERROR": Session._on_error,
    "CAP": Session._on_cap,
    "AUTHENTICATE": Session._on_authenticate,
    "BATCH": history.on_batch,
    "PRIVMSG": Session._on_privmsg,
    "NOTICE": Session._on_privmsg,
    "JOIN": Session._on_join,
    "PART": Session._on_part,
    "KICK": Session._on_kick,
    "QUIT": Session._on_quit,
    "NICK": Session._on_nick,
    "AWAY": Session._on_away,
    "TOPIC": Session._on_topic,
    "INVITE": Session._on_invite,
    "MODE": Session._on_mode,
    "FAIL": Session._on_fail,
    "WARN": Session._on_fail,
    "NOTE": Session._on_fail,
    "REGISTER": Session._on_register,
    "VERIFY": Session._on_register,
    "TOKEN": slash.on_token,
}


def _handled(
    method: Callable[[Session, Message, float], object],
) -> Callable[[Session, Message, float], bool]:
    """A handler that always handles its numeric."""

    def run(session: Session, msg: Message, now: float) -> bool:
        method(session, msg, now)
        return True

    return run


def _ignored(session: Session, msg: Message, now: float) -> bool:
    return True


# Numerics handled apart from the generic display (Session._numeric): code -> handler,
# which returns whether it handled the reply.
_NUMERICS: dict[str, Callable[[Session, Message, float], bool]] = {
    "001": _handled(Session._welcome),
    "005": Session._isupport,
    "376": Session._motd_end,
    "422": Session._motd_end,
    **dict.fromkeys(("903", "904", "905", "906", "907", "908"), _handled(Session._sasl_finished)),
    **dict.fromkeys(("432", "433", "436", "437"), Session._nick_refused_early),
    **dict.fromkeys(("464", "465"), Session._refused_early),
    "353": _handled(Session._names_reply_at),
    "366": _handled(Session._names_end),
    "331": _handled(Session._topic_reply),
    "332": _handled(Session._topic_reply),
    "333": _ignored,
    "305": Session._away_reply,
    "306": Session._away_reply,
    "324": Session._modes_reply,
    "329": _ignored,
    "341": Session._inviting,
    "761": Session._keyvalue,
    "766": Session._keyvalue,
    "770": _ignored,
    "771": _ignored,
    "772": _ignored,
    "774": Session._sync_later,
    **dict.fromkeys(WHOIS, _handled(Session._whois)),
}


def _cap_values(value: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in value.split(","):
        key, _, val = item.partition("=")
        if key:
            out[key] = val
    return out


def _int(value: str | None, default: int) -> int:
    try:
        return int(value) if value else default
    except ValueError:
        return default


def _duration(seconds: str) -> str:
    try:
        total = int(seconds)
    except ValueError:
        return seconds + " s"
    if total < 60:
        return f"{total} s"
    if total < 3600:
        return f"{total // 60} min"
    return f"{total // 3600} h {total % 3600 // 60} min"


# What a server may send first, before any source prefix: ident/hostname notices, a PING
# cookie, CAP, an ERROR. A numeric or a line with a source or tags is IRC as well.
_FIRST_COMMANDS = frozenset(
    {b"NOTICE", b"PING", b"ERROR", b"CAP", b"AUTHENTICATE", b"PRIVMSG", b"FAIL", b"NOTE", b"WARN"}
)


def _binary(data: bytes) -> bool:
    """Control characters other than tab, CR and LF: no IRC server starts with those."""
    return any((b < 0x20 and b not in (0x09, 0x0A, 0x0D)) or b == 0x7F for b in data)


def _looks_like_irc(first: bytes) -> bool:
    """Is ``first``, the first line a peer sent (without CR LF), plausibly IRC? A plain-text
    service, an HTTP server or a TLS port talked to without TLS says something else."""
    if _binary(first):
        return False
    if first[:1] in (b"@", b":"):
        return True
    command = first.split(b" ", 1)[0].upper()
    return command in _FIRST_COMMANDS or (len(command) == 3 and command.isdigit())
