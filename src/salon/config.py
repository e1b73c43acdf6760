"""Typed, validated, immutable configuration.

The reference for every key is ``salon.example.toml`` beside this module. A config is
loaded and validated once (:func:`load`); any problem raises :class:`ConfigError` with the
key and the reason, which the CLI prints as one line.
"""

from __future__ import annotations

import ipaddress
import math
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any, TypeVar

from salon.errors import ConfigError
from salon.proto.casemap import casefold
from salon.proto.names import valid_channel

EXAMPLE_PATH = Path(__file__).with_name("salon.example.toml")

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True, slots=True)
class ServerSection:
    name: str = "salon.local"
    network: str = "salon"
    description: str = "salon chat server"
    data_dir: str = "salon-data"
    motd: str = "Welcome to salon. Be kind."
    motd_file: str = ""
    password: str = ""
    default_channel: str = "#lobby"


@dataclass(frozen=True, slots=True)
class ListenSection:
    host: str = "127.0.0.1"
    irc_port: int = 6667
    plain_port: int = 6000
    tls_port: int = 6697
    # HTTP: the web client (salon.web) and IRC over WebSocket (IRCv3 websocket, any path).
    http_port: int = 8080
    # The same over TLS (wss://), with the certificate of [tls]. Off by default: browsers
    # refuse the self-signed certificate salon makes when none is configured.
    https_port: int = 0
    # Web pages whose scripts may open a WebSocket here (their Origin); () allows any.
    http_origins: tuple[str, ...] = ()
    # Reverse proxies whose X-Forwarded-For (the client's address) and X-Forwarded-Proto
    # (https: the client's leg is TLS) are believed, on the HTTP listener.
    http_proxies: tuple[Network, ...] = (
        ipaddress.ip_network("127.0.0.0/8"),
        ipaddress.ip_network("::1/128"),
    )
    # Plain HTTP requests (not WebSocket upgrades) per network of [connections]: a bucket
    # of http_request_burst, refilled at http_request_rate a second; burst 0 = no limit.
    http_request_burst: int = 60
    http_request_rate: float = 1.0


# The listeners' ports, in [listen]; 0 turns one off.
PORT_KEYS = ("irc_port", "tls_port", "plain_port", "http_port", "https_port")


# A line of just one of these leaves the plain-text port. "over" is how a conversation
# ends in the classic line chats salon grew from.
LEAVE_WORDS = ("bye", "quit", "exit", "over")


@dataclass(frozen=True, slots=True)
class PlainSection:
    # Matched whatever the case of the line: stored in lower case.
    leave_words: tuple[str, ...] = LEAVE_WORDS


@dataclass(frozen=True, slots=True)
class TlsSection:
    # PEM files; both empty: a self-signed certificate generated into the data directory.
    cert: str = ""
    key: str = ""
    # IRCv3 STS, advertised only with a configured (not self-signed) certificate.
    sts: bool = True
    sts_duration: int = 2592000


@dataclass(frozen=True, slots=True)
class ConnectionsSection:
    # Per network of cidr_ipv4/cidr_ipv6 bits: concurrent connections (0 = no limit), and
    # new connections per throttle_window seconds (0 = no throttle).
    max_per_ip: int = 16
    throttle: int = 32
    throttle_window: float = 600.0
    cidr_ipv4: int = 32
    cidr_ipv6: int = 64
    exempt: tuple[Network, ...] = (
        ipaddress.ip_network("127.0.0.0/8"),
        ipaddress.ip_network("::1/128"),
    )


@dataclass(frozen=True, slots=True)
class CloakSection:
    enabled: bool = True
    suffix: str = "salon"


@dataclass(frozen=True, slots=True)
class LimitsSection:
    nicklen: int = 30
    channellen: int = 64
    topiclen: int = 390
    awaylen: int = 390
    kicklen: int = 390
    userlen: int = 18
    realnamelen: int = 128
    max_channels: int = 100
    max_list_entries: int = 100
    monitor: int = 100
    max_targets: int = 4
    sendq: int = 1048576
    recvq: int = 16384
    registration_timeout: float = 60.0
    ping_interval: float = 120.0
    ping_timeout: float = 60.0
    whowas: int = 1000


