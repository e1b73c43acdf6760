"""The PostgreSQL store: the same interfaces as :mod:`salon.store.sqlite`, for several
salon processes (nodes) sharing one database.

Only imported when a PostgreSQL store is configured (``salon db import`` for now): nothing
else imports psycopg. Calls run on the storage thread (:mod:`salon.net.storage`) like the
SQLite store's; writes of one event-loop turn are one transaction
(:meth:`PostgresStore.transaction`), their history rows one ``COPY``. Reads run on readers
(:meth:`PostgresStore.reader`), each with a connection of its own.

Unlike SQLite, nothing is indexed in batches afterwards: PostgreSQL's GIN index gathers
its inserts itself (``fastupdate``), so every row is found through the indexes as soon as
it is committed, and the conversations table is kept by each write.

History search matches words the way SQLite's FTS5 ``unicode61`` tokenizer does: a word is
a run of letters and digits, case and diacritics folded. Text and query are folded by
:func:`words` in Python, so both sides fold alike whatever the database's locale and
extensions; each row's words are stored as a ``tsvector`` built here (:func:`tsvector`)
with a GIN index, and a search is a ``tsquery`` of every word, the last as a prefix.
"""

from __future__ import annotations

import contextlib
import math
import os
import re
import time
import unicodedata
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, LiteralString

import psycopg
from psycopg.conninfo import make_conninfo
from psycopg.rows import TupleRow
from psycopg.types.json import Jsonb

from salon import __version__
from salon.errors import QueryTooBroad
from salon.proto.casemap import casefold
from salon.store.base import (
    AccountRecord,
    ChannelRecord,
    FileRecord,
    FileRef,
    HistoryEvent,
    HistoryQuery,
    ListRecord,
    PurgeProgress,
    ScramCredentials,
    SearchQuery,
    ServerBan,
    dm_other,
    is_dm,
    msgid_time,
    purge_all,
)

SCHEMA_VERSION = 1
# A lost connection is tried again after RETRY_FIRST seconds, then twice as long each
# time, at most RETRY_MOST apart (PostgresStore.reconnect).
RETRY_FIRST = 0.05
RETRY_MOST = 1.0
CONNECT_TIMEOUT = 5.0  # seconds (libpq's connect_timeout counts whole seconds, at least 2)
RETRY_FOR = 15.0  # seconds a lost connection is tried again; see PostgresSection.retry_for
DEFAULT_BUDGET = 0.05  # seconds a read may take; see HistorySection.query_budget
# Two plans answer a search (PostgresReads.search_history): the words' index, which fetches
# every match of every conversation, and the walk of the asker's conversations newest first,
# which reads about limit / share rows. Their costs cross where the words' share of the rows
# is sqrt(limit / rows); the statistics undercount a prefix (they list only the commonest
# words it starts), so the walk goes first from WALK_SLACK of that share on. Any other
# search has the index for FIRST_SHARE of the budget, then the walk with the rest.
WALK_SLACK = 0.5
FIRST_SHARE = 0.6
# The walk merges at most this many conversations newest first in one statement (one
# branch each: planning grows with them); more are walked one by one.
MERGE_MOST = 100
STATS_EVERY = 300.0  # seconds between reads of the words' statistics (common_words)
# A purge step removes at most this many events, looking at most at PURGE_SCAN
# conversations (the same bounds as the SQLite store's).
PURGE_CHUNK = 500
PURGE_SCAN = 2000
# The shared secrets every node must agree on, kept in the meta table (hex): the cloaking
# key (hosts cloak alike on every node) and the key of unknown-user SCRAM exchanges
# (accounts.secret: a fake exchange looks the same whichever node answers).
CLOAK_KEY = "cloak_key"
ACCOUNT_SECRET = "account_secret"
SECRETS = (CLOAK_KEY, ACCOUNT_SECRET)
SECRET_SIZE = 32
# tsvector limits (PostgreSQL's MAXSTRLEN, MAXENTRYPOS, MAXNUMPOS): a longer word is
# dropped (no search could name it: the query's lexeme would be refused alike), later
# positions are clamped, and a word keeps its first positions only.
LEXEME_BYTES = 2047
LAST_POSITION = 16383
POSITIONS = 256

