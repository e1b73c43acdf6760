"""Per-connection state. The shell (net/) owns the socket; this object owns everything else."""

from __future__ import annotations

from enum import Enum
from typing import TYPE_CHECKING, Any

from salon.server.personality import IRC, Personality

if TYPE_CHECKING:
    from salon.server.channel import Channel


class Kind(Enum):
    IRC = "irc"
    # The plain-text port ([plain] in the config): nc and telnet (salon.server.textport).
    TEXTPORT = "textport"


class Client:
    """A connected client, registered or not.

    Output is appended to ``outbox`` as ready bytes; the shell flushes every dirty client
    once per event-loop turn, so writes coalesce under load.
    """

    __slots__ = (
        "account",
        "auth",
        "away",
        "blocked",
        "cap_negotiating",
        "cap_version",
        "capmask",
        "certfp",
        "channels",
        "closed",
        "created",
        "dirty",
        "discarding",
        "dm_last",
        "host",
        "id",
        "inbuf",
        "ip",
        "kind",
        "last_active",
        "last_message",
        "meta",
        "metadata",
        "modes",
        "monitoring",
        "multiline",
        "nick",
        "nick_cf",
        "nick_time",
        "oper",
        "outbox",
        "outbytes",
        "pass_given",
        "pending_commits",
        "personality",
        "ping_sent",
        "port",
        "prefix",
        "reading_paused",
        "realname",
        "registered",
        "sink",
        "textport",
        "throttled",
        "tls",
        "token_time",
        "tokens",
        "user",
        "variant",
    )

    def __init__(self, cid: int, kind: Kind, ip: str, port: int, now: float) -> None:
        self.id = cid
        self.kind = kind
        self.ip = ip
        self.port = port
        # A host starting with ':' (IPv6 such as ::1) cannot be a middle parameter.
        self.host = "0" + ip if ip.startswith(":") else ip
        self.nick = "*"
        self.nick_cf = ""
        # When the client took its current nick (not a change of case): without an
        # account, the nick is all that identifies it, and the private history it may
        # read starts there (see history.private_floor).
        self.nick_time = now
        self.user = ""
        self.realname = ""
        self.prefix = "*"
        self.registered = False
        self.pass_given: str | None = None
        self.capmask = 0
        # How the connection speaks (Server.connect sets it from ``kind``).
        self.personality: Personality = IRC
        # capmask & VARIANT_MASK; negative: the personality renders every message.
        self.variant = 0
        self.cap_negotiating = False
        self.cap_version = 0
        self.modes: set[str] = set()
        self.away: str | None = None
        self.account: str | None = None
        # Account state: SASL exchange, nick wanted before registration, ACCEPT list
        # (salon.server.accounts.AuthState), made on first use.
        self.auth: Any = None
        # SHA-256 fingerprint (64 lowercase hex digits) of the TLS client certificate,
        # set by the shell; SASL EXTERNAL and NickServ CERT use it.
        self.certfp: str | None = None
        # Whether the connection is TLS (set by the shell): WHOIS shows 671 for it.
        self.tls = False
        self.oper: str | None = None
        self.channels: dict[str, Channel] = {}
        self.monitoring: set[str] = set()
        # draft/metadata-3: this user's keys, and (made on first use) its subscriptions
        # and recent changes (salon.server.metadata.MetaState).
        self.metadata: dict[str, str] = {}
        self.meta: Any = None
        # An open draft/multiline batch (salon.server.handlers.batch.Multiline).
        self.multiline: Any = None
        self.outbox: list[bytes] = []
        self.outbytes = 0
        self.dirty = False
        self.closed = False
        self.blocked = False
        # Messages of this client waiting for their commit (see Server.defer).
        self.pending_commits = 0
        # The last private conversation this client wrote to, for its next message
        # (handlers.messaging._private_event): the two parties' nick_cf and account it
        # was made from, its key, and this client's side of it.
        self.dm_last: tuple[str, str | None, str, str | None, str, str] | None = None
        # Set by the shell while it stopped reading from the socket (blocked input).
        self.reading_paused = False
        self.throttled = False
        self.discarding = False
        self.inbuf = bytearray()
        self.created = now
        self.last_active = now
        self.last_message = now
        self.ping_sent = 0.0
        self.tokens = 0.0
        self.token_time = now
        # Opaque handle of the shell (the transport); the core never calls it.
        self.sink: Any = None
        # State of the text port's session (see salon.server.textport).
        self.textport: Any = None

    def __repr__(self) -> str:
        return f"<Client {self.id} {self.nick} {self.ip}>"

    def set_nick(self, nick: str, nick_cf: str, now: float) -> None:
        if nick_cf != self.nick_cf:
            self.nick_time = now
        self.nick = nick
        self.nick_cf = nick_cf
        self.update_prefix()

    def update_prefix(self) -> None:
        self.prefix = f"{self.nick}!{self.user or '*'}@{self.host}"

    def has(self, cap: int) -> bool:
        return bool(self.capmask & cap)