@dataclass(frozen=True, slots=True)
class FloodSection:
    enabled: bool = True
    rate: float = 2.0
    burst: int = 16
    exempt: tuple[Network, ...] = ()
    # Channel flood protection (per member and channel); 0 messages turns it off.
    channel_messages: int = 10
    channel_period: float = 5.0
    channel_mute: float = 30.0


@dataclass(frozen=True, slots=True)
class LogSection:
    level: str = "info"
    messages: bool = False


@dataclass(frozen=True, slots=True)
class HistorySection:
    enabled: bool = True
    replay_lines: int = 20
    retention_days: float = 0.0
    # channel (casefolded) -> retention days; overrides retention_days for that channel
    channel_retention: tuple[tuple[str, float], ...] = ()
    chathistory_limit: int = 1000
    query_budget: float = 0.05
    multiline_max_bytes: int = 4096
    multiline_max_lines: int = 100


@dataclass(frozen=True, slots=True)
class AccountsSection:
    enabled: bool = True
    registration: bool = True
    registration_before_connect: bool = True
    registration_requires_email: bool = False
    registration_throttle: int = 5
    registration_throttle_period: float = 600.0
    password_min_length: int = 8
    login_failures_per_account: int = 5
    login_failures_per_ip: int = 10
    login_throttle_period: float = 60.0
    nick_enforce_timeout: float = 30.0
    guest_prefix: str = "Guest"
    scram_iterations: int = 4096
    verify_timeout: float = 86400.0
    services_server: str = ""
    rejoin: bool = True


@dataclass(frozen=True, slots=True)
class MetadataSection:
    enabled: bool = True
    max_subs: int = 50
    max_keys: int = 20
    max_value_bytes: int = 300
    # Changes (SET, CLEAR) a client may make per rate_period seconds.
    rate_changes: int = 10
    rate_period: float = 10.0


@dataclass(frozen=True, slots=True)
class ClusterSection:
    """[cluster]: this server is one node of a network on a Redis bus (issue 19)."""

    redis: str = ""
    node: str = ""
    prefix: str = "salon"
    node_ttl: float = 3.0
    log_maxlen: int = 1000000
    # Seconds a node keeps its clients while Redis cannot be reached (or while it comes
    # back after a restart); then it closes them with an ERROR line and exits 3.
    redis_grace: float = 30.0
    # Entries of this node that may wait for their turn (Redis away); beyond, commands
    # that change something are refused with FAIL ... TEMPORARILY_UNAVAILABLE.
    max_waiting: int = 20000


@dataclass(frozen=True, slots=True)
class FilesSection:
    """The file host (soju.im/FILEHOST) on the HTTP listeners: docs/files.md."""

    enabled: bool = True
    # Who may upload: "accounts" (logged-in users) or "everyone" (guests too, by token).
    who: str = "accounts"
    # The base URL the upload and file URLs start with (scheme://host[:port], no path);
    # empty: WebSocket clients get the one they connected to, TCP clients none.
    public_url: str = ""
    # Who may read a file: "history" (whoever may read a conversation it was posted in;
    # the link alone for public channels), or "anyone" (every link is enough).
    link_access: str = "history"
    max_size: int = 50 << 20
    quota: int = 1 << 30
    # Free bytes the data disk keeps; also at least min_free_percent of it.
    min_free: int = 2 << 30
    min_free_percent: float = 5.0
    uploads_per_hour: int = 60
    bytes_per_day: int = 500 << 20
    # Hours an upload that no message posted is kept; days any file is kept (0: no cap).
    unclaimed_hours: float = 24.0
    max_age_days: float = 0.0
    strip_metadata: bool = True
    delete_with_account: bool = True
    # Web pages (origins) whose scripts may upload here (CORS); [] allows any.
    allowed_origins: tuple[str, ...] = ()
    # Where the files' bytes live; empty: data_dir/files. The nodes of a cluster share
    # one: a directory every node mounts (docs/files.md, "Across cluster nodes").
    dir: str = ""


@dataclass(frozen=True, slots=True)
class PostgresSection:
    """Where the store lives when not in the data directory's SQLite file. Either ``dsn``
    (a libpq connection string or URI) or ``host`` with the other keys."""

    dsn: str = ""
    host: str = ""
    port: int = 5432
    dbname: str = "salon"
    user: str = "salon"
    # The password: read from this file (its first line), or this environment variable;
    # neither: none (trust, peer, or ~/.pgpass).
    password_file: str = ""
    password_env: str = ""
    connect_timeout: float = 5.0
    # How long a lost connection is retried (messages wait meanwhile) before messages are
    # refused with MESSAGE_NOT_STORED.
    retry_for: float = 15.0
    # Connections (and threads) that serve history reads beside the writer's.
    readers: int = 2