SCHEMA: LiteralString = """
CREATE TABLE IF NOT EXISTS meta (
    key text PRIMARY KEY,
    value text NOT NULL
);
CREATE TABLE IF NOT EXISTS accounts (
    name_cf text PRIMARY KEY,
    name text NOT NULL,
    password_hash text NOT NULL,
    scram_salt bytea,
    scram_iterations integer,
    scram_stored_key bytea,
    scram_server_key bytea,
    email text NOT NULL DEFAULT '',
    verified boolean NOT NULL DEFAULT true,
    created double precision NOT NULL,
    certfps text[] NOT NULL DEFAULT '{}'
);
CREATE TABLE IF NOT EXISTS channels (
    name_cf text PRIMARY KEY,
    record jsonb NOT NULL
);
CREATE TABLE IF NOT EXISTS server_bans (
    kind text NOT NULL,
    mask text NOT NULL,
    reason text NOT NULL,
    setter text NOT NULL,
    created double precision NOT NULL,
    expires double precision,
    PRIMARY KEY (kind, mask)
);
CREATE TABLE IF NOT EXISTS read_markers (
    account text NOT NULL,
    target text NOT NULL,
    time double precision NOT NULL,
    PRIMARY KEY (account, target)
);
CREATE TABLE IF NOT EXISTS private_channels (
    name_cf text PRIMARY KEY
);
CREATE TABLE IF NOT EXISTS rejoin (
    account text PRIMARY KEY,
    channels text[] NOT NULL
);
CREATE TABLE IF NOT EXISTS metadata (
    account text NOT NULL,
    key text NOT NULL,
    value text NOT NULL,
    PRIMARY KEY (account, key)
);
CREATE TABLE IF NOT EXISTS files (
    id text PRIMARY KEY,
    blob text NOT NULL,
    size bigint NOT NULL,
    type text NOT NULL,
    name text NOT NULL,
    owner text NOT NULL,
    owner_nick text NOT NULL,
    created double precision NOT NULL,
    deleted double precision NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS file_refs (
    file text NOT NULL,
    target text NOT NULL,
    msgid text NOT NULL,
    time double precision NOT NULL
);
CREATE INDEX IF NOT EXISTS file_refs_target ON file_refs (target, time);
CREATE INDEX IF NOT EXISTS file_refs_file ON file_refs (file);
-- params and tags whole (tags as key, value, key, value...); words: the tsvector of a
-- PRIVMSG's or NOTICE's text (module note), NULL for the other events.
CREATE TABLE IF NOT EXISTS history (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    msgid text NOT NULL,
    time double precision NOT NULL,
    target text NOT NULL,
    command text NOT NULL,
    source text NOT NULL,
    account text,
    params text[] NOT NULL,
    tags text[] NOT NULL,
    display text NOT NULL,
    party text NOT NULL,
    words tsvector
);
-- Every read of a conversation, newest or oldest first. No index on msgid: a msgid starts
-- with its millisecond (store.base.msgid_time), so a message is found through this one.
CREATE INDEX IF NOT EXISTS history_target_time ON history (target, time, id);
CREATE INDEX IF NOT EXISTS history_words ON history USING gin (words) WITH (fastupdate = on);
-- Every conversation with its last message (PRIVMSG, NOTICE or TAGMSG; -1 for none) and
-- how many it holds: CHATHISTORY TARGETS reads one row per conversation.
-- Keys in byte order (purge_step walks them from one key on, whatever the locale).
CREATE TABLE IF NOT EXISTS conversations (
    target text COLLATE "C" PRIMARY KEY,
    last double precision NOT NULL,
    messages bigint NOT NULL
);
CREATE TABLE IF NOT EXISTS dm_partners (
    party text NOT NULL,
    conversation text NOT NULL,
    partner text NOT NULL,
    PRIMARY KEY (party, conversation)
);
"""

# The columns a history row is written with (append_history).
HISTORY_COLUMNS: LiteralString = (
    "msgid, time, target, command, source, account, params, tags, display, party, words"
)
# A commit group of more rows than this is written with COPY (faster for many rows);
# fewer go with the group's other statements in one round trip (append_history).
COPY_ROWS = 200
COLUMNS: LiteralString = (
    "id, msgid, time, target, command, source, account, params, tags, display, party"
)
MESSAGES: LiteralString = "('PRIVMSG', 'NOTICE')"
ACTIVITY = frozenset({"PRIVMSG", "NOTICE", "TAGMSG"})
ACTIVITY_SQL: LiteralString = "('PRIVMSG', 'NOTICE', 'TAGMSG')"
# The casefolded nick of a row's source (``nick!user@host``), ASCII letters only as
# CASEMAPPING=ascii does (salon.proto.casemap); lower() would fold by the locale.
SENDER: LiteralString = (
    "translate(split_part(h.source, '!', 1),"
    " 'ABCDEFGHIJKLMNOPQRSTUVWXYZ', 'abcdefghijklmnopqrstuvwxyz')"
)

# What the shell catches around this module: any error of the database or of psycopg.
Error = psycopg.Error


def conninfo(dsn: str = "", **params: Any) -> str:
    """A libpq connection string: ``dsn`` (a ``key=value`` string or a URI) with
    ``params`` added (those that are empty are left out). Raises ValueError for a
    malformed one."""
    try:
        return make_conninfo(dsn, **{k: v for k, v in params.items() if v not in ("", None)})
    except psycopg.ProgrammingError as exc:
        raise ValueError(first_line(exc)) from None


def first_line(exc: BaseException) -> str:
    """An error's message on one line (libpq's run over several)."""
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else type(exc).__name__


def connect(dsn: str, timeout: float, **options: Any) -> psycopg.Connection[TupleRow]:
    """An autocommit connection (a transaction is begun explicitly)."""
    return psycopg.connect(
        dsn, autocommit=True, connect_timeout=max(2, math.ceil(timeout)), **options
    )


_WORD = re.compile(r"[^\W_]+")  # letters and digits: FTS5 unicode61's token characters


def words(text: str) -> list[str]:
    """The search words of ``text``: runs of letters and digits, lower-cased, diacritics
    removed (canonical decomposition without its combining marks)."""
    if not text.isascii():
        text = "".join(
            c for c in unicodedata.normalize("NFD", text) if not unicodedata.combining(c)
        )
    return _WORD.findall(text.lower())


def tsvector(text: str) -> str:
    """The ``tsvector`` literal of ``text``'s words, with their positions (a phrase of a
    search is words at consecutive positions)."""
    places: dict[str, list[str]] = {}
    for i, word in enumerate(words(text), 1):
        if len(word.encode()) > LEXEME_BYTES:
            continue
        seen = places.setdefault(word, [])
        if len(seen) < POSITIONS:
            seen.append(str(min(i, LAST_POSITION)))
    # Words are letters and digits only: nothing in them needs quoting but the quotes.
    return " ".join(f"'{w}':{','.join(p)}" for w, p in places.items())


