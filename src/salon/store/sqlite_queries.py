"""History reads on an SQLite connection: the writer's, or a reader's of its own.

Rows are indexed (by conversation, for search, in the conversations table) in batches
after they are committed (``SQLiteStore.maintain``), so every read is made of two parts:
the indexed rows, found through the indexes, and the *tail* of rows stored since the last
indexing (ids above ``fts_state.indexed``, at most a few thousand), found by id. A read
never indexes: readers never write, and a read never waits for the writer.

Every read runs under a budget (``query_budget`` seconds, enforced by SQLite's progress
handler): a query that runs out of it is interrupted. A search returns the newest matches
it found by then, or raises :class:`~salon.errors.QueryTooBroad` if it found none.
"""

from __future__ import annotations

import contextlib
import json
import math
import sqlite3
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from salon.errors import QueryTooBroad
from salon.store.base import HistoryEvent, HistoryQuery, SearchQuery, msgid_time

# The first row not yet indexed is the one after this mark.
MARK = "(SELECT indexed FROM fts_state WHERE id = 1)"
MESSAGES = "('PRIVMSG', 'NOTICE')"
ACTIVITY = "('PRIVMSG', 'NOTICE', 'TAGMSG')"
# The casefolded nick of a row's source (``nick!user@host``): SQLite's lower() folds ASCII
# letters only, as CASEMAPPING=ascii does (salon.proto.casemap).
SENDER = "lower(substr(h.source, 1, instr(h.source || '!', '!') - 1))"
# SQLite calls the progress handler every this many virtual machine instructions: often
# enough to stop within a fraction of a millisecond of the deadline.
PROGRESS_STEPS = 2000
DEFAULT_BUDGET = 0.05  # seconds a read may take; see HistorySection.query_budget
# A search scans conversations of at most SCAN_FIRST_ROWS rows at once; for bigger ones it
# walks the index's matches first, for WALK_SHARE of its budget (search_history). A scan
# matches SCAN_CHUNK rows at a time.
SCAN_FIRST_ROWS = 2000
WALK_SHARE = 0.6
# A last word shorter than this is first looked for as a whole word, for EXACT_SHARE of
# the budget (search_history).
PREFIX_MIN = 4
EXACT_SHARE = 0.3
SCAN_CHUNK = 256
# Rows the search index finds for a word of several tokens are matched exactly this many
# at first, then twice as many each time up to SCAN_CHUNK (a small LIMIT needs few).
FIRST_CHUNK = 32


def event_from_row(row: sqlite3.Row) -> HistoryEvent:
    return HistoryEvent(
        msgid=row["msgid"],
        time=row["time"],
        target=row["target"],
        command=row["command"],
        source=row["source"],
        account=row["account"],
        # PRIVMSG/NOTICE keep their two parameters in columns (dest, text; an empty dest
        # is the target); the rest as JSON.
        params=(row["dest"] or row["target"], row["text"])
        if not row["params"]
        else tuple(json.loads(row["params"])),
        tags=tuple((k, v) for k, v in json.loads(row["tags"])) if row["tags"] else (),
        display=row["display"],
        party=row["party"],
    )


def fts_query(text: str, prefix: bool = True) -> str:
    """User words as an FTS5 query: every word must match (prefix match on the last,
    unless ``prefix`` is false)."""
    words = [w.replace('"', '""') for w in text.split() if w]
    if not words:
        return '""'
    last = f'"{words[-1]}"*' if prefix else f'"{words[-1]}"'
    terms = [f'"{w}"' for w in words[:-1]] + [last]
    return " AND ".join(terms)