@dataclass(frozen=True, slots=True)
class OperBlock:
    name: str
    password: str
    hostmask: str = "*"


@dataclass(frozen=True, slots=True)
class Config:
    server: ServerSection = field(default_factory=ServerSection)
    listen: ListenSection = field(default_factory=ListenSection)
    plain: PlainSection = field(default_factory=PlainSection)
    tls: TlsSection = field(default_factory=TlsSection)
    connections: ConnectionsSection = field(default_factory=ConnectionsSection)
    cloak: CloakSection = field(default_factory=CloakSection)
    limits: LimitsSection = field(default_factory=LimitsSection)
    flood: FloodSection = field(default_factory=FloodSection)
    log: LogSection = field(default_factory=LogSection)
    history: HistorySection = field(default_factory=HistorySection)
    accounts: AccountsSection = field(default_factory=AccountsSection)
    metadata: MetadataSection = field(default_factory=MetadataSection)

    files: FilesSection = field(default_factory=FilesSection)
    opers: tuple[OperBlock, ...] = ()
    # None: no [cluster] section, one process (and redis is never imported).
    cluster: ClusterSection | None = None
    # None: no [postgres] section, the store is the data directory's SQLite file.
    postgres: PostgresSection | None = None

    @property
    def data_path(self) -> Path:
        return Path(self.server.data_dir)

    @property
    def files_path(self) -> Path:
        """Where the file host keeps its blobs (files.dir, relative to data_dir)."""
        return self.data_path / (self.files.dir or "files")

    def motd_lines(self) -> list[str]:
        """The MOTD text, read from motd_file when set, else the inline text."""
        text = self.server.motd
        if self.server.motd_file:
            try:
                text = Path(self.server.motd_file).read_text(encoding="utf-8")
            except OSError as exc:
                raise ConfigError(f"server.motd_file: cannot read: {exc.strerror}") from None
            except UnicodeDecodeError:
                raise ConfigError("server.motd_file: not valid UTF-8 text") from None
        return text.splitlines()

    def with_overrides(self, **overrides: Any) -> Config:
        """A copy with ``section__key=value`` overrides applied (used by CLI flags)."""
        sections: dict[str, Any] = {}
        for key, value in overrides.items():
            if value is None:
                continue
            section, _, name = key.partition("__")
            current = sections.get(section, getattr(self, section))
            sections[section] = replace(current, **{name: value})
        cfg = replace(self, **sections)
        validate(cfg)
        return cfg


_T = TypeVar("_T")

_LEVELS = ("debug", "info", "warning", "error")
_ORIGIN = re.compile(r"https?://[^/\s?#]+")
_SERVER_NAME = re.compile(r"[A-Za-z0-9_-]+(?:\.[A-Za-z0-9_-]+)+")


def _section(cls: type[_T], name: str, raw: Any) -> _T:
    if raw is None:
        return cls()
    if not isinstance(raw, Mapping):
        raise ConfigError(f"[{name}] must be a table")
    known = {f.name: f for f in fields(cls)}  # type: ignore[arg-type]
    values: dict[str, Any] = {}
    for key, value in raw.items():
        if key not in known:
            raise ConfigError(f"{name}.{key}: unknown key (see salon.example.toml)")
        if key == "channel_retention":
            values[key] = _retention(f"{name}.{key}", value)
            continue
        if key in ("http_origins", "allowed_origins"):
            values[key] = _origins(f"{name}.{key}", value)
            continue
        if key == "leave_words":
            values[key] = _words(f"{name}.{key}", value)
            continue
        default = getattr(cls(), key) if key != "exempt" else ()
        values[key] = _coerce(f"{name}.{key}", value, default)
    return cls(**values)


def _origins(where: str, value: Any) -> tuple[str, ...]:
    """Web origins as browsers send them: ``scheme://host[:port]``, no path."""
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ConfigError(f'{where}: expected a list like ["https://chat.example.org"]')
    for origin in value:
        if not _ORIGIN.fullmatch(origin):
            raise ConfigError(
                f"{where}: {origin!r} is not an origin (scheme://host or scheme://host:port)"
            )
    return tuple(value)