def tsquery(text: str) -> str | None:
    """User words as a ``tsquery``: every word must match, the last as a prefix; a word of
    several (``s'il``) is those words in a row. None when a word has nothing to match
    (FTS5 matches nothing then either)."""
    terms = []
    said = text.split()
    for n, word in enumerate(said, 1):
        parts = words(word)
        if not parts or any(len(p.encode()) > LEXEME_BYTES for p in parts):
            return None
        lexemes = [f"'{p}'" for p in parts]
        if n == len(said):
            lexemes[-1] += ":*"
        terms.append("(" + " <-> ".join(lexemes) + ")")
    return " & ".join(terms)


def _event(row: TupleRow) -> HistoryEvent:
    _, msgid, when, target, command, source, account, params, tags, display, party = row
    return HistoryEvent(
        msgid,
        when,
        target,
        command,
        source,
        account,
        tuple(params),
        tuple(zip(tags[::2], tags[1::2], strict=True)),
        display,
        party,
    )


def _window(query: HistoryQuery) -> tuple[list[str], list[Any]]:
    """The conditions of a history window on ``h``."""
    clauses: list[str] = []
    args: list[Any] = []
    if query.start is not None:
        if query.start_seq is None:
            clauses.append("h.time > %s")
            args.append(query.start)
        else:
            clauses.append("(h.time, h.id) > (%s, %s)")
            args += [query.start, query.start_seq]
    if query.end is not None:
        if query.end_seq is None:
            clauses.append("h.time < %s")
            args.append(query.end)
        else:
            clauses.append("(h.time, h.id) < (%s, %s)")
            args += [query.end, query.end_seq]
    if query.since is not None:
        clauses.append("h.time >= %s")
        args.append(query.since)
    if not query.events:
        clauses.append(f"h.command IN {MESSAGES}")
    return clauses, args


def _search_filters(query: SearchQuery) -> tuple[list[str], list[Any]]:
    clauses = [f"h.command IN {MESSAGES}"]
    args: list[Any] = []
    if query.sender:
        clauses.append(f"{SENDER} = %s")
        args.append(query.sender)
    if query.start is not None:
        clauses.append("h.time > %s")
        args.append(query.start)
    if query.end is not None:
        clauses.append("h.time < %s")
        args.append(query.end)
    if query.private_since is not None:
        # Channel keys start with '#'; private conversation keys never do.
        clauses.append("(left(h.target, 1) = '#' OR h.time >= %s)")
        args.append(query.private_since)
    return clauses, args


def _walk(
    targets: list[str], match: str, filters: list[str], args: list[Any], limit: int
) -> tuple[str, list[Any]]:
    """The walk of a search: each conversation newest first, the newest ``limit`` matches
    of them all. Up to MERGE_MOST conversations are one branch each of a UNION ALL that
    PostgreSQL merges by time (Merge Append), so it stops reading at the ``limit``-th match
    of them all; more are walked one after the other, each to ``limit`` matches. The words
    are matched by ``ts_match_vq``, the function behind ``@@``: the planner never takes
    the words' index for a function call, whose matches would all be fetched and sorted."""
    where = " AND ".join(filters)
    if match:
        where = f"ts_match_vq(h.words, %s::tsquery) AND {where}"
        args = [match, *args]
    order = "ORDER BY h.time DESC, h.id DESC LIMIT %s"
    if len(targets) <= MERGE_MOST:
        branch = f"(SELECT {COLUMNS} FROM history h WHERE h.target = %s AND {where} {order})"
        sql = " UNION ALL ".join([branch] * len(targets))
        merged: list[Any] = []
        for target in targets:
            merged += [target, *args, limit]
        return f"SELECT * FROM ({sql}) h ORDER BY time DESC, id DESC LIMIT %s", [*merged, limit]
    return (
        "SELECT h.* FROM unnest(%s::text[]) AS t(target) CROSS JOIN LATERAL"
        f" (SELECT {COLUMNS} FROM history h WHERE h.target = t.target AND {where} {order}) h"
        " ORDER BY h.time DESC, h.id DESC LIMIT %s",
        [targets, *args, limit, limit],
    )


