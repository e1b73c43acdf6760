"""What salon keeps, as frozen records, and the small interfaces that keep them.

The core never touches a database: it holds what it needs in memory, loaded at start,
and asks its shell to run store calls (effects) for writes and for reads it cannot answer
from memory (history). Implementations: :mod:`salon.store.memory` (tests) and
:mod:`salon.store.sqlite` (the data directory's ``salon.db``).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any, NamedTuple, Protocol


@dataclass(frozen=True, slots=True)
class ScramCredentials:
    """RFC 5802/7677: what the server keeps instead of the password."""

    salt: bytes
    iterations: int
    stored_key: bytes
    server_key: bytes


@dataclass(frozen=True, slots=True)
class AccountRecord:
    name: str
    password_hash: str  # argon2id
    scram: ScramCredentials | None = None
    email: str = ""
    verified: bool = True
    created: float = 0.0
    certfps: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class ListRecord:
    mask: str
    setter: str
    time: int


def list_records(entries: Iterable[Sequence[Any]]) -> tuple[ListRecord, ...]:
    """A channel's ban, exception or invite list as a ChannelRecord holds it, from its
    entries as (mask, setter, time)."""
    return tuple(ListRecord(str(mask), str(setter), int(at)) for mask, setter, at in entries)


@dataclass(frozen=True, slots=True)
class ChannelRecord:
    """A registered channel: what survives a restart."""

    name: str
    founder: str
    created: float
    topic: str = ""
    topic_by: str = ""
    topic_time: int = 0
    modes: str = "nt"
    key: str | None = None
    limit: int | None = None
    bans: tuple[ListRecord, ...] = ()
    excepts: tuple[ListRecord, ...] = ()
    invex: tuple[ListRecord, ...] = ()
    # account (casefolded) -> access level: "o" (AMODE op) or "v" (voice)
    access: tuple[tuple[str, str], ...] = ()
    topiclock: bool = False
    # draft/metadata-3 keys (key, value), sorted by key
    metadata: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True, slots=True)
class ServerBan:
    """A K-line (``user@host`` mask) or D-line (IP or CIDR), with optional expiry."""

    kind: str  # "K" or "D"
    mask: str
    reason: str
    setter: str
    created: float
    expires: float | None = None  # unix time, None = permanent


@dataclass(frozen=True, slots=True)
class FileRecord:
    """An uploaded file (docs/files.md): its bytes are the blob named by their sha256."""

    id: str  # 128 random bits, lowercase base32: the URL's, unrelated to the content
    blob: str  # sha256, hex
    size: int
    type: str  # the Content-Type sniffed from the bytes
    name: str  # the sanitized file name
    owner: str  # the uploader's account, casefolded ("" for a guest)
    created: float
    deleted: float = 0.0  # when it was deleted (0: it is not): it answers 410 from then on
    owner_nick: str = ""


class FileRef(NamedTuple):
    """A message that posted a file's URL in a conversation (files follow history)."""

    file: str
    target: str  # the conversation key, as HistoryEvent.target
    msgid: str
    time: float


class HistoryEvent(NamedTuple):
    """One stored event of a conversation (a named tuple: one is made per message, and
    tuples are the cheapest immutable records Python has).

    ``target`` is the conversation key: a casefolded channel name, or for private
    messages the two casefolded correspondents sorted and joined with a space.
    """

    msgid: str
    time: float
    target: str
    command: str  # PRIVMSG NOTICE TAGMSG JOIN PART QUIT KICK TOPIC MODE NICK
    source: str  # nick!user@host
    account: str | None
    params: tuple[str, ...]
    tags: tuple[tuple[str, str], ...] = ()
    # For private messages, the sender's side of the conversation key, and the display
    # target (the recipient's nick as sent) when the store should (re)record who the
    # correspondents are for CHATHISTORY TARGETS; empty when that is already known.
    display: str = ""
    party: str = ""

    @property
    def text(self) -> str:
        return self.params[-1] if self.params else ""


@dataclass(frozen=True, slots=True)
class HistoryQuery:
    """A window of one conversation. Bounds are exclusive unix times; ``None`` is open.

    ``newest_first`` picks the ``limit`` events closest to ``end`` (LATEST, BEFORE),
    otherwise closest to ``start`` (AFTER). Results always come oldest first.
    """

    target: str
    start: float | None = None
    end: float | None = None
    limit: int = 100
    # With a msgid reference, events of the same millisecond are ordered by their position
    # in the conversation (``history_position``): these break the tie at a bound.
    start_seq: int | None = None
    end_seq: int | None = None
    newest_first: bool = True
    events: bool = True  # include JOIN/PART/... (draft/event-playback)
    # Inclusive lower bound the reader may not go below (see history.private_floor).
    since: float | None = None


@dataclass(frozen=True, slots=True)
class SearchQuery:
    text: str
    targets: tuple[str, ...]  # the conversation keys the asker may read
    sender: str | None = None  # casefolded nick
    start: float | None = None
    end: float | None = None
    limit: int = 50
    # Private conversations (not channels) only from this time on (history.private_floor).
    private_since: float | None = None


class PurgeProgress(NamedTuple):
    """How far a purge step went: events removed, and the conversation key to go on from
    (None: done)."""

    removed: int
    next: str | None