def _words(where: str, value: Any) -> tuple[str, ...]:
    """A list of words, in lower case (they are matched whatever their case)."""
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ConfigError(f'{where}: expected a list of words like ["bye", "over"]')
    return tuple(v.lower() for v in value)


def _retention(where: str, value: Any) -> tuple[tuple[str, float], ...]:
    """``{ "#channel" = days, ... }`` as casefolded pairs."""
    if not isinstance(value, Mapping):
        raise ConfigError(f'{where}: expected a table like {{ "#channel" = 7 }}')
    out = []
    for chan, days in value.items():
        if not isinstance(chan, str) or not chan.startswith("#"):
            raise ConfigError(f"{where}: {chan!r} is not a channel name")
        if isinstance(days, bool) or not isinstance(days, int | float) or days < 0:
            raise ConfigError(f"{where}.{chan}: expected a number of days (0 = forever)")
        out.append((casefold(chan), float(days)))
    return tuple(out)


def _coerce(where: str, value: Any, default: Any) -> Any:
    if isinstance(default, bool):
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: expected true or false, got {value!r}")
        return value
    if isinstance(default, int):
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where}: expected a whole number, got {value!r}")
        return value
    if isinstance(default, float):
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(f"{where}: expected a number, got {value!r}")
        if not math.isfinite(value):
            raise ConfigError(f"{where}: expected a finite number, got {value!r}")
        return float(value)
    if isinstance(default, str):
        if not isinstance(value, str):
            raise ConfigError(f"{where}: expected a string, got {value!r}")
        if "\0" in value:
            raise ConfigError(f"{where}: must not contain a NUL character")
        return value
    if isinstance(default, tuple):
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise ConfigError(f"{where}: expected a list of CIDR strings")
        try:
            return tuple(ipaddress.ip_network(v, strict=False) for v in value)
        except ValueError as exc:
            raise ConfigError(f"{where}: {exc}") from None
    raise ConfigError(f"{where}: unsupported value")  # pragma: no cover


def _opers(raw: Any) -> tuple[OperBlock, ...]:
    if raw is None:
        return ()
    if not isinstance(raw, list):
        raise ConfigError("[[oper]] must be an array of tables")
    blocks = []
    for i, item in enumerate(raw):
        where = f"oper[{i}]"
        if not isinstance(item, Mapping):
            raise ConfigError(f"{where}: must be a table")
        unknown = set(item) - {"name", "password", "hostmask"}
        if unknown:
            raise ConfigError(f"{where}.{sorted(unknown)[0]}: unknown key")
        name = item.get("name")
        password = item.get("password")
        if not isinstance(name, str) or not name:
            raise ConfigError(f"{where}.name: required")
        if not isinstance(password, str) or not password.startswith("$argon2"):
            raise ConfigError(
                f"{where}.password: must be an argon2 hash (make one with: salon hash-password)"
            )
        hostmask = item.get("hostmask", "*")
        if not isinstance(hostmask, str):
            raise ConfigError(f"{where}.hostmask: expected a string")
        blocks.append(OperBlock(name, password, hostmask))
    return tuple(blocks)