class PostgresReads:
    """The history queries, on ``self.conn``; mixed into the writer and the readers."""

    conn: psycopg.Connection[TupleRow]
    query_budget: float = DEFAULT_BUDGET
    # The commonest words and their shares of the rows (common_words), and when read.
    _common: dict[str, float] | None = None
    _common_at = 0.0
    _rows = 0.0  # the rows of history ANALYZE counted (common_words)
    bounded: float | None = None  # the connection's own statement_timeout, in seconds

    def _sql(self, sql: str, args: Sequence[Any] = ()) -> psycopg.Cursor[TupleRow]:
        # The statements are made here of fixed parts; values are always bound.
        return self.conn.execute(sql, args)

    # ------------------------------------------------------------------ one message

    def find(self, target: str, msgid: str) -> TupleRow | None:
        """The row of a message of ``target`` by its msgid, through the conversation index
        at the time the msgid carries (within a second of it); a msgid without a time (from
        an imported database of an earlier version) by a walk of its conversation."""
        when = msgid_time(msgid)
        if when is None:
            return self._sql(
                f"SELECT {COLUMNS} FROM history h WHERE target = %s AND msgid = %s LIMIT 1",
                (target, msgid),
            ).fetchone()
        return self._sql(
            f"SELECT {COLUMNS} FROM history h WHERE target = %s AND time >= %s AND time <= %s"
            " AND msgid = %s LIMIT 1",
            (target, when - 1, when + 1, msgid),
        ).fetchone()

    def history_event(self, target: str, msgid: str) -> HistoryEvent | None:
        row = self.find(target, msgid)
        return None if row is None else _event(row)

    def history_position(self, target: str, msgid: str) -> tuple[float, int] | None:
        row = self.find(target, msgid)
        return None if row is None else (float(row[2]), int(row[0]))

    def history_time_of(self, target: str, msgid: str) -> float | None:
        row = self.find(target, msgid)
        return None if row is None else float(row[2])

    # ------------------------------------------------------------------ windows

    def history(self, query: HistoryQuery) -> list[HistoryEvent]:
        order = "DESC" if query.newest_first else "ASC"
        clauses, args = _window(query)
        where = " AND ".join(["h.target = %s", *clauses])
        rows = self._sql(
            f"SELECT {COLUMNS} FROM history h WHERE {where}"
            f" ORDER BY h.time {order}, h.id {order} LIMIT %s",
            (query.target, *args, query.limit),
        ).fetchall()
        events = [_event(r) for r in rows]
        if query.newest_first:
            events.reverse()
        return events

    def dm_partners(self, party: str) -> list[tuple[str, str]]:
        rows = self._sql(
            "SELECT conversation, partner FROM dm_partners WHERE party = %s", (party,)
        ).fetchall()
        return [(str(c), str(p)) for c, p in rows]

    def history_targets(
        self,
        targets: Sequence[str],
        start: float,
        end: float,
        limit: int,
        private_since: float | None = None,
    ) -> list[tuple[str, float]]:
        """The conversations among ``targets`` whose last message falls between ``start``
        and ``end``: one lookup each in the conversations table."""
        if not targets:
            return []
        lo, hi = min(start, end), max(start, end)
        floor = -1.0 if private_since is None else private_since
        rows = self._sql(
            "SELECT target, last FROM conversations WHERE target = ANY(%s)"
            " AND last > %s AND last < %s",
            (list(dict.fromkeys(targets)), lo, hi),
        ).fetchall()
        found = [
            (str(target), float(when))
            for target, when in rows
            if target[:1] == "#" or when >= floor
        ]
        found.sort(key=lambda item: item[1])
        return found[:limit]

    # ------------------------------------------------------------------ search

    @contextlib.contextmanager
    def budget(self, seconds: float | None = None) -> Iterator[None]:
        """Run the statements inside for at most ``seconds`` (``query_budget`` by
        default): ``SET LOCAL statement_timeout``, for this transaction or savepoint only;
        past it, QueryTooBroad."""
        limit = self.query_budget if seconds is None else seconds
        nested = self.conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE
        try:
            if not nested and self.bounded == limit:
                # The connection's own limit (a reader's): no transaction to set it in.
                yield
                return
            with self.conn.transaction():
                self._sql(
                    "SELECT set_config('statement_timeout', %s, true)",
                    (str(max(1, round(limit * 1000))),),
                )
                yield
                if nested:
                    # A savepoint's setting would outlive it, until the outer commit.
                    self._sql(
                        "SELECT set_config('statement_timeout', reset_val, true)"
                        " FROM pg_settings WHERE name = 'statement_timeout'"
                    )
        except psycopg.errors.QueryCanceled:
            raise QueryTooBroad("history") from None

    def search_history(self, query: SearchQuery) -> list[HistoryEvent]:
        """The newest ``limit`` messages of ``query.targets`` that have every word (the
        last as a prefix), oldest first. A search that runs past the budget raises
        QueryTooBroad.

        Two plans: the words' index finds every match, which are then sorted by time (the
        plan for rare words); the walk reads the conversations newest first, merged, and
        stops at ``limit`` matches (the plan for common words, and for a prefix of many
        words: their index scan alone takes longer than the budget). Which one goes first,
        the statistics of the words say (share, walk_from): the walk has the whole budget
        when it suits; otherwise the index runs for FIRST_SHARE of it, then the walk with
        the rest."""
        if not query.targets:
            return []
        filters, args = _search_filters(query)
        targets = list(dict.fromkeys(query.targets))
        if not query.text.strip():
            walk = _walk(targets, "", filters, args, query.limit)
            with self.budget():
                found = self._sql(*walk).fetchall()
            found.reverse()
            return [_event(r) for r in found]
        match = tsquery(query.text)
        if match is None:
            return []
        walk = _walk(targets, match, filters, args, query.limit)
        if self.share(query.text) >= self.walk_from(query.limit):
            with self.budget():
                found = self._sql(*walk).fetchall()
            found.reverse()
            return [_event(r) for r in found]
        # Rare words, or words the statistics do not know: the index first. A prefix may
        # stand for many words each too rare to be listed, together too many to sort, so
        # the index has FIRST_SHARE of the budget and the walk the rest.
        index = (
            f"SELECT {COLUMNS} FROM history h WHERE h.target = ANY(%s)"
            f" AND h.words @@ %s::tsquery AND {' AND '.join(filters)}"
            " ORDER BY h.time DESC, h.id DESC LIMIT %s"
        )
        started = time.monotonic()
        try:
            with self.budget(self.query_budget * FIRST_SHARE):
                found = self._sql(index, [targets, match, *args, query.limit]).fetchall()
        except QueryTooBroad:
            left = self.query_budget - (time.monotonic() - started)
            if left <= 0:
                raise
            with self.budget(left):
                found = self._sql(*walk).fetchall()
        found.reverse()
        return [_event(r) for r in found]

    def walk_from(self, limit: int) -> float:
        """The share of the rows from which the walk suits a search for ``limit`` matches
        better than the index (WALK_SLACK): the index fetches share * rows matches, the
        walk reads about limit / share rows. 1 (never) before the first ANALYZE."""
        self.common_words()
        if self._rows <= 0:
            return 1.0
        return WALK_SLACK * math.sqrt(limit / self._rows)

    def share(self, text: str) -> float:
        """About the share of stored rows that have every word of ``text`` (the last as a
        prefix): the rarest word's, from the statistics (0 for a word they do not list,
        which is rarer than any they list)."""
        common = self.common_words()
        said = [w for part in text.split() for w in words(part)]
        if not said:
            return 0.0
        shares = [common.get(w, 0.0) for w in said[:-1]]
        last = said[-1]
        shares.append(sum(f for w, f in common.items() if w.startswith(last)))
        return min(shares)

    def common_words(self) -> dict[str, float]:
        """The commonest words of history and the share of rows that have each (the
        statistics ANALYZE keeps of the words column), and the rows it counted
        (``_rows``), read again every STATS_EVERY seconds; empty before the first
        ANALYZE."""
        now = time.monotonic()
        if self._common is None or now - self._common_at > STATS_EVERY:
            try:
                with self.budget():
                    row = self._sql(
                        "SELECT c.reltuples, s.most_common_elems::text::text[],"
                        " s.most_common_elem_freqs FROM pg_class c LEFT JOIN pg_stats s"
                        " ON s.tablename = 'history' AND s.attname = 'words'"
                        " AND s.schemaname = current_schema()"
                        " WHERE c.oid = 'history'::regclass"
                    ).fetchone()
            except QueryTooBroad:
                return self._common or {}  # read again next time
            rows, elems, freqs = row if row is not None else (0, None, None)
            self._common = dict(zip(elems, freqs, strict=False)) if elems and freqs else {}
            self._rows = float(rows) if self._common else 0.0
            self._common_at = now
        return self._common


