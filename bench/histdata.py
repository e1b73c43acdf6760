"""The data of the history-at-scale benchmark (``python -m bench.history``): two years of a
community's chat, made up with realistic distributions and written through the store's
public interface (:mod:`salon.store.base`), so that any store is filled the same way.

- Channels have Zipf-like sizes (the n-th busiest gets a share of the channel messages
  proportional to 1/n) and members; a member's share of a channel's messages is Zipf too.
- Private conversations are pairs of users, who are drawn with a Zipf-like popularity;
  a conversation's share of the private messages is Zipf as well.
- Texts are words drawn from a Zipf vocabulary: a few very common words ("the" is in
  a large share of the messages), a long tail of rare ones. Some messages address a nick,
  hold a link, are NOTICEs, carry a reply tag or are reactions (TAGMSG).
- Channels also hold JOIN, PART and QUIT events (stored for draft/event-playback).
- Timestamps are spread over two years that end when the data is built; msgids are made
  as the server makes them (the millisecond in 11 hex digits, a prefix that changes at
  every restart, a counter), and so are private conversation keys, the sender's party
  and the display names (salon.server.history, handlers/messaging.py).
- Most users have an account (stored with the store's AccountStore interface): private
  conversations are keyed by account, and a user who logs in to one may read them.

:class:`StoreBuilder` is the adapter between this data and a store: it takes any object
with the store's interface (``transaction``, ``append_history``, ``save_account``, and
``maintain`` if the store indexes in the background) and writes the data through it in
commit groups, as the server would. :class:`SQLiteBackend` and :class:`PostgresBackend`
say how to make, measure and serve each store.
"""

from __future__ import annotations

import functools
import hashlib
import itertools
import json
import math
import multiprocessing
import os
import random
import shutil
import subprocess
import tempfile
import time
from bisect import bisect
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

from salon.passwords import hash_password
from salon.proto.casemap import casefold
from salon.store import sqlite as sqlite_store
from salon.store.base import AccountRecord, HistoryEvent, dm_key

# Bumped when the data made from a seed changes: cached data of another version is rebuilt.
DATA_VERSION = 1
PASSWORD = "history-bench-password"  # every account's (one hash, made once)
DAY = 86400.0

# The most frequent words of English chat, most frequent first: the head of the vocabulary.
_COMMON = (
    "the i to a you and it is that of in for this on be so have not but with just do my"
    " what we can if no was are me at like all get yes know it's think out up one there"
    " your about now go good how they don't see here then will from time would well too"
    " some when or he really there's right yeah ok need want thanks make also an because"
    " more people work which new back way only use still even any much code try day said"
    " thing could same other maybe sure problem something lol these before after first"
    " going look again why got help last been very doesn't did where long has into"
    " test issue server data never file change version user message while since over"
)
COMMON_WORDS = tuple(_COMMON.split())
# Pseudo-words of the tail: syllables, so that words share prefixes as real ones do.
_ONSETS = (
    "b", "c", "d", "f", "g", "h", "j", "k", "l", "m", "n", "p", "r", "s", "t", "v", "w", "z",
    "br", "ch", "cl", "cr", "dr", "fl", "gr", "kl", "pl", "pr", "sh", "sk", "sl", "sp", "st",
    "str", "th", "tr",
)  # fmt: skip
_VOWELS = ("a", "e", "i", "o", "u", "a", "e", "i", "o", "ai", "ea", "ou", "io")
_CODAS = ("", "", "", "n", "r", "s", "l", "t", "m", "nd", "rt", "st", "ng", "x")
_URL_HOSTS = ("github.com", "example.org", "docs.python.org", "en.wikipedia.org", "youtu.be")
_QUIT_REASONS = ("Quit: bye", "Ping timeout: 120 seconds", "Quit: leaving", "Remote host closed")
_REACTIONS = ("👍", "😂", "❤️", "🎉", "👀", "+1")


@dataclass(frozen=True)
class Shape:
    """What a data set holds. ``messages`` are PRIVMSG/NOTICE/TAGMSG; channel events
    (JOIN, PART, QUIT) come on top, ``events_share`` of them per message."""

    messages: int
    channels: int = 2000
    users: int = 5000
    conversations: int = 20000  # private conversations
    private_share: float = 0.2  # of the messages
    days: float = 730.0
    events_share: float = 0.1
    account_share: float = 0.8  # users with an account
    vocabulary: int = 100_000
    channel_zipf: float = 1.0
    conversation_zipf: float = 0.8
    word_zipf: float = 1.0
    reader_channels: int = 22  # channels of the user whose TARGETS and SEARCH are measured
    reader_conversations: int = 40  # private conversations of that user (about)
    restart_days: float = 7.0  # the server restarts (a new msgid prefix) this often