def validate(cfg: Config) -> None:
    """Cross-field and range checks; raises ConfigError."""
    for key in PORT_KEYS:
        port = getattr(cfg.listen, key)
        if not 0 <= port <= 65535:
            raise ConfigError(f"listen.{key}: {port} is not a port number (0 to 65535)")
    if not _SERVER_NAME.fullmatch(cfg.server.name):
        raise ConfigError(
            f"server.name: {cfg.server.name!r} must be a dotted name without spaces, "
            "like chat.example.org"
        )
    # These end up inside IRC lines: no CR, LF, NUL or other control characters.
    for key in ("network", "description", "password", "default_channel"):
        value = getattr(cfg.server, key)
        if any(ord(ch) < 32 or ord(ch) == 127 for ch in value):
            raise ConfigError(f"server.{key}: must not contain control characters")
    # Flags (--data-dir, --host, ...) skip _coerce: check their strings here too.
    for where, value in (
        ("server.data_dir", cfg.server.data_dir),
        ("listen.host", cfg.listen.host),
    ):
        if "\0" in value:
            raise ConfigError(f"{where}: must not contain a NUL character")
    if not cfg.server.data_dir.strip():
        raise ConfigError("server.data_dir: must not be empty")
    if not cfg.listen.host.strip():
        # An empty host would make asyncio listen on every interface: say so instead.
        raise ConfigError(
            "listen.host: must not be empty (0.0.0.0 or :: listens on every interface)"
        )
    if not any(getattr(cfg.listen, key) for key in PORT_KEYS):
        raise ConfigError(f"listen: {', '.join(PORT_KEYS)} are all 0: no listener is on")
    ports: dict[int, str] = {}
    for key in PORT_KEYS:
        port = getattr(cfg.listen, key)
        if port and port in ports:
            raise ConfigError(f"listen.{key}: port {port} is also listen.{ports[port]}")
        ports[port] = key
    if not cfg.server.network or " " in cfg.server.network:
        raise ConfigError("server.network: must be a non-empty word")
    lim = cfg.limits
    _check_ranges(
        "limits",
        lim,
        {
            "nicklen": (9, 64),
            "channellen": (2, 200),
            "topiclen": (1, 400),
            "awaylen": (1, 400),
            "kicklen": (1, 400),
            "userlen": (1, 64),
            "realnamelen": (1, 400),
            "max_channels": (1, 10000),
            "max_list_entries": (1, 10000),
            "monitor": (0, 10000),
            "max_targets": (1, 100),
            "sendq": (4096, 1 << 30),
            "recvq": (1024, 1 << 26),
            "whowas": (0, 1000000),
        },
    )
    # Checked as JOIN checks a name, so that every front door can join it.
    dc = cfg.server.default_channel
    if not valid_channel(dc, lim.channellen):
        raise ConfigError(
            f"server.default_channel: {dc!r} is not a channel name ('#', then at most "
            f"{lim.channellen - 1} characters without spaces, commas or control characters)"
        )
    _check_ranges(
        "history",
        cfg.history,
        {
            "replay_lines": (0, 1000),
            "retention_days": (0, 100000),
            "chathistory_limit": (1, 1000000),
            "query_budget": (0.001, 60),
            "multiline_max_bytes": (512, 1 << 20),
            "multiline_max_lines": (1, 10000),
        },
    )
    for key in ("registration_timeout", "ping_interval", "ping_timeout"):
        if getattr(lim, key) <= 0:
            raise ConfigError(f"limits.{key}: must be positive")
    if not 0 <= cfg.listen.http_request_burst <= 1000000:
        raise ConfigError("listen.http_request_burst: out of range (0 to 1000000)")
    if not 0 < cfg.listen.http_request_rate <= 1000000:
        raise ConfigError("listen.http_request_rate: must be positive (at most 1000000)")
    if cfg.flood.rate <= 0 or cfg.flood.burst < 1:
        raise ConfigError("flood: rate must be positive and burst at least 1")
    for word in cfg.plain.leave_words:
        # Each is matched against a whole line (trimmed of blanks) and listed in the
        # greeting and /help: one visible word, nothing a terminal cannot show.
        if not word or len(word) > 50:
            raise ConfigError(f"plain.leave_words: {word!r} must be 1 to 50 characters")
        if not word.isprintable() or any(ch.isspace() for ch in word):
            raise ConfigError(
                f"plain.leave_words: {word!r} must not contain spaces, control or invisible characters"
            )
    _validate_accounts(cfg)
    _validate_network(cfg)
    _check_ranges(
        "metadata",
        cfg.metadata,
        {
            "max_subs": (1, 1000),
            "max_keys": (1, 1000),
            # A value travels in a 761 line with the server name, nick, target and key:
            # it must leave them room in the 512 bytes of an IRC line.
            "max_value_bytes": (1, 400),
            "rate_changes": (1, 1000000),
            "rate_period": (0.001, 86400),
        },
    )
    if cfg.cluster is not None:
        _validate_cluster(cfg.cluster)
    _validate_files(cfg)
    if cfg.postgres is not None:
        _validate_postgres(cfg.postgres)
    if cfg.log.level not in _LEVELS:
        raise ConfigError(f"log.level: {cfg.log.level!r} is not one of {', '.join(_LEVELS)}")