def _window(query: HistoryQuery, alias: str) -> tuple[list[str], list[Any]]:
    """The conditions of a history window on ``alias`` (a table with time and id)."""
    clauses: list[str] = []
    args: list[Any] = []
    if query.start is not None:
        if query.start_seq is None:
            clauses.append(f"{alias}.time > ?")
            args.append(query.start)
        else:
            # A row value: the planner uses it as one range of the (target, time, id) index.
            clauses.append(f"({alias}.time, {alias}.id) > (?, ?)")
            args += [query.start, query.start_seq]
    if query.end is not None:
        if query.end_seq is None:
            clauses.append(f"{alias}.time < ?")
            args.append(query.end)
        else:
            clauses.append(f"({alias}.time, {alias}.id) < (?, ?)")
            args += [query.end, query.end_seq]
    if query.since is not None:
        clauses.append(f"{alias}.time >= ?")
        args.append(query.since)
    return clauses, args


def _search_filters(query: SearchQuery) -> tuple[list[str], list[Any]]:
    """Conditions on ``h`` (a history row) that every search applies."""
    clauses = [f"h.command IN {MESSAGES}"]
    args: list[Any] = []
    if query.sender:
        clauses.append(f"{SENDER} = ?")
        args.append(query.sender)
    if query.start is not None:
        clauses.append("h.time > ?")
        args.append(query.start)
    if query.end is not None:
        clauses.append("h.time < ?")
        args.append(query.end)
    if query.private_since is not None:
        # Channel keys start with '#'; private conversation keys never do.
        clauses.append("(substr(h.target, 1, 1) = '#' OR h.time >= ?)")
        args.append(query.private_since)
    return clauses, args