SIZES = {"1m": 1_000_000, "10m": 10_000_000}


def shape_for(messages: int) -> Shape:
    """The full shape for 1M messages and more; smaller data sets (smoke runs) get fewer
    channels, users and conversations, in proportion."""
    f = min(1.0, messages / 1_000_000)
    if f >= 1.0:
        return Shape(messages)
    return Shape(
        messages,
        channels=max(30, round(2000 * f)),
        users=max(60, round(5000 * f)),
        conversations=max(120, round(20000 * f)),
        vocabulary=max(5000, round(100_000 * f)),
        reader_conversations=max(5, round(40 * f)),
    )


def parse_size(text: str) -> int:
    """``1m``, ``10m``, ``250k`` or a number of messages."""
    t = text.strip().lower().replace("_", "").replace(",", "")
    if t in SIZES:
        return SIZES[t]
    mult = {"k": 1000, "m": 1_000_000}.get(t[-1:], 1)
    number = t[:-1] if mult > 1 else t
    value = int(float(number) * mult)
    if value < 100:
        raise ValueError(f"too few messages: {text}")
    return value


def size_label(messages: int) -> str:
    if messages % 1_000_000 == 0:
        return f"{messages // 1_000_000}m"
    if messages % 1000 == 0:
        return f"{messages // 1000}k"
    return str(messages)


# HistoryEvent(*fields) without the named tuple's Python-level __new__.
_new_event: Callable[[tuple[Any, ...]], HistoryEvent] = functools.partial(
    tuple.__new__, HistoryEvent
)

# ---------------------------------------------------------------------------- the people


@dataclass
class User:
    nick: str
    account: str | None
    prefix: str  # nick!user@host, as the server makes it (a cloaked host)

    @property
    def party(self) -> str:
        """salon.server.history.party: ``~account`` when logged in, else the nick."""
        return "~" + casefold(self.account) if self.account else casefold(self.nick)


def _word(rng: random.Random, syllables: int) -> str:
    parts = [rng.choice(_ONSETS) + rng.choice(_VOWELS) for _ in range(syllables)]
    return "".join(parts) + rng.choice(_CODAS)


def _unique_words(rng: random.Random, count: int, taken: set[str]) -> list[str]:
    out: list[str] = []
    while len(out) < count:
        w = _word(rng, rng.choice((1, 2, 2, 2, 3, 3, 3, 4)))
        if len(w) >= 3 and w not in taken:
            taken.add(w)
            out.append(w)
    return out


def _cloak(rng: random.Random) -> str:
    return f"{rng.getrandbits(32):08x}.{rng.getrandbits(32):08x}.salon"


def _zipf_cum(n: int, s: float) -> list[float]:
    return list(itertools.accumulate(1.0 / (r**s) for r in range(1, n + 1)))


def _pool(items: Sequence[Any], cum: Sequence[float], size: int = 1 << 22) -> list[Any]:
    """``items`` repeated in proportion to their weights (at least once each), about
    ``size`` entries: drawing an entry at random draws an item with its weight, faster
    than random.choices, and a data set draws one per word."""
    out: list[Any] = []
    prev = 0.0
    scale = size / cum[-1]
    for item, c in zip(items, cum, strict=True):
        out.extend([item] * max(1, round((c - prev) * scale)))
        prev = c
    return out


# ---------------------------------------------------------------------------- the data


@dataclass
class Manifest:
    """What the measurement needs to know about a data set (saved beside it as JSON)."""

    shape: dict[str, Any]
    seed: int
    backend: str = ""
    code: str = ""  # the store code's hash the data was built with
    built: str = ""
    end_time: float = 0.0  # the newest message's time (unix seconds)
    rows: int = 0
    messages: int = 0
    channel_messages: int = 0
    private_messages: int = 0
    events: int = 0
    accounts: int = 0
    reader: dict[str, Any] = field(default_factory=dict)
    busiest: dict[str, Any] = field(default_factory=dict)
    small: dict[str, Any] = field(default_factory=dict)
    words: dict[str, Any] = field(default_factory=dict)
    year_back: list[str] = field(default_factory=list)  # msgids of the busiest channel
    build: dict[str, Any] = field(default_factory=dict)

    def save(self, path: Path) -> None:
        path.write_text(json.dumps(asdict(self), indent=1, ensure_ascii=False) + "\n")

    @classmethod
    def load(cls, path: Path) -> Manifest:
        return cls(**json.loads(path.read_text()))