class PostgresReader(PostgresReads):
    """A read-only connection of its own, for one reading thread: it never waits for the
    writer, nor makes it wait."""

    def __init__(
        self, dsn: str, query_budget: float = DEFAULT_BUDGET, timeout: float = CONNECT_TIMEOUT
    ) -> None:
        self.dsn = dsn
        self.query_budget = query_budget
        self.timeout = timeout
        self.conn = self._connect()
        self._warm()

    def _warm(self) -> None:
        """A read of each kind a client's command makes, for nothing: a new PostgreSQL
        backend reads the catalog entries of each table and index at the first statement
        that uses them, and that first read of a user would pay for it. (A budget too
        short for them leaves the rest to the users' reads.)"""
        with contextlib.suppress(psycopg.errors.QueryCanceled):
            self.history(HistoryQuery("", limit=1))
            self.history_position("", "")
            self.history_targets([""], 0, math.inf, 1)
            self.dm_partners("")

    def _connect(self) -> psycopg.Connection[TupleRow]:
        # Every statement of a reader within the budget, as SQLite's progress handler
        # bounds its reads: a search narrows it further for a part of its work (budget).
        # A plan for the values at hand every time: psycopg prepares a statement run five
        # times, and PostgreSQL would then try one generic plan for all values, which for
        # a search is a bitmap of every row of the asker's conversations (seconds).
        budget = max(1, round(self.query_budget * 1000))
        self.bounded = budget / 1000
        conn = connect(
            self.dsn,
            self.timeout,
            options=f"-c default_transaction_read_only=on -c statement_timeout={budget}"
            " -c plan_cache_mode=force_custom_plan",
        )
        # Each statement is its own snapshot (autocommit): a BEGIN and a COMMIT around a
        # read would be two more round trips, each waiting for PostgreSQL's process to be
        # scheduled. A search's statement with a budget of its own is a transaction that
        # sets it (budget).
        return conn

    def lost(self) -> bool:
        """Whether the connection is gone (the next transaction makes a new one)."""
        return bool(self.conn.closed or self.conn.broken)

    @contextlib.contextmanager
    def transaction(self) -> Iterator[None]:
        """The reads of one call, each statement a snapshot of its own: a read of several
        statements (a msgid, then the window around it) may see in its later ones what
        was committed meanwhile, as it would had it come a moment later. A connection
        lost since the last read is made anew first (once: if the database is still away,
        this read fails)."""
        if self.lost():
            self.conn.close()
            self.conn = self._connect()
            self._warm()
        try:
            yield
        except psycopg.errors.QueryCanceled:
            raise QueryTooBroad("history") from None

    def close(self) -> None:
        self.conn.close()