class HistoryReads:
    """The history queries, on ``self.conn``; mixed into the writer and the readers."""

    conn: sqlite3.Connection
    query_budget: float = DEFAULT_BUDGET
    clock: Callable[[], float] = staticmethod(time.monotonic)  # tests give one of theirs

    # ------------------------------------------------------------------ budget

    @contextlib.contextmanager
    def budget(self, seconds: float | None = None) -> Iterator[None]:
        """Run the statements inside for at most ``seconds`` (``query_budget`` by
        default): past it, SQLite interrupts the statement in hand, and this raises
        :class:`~salon.errors.QueryTooBroad`."""
        clock = self.clock
        deadline = clock() + (self.query_budget if seconds is None else seconds)

        def over() -> bool:
            return clock() > deadline

        self.conn.set_progress_handler(over, PROGRESS_STEPS)
        try:
            yield
        except sqlite3.OperationalError as exc:
            if "interrupted" not in str(exc):
                raise
            raise QueryTooBroad("history") from None
        finally:
            self.conn.set_progress_handler(None, 0)

    # ------------------------------------------------------------------ one message

    def find(self, target: str, msgid: str) -> sqlite3.Row | None:
        """The row of a message of ``target`` by its msgid: through the conversation index
        at the time the msgid carries (within a second of it), or among the tail; a msgid
        without a time only in a database from before (with its index on msgid)."""
        when = msgid_time(msgid)
        if when is None:
            if not self._has_msgid_index():
                return None
            found: sqlite3.Row | None = self.conn.execute(
                "SELECT * FROM history WHERE msgid = ? AND target = ?", (msgid, target)
            ).fetchone()
            return found
        row: sqlite3.Row | None = self.conn.execute(
            "SELECT * FROM history WHERE id IN (SELECT id FROM history_by_target"
            " WHERE target = ? AND time >= ? AND time <= ?) AND msgid = ?"
            f" UNION ALL SELECT * FROM history WHERE id > {MARK} AND target = ? AND msgid = ?"
            " LIMIT 1",
            (target, when - 1, when + 1, msgid, target, msgid),
        ).fetchone()
        if row is None and self._has_msgid_index():
            row = self.conn.execute(
                "SELECT * FROM history WHERE msgid = ? AND target = ?", (msgid, target)
            ).fetchone()
        return row

    def _has_msgid_index(self) -> bool:
        cached: bool | None = getattr(self, "_msgid_index", None)
        if cached is None:
            cached = (
                self.conn.execute(
                    "SELECT 1 FROM sqlite_master WHERE type = 'index' AND name = 'history_msgid'"
                ).fetchone()
                is not None
            )
            self._msgid_index = cached
        return cached

    def history_event(self, target: str, msgid: str) -> HistoryEvent | None:
        row = self.find(target, msgid)
        return None if row is None else event_from_row(row)

    def history_position(self, target: str, msgid: str) -> tuple[float, int] | None:
        row = self.find(target, msgid)
        return None if row is None else (float(row["time"]), int(row["id"]))

    def history_time_of(self, target: str, msgid: str) -> float | None:
        row = self.find(target, msgid)
        return None if row is None else float(row["time"])

    # ------------------------------------------------------------------ windows

    def history(self, query: HistoryQuery) -> list[HistoryEvent]:
        order = "DESC" if query.newest_first else "ASC"
        indexed, args = _window(query, "t")
        tail, tail_args = _window(query, "h")
        kinds = "" if query.events else f" AND h.command IN {MESSAGES}"
        where = " AND ".join(["t.target = ?", *indexed])
        tail_where = " AND ".join([f"h.id > {MARK}", "h.target = ?", *tail])
        sql = (
            "SELECT * FROM (SELECT h.* FROM history_by_target t JOIN history h ON h.id = t.id"
            f" WHERE {where}{kinds} ORDER BY t.time {order}, t.id {order} LIMIT ?)"
            f" UNION ALL SELECT * FROM (SELECT h.* FROM history h WHERE {tail_where}{kinds}"
            f" ORDER BY h.time {order}, h.id {order} LIMIT ?)"
            f" ORDER BY time {order}, id {order} LIMIT ?"
        )
        values = [query.target, *args, query.limit, query.target, *tail_args]
        values += [query.limit, query.limit]
        rows = [event_from_row(r) for r in self.conn.execute(sql, values)]
        if query.newest_first:
            rows.reverse()
        return rows

    def dm_partners(self, party: str) -> list[tuple[str, str]]:
        rows = self.conn.execute(
            "SELECT conversation, partner FROM dm_partners WHERE party = ?", (party,)
        )
        return [(row["conversation"], row["partner"]) for row in rows]

    def history_targets(
        self,
        targets: Sequence[str],
        start: float,
        end: float,
        limit: int,
        private_since: float | None = None,
    ) -> list[tuple[str, float]]:
        """The conversations among ``targets`` whose last message falls between ``start``
        and ``end``: one lookup each in the conversations table, plus the tail."""
        if not targets:
            return []
        lo, hi = min(start, end), max(start, end)
        floor = -1.0 if private_since is None else private_since
        last: dict[str, float] = {}
        keys = list(dict.fromkeys(targets))
        for i in range(0, len(keys), 500):
            part = keys[i : i + 500]
            marks = ",".join("?" * len(part))
            rows = self.conn.execute(
                f"SELECT target, last FROM conversations WHERE target IN ({marks})"
                f" UNION ALL SELECT target, MAX(time) FROM history WHERE id > {MARK}"
                f" AND target IN ({marks}) AND command IN {ACTIVITY} GROUP BY target",
                (*part, *part),
            )
            for target, when in rows:
                if when > last.get(target, -1.0):
                    last[target] = when
        found = [
            (target, when)
            for target, when in last.items()
            if lo < when < hi and (target[:1] == "#" or when >= floor)
        ]
        found.sort(key=lambda item: item[1])
        return found[:limit]

    # ------------------------------------------------------------------ search

    def search_history(self, query: SearchQuery) -> list[HistoryEvent]:
        """The newest ``limit`` messages of ``query.targets`` that have every word (the
        last as a prefix), oldest first; see the module's note on the budget.

        Small conversations are scanned newest first, each chunk matched through a
        temporary index (never the network's matches filtered afterwards). Bigger ones
        first walk the search index's matches newest first, keeping theirs, for
        WALK_SHARE of the budget: a rare word, or a common one, is found at once. When
        that is not enough (a word common elsewhere and rare here), the conversations
        are scanned with what is left of the budget."""
        if not query.targets:
            return []
        found: dict[int, sqlite3.Row] = {}
        match = fts_query(query.text) if query.text.strip() else None
        start, whole = self.clock(), self.query_budget

        def left(share: float) -> float:
            return max(0.0, start + whole * share - self.clock())

        try:
            with self.budget():
                self._search_tail(query, match, found)
                if match is None or self.scan_first(query):
                    self._search_conversations(query, match, found)
                    return self._newest(query, found)
            before = len(found)
            walks = [(True, WALK_SHARE)]
            if len(query.text.split()[-1]) < PREFIX_MIN:
                # A short last word is a prefix of many words ("the": then, there, they...),
                # whose posting lists FTS5 merges before it yields a first match: its exact
                # matches are tried first, and are the answer when there are enough.
                walks.insert(0, (False, EXACT_SHARE))
            for prefix, share in walks:
                try:
                    with self.budget(left(share)):
                        every = self._search_index(query, prefix, found)
                    if len(found) - before >= query.limit or (every and prefix):
                        return self._newest(query, found)
                except QueryTooBroad:
                    pass
            with self.budget(left(1.0)):
                self._search_conversations(query, match, found)
        except QueryTooBroad:
            if not found:
                raise
        return self._newest(query, found)

    @staticmethod
    def _newest(query: SearchQuery, found: dict[int, sqlite3.Row]) -> list[HistoryEvent]:
        rows = sorted(found.values(), key=lambda r: (r["time"], r["id"]))[-query.limit :]
        return [event_from_row(r) for r in rows]

    def scan_first(self, query: SearchQuery) -> bool:
        """Whether the search's conversations are small enough to scan at once (their
        row counts are kept in the conversations table)."""
        marks = ",".join("?" * len(query.targets))
        rows = self.conn.execute(
            f"SELECT COALESCE(SUM(messages), 0) FROM conversations WHERE target IN ({marks})",
            query.targets,
        ).fetchone()[0]
        return int(rows) <= SCAN_FIRST_ROWS

    def _search_index(
        self, query: SearchQuery, prefix: bool, found: dict[int, sqlite3.Row]
    ) -> bool:
        """Walk the matches newest first (by id, which follows time), keeping those of
        the search's conversations, until ``limit`` of them; True when every match was
        seen (the walk's answer is then complete). ``prefix``: the last word is a prefix.

        A search index without positions (``detail=none``) finds the rows that have every
        word's tokens anywhere; when a word is several tokens ("don't", "foo-bar": a
        phrase), those rows are then matched in chunks, exactly, as the scans do."""
        filters, args = _search_filters(query)
        targets = set(query.targets)
        match = fts_query(query.text, prefix)
        coarse = self._coarse_query(query.text, prefix) if self._coarse_index() else None
        rows = self.conn.execute(
            "SELECT h.* FROM history_fts CROSS JOIN history h ON h.id = history_fts.rowid"
            f" WHERE history_fts MATCH ? AND {' AND '.join(filters)}"
            " ORDER BY history_fts.rowid DESC",
            (match if coarse is None else coarse, *args),
        )
        want = len(found) + query.limit
        waiting: list[sqlite3.Row] = []
        chunk = FIRST_CHUNK
        for row in rows:
            if row["target"] not in targets:
                continue
            if coarse is not None:
                waiting.append(row)
                if len(waiting) < chunk:
                    continue
                hits, waiting = self._matching(waiting, match), []
                chunk = min(2 * chunk, SCAN_CHUNK)
            else:
                hits = [row]
            for hit in hits:
                found[hit["id"]] = hit
                if len(found) >= want:
                    return False
        for hit in self._matching(waiting, match) if waiting else ():
            found[hit["id"]] = hit
            if len(found) >= want:
                return False
        return True

    def _coarse_index(self) -> bool:
        """Whether the search index keeps no positions (``detail=none``, databases made
        since; earlier ones keep theirs)."""
        cached: bool | None = getattr(self, "_coarse", None)
        if cached is None:
            row = self.conn.execute(
                "SELECT sql FROM sqlite_master WHERE name = 'history_fts'"
            ).fetchone()
            cached = row is not None and "detail=none" in row[0].replace(" ", "")
            self._coarse = cached
        return cached

    def _coarse_query(self, text: str, prefix: bool) -> str | None:
        """``text`` as a query an index without positions answers: every token of every
        word, the last as a prefix if ``prefix``; None when every word is one token (the
        query is then the same). The words are cut by SQLite's own tokenizer."""
        conn = self.conn
        conn.execute(
            "CREATE VIRTUAL TABLE IF NOT EXISTS temp.words_fts USING fts5(text, tokenize='unicode61')"
        )
        conn.execute(
            "CREATE VIRTUAL TABLE IF NOT EXISTS temp.words_vocab"
            " USING fts5vocab(temp, words_fts, 'instance')"
        )
        conn.execute("DELETE FROM temp.words_fts")
        words = text.split()
        conn.executemany(
            "INSERT INTO temp.words_fts (rowid, text) VALUES (?, ?)", list(enumerate(words))
        )
        tokens: list[list[str]] = [[] for _ in words]
        for doc, term in conn.execute(
            "SELECT doc, term FROM temp.words_vocab ORDER BY doc, offset"
        ):
            tokens[doc].append(term.replace('"', '""'))
        if any(not t for t in tokens):
            return '""'  # a word without letters or digits: nothing matches
        if all(len(t) == 1 for t in tokens):
            return None
        terms = [f'"{t}"' for word in tokens for t in word]
        if prefix:
            terms[-1] += "*"
        return " AND ".join(terms)

    def _matching(self, rows: list[sqlite3.Row], match: str) -> list[sqlite3.Row]:
        """Those of ``rows`` whose text matches ``match``, through a temporary index of this
        connection's own (SQLite's own tokenizer, so a row matches here exactly when it
        would in the search index). The index keeps no copy of the texts (contentless), so
        it is emptied at once ('delete-all') instead of row by row."""
        conn = self.conn
        conn.execute(
            "CREATE VIRTUAL TABLE IF NOT EXISTS temp.scan_fts"
            " USING fts5(text, tokenize='unicode61', content='', columnsize=0)"
        )
        conn.execute("INSERT INTO temp.scan_fts (scan_fts) VALUES ('delete-all')")
        # In the order of their ids: FTS5 writes its pending rows out as a segment of their
        # own whenever an id comes lower than the one before (rows come newest first).
        conn.executemany(
            "INSERT INTO temp.scan_fts (rowid, text) VALUES (?, ?)",
            sorted([(r["id"], r["text"]) for r in rows]),
        )
        ids = {
            r[0]
            for r in conn.execute(
                "SELECT rowid FROM temp.scan_fts WHERE scan_fts MATCH ?", (match,)
            )
        }
        return [r for r in rows if r["id"] in ids]

    def _search_conversations(
        self, query: SearchQuery, match: str | None, found: dict[int, sqlite3.Row]
    ) -> None:
        """Each conversation newest first through the conversation index, in chunks; with
        words, each chunk is matched exactly (:meth:`_matching`). Every conversation gives
        at most ``limit`` rows."""
        filters, args = _search_filters(query)
        sql = (
            "SELECT h.* FROM history_by_target t CROSS JOIN history h ON h.id = t.id"
            f" WHERE t.target = ? AND (t.time, t.id) < (?, ?) AND {' AND '.join(filters)}"
            " ORDER BY t.time DESC, t.id DESC LIMIT ?"
        )
        conn = self.conn
        size = query.limit if match is None else SCAN_CHUNK
        for target in query.targets:
            got = 0
            position: tuple[float, int] = (math.inf, 0)
            while got < query.limit:
                chunk = conn.execute(sql, (target, *position, *args, size)).fetchall()
                if not chunk:
                    break
                hits = chunk if match is None else self._matching(chunk, match)
                for row in hits[: query.limit - got]:
                    found[row["id"]] = row
                    got += 1
                if len(chunk) < size:
                    break
                position = (chunk[-1]["time"], chunk[-1]["id"])

    def _search_tail(
        self, query: SearchQuery, match: str | None, found: dict[int, sqlite3.Row]
    ) -> None:
        """The rows not indexed yet: matched through a temporary index of this
        connection's own, brought up to date incrementally."""
        filters, args = _search_filters(query)
        marks = ",".join("?" * len(query.targets))
        if match is None:
            sql = (
                f"SELECT h.* FROM history h WHERE h.id > {MARK} AND h.target IN ({marks})"
                f" AND {' AND '.join(filters)}"
            )
            for row in self.conn.execute(sql, (*query.targets, *args)):
                found[row["id"]] = row
            return
        conn = self.conn
        conn.execute(
            "CREATE VIRTUAL TABLE IF NOT EXISTS temp.tail_fts"
            " USING fts5(text, msgid UNINDEXED, tokenize='unicode61')"
        )
        mark = int(conn.execute(f"SELECT {MARK}").fetchone()[0])
        # Rows indexed since, deleted, or whose id a new row took (the newest row's id is
        # free again once it is deleted) leave; the tail's other rows come in.
        conn.execute(
            "DELETE FROM temp.tail_fts WHERE rowid <= ? OR rowid IN (SELECT f.rowid"
            " FROM temp.tail_fts f LEFT JOIN history h ON h.id = f.rowid AND h.msgid = f.msgid"
            " WHERE h.id IS NULL)",
            (mark,),
        )
        conn.execute(
            "INSERT INTO temp.tail_fts (rowid, text, msgid) SELECT id, text, msgid FROM history"
            f" WHERE id > ? AND command IN {MESSAGES}"
            " AND id NOT IN (SELECT rowid FROM temp.tail_fts)",
            (mark,),
        )
        sql = (
            "SELECT h.* FROM temp.tail_fts f CROSS JOIN history h"
            " ON h.id = f.rowid AND h.msgid = f.msgid"
            f" WHERE tail_fts MATCH ? AND h.id > ? AND h.target IN ({marks})"
            f" AND {' AND '.join(filters)}"
        )
        for row in conn.execute(sql, (match, mark, *query.targets, *args)):
            found[row["id"]] = row


class SQLiteReader(HistoryReads):
    """A read-only connection of its own to the database, for one reading thread: its
    reads see every transaction committed before they start (WAL snapshots), and neither
    wait for the writer nor make it wait."""

    def __init__(self, path: Path, query_budget: float = DEFAULT_BUDGET) -> None:
        self.query_budget = query_budget
        # Read-only for the database (its temporary search index is its own, in memory).
        self.conn = sqlite3.connect(
            f"{path.resolve().as_uri()}?mode=ro",
            uri=True,
            isolation_level=None,
            check_same_thread=False,
        )
        self.conn.row_factory = sqlite3.Row
        self.conn.execute("PRAGMA cache_size=-16384")
        self.conn.execute("PRAGMA temp_store=MEMORY")

    @contextlib.contextmanager
    def transaction(self) -> Iterator[None]:
        """One snapshot for the reads inside (a deferred transaction takes no lock)."""
        self.conn.execute("BEGIN")
        try:
            yield
        finally:
            # A search writes its temporary indexes, and when the budget interrupts one of
            # those writes SQLite rolls back the whole transaction itself.
            if self.conn.in_transaction:
                self.conn.execute("COMMIT")

    def close(self) -> None:
        self.conn.close()