def _check_ranges(section: str, values: Any, ranges: dict[str, tuple[float, float]]) -> None:
    """Each named key of a section within its (inclusive) range, or ConfigError."""
    for key, (lo, hi) in ranges.items():
        v = getattr(values, key)
        if not lo <= v <= hi:
            raise ConfigError(f"{section}.{key}: {v} is out of range ({lo} to {hi})")


def _validate_accounts(cfg: Config) -> None:
    acc = cfg.accounts
    _check_ranges(
        "accounts",
        acc,
        {
            "registration_throttle": (0, 1000000),
            "password_min_length": (1, 600),
            "login_failures_per_account": (0, 1000000),
            "login_failures_per_ip": (0, 1000000),
            "scram_iterations": (4096, 1000000),
        },
    )
    for key in ("registration_throttle_period", "login_throttle_period", "verify_timeout"):
        if getattr(acc, key) <= 0:
            raise ConfigError(f"accounts.{key}: must be positive")
    if acc.nick_enforce_timeout < 0:
        raise ConfigError("accounts.nick_enforce_timeout: must not be negative")
    prefix = acc.guest_prefix
    if not (
        1 <= len(prefix) <= 20 and prefix[0].isalpha() and prefix.isascii() and prefix.isalnum()
    ):
        raise ConfigError(
            "accounts.guest_prefix: 1 to 20 letters and digits, starting with a letter"
        )
    if acc.services_server and not _SERVER_NAME.fullmatch(acc.services_server):
        raise ConfigError(
            "accounts.services_server: must be a dotted name like services.example.org"
        )
    fl = cfg.flood
    if fl.channel_messages < 0 or fl.channel_period <= 0 or fl.channel_mute < 0:
        raise ConfigError(
            "flood: channel_messages must not be negative, channel_period must be positive"
        )


def _validate_files(cfg: Config) -> None:
    fs = cfg.files
    if fs.who not in ("accounts", "everyone"):
        raise ConfigError(f'files.who: {fs.who!r} is not "accounts" or "everyone"')
    if fs.link_access not in ("history", "anyone"):
        raise ConfigError(f'files.link_access: {fs.link_access!r} is not "history" or "anyone"')
    if fs.public_url and not _ORIGIN.fullmatch(fs.public_url):
        raise ConfigError(
            f"files.public_url: {fs.public_url!r} must be scheme://host or scheme://host:port"
        )
    _check_ranges(
        "files",
        fs,
        {
            "max_size": (1, 1 << 40),
            "quota": (0, 1 << 50),
            "min_free": (0, 1 << 50),
            "min_free_percent": (0, 99),
            "uploads_per_hour": (0, 1000000),
            "bytes_per_day": (0, 1 << 50),
            "unclaimed_hours": (0.001, 1000000),
            "max_age_days": (0, 1000000),
        },
    )


_HOST_LABELS = re.compile(r"[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*")


def _validate_network(cfg: Config) -> None:
    """[tls], [connections] and [cloak]."""
    tls = cfg.tls
    if bool(tls.cert) != bool(tls.key):
        raise ConfigError("tls: set both cert and key (or neither, for a self-signed one)")
    if tls.cert and cfg.listen.tls_port:
        for key in ("cert", "key"):
            path = Path(getattr(tls, key))
            if not path.is_file():
                raise ConfigError(f"tls.{key}: {path} is not a file")
    if not 0 <= tls.sts_duration <= 10 * 365 * 86400:
        raise ConfigError("tls.sts_duration: out of range (0 to 10 years in seconds)")
    con = cfg.connections
    _check_ranges(
        "connections",
        con,
        {
            "max_per_ip": (0, 1000000),
            "throttle": (0, 1000000),
            "cidr_ipv4": (8, 32),
            "cidr_ipv6": (16, 128),
        },
    )
    if con.throttle_window <= 0:
        raise ConfigError("connections.throttle_window: must be positive")
    suffix = cfg.cloak.suffix
    if not (1 <= len(suffix) <= 40 and _HOST_LABELS.fullmatch(suffix)):
        raise ConfigError(f"cloak.suffix: {suffix!r} must be 1 to 40 letters, digits, '-' and dots")


_REDIS_URL = re.compile(r"(?:rediss?|unix)://\S+")
_KEY_PREFIX = re.compile(r"[A-Za-z0-9_.:-]{1,64}")