class Community:
    """The made-up community: users, channels, conversations and vocabulary of a shape,
    all drawn from one seed."""

    def __init__(self, shape: Shape, seed: int) -> None:
        self.shape = shape
        self.seed = seed
        rng = self.rng = random.Random(seed)
        taken: set[str] = set()
        # Users: unique nicks, most with an account named like the nick.
        self.users: list[User] = []
        for nick in _unique_words(rng, shape.users, taken):
            if rng.random() < 0.3:
                nick = nick + str(rng.randrange(100))
            account = nick if rng.random() < shape.account_share else None
            ident = nick[:10]
            self.users.append(User(nick, account, f"{nick}!{ident}@{_cloak(rng)}"))
        popularity = _zipf_cum(shape.users, 0.6)
        # Channels, busiest first, with members (popular users in more of them).
        names = _unique_words(rng, shape.channels, set(taken))
        self.channels = ["#" + n for n in names]
        self.channel_cum = _zipf_cum(shape.channels, shape.channel_zipf)
        self.members: list[list[int]] = []
        for rank in range(shape.channels):
            size = max(3, min(shape.users // 4, round(1200 * (rank + 1) ** -0.6)))
            chosen: dict[int, None] = {}
            while len(chosen) < size:
                for u in rng.choices(range(shape.users), cum_weights=popularity, k=size):
                    chosen[u] = None
            members = list(chosen)[:size]
            rng.shuffle(members)
            self.members.append(members)
        # Private conversations: distinct pairs of users, Zipf-popular ones in more.
        pairs: dict[tuple[int, int], None] = {}
        while len(pairs) < shape.conversations:
            a, b = rng.choices(range(shape.users), cum_weights=popularity, k=2)
            if a != b:
                pairs[(a, b) if a < b else (b, a)] = None
        self.pairs = list(pairs)
        rng.shuffle(self.pairs)
        self.pair_cum = _zipf_cum(len(self.pairs), shape.conversation_zipf)
        # The reader: a user with an account and about reader_conversations conversations,
        # made a member of reader_channels channels from the busiest to the quietest.
        count: dict[int, int] = {}
        for a, b in self.pairs:
            count[a] = count.get(a, 0) + 1
            count[b] = count.get(b, 0) + 1
        with_account = [u for u in count if self.users[u].account]
        self.reader = min(
            with_account, key=lambda u: (abs(count[u] - shape.reader_conversations), u)
        )
        self.reader_conversations = count[self.reader]
        n = min(shape.reader_channels, shape.channels)
        ranks = sorted(
            {round(math.exp(i * math.log(shape.channels) / max(1, n - 1))) - 1 for i in range(n)}
        )
        extra = (r for r in range(shape.channels) if r not in ranks)
        while len(ranks) < n:
            ranks.append(next(extra))
        self.reader_channel_ranks = sorted(ranks)
        for r in self.reader_channel_ranks:
            if self.reader not in self.members[r]:
                self.members[r].insert(len(self.members[r]) // 2, self.reader)
        self.member_cum = [_zipf_cum(len(m), 1.0) for m in self.members]
        # The small channel of SEARCH in=: the reader's nearest to the quietest quarter.
        quarter = shape.channels // 4
        self.small_rank = min(self.reader_channel_ranks, key=lambda r: (abs(r - quarter), r))
        # Vocabulary: common English words, then pseudo-words, shorter ones more frequent.
        tail = _unique_words(rng, shape.vocabulary - len(COMMON_WORDS), set(COMMON_WORDS))
        tail.sort(key=lambda w: len(w) + rng.random() * 6)
        self.vocab = list(COMMON_WORDS) + tail
        self.word_cum = _zipf_cum(len(self.vocab), shape.word_zipf)
        # Words per message: mostly short lines, as chat is.
        self.lengths = list(range(1, 41))
        weights = [n * math.exp(-n / 3.5) for n in self.lengths]
        self.length_cum = list(itertools.accumulate(weights))
        mean_len = sum(n * w for n, w in zip(self.lengths, weights, strict=True)) / sum(weights)
        self.words = self._query_words(mean_len)

    def _rank_for(self, share: float, mean_len: float) -> int:
        """The vocabulary rank of a word in about ``share`` of the messages."""
        s, total = self.shape.word_zipf, self.word_cum[-1]
        rank = (mean_len / (share * total)) ** (1 / s)
        return max(len(COMMON_WORDS) + 1, min(len(self.vocab), round(rank))) - 1

    def _query_words(self, mean_len: float) -> dict[str, str]:
        """The words the SEARCH queries look for: "the", a word in about one message in a
        thousand, one in about one in a hundred thousand, and the 4-letter prefix that the
        most words of the tail share."""
        mid = self.vocab[self._rank_for(1e-3, mean_len)]
        rare = self.vocab[self._rank_for(1e-5, mean_len)]
        counts: dict[str, int] = {}
        for w in self.vocab[len(COMMON_WORDS) :]:
            if len(w) > 4:
                counts[w[:4]] = counts.get(w[:4], 0) + 1
        prefix = max(sorted(counts), key=lambda p: counts[p])
        return {"common": "the", "mid": mid, "rare": rare, "prefix": prefix}

    def accounts(self) -> list[AccountRecord]:
        hashed = hash_password(PASSWORD)  # one hash for all: argon2 is slow on purpose
        start = time.time() - self.shape.days * DAY
        return [AccountRecord(u.account, hashed, created=start) for u in self.users if u.account]

    def events(
        self, end: float, manifest: Manifest, chunk: int = 10_000
    ) -> Iterator[list[HistoryEvent]]:
        """Every stored event, oldest first, in lists of about ``chunk``; fills the
        manifest's counts as it goes."""
        shape, rng = self.shape, random.Random(self.seed + 1)
        rand, randrange = rng.random, rng.randrange
        users, channels, members = self.users, self.channels, self.members
        member_cum = self.member_cum
        member_total = [cum[-1] for cum in member_cum]
        vocab, pairs = self.vocab, self.pairs
        n_channels = len(channels)
        # Draws: an entry of a pool at random (see _pool); a member by bisection.
        word_pool = _pool(vocab, self.word_cum)
        length_pool = _pool(self.lengths, self.length_cum, 1 << 16)
        channel_pool = _pool(range(n_channels), self.channel_cum, 1 << 20)
        pair_pool = _pool(pairs, self.pair_cum, 1 << 21)
        n_words, n_lengths = len(word_pool), len(length_pool)
        n_channel_pool, n_pair_pool = len(channel_pool), len(pair_pool)
        words = self.words
        common, mid, rare = words["common"], words["mid"], words["rare"]
        prefix_words = {w for w in vocab if w.startswith(words["prefix"])}
        small_rank = self.small_rank
        matches = {"common": 0, "mid": 0, "rare": 0, "prefix": 0, "common_small": 0}
        per_channel = [0] * n_channels
        dm_names: dict[str, tuple[str, str]] = {}
        recent: list[str] = []  # msgids to reply to
        total = round(shape.messages * (1 + shape.events_share))
        event_share = shape.events_share / (1 + shape.events_share)
        start_ms = int((end - shape.days * DAY) * 1000)
        span = int(shape.days * DAY * 1000)
        step = span / total
        restart_ms = int(shape.restart_days * DAY * 1000)
        next_restart, head_ms, counter, prefix = start_ms, -1, 0, ""
        head = ""
        year_back_ms = int((end - 365 * DAY) * 1000)
        year_back: list[str] = manifest.year_back
        out: list[HistoryEvent] = []
        for i in range(total):
            ms = start_ms + int((i + rand()) * step)
            if ms >= next_restart:  # a restart: a new msgid prefix, the counter from 0
                next_restart = ms + int(restart_ms * (0.5 + rand()))
                prefix, counter = f"{rng.getrandbits(16):04x}", 0
                head_ms = -1
                dm_names.clear()
            counter += 1
            if ms != head_ms:
                head_ms, head = ms, f"{ms:011x}{prefix}"
            msgid = f"{head}{counter:x}"
            t = ms / 1000
            r = rand()
            if r < event_share:  # a channel event
                c = channel_pool[int(rand() * n_channel_pool)]
                user = users[members[c][bisect(member_cum[c], rand() * member_total[c])]]
                kind = randrange(3)
                if kind == 0:
                    ev = HistoryEvent(
                        msgid, t, channels[c], "JOIN", user.prefix, user.account, (channels[c],)
                    )
                elif kind == 1:
                    ev = HistoryEvent(
                        msgid, t, channels[c], "PART", user.prefix, user.account, (channels[c], "")
                    )
                else:
                    ev = HistoryEvent(
                        msgid,
                        t,
                        channels[c],
                        "QUIT",
                        user.prefix,
                        user.account,
                        (rng.choice(_QUIT_REASONS),),
                    )
                out.append(ev)
                manifest.events += 1
            else:
                private = rand() < shape.private_share
                if private:
                    a, b = pair_pool[int(rand() * n_pair_pool)]
                    if rand() < 0.5:
                        a, b = b, a
                    sender, other = users[a], users[b]
                    target = other.nick
                else:
                    c = channel_pool[int(rand() * n_channel_pool)]
                    sender = users[members[c][bisect(member_cum[c], rand() * member_total[c])]]
                    target = channels[c]
                tags: tuple[tuple[str, str], ...] = ()
                kind_r = rand()
                if kind_r < 0.005 and recent:  # a reaction
                    command, text = "TAGMSG", ""
                    tags = (
                        ("+draft/react", rng.choice(_REACTIONS)),
                        ("+draft/reply", rng.choice(recent)),
                    )
                else:
                    command = "NOTICE" if kind_r > 0.98 else "PRIVMSG"
                    ws = [
                        word_pool[int(rand() * n_words)]
                        for _ in range(length_pool[int(rand() * n_lengths)])
                    ]
                    if common in ws:
                        matches["common"] += 1
                        if not private and c == small_rank:
                            matches["common_small"] += 1
                    if mid in ws:
                        matches["mid"] += 1
                    if rare in ws:
                        matches["rare"] += 1
                    if not prefix_words.isdisjoint(ws):
                        matches["prefix"] += 1
                    text = " ".join(ws)
                    extra = rand()
                    if extra < 0.15:  # addressed to someone
                        name = other.nick if private else users[rng.choice(members[c])].nick
                        text = f"{name}: {text}"
                    elif extra > 0.97:
                        text = f"{text} https://{rng.choice(_URL_HOSTS)}/{rng.choice(vocab)}/{randrange(10**6)}"
                    if kind_r > 0.95 and recent and command == "PRIVMSG":
                        tags = (("+draft/reply", rng.choice(recent)),)
                if private:
                    mine = sender.party
                    key = dm_key(mine, other.party)
                    names = (target, sender.nick)
                    display = target if dm_names.get(key) != names else ""
                    if display:
                        dm_names[key] = names
                    params = (target,) if command == "TAGMSG" else (target, text)
                    ev = HistoryEvent(
                        msgid,
                        t,
                        key,
                        command,
                        sender.prefix,
                        sender.account,
                        params,
                        tags,
                        display,
                        mine,
                    )
                    manifest.private_messages += 1
                else:
                    params = (target,) if command == "TAGMSG" else (target, text)
                    ev = HistoryEvent(
                        msgid, t, target, command, sender.prefix, sender.account, params, tags
                    )
                    manifest.channel_messages += 1
                    per_channel[c] += 1
                    if c == 0 and ms >= year_back_ms and len(year_back) < 64:
                        year_back.append(msgid)
                out.append(ev)
                if counter % 97 == 0:
                    recent.append(msgid)
                    if len(recent) > 50:
                        del recent[:25]
            if len(out) >= chunk:
                yield out
                out = []
            manifest.end_time = t
        if out:
            yield out
        manifest.messages = manifest.channel_messages + manifest.private_messages
        manifest.rows = manifest.messages + manifest.events
        reader = self.users[self.reader]
        manifest.reader = {
            "nick": reader.nick,
            "account": reader.account,
            "password": PASSWORD,
            "channels": [channels[r] for r in self.reader_channel_ranks],
            "conversations": self.reader_conversations,
        }
        manifest.busiest = {"name": channels[0], "messages": per_channel[0]}
        manifest.small = {
            "name": channels[small_rank],
            "messages": per_channel[small_rank],
            "common_matches": matches.pop("common_small"),
        }
        manifest.words = {**words, "matches": matches, "prefix_words": len(prefix_words)}


# What Community.events fills in the manifest.
_MADE = (
    "end_time", "rows", "messages", "channel_messages", "private_messages", "events",
    "reader", "busiest", "small", "words", "year_back",
)  # fmt: skip


def _produce(community: Community, end: float, queue: Any) -> None:
    """In the child process of :func:`events_elsewhere`."""
    manifest = Manifest(shape={}, seed=community.seed)
    for chunk in community.events(end, manifest):
        queue.put([tuple(e) for e in chunk])  # plain tuples: quicker to pickle
    queue.put(asdict(manifest))


def events_elsewhere(
    community: Community, end: float, manifest: Manifest
) -> Iterator[list[HistoryEvent]]:
    """:meth:`Community.events`, made in a child process: making the data overlaps
    writing it (the spawned child shares nothing with this process's threads). ``manifest`` gets the counts at the end."""
    ctx = multiprocessing.get_context("spawn")
    queue = ctx.Queue(maxsize=8)
    child = ctx.Process(target=_produce, args=(community, end, queue), daemon=True)
    child.start()
    try:
        while True:
            item = queue.get()
            if isinstance(item, dict):
                for key in _MADE:
                    setattr(manifest, key, item[key])
                return
            yield [_new_event(t) for t in item]
    finally:
        if child.is_alive():
            child.kill()
        child.join()


# ---------------------------------------------------------------------------- the stores


class Backend(Protocol):
    """How to make, measure and serve one kind of store."""

    name: str

    def code_key(self) -> str:
        """A hash of the store's code: data built by other code is rebuilt."""
        ...

    def open(self, data: Path) -> Any:
        """The store of the data directory ``data`` (created if new)."""
        ...

    def disk_bytes(self, data: Path) -> int: ...

    def serve(self, data: Path, rundir: Path) -> tuple[Path, str]:
        """Make a copy of the data set ``data`` for a server run in ``rundir`` (which the
        server will change). Returns what :meth:`disk_bytes` measures and the config
        lines (TOML) to add to bench/configs/salon.toml.tmpl, whose data directory is
        ``rundir/data``."""
        ...

    def stop(self) -> None:
        """Stop what serving started beside salon (a database server)."""
        ...


def store_code_key() -> str:
    """A hash of every module of salon.store: the stores, and the records they keep."""
    digest = hashlib.sha256()
    for path in sorted(Path(str(sqlite_store.__file__)).parent.glob("*.py")):
        digest.update(path.name.encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:10]


class SQLiteBackend:
    name = "sqlite"

    def code_key(self) -> str:
        return store_code_key()

    def open(self, data: Path) -> Any:
        data.mkdir(parents=True, exist_ok=True, mode=0o700)
        return sqlite_store.SQLiteStore(data / "salon.db")

    def disk_bytes(self, data: Path) -> int:
        return sum(p.stat().st_size for p in data.glob("salon.db*") if p.is_file())

    def serve(self, data: Path, rundir: Path) -> tuple[Path, str]:
        shutil.copytree(data, rundir / "data")
        return rundir / "data", ""

    def stop(self) -> None:
        pass


# PostgreSQL's settings beyond bench/pgserver.py's. Building: no durability (a failed
# build is built again), few checkpoints. Serving: durable as salon's SQLite store is
# (every page write fsynced and whole after a crash, commits not waiting for fsync:
# synchronous_commit=off is SQLite's synchronous=NORMAL in WAL mode), memory for the
# indexes, no JIT (it compiles a plan for milliseconds before a query that takes less).
PG_COMMON = ("jit=off", "random_page_cost=1.1", "max_wal_size=8GB", "checkpoint_timeout=30min")
PG_BUILD = (*PG_COMMON, "maintenance_work_mem=512MB", "autovacuum=off")
PG_SERVE = (
    *PG_COMMON,
    "fsync=on",
    "full_page_writes=on",
    "synchronous_commit=off",
    "shared_buffers=1GB",
    "effective_cache_size=8GB",
    "work_mem=16MB",
)
PG_DATABASE = "salon"


class PostgresBackend:
    """A data set is a whole PostgreSQL cluster (bench/pgserver.py): built in the cache,
    copied for each run (``cp -a``: its files belong to the postgres user when run as
    root) and served by a PostgreSQL of its own on a free port."""

    name = "postgres"

    def __init__(self) -> None:
        self._servers: list[Any] = []
        # The CPUs PostgreSQL runs on (taskset): set by bench.history to the server's CPU
        # when it pins, so that the store's work shares salon's core as SQLite's does.
        self.serve_cpus = ""

    def code_key(self) -> str:
        """Of what decides what is stored (the schema, the columns and words written):
        changing how PostgreSQL is read, or how the rows travel, builds no cluster again."""
        import inspect

        from salon.store import postgres

        digest = hashlib.sha256((postgres.SCHEMA + postgres.HISTORY_COLUMNS).encode())
        for part in (postgres.words, postgres.tsvector):
            digest.update(inspect.getsource(part).encode())
        return digest.hexdigest()[:10]

    def _server(self, root: Path, settings: Sequence[str], cpus: str = "") -> Any:
        from bench.pgserver import PostgresServer, find_bindir
        from bench.servers import free_port

        bindir = find_bindir()
        if bindir is None:
            raise RuntimeError("PostgreSQL is not installed (Debian package postgresql)")
        reachable(root)
        server = PostgresServer(bindir, root, settings, cpus)
        server.start(free_port())
        self._servers.append(server)
        return server

    def open(self, data: Path) -> Any:
        import psycopg

        from salon.store.postgres import PostgresStore

        # Every CPU: not only the generator's, where this process may be pinned.
        server = self._server(data, PG_BUILD, f"0-{(os.cpu_count() or 1) - 1}")
        with psycopg.connect(server.dsn("postgres"), autocommit=True) as conn:
            conn.execute(f"CREATE DATABASE {PG_DATABASE}")
        backend = self

        class Built(PostgresStore):
            def close(self) -> None:
                # Statistics for the planner, and the visibility map for index-only scans,
                # as autovacuum would leave them on a database that has been running.
                self.conn.execute("VACUUM (ANALYZE)")
                self.conn.execute("CHECKPOINT")
                super().close()
                backend.stop()

        return Built(server.dsn(PG_DATABASE), query_budget=600.0)

    def disk_bytes(self, data: Path) -> int:
        """The database's files (``base/``), not the WAL that PostgreSQL keeps in advance."""
        return sum(p.stat().st_size for p in (data / "data" / "base").rglob("*") if p.is_file())

    def serve(self, data: Path, rundir: Path) -> tuple[Path, str]:
        copy = rundir / "pg"
        subprocess.run(["cp", "-a", str(data), str(copy)], check=True)
        server = self._server(copy, PG_SERVE, self.serve_cpus)
        return copy, f'[postgres]\ndsn = "{server.dsn(PG_DATABASE)}"\n'

    def stop(self) -> None:
        """Stop every PostgreSQL this backend started (their directories stay)."""
        for server in self._servers:
            server.stop(remove=False)
        self._servers = []


def reachable(path: Path) -> None:
    """Let the postgres user reach ``path`` (run as root: PostgreSQL runs as that user),
    or say which directory it cannot pass."""
    if os.geteuid() != 0:
        return
    path = path.resolve()
    for parent in path.parents:
        if not parent.stat().st_mode & 0o001:
            if parent == Path(tempfile.gettempdir()) or str(parent).startswith(
                tempfile.gettempdir() + "/"
            ):
                os.chmod(parent, parent.stat().st_mode | 0o011)  # a run directory of ours
                continue
            raise RuntimeError(
                f"the postgres user cannot reach {path} ({parent} is closed to it):"
                " give another --cache"
            )


BACKENDS: dict[str, Callable[[], Backend]] = {"sqlite": SQLiteBackend, "postgres": PostgresBackend}


class StoreBuilder:
    """Writes events into a store through its public interface, as the server's storage
    thread does: one transaction per commit group of ``group`` events, and the store's
    background upkeep (``maintain``, when it has one) between groups, in slices of
    ``index_slice`` rows."""

    def __init__(self, store: Any, *, group: int = 5000, index_slice: int = 5000) -> None:
        self.store = store
        self.group = group
        self.index_slice = index_slice
        self._maintain: Callable[[int], int] | None = getattr(store, "maintain", None)
        self.write_s = 0.0
        self.upkeep_s = 0.0

    def save_accounts(self, records: Sequence[AccountRecord]) -> None:
        with self.store.transaction():
            for record in records:
                self.store.save_account(record)

    def append(self, events: Sequence[HistoryEvent]) -> None:
        for i in range(0, len(events), self.group):
            t0 = time.perf_counter()
            with self.store.transaction():
                self.store.append_history(events[i : i + self.group])
            t1 = time.perf_counter()
            self._upkeep()
            self.write_s += t1 - t0
            self.upkeep_s += time.perf_counter() - t1

    def _upkeep(self) -> None:
        if self._maintain is not None:
            while self._maintain(self.index_slice) > 0:
                pass

    def finish(self) -> None:
        t0 = time.perf_counter()
        self._upkeep()
        self.upkeep_s += time.perf_counter() - t0
        self.store.close()


# ---------------------------------------------------------------------------- the cache


def default_cache(backend: str = "sqlite") -> Path:
    """``~/.cache/salon-bench``; for PostgreSQL run as root, ``/var/tmp/salon-bench``
    (root's home is closed to the postgres user the server runs as)."""
    if backend == PostgresBackend.name and os.geteuid() == 0:
        return Path("/var/tmp/salon-bench")
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "salon-bench"


def entry_name(backend: Backend, messages: int, seed: int) -> str:
    return f"history-{backend.name}-{size_label(messages)}-s{seed}-v{DATA_VERSION}-{backend.code_key()}"


def build(
    backend: Backend,
    dest: Path,
    messages: int,
    seed: int,
    log: Callable[[str], None],
    *,
    group: int = 5000,
    index_slice: int = 5000,
) -> Manifest:
    """Build a data set in ``dest`` (made here): ``dest/data`` and ``dest/manifest.json``."""
    shape = shape_for(messages)
    manifest = Manifest(
        shape=asdict(shape), seed=seed, backend=backend.name, code=backend.code_key()
    )
    t0 = time.perf_counter()
    community = Community(shape, seed)
    store = backend.open(dest / "data")
    builder = StoreBuilder(store, group=group, index_slice=index_slice)
    records = community.accounts()
    builder.save_accounts(records)
    manifest.accounts = len(records)
    setup_s = time.perf_counter() - t0
    end = time.time() - 60.0
    made = 0
    gen_s = 0.0
    last_log = time.monotonic()
    g0 = time.perf_counter()
    for chunk in events_elsewhere(community, end, manifest):
        gen_s += time.perf_counter() - g0
        builder.append(chunk)
        made += len(chunk)
        if time.monotonic() - last_log > 15:
            last_log = time.monotonic()
            rate = made / (time.perf_counter() - t0)
            log(f"built {made:,} rows ({rate:,.0f} rows/s)")
        g0 = time.perf_counter()
    builder.finish()
    total_s = time.perf_counter() - t0
    disk = backend.disk_bytes(dest / "data")
    manifest.built = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    manifest.build = {
        "seconds": round(total_s, 1),
        "setup_s": round(setup_s, 1),
        "generate_s": round(gen_s, 1),
        "write_s": round(builder.write_s, 1),
        "upkeep_s": round(builder.upkeep_s, 1),
        "group": group,
        "index_slice": index_slice,
        "disk_bytes": disk,
        "bytes_per_row": round(disk / max(1, manifest.rows), 1),
        "bytes_per_message": round(disk / max(1, manifest.messages), 1),
    }
    manifest.save(dest / "manifest.json")
    return manifest


def cached(
    backend: Backend,
    cache: Path,
    messages: int,
    seed: int,
    log: Callable[[str], None],
    *,
    rebuild: bool = False,
    group: int = 5000,
    index_slice: int = 5000,
) -> tuple[Path, Manifest, bool]:
    """The data set of (backend, size, seed) from the cache, built first when missing (or
    built with other store code: older builds of the same size are removed then, they
    take gigabytes). Returns its directory, its manifest and whether it was built now."""
    name = entry_name(backend, messages, seed)
    entry = cache / name
    if entry.is_dir() and (entry / "manifest.json").exists() and not rebuild:
        return entry, Manifest.load(entry / "manifest.json"), False
    cache.mkdir(parents=True, exist_ok=True)
    for old in cache.glob(f"history-{backend.name}-{size_label(messages)}-s{seed}-*"):
        log(f"removing {old} (another build of this size)")
        shutil.rmtree(old, ignore_errors=True)
    partial = cache / (name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir()
    log(f"building {size_label(messages)} messages ({backend.name}) in {partial}")
    try:
        manifest = build(
            backend, partial, messages, seed, log, group=group, index_slice=index_slice
        )
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    partial.rename(entry)
    return entry, manifest, True