class PostgresStore(PostgresReads):
    """The writer: every write, on the storage thread. ``secrets``: the shared secrets to
    keep when the database has none yet (``salon db import`` gives the data directory's);
    the others are made at random."""

    # Errors of the database or the connection to it, not bugs (QueryCanceled is one:
    # search turns it into QueryTooBroad first).
    OUTAGES: tuple[type[BaseException], ...] = (psycopg.OperationalError,)

    def __init__(
        self,
        dsn: str,
        query_budget: float = DEFAULT_BUDGET,
        secrets: Mapping[str, bytes] | None = None,
        *,
        timeout: float = CONNECT_TIMEOUT,
        retry_for: float = RETRY_FOR,
    ) -> None:
        self.dsn = dsn
        self.query_budget = query_budget
        self.timeout = timeout
        self.retry_for = retry_for
        self.conn = connect(dsn, timeout)
        self._depth = 0
        # The first history row of the transaction in hand (its target and msgid): after a
        # COMMIT whose answer was lost with the connection, it tells whether the
        # transaction took effect (committed()).
        self._first: tuple[str, str] | None = None
        given = dict(secrets or {})
        with self.transaction():
            # Nodes starting together on a new database: one makes the schema at a time.
            self._sql("SELECT pg_advisory_xact_lock(hashtext('salon schema'))")
            self.conn.execute(SCHEMA)
            now = str(int(time.time()))
            self._meta_insert("created", now)
            for name in SECRETS:
                value = given.get(name) or os.urandom(SECRET_SIZE)
                self._meta_insert(name, value.hex())
            for key, text in (("version", __version__), ("schema", str(SCHEMA_VERSION))):
                self._sql(
                    "INSERT INTO meta (key, value) VALUES (%s, %s)"
                    " ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                    (key, text),
                )

    def _meta_insert(self, key: str, value: str) -> None:
        """``key`` set unless it is already: every node keeps the first value."""
        self._sql(
            "INSERT INTO meta (key, value) VALUES (%s, %s) ON CONFLICT (key) DO NOTHING",
            (key, value),
        )

    def meta(self, key: str) -> str | None:
        row = self._sql("SELECT value FROM meta WHERE key = %s", (key,)).fetchone()
        return None if row is None else str(row[0])

    def secret(self, name: str) -> bytes:
        """A shared secret (``CLOAK_KEY``, ``ACCOUNT_SECRET``): the same on every node."""
        value = self.meta(name)
        if value is None:
            raise KeyError(name)
        return bytes.fromhex(value)

    def reader(self) -> PostgresReader:
        """A new reader of this database, for another thread."""
        return PostgresReader(self.dsn, self.query_budget, self.timeout)

    def reconnect(self, deadline: float) -> bool:
        """A new connection after the last one was lost, tried again and again (RETRY_FIRST
        seconds apart, doubling up to RETRY_MOST) until ``deadline`` (time.monotonic());
        whether one was made."""
        with contextlib.suppress(Exception):
            self.conn.close()
        self._depth = 0
        delay = RETRY_FIRST
        while True:
            left = deadline - time.monotonic()
            try:
                self.conn = connect(self.dsn, min(self.timeout, max(left, 0.0)))
                return True
            except psycopg.OperationalError:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                time.sleep(min(delay, left))
                delay = min(delay * 2, RETRY_MOST)

    def aborted(self) -> bool:
        """Whether the transaction in hand failed (PostgreSQL ends it at an error: what
        follows would fail, and COMMIT roll back what went before)."""
        return self.conn.info.transaction_status == psycopg.pq.TransactionStatus.INERROR

    def committed(self) -> bool:
        """Whether the last transaction took effect, its COMMIT's answer having been lost
        with the connection: its first history row is in the database. One without history
        rows is run again: its other writes (upserts, deletes) come out the same twice."""
        return self._first is not None and self.find(*self._first) is not None

    @contextlib.contextmanager
    def transaction(self) -> Iterator[None]:
        if self._depth:
            self._depth += 1
            try:
                yield
            finally:
                self._depth -= 1
            return
        self._depth = 1
        self._first = None
        try:
            with self.conn.transaction():
                yield
        finally:
            self._depth = 0

    def close(self) -> None:
        self.conn.close()

    # ------------------------------------------------------------------ accounts

    def load_accounts(self) -> list[AccountRecord]:
        out = []
        for row in self._sql(
            "SELECT name, password_hash, scram_salt, scram_iterations, scram_stored_key,"
            " scram_server_key, email, verified, created, certfps FROM accounts"
        ):
            name, password, salt, iterations, stored, server, email, verified, made, fps = row
            scram = None
            if salt is not None:
                scram = ScramCredentials(bytes(salt), iterations, bytes(stored), bytes(server))
            out.append(AccountRecord(name, password, scram, email, verified, made, tuple(fps)))
        return out

    def save_account(self, record: AccountRecord) -> None:
        scram = record.scram
        self._sql(
            "INSERT INTO accounts (name_cf, name, password_hash, scram_salt, scram_iterations,"
            " scram_stored_key, scram_server_key, email, verified, created, certfps)"
            " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)"
            " ON CONFLICT (name_cf) DO UPDATE SET name = excluded.name,"
            " password_hash = excluded.password_hash, scram_salt = excluded.scram_salt,"
            " scram_iterations = excluded.scram_iterations,"
            " scram_stored_key = excluded.scram_stored_key,"
            " scram_server_key = excluded.scram_server_key, email = excluded.email,"
            " verified = excluded.verified, created = excluded.created,"
            " certfps = excluded.certfps",
            (
                casefold(record.name),
                record.name,
                record.password_hash,
                scram.salt if scram else None,
                scram.iterations if scram else None,
                scram.stored_key if scram else None,
                scram.server_key if scram else None,
                record.email,
                record.verified,
                record.created,
                list(record.certfps),
            ),
        )

    def delete_account(self, name: str) -> None:
        self._sql("DELETE FROM accounts WHERE name_cf = %s", (casefold(name),))
        self._sql("DELETE FROM metadata WHERE account = %s", (casefold(name),))

    # ------------------------------------------------------------------ channels

    def load_channels(self) -> list[ChannelRecord]:
        out = []
        for (data,) in self._sql("SELECT record FROM channels"):
            for key in ("bans", "excepts", "invex"):
                data[key] = tuple(ListRecord(**entry) for entry in data.get(key, []))
            data["access"] = tuple((a, m) for a, m in data.get("access", []))
            data["metadata"] = tuple((k, v) for k, v in data.get("metadata", []))
            out.append(ChannelRecord(**data))
        return out

    def save_channel(self, record: ChannelRecord) -> None:
        data = {
            "name": record.name,
            "founder": record.founder,
            "created": record.created,
            "topic": record.topic,
            "topic_by": record.topic_by,
            "topic_time": record.topic_time,
            "modes": record.modes,
            "key": record.key,
            "limit": record.limit,
            "bans": [_list_entry(e) for e in record.bans],
            "excepts": [_list_entry(e) for e in record.excepts],
            "invex": [_list_entry(e) for e in record.invex],
            "access": [list(a) for a in record.access],
            "topiclock": record.topiclock,
            "metadata": [list(m) for m in record.metadata],
        }
        self._sql(
            "INSERT INTO channels (name_cf, record) VALUES (%s, %s)"
            " ON CONFLICT (name_cf) DO UPDATE SET record = excluded.record",
            (casefold(record.name), Jsonb(data)),
        )

    def delete_channel(self, name: str) -> None:
        self._sql("DELETE FROM channels WHERE name_cf = %s", (casefold(name),))

    # ------------------------------------------------------------------ server bans

    def load_server_bans(self) -> list[ServerBan]:
        return [
            ServerBan(*row)
            for row in self._sql(
                "SELECT kind, mask, reason, setter, created, expires FROM server_bans"
            )
        ]

    def save_server_ban(self, ban: ServerBan) -> None:
        self._sql(
            "INSERT INTO server_bans (kind, mask, reason, setter, created, expires)"
            " VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT (kind, mask) DO UPDATE SET"
            " reason = excluded.reason, setter = excluded.setter,"
            " created = excluded.created, expires = excluded.expires",
            (ban.kind, ban.mask, ban.reason, ban.setter, ban.created, ban.expires),
        )

    def delete_server_ban(self, kind: str, mask: str) -> None:
        self._sql("DELETE FROM server_bans WHERE kind = %s AND mask = %s", (kind, mask))

    # ------------------------------------------------------------------ small tables

    def load_read_markers(self) -> list[tuple[str, str, float]]:
        rows = self._sql("SELECT account, target, time FROM read_markers").fetchall()
        return [(str(a), str(t), float(w)) for a, t, w in rows]

    def set_read_marker(self, account: str, target: str, time: float) -> None:
        self._sql(
            "INSERT INTO read_markers (account, target, time) VALUES (%s, %s, %s)"
            " ON CONFLICT (account, target) DO UPDATE SET time = excluded.time",
            (account, target, time),
        )

    def load_private_channels(self) -> list[str]:
        return [str(r[0]) for r in self._sql("SELECT name_cf FROM private_channels")]

    def set_private_channel(self, cf: str, private: bool) -> None:
        if private:
            self._sql(
                "INSERT INTO private_channels (name_cf) VALUES (%s) ON CONFLICT DO NOTHING",
                (cf,),
            )
        else:
            self._sql("DELETE FROM private_channels WHERE name_cf = %s", (cf,))

    def load_rejoins(self) -> list[tuple[str, list[str]]]:
        rows = self._sql("SELECT account, channels FROM rejoin").fetchall()
        return [(str(a), list(c)) for a, c in rows]

    def set_rejoin(self, account: str, channels: Sequence[str]) -> None:
        if channels:
            self._sql(
                "INSERT INTO rejoin (account, channels) VALUES (%s, %s)"
                " ON CONFLICT (account) DO UPDATE SET channels = excluded.channels",
                (account, list(channels)),
            )
        else:
            self._sql("DELETE FROM rejoin WHERE account = %s", (account,))

    def load_metadata(self) -> list[tuple[str, str, str]]:
        rows = self._sql("SELECT account, key, value FROM metadata").fetchall()
        return [(str(a), str(k), str(v)) for a, k, v in rows]

    def set_metadata(self, account: str, key: str, value: str | None) -> None:
        if value is not None:
            self._sql(
                "INSERT INTO metadata (account, key, value) VALUES (%s, %s, %s)"
                " ON CONFLICT (account, key) DO UPDATE SET value = excluded.value",
                (account, key, value),
            )
        else:
            self._sql("DELETE FROM metadata WHERE account = %s AND key = %s", (account, key))

    # ------------------------------------------------------------------ files

    def load_files(self) -> list[FileRecord]:
        rows = self._sql(
            "SELECT id, blob, size, type, name, owner, created, deleted, owner_nick FROM files"
        ).fetchall()
        return [FileRecord(*row) for row in rows]

    def load_file_refs(self) -> list[FileRef]:
        rows = self._sql("SELECT file, target, msgid, time FROM file_refs").fetchall()
        return [FileRef(*row) for row in rows]

    def save_file(self, record: FileRecord) -> None:
        r = record
        self._sql(
            "INSERT INTO files (id, blob, size, type, name, owner, created, deleted, owner_nick)"
            " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s) ON CONFLICT (id) DO UPDATE SET"
            " deleted = excluded.deleted",
            (r.id, r.blob, r.size, r.type, r.name, r.owner, r.created, r.deleted, r.owner_nick),
        )

    def forget_file(self, file_id: str) -> None:
        self._sql("DELETE FROM files WHERE id = %s", (file_id,))
        self._sql("DELETE FROM file_refs WHERE file = %s", (file_id,))

    def add_file_refs(self, refs: Sequence[FileRef]) -> None:
        for ref in refs:
            self._sql(
                "INSERT INTO file_refs (file, target, msgid, time) VALUES (%s, %s, %s, %s)",
                tuple(ref),
            )

    def delete_file_refs(self, target: str, msgid: str | None = None) -> None:
        if msgid is None:
            self._sql("DELETE FROM file_refs WHERE target = %s", (target,))
        else:
            self._sql("DELETE FROM file_refs WHERE target = %s AND msgid = %s", (target, msgid))

    def delete_refs_of_file(self, file_id: str) -> None:
        self._sql("DELETE FROM file_refs WHERE file = %s", (file_id,))

    # ------------------------------------------------------------------ history

    def append_history(self, events: Sequence[HistoryEvent]) -> None:
        if not events:
            return
        rows = []
        counts: dict[str, list[float]] = {}
        partners = []
        for e in events:
            msgid, when, target, command, source, account, params, tags, display, party = e
            said = None
            if command == "PRIVMSG" or command == "NOTICE":
                said = tsvector(params[-1] if params else "")
            flat = [part for tag in tags for part in tag]
            rows.append(
                (msgid, when, target, command, source, account, list(params), flat, display,
                 party, said)
            )  # fmt: skip
            last = counts.setdefault(target, [-1.0, 0])
            if command in ACTIVITY:
                last[0] = max(last[0], when)
                last[1] += 1
            # display is set only on the private messages that (re)name a conversation.
            if display and party and is_dm(target):
                partners.append((party, target, display))
                partners.append((dm_other(target, party), target, source.split("!", 1)[0]))
        # Several statements: one transaction (a turn's, or this call's own).
        with self.transaction(), self.conn.cursor() as cur:
            if self._first is None:
                self._first = (events[0].target, events[0].msgid)
            if len(rows) > COPY_ROWS:
                with cur.copy(f"COPY history ({HISTORY_COLUMNS}) FROM STDIN") as copy:
                    for row in rows:
                        copy.write_row(row)
            # Pipeline mode: the statements go together, their results come back together
            # (one round trip, with the rows' INSERT when there are few; COPY cannot be in
            # a pipeline). A round trip waits for the database's process to be scheduled:
            # on a busy machine, each costs a delivery more than the work.
            with self.conn.pipeline():
                if len(rows) <= COPY_ROWS:
                    cur.executemany(
                        f"INSERT INTO history ({HISTORY_COLUMNS}) VALUES (%s, %s, %s, %s, %s,"
                        " %s, %s::text[], %s::text[], %s, %s, %s::tsvector)",
                        rows,
                    )
                # In key order: two nodes writing the same conversations lock them alike.
                cur.executemany(
                    "INSERT INTO conversations (target, last, messages) VALUES (%s, %s, %s)"
                    " ON CONFLICT (target) DO UPDATE SET"
                    " last = GREATEST(conversations.last, excluded.last),"
                    " messages = conversations.messages + excluded.messages",
                    [(t, c[0], int(c[1])) for t, c in sorted(counts.items())],
                )
                if partners:
                    cur.executemany(
                        "INSERT INTO dm_partners (party, conversation, partner)"
                        " VALUES (%s, %s, %s) ON CONFLICT (party, conversation)"
                        " DO UPDATE SET partner = excluded.partner",
                        partners,
                    )

    def rename_history(self, old: str, new: str) -> None:
        if old == new:
            return
        with self.transaction():
            self._sql("UPDATE history SET target = %s WHERE target = %s", (new, old))
            # Into a conversation that may exist already (a channel of that name had history).
            self._sql(
                "INSERT INTO conversations (target, last, messages)"
                " SELECT %s, last, messages FROM conversations WHERE target = %s"
                " ON CONFLICT (target) DO UPDATE SET"
                " last = GREATEST(conversations.last, excluded.last),"
                " messages = conversations.messages + excluded.messages",
                (new, old),
            )
            self._sql("DELETE FROM conversations WHERE target = %s", (old,))

    def redact_history(self, target: str, msgid: str) -> bool:
        with self.transaction():
            row = self.find(target, msgid)
            if row is None:
                return False
            self._sql("DELETE FROM history WHERE id = %s", (row[0],))
            if row[4] in ACTIVITY:
                # The conversation's last message may be an earlier one now.
                self._sql(
                    "UPDATE conversations SET messages = GREATEST(0, messages - 1),"
                    " last = COALESCE((SELECT time FROM history WHERE target = %s"
                    f" AND command IN {ACTIVITY_SQL} ORDER BY time DESC, id DESC LIMIT 1), -1)"
                    " WHERE target = %s",
                    (target, target),
                )
        return True

    def purge_history(
        self, before: float, target: str | None = None, exclude: Sequence[str] = ()
    ) -> int:
        """Everything :meth:`purge_step` removes, at once (at start, and in tests)."""
        return purge_all(self, before, target, exclude)

    def purge_step(
        self,
        before: float,
        target: str | None = None,
        exclude: Sequence[str] = (),
        after: str = "",
        most: int = PURGE_CHUNK,
    ) -> PurgeProgress:
        """Remove at most ``most`` events older than ``before``: of ``target``, or of
        every conversation from ``after`` on (in key order) but those in ``exclude``.
        Each conversation's old events are found through its index."""
        with self.transaction():
            return self._purge_step(before, target, set(exclude), after, most)

    def _purge_step(
        self, before: float, target: str | None, skip: set[str], after: str, most: int
    ) -> PurgeProgress:
        if target is not None:
            keys: list[str] = [target]
        else:
            keys = [
                str(row[0])
                for row in self._sql(
                    "SELECT target FROM conversations WHERE target >= %s ORDER BY target LIMIT %s",
                    (after, PURGE_SCAN),
                )
            ]
        removed = 0
        for key in keys:
            if key in skip:
                continue
            rows = self._sql(
                "DELETE FROM history WHERE id IN (SELECT id FROM history WHERE target = %s"
                " AND time < %s ORDER BY time LIMIT %s) RETURNING command",
                (key, before, most - removed),
            ).fetchall()
            if rows:
                removed += len(rows)
                counted = sum(1 for (command,) in rows if command in ACTIVITY)
                self._sql(
                    "UPDATE conversations SET messages = GREATEST(0, messages - %s)"
                    " WHERE target = %s",
                    (counted, key),
                )
            if removed >= most:
                return PurgeProgress(removed, key)  # this one may hold more
            if rows:
                # Every message before ``before`` is gone: a last one older is no more.
                self._sql(
                    "UPDATE conversations SET last = -1 WHERE target = %s AND last < %s",
                    (key, before),
                )
            if not self._sql("SELECT 1 FROM history WHERE target = %s LIMIT 1", (key,)).fetchone():
                self._sql("DELETE FROM conversations WHERE target = %s", (key,))
        if target is not None or len(keys) < PURGE_SCAN:
            return PurgeProgress(removed, None)
        return PurgeProgress(removed, keys[-1] + "\x01")


def _list_entry(entry: ListRecord) -> dict[str, Any]:
    return {"mask": entry.mask, "setter": entry.setter, "time": entry.time}