def _validate_cluster(cluster: ClusterSection) -> None:
    if not _REDIS_URL.fullmatch(cluster.redis):
        raise ConfigError(
            f"cluster.redis: {cluster.redis!r} must be a Redis URL such as "
            "redis://127.0.0.1:6379/0 (rediss:// for TLS, unix:// for a socket)"
        )
    node = cluster.node
    if len(node) > 64 or not node.isprintable() or any(ch.isspace() for ch in node):
        raise ConfigError(f"cluster.node: {node!r} must be at most 64 characters, without spaces")
    if not _KEY_PREFIX.fullmatch(cluster.prefix):
        raise ConfigError(
            f"cluster.prefix: {cluster.prefix!r} must be 1 to 64 letters, digits and _.:-"
        )
    _check_ranges(
        "cluster",
        cluster,
        {
            "node_ttl": (1, 60),
            "log_maxlen": (1000, 100000000),
            "redis_grace": (1, 3600),
            "max_waiting": (100, 10000000),
        },
    )


_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def _validate_postgres(pg: PostgresSection) -> None:
    if bool(pg.dsn) == bool(pg.host):
        raise ConfigError("postgres: set either dsn or host (with port, dbname, user)")
    if pg.dsn and (pg.port != 5432 or pg.dbname != "salon" or pg.user != "salon"):
        raise ConfigError("postgres: port, dbname and user go with host, not with dsn")
    for key in ("dsn", "host", "dbname", "user"):
        if any(ord(ch) < 32 for ch in getattr(pg, key)):
            raise ConfigError(f"postgres.{key}: must not contain control characters")
    if pg.host and not (pg.dbname and pg.user):
        raise ConfigError("postgres: dbname and user must not be empty")
    if pg.password_file and pg.password_env:
        raise ConfigError("postgres: set password_file or password_env, not both")
    if pg.password_file and not Path(pg.password_file).is_file():
        raise ConfigError(f"postgres.password_file: {pg.password_file} is not a file")
    if pg.password_env and not _ENV_NAME.fullmatch(pg.password_env):
        raise ConfigError(
            f"postgres.password_env: {pg.password_env!r} is not an environment variable name"
        )
    _check_ranges(
        "postgres",
        pg,
        {
            "port": (1, 65535),
            "connect_timeout": (1, 300),
            "retry_for": (0, 3600),
            "readers": (1, 32),
        },
    )


def from_mapping(raw: Mapping[str, Any]) -> Config:
    known = {
        "server",
        "listen",
        "plain",
        "tls",
        "connections",
        "cloak",
        "limits",
        "flood",
        "log",
        "history",
        "accounts",
        "metadata",
        "files",
        "oper",
        "cluster",
        "postgres",
    }
    for key in raw:
        if key not in known:
            raise ConfigError(f"{key}: unknown section (see salon.example.toml)")
    cfg = Config(
        server=_section(ServerSection, "server", raw.get("server")),
        listen=_section(ListenSection, "listen", raw.get("listen")),
        plain=_section(PlainSection, "plain", raw.get("plain")),
        tls=_section(TlsSection, "tls", raw.get("tls")),
        connections=_section(ConnectionsSection, "connections", raw.get("connections")),
        cloak=_section(CloakSection, "cloak", raw.get("cloak")),
        limits=_section(LimitsSection, "limits", raw.get("limits")),
        flood=_section(FloodSection, "flood", raw.get("flood")),
        log=_section(LogSection, "log", raw.get("log")),
        history=_section(HistorySection, "history", raw.get("history")),
        accounts=_section(AccountsSection, "accounts", raw.get("accounts")),
        metadata=_section(MetadataSection, "metadata", raw.get("metadata")),
        files=_section(FilesSection, "files", raw.get("files")),
        opers=_opers(raw.get("oper")),
        cluster=(_section(ClusterSection, "cluster", raw["cluster"]) if "cluster" in raw else None),
        postgres=(
            None
            if raw.get("postgres") is None
            else _section(PostgresSection, "postgres", raw["postgres"])
        ),
    )
    validate(cfg)
    return cfg


def load(path: str | Path | None) -> Config:
    """Load and validate a TOML config file; ``None`` gives the embedded defaults."""
    if path is None:
        return Config()
    try:
        with open(path, "rb") as fh:
            raw = tomllib.load(fh)
    except OSError as exc:
        raise ConfigError(f"{path}: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: invalid TOML: {exc}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: invalid TOML: not valid UTF-8") from None
    return from_mapping(raw)