class AccountStore(Protocol):
    def load_accounts(self) -> list[AccountRecord]: ...
    def save_account(self, record: AccountRecord) -> None: ...
    def delete_account(self, name: str) -> None: ...


class ChannelStore(Protocol):
    def load_channels(self) -> list[ChannelRecord]: ...
    def save_channel(self, record: ChannelRecord) -> None: ...
    def delete_channel(self, name: str) -> None: ...


class BanStore(Protocol):
    def load_server_bans(self) -> list[ServerBan]: ...
    def save_server_ban(self, ban: ServerBan) -> None: ...
    def delete_server_ban(self, kind: str, mask: str) -> None: ...


class MarkerStore(Protocol):
    def load_read_markers(self) -> list[tuple[str, str, float]]: ...
    def set_read_marker(self, account: str, target: str, time: float) -> None: ...


class PrivateChannelStore(Protocol):
    """The unregistered channels that are secret, invite-only or keyed now: their history
    goes with them (Server.remove_channel), and after a crash, at the next start."""

    def load_private_channels(self) -> list[str]: ...
    def set_private_channel(self, cf: str, private: bool) -> None: ...


class RejoinStore(Protocol):
    """The channels an account's last session was in (accounts.rejoin)."""

    def load_rejoins(self) -> list[tuple[str, list[str]]]: ...
    def set_rejoin(self, account: str, channels: Sequence[str]) -> None: ...


class MetadataStore(Protocol):
    """draft/metadata-3 keys of accounts (casefolded names): what a user set comes back
    when it logs in again."""

    def load_metadata(self) -> list[tuple[str, str, str]]: ...
    def set_metadata(self, account: str, key: str, value: str | None) -> None: ...


class FileStore(Protocol):
    """The file host's metadata; the blobs live under the data directory (net.filehost)."""

    def load_files(self) -> list[FileRecord]: ...
    def load_file_refs(self) -> list[FileRef]: ...
    def save_file(self, record: FileRecord) -> None: ...
    def forget_file(self, file_id: str) -> None: ...
    def add_file_refs(self, refs: Sequence[FileRef]) -> None: ...
    def delete_file_refs(self, target: str, msgid: str | None = None) -> None: ...
    def delete_refs_of_file(self, file_id: str) -> None: ...


class HistoryReader(Protocol):
    """The history reads: what a store answers, and each of its readers (``reader()``,
    when it has them) too."""

    def history(self, query: HistoryQuery) -> list[HistoryEvent]: ...
    def history_time_of(self, target: str, msgid: str) -> float | None: ...
    def history_position(self, target: str, msgid: str) -> tuple[float, int] | None: ...
    def history_targets(
        self,
        targets: Sequence[str],
        start: float,
        end: float,
        limit: int,
        private_since: float | None = None,
    ) -> list[tuple[str, float]]: ...
    def dm_partners(self, party: str) -> list[tuple[str, str]]: ...
    def history_event(self, target: str, msgid: str) -> HistoryEvent | None: ...
    def search_history(self, query: SearchQuery) -> list[HistoryEvent]: ...


class HistoryStore(HistoryReader, Protocol):
    def append_history(self, events: Sequence[HistoryEvent]) -> None: ...
    def rename_history(self, old: str, new: str) -> None: ...
    def redact_history(self, target: str, msgid: str) -> bool: ...
    def purge_history(
        self, before: float, target: str | None = None, exclude: Sequence[str] = ()
    ) -> int: ...
    def purge_step(
        self,
        before: float,
        target: str | None = None,
        exclude: Sequence[str] = (),
        after: str = "",
        most: int = ...,
    ) -> PurgeProgress: ...


class Store(
    AccountStore,
    ChannelStore,
    BanStore,
    MarkerStore,
    RejoinStore,
    MetadataStore,
    PrivateChannelStore,
    FileStore,
    HistoryStore,
    Protocol,
):
    """Everything, plus grouping of writes: one transaction per event-loop turn."""

    def transaction(self) -> AbstractContextManager[None]: ...
    def close(self) -> None: ...


def msgid_time(msgid: str) -> float | None:
    """The stored time (unix seconds) of the message a msgid names, when the msgid carries
    it (salon's msgids start with their millisecond in 11 hex digits); None otherwise."""
    head = msgid[:11]
    if len(msgid) < 12 or not all(c in "0123456789abcdef" for c in head):
        return None
    return int(head, 16) / 1000


def dm_key(a: str, b: str) -> str:
    """The conversation key of two parties (casefolded nicks, or ``~account``)."""
    return f"{a} {b}" if a <= b else f"{b} {a}"


def dm_other(key: str, party: str) -> str:
    """The other party of a conversation key."""
    a, _, b = key.partition(" ")
    return b if a == party else a


def is_dm(target: str) -> bool:
    return " " in target


class PurgeSteps(Protocol):
    def purge_step(
        self, before: float, target: str | None, exclude: Sequence[str], after: str
    ) -> PurgeProgress: ...


def purge_all(store: PurgeSteps, before: float, target: str | None, exclude: Sequence[str]) -> int:
    """Everything a store's purge steps remove, step after step (a database's
    purge_history: at start, and in tests)."""
    removed, after = 0, ""
    while True:
        step = store.purge_step(before, target, exclude, after)
        removed += step.removed
        if step.next is None:
            return removed
        after = step.next
