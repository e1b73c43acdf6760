"""An in-memory Store: for the core's in-process tests and for throwaway servers.

It keeps the same contract as the SQLite store (tests/store/test_store_conformance.py holds
both to it): names are keys under the server's casemapping, a conversation's events are
in time order, an event's position never changes, and a search matches words as SQLite's
FTS5 ``unicode61`` tokenizer cuts them.
"""

from __future__ import annotations

import bisect
import contextlib
import re
import unicodedata
from collections.abc import Iterator, Sequence

from salon.proto.casemap import casefold
from salon.store.base import (
    AccountRecord,
    ChannelRecord,
    FileRecord,
    FileRef,
    HistoryEvent,
    HistoryQuery,
    PurgeProgress,
    SearchQuery,
    ServerBan,
    dm_other,
    is_dm,
)

_MESSAGES = frozenset({"PRIVMSG", "NOTICE", "TAGMSG"})
PURGE_CHUNK = 500  # events a purge step removes at most, as the SQLite store's
# A word of the search index: letters and digits (unicode61 cuts at everything else,
# the underscore included).
_WORD = re.compile(r"[^\W_]+")


def words(text: str) -> list[str]:
    """The words of ``text`` as the search index sees them (FTS5's unicode61 tokenizer):
    runs of letters and digits, in lower case, without their diacritics."""
    bare = unicodedata.normalize("NFD", text.lower())
    return _WORD.findall("".join(c for c in bare if not unicodedata.combining(c)))


def _has(found: list[str], phrase: list[str], prefix: bool) -> bool:
    """Whether ``phrase`` is a run of ``found`` (its last word a prefix if ``prefix``)."""
    last = len(phrase) - 1
    for i in range(len(found) - last):
        if all(
            found[i + j] == w or (prefix and j == last and found[i + j].startswith(w))
            for j, w in enumerate(phrase)
        ):
            return True
    return False


def text_matches(text: str, phrases: list[list[str]]) -> bool:
    """Every user word (cut into index words: a phrase) is in ``text``, the last as a
    prefix; a user word without letters or digits matches nothing (as in FTS5)."""
    found = words(text)
    last = len(phrases) - 1
    return all(p and _has(found, p, i == last) for i, p in enumerate(phrases))


def select_window(
    events: Sequence[HistoryEvent], seqs: Sequence[int], query: HistoryQuery
) -> list[HistoryEvent]:
    """Apply a :class:`HistoryQuery` to one conversation's events (oldest first) and
    their positions."""

    def after(e: HistoryEvent, i: int) -> bool:
        if query.start is None:
            return True
        if query.start_seq is None:
            return e.time > query.start
        return e.time > query.start or (e.time == query.start and i > query.start_seq)

    def before(e: HistoryEvent, i: int) -> bool:
        if query.end is None:
            return True
        if query.end_seq is None:
            return e.time < query.end
        return e.time < query.end or (e.time == query.end and i < query.end_seq)

    chosen = [
        e
        for i, e in zip(seqs, events, strict=True)
        if after(e, i)
        and before(e, i)
        and (query.events or e.command in ("PRIVMSG", "NOTICE"))
        and (query.since is None or e.time >= query.since)
    ]
    if query.newest_first:
        return chosen[-query.limit :] if query.limit else []
    return chosen[: query.limit]


class MemoryStore:
    def __init__(self) -> None:
        self.accounts: dict[str, AccountRecord] = {}
        self.channels: dict[str, ChannelRecord] = {}
        self.bans: dict[tuple[str, str], ServerBan] = {}
        self.markers: dict[tuple[str, str], float] = {}
        self.rejoins: dict[str, list[str]] = {}
        self.metadata: dict[str, dict[str, str]] = {}
        self.private_channels: set[str] = set()
        self.events: dict[str, list[HistoryEvent]] = {}
        # Each event's position (history_position), beside it: the order it was stored in,
        # never reused, so that a position stays valid after a redaction or a purge.
        self.seqs: dict[str, list[int]] = {}
        self.stored = 0
        self.partners: dict[tuple[str, str], str] = {}
        self.commits = 0
        self.files: dict[str, FileRecord] = {}
        self.file_refs: list[FileRef] = []

    @contextlib.contextmanager
    def transaction(self) -> Iterator[None]:
        yield
        self.commits += 1

    def close(self) -> None:
        pass

    # accounts
    def load_accounts(self) -> list[AccountRecord]:
        return list(self.accounts.values())

    def save_account(self, record: AccountRecord) -> None:
        self.accounts[casefold(record.name)] = record

    def delete_account(self, name: str) -> None:
        self.accounts.pop(casefold(name), None)
        self.metadata.pop(casefold(name), None)

    # channels
    def load_channels(self) -> list[ChannelRecord]:
        return list(self.channels.values())

    def save_channel(self, record: ChannelRecord) -> None:
        self.channels[casefold(record.name)] = record

    def delete_channel(self, name: str) -> None:
        self.channels.pop(casefold(name), None)

    # server bans
    def load_server_bans(self) -> list[ServerBan]:
        return list(self.bans.values())

    def save_server_ban(self, ban: ServerBan) -> None:
        self.bans[(ban.kind, ban.mask)] = ban

    def delete_server_ban(self, kind: str, mask: str) -> None:
        self.bans.pop((kind, mask), None)

    # read markers
    def load_read_markers(self) -> list[tuple[str, str, float]]:
        return [(a, t, ts) for (a, t), ts in self.markers.items()]

    def set_read_marker(self, account: str, target: str, time: float) -> None:
        self.markers[(account, target)] = time

    # private channels
    def load_private_channels(self) -> list[str]:
        return sorted(self.private_channels)

    def set_private_channel(self, cf: str, private: bool) -> None:
        if private:
            self.private_channels.add(cf)
        else:
            self.private_channels.discard(cf)

    # metadata (a value of None removes the key)
    def load_metadata(self) -> list[tuple[str, str, str]]:
        return [(a, k, v) for a, keys in self.metadata.items() for k, v in keys.items()]

    def set_metadata(self, account: str, key: str, value: str | None) -> None:
        if value is not None:
            self.metadata.setdefault(account, {})[key] = value
        elif key in self.metadata.get(account, {}):
            del self.metadata[account][key]
            if not self.metadata[account]:
                del self.metadata[account]

    # rejoin (an empty list forgets the account)
    def load_rejoins(self) -> list[tuple[str, list[str]]]:
        return [(a, list(names)) for a, names in self.rejoins.items()]

    def set_rejoin(self, account: str, channels: Sequence[str]) -> None:
        if channels:
            self.rejoins[account] = list(channels)
        else:
            self.rejoins.pop(account, None)

    # files
    def load_files(self) -> list[FileRecord]:
        return list(self.files.values())

    def load_file_refs(self) -> list[FileRef]:
        return list(self.file_refs)

    def save_file(self, record: FileRecord) -> None:
        self.files[record.id] = record

    def forget_file(self, file_id: str) -> None:
        self.files.pop(file_id, None)
        self.file_refs = [r for r in self.file_refs if r.file != file_id]

    def add_file_refs(self, refs: Sequence[FileRef]) -> None:
        self.file_refs.extend(refs)

    def delete_file_refs(self, target: str, msgid: str | None = None) -> None:
        self.file_refs = [
            r
            for r in self.file_refs
            if not (r.target == target and (msgid is None or r.msgid == msgid))
        ]

    def delete_refs_of_file(self, file_id: str) -> None:
        self.file_refs = [r for r in self.file_refs if r.file != file_id]

    # history
    def append_history(self, events: Sequence[HistoryEvent]) -> None:
        for event in events:
            kept = self.events.setdefault(event.target, [])
            seqs = self.seqs.setdefault(event.target, [])
            self.stored += 1
            if not kept or kept[-1].time <= event.time:
                kept.append(event)
                seqs.append(self.stored)
            else:
                # Older than the last (the clock stepped back): in time order, as an index
                # on (time, position) keeps it.
                at = bisect.bisect_right(kept, event.time, key=lambda e: e.time)
                kept.insert(at, event)
                seqs.insert(at, self.stored)
            if is_dm(event.target) and event.party and event.display:
                self.partners[(event.party, event.target)] = event.display
                other = dm_other(event.target, event.party)
                self.partners[(other, event.target)] = event.source.split("!", 1)[0]

    def _find(self, target: str, msgid: str) -> int | None:
        for i, event in enumerate(self.events.get(target, [])):
            if event.msgid == msgid:
                return i
        return None

    def dm_partners(self, party: str) -> list[tuple[str, str]]:
        return [(conv, name) for (p, conv), name in self.partners.items() if p == party]

    def history_event(self, target: str, msgid: str) -> HistoryEvent | None:
        i = self._find(target, msgid)
        return None if i is None else self.events[target][i]

    def rename_history(self, old: str, new: str) -> None:
        if old == new or old not in self.events:
            return
        events = self.events.pop(new, []) + [e._replace(target=new) for e in self.events.pop(old)]
        seqs = self.seqs.pop(new, []) + self.seqs.pop(old)
        both = sorted(
            zip(events, seqs, strict=True),
            key=lambda pair: (pair[0].time, pair[1]),
        )
        self.events[new] = [e for e, _ in both]
        self.seqs[new] = [s for _, s in both]

    def history(self, query: HistoryQuery) -> list[HistoryEvent]:
        target = query.target
        return select_window(self.events.get(target, []), self.seqs.get(target, []), query)

    def history_position(self, target: str, msgid: str) -> tuple[float, int] | None:
        i = self._find(target, msgid)
        return None if i is None else (self.events[target][i].time, self.seqs[target][i])

    def history_time_of(self, target: str, msgid: str) -> float | None:
        i = self._find(target, msgid)
        return None if i is None else self.events[target][i].time

    def history_targets(
        self,
        targets: Sequence[str],
        start: float,
        end: float,
        limit: int,
        private_since: float | None = None,
    ) -> list[tuple[str, float]]:
        lo, hi = min(start, end), max(start, end)
        found = []
        for target in dict.fromkeys(targets):
            floor = private_since if private_since is not None and target[:1] != "#" else None
            times = [
                e.time
                for e in self.events.get(target, [])
                if e.command in _MESSAGES and (floor is None or e.time >= floor)
            ]
            if times and lo < max(times) < hi:
                found.append((target, max(times)))
        found.sort(key=lambda item: item[1])
        return found[:limit]

    def redact_history(self, target: str, msgid: str) -> bool:
        i = self._find(target, msgid)
        if i is None:
            return False
        del self.events[target][i]
        del self.seqs[target][i]
        return True

    def search_history(self, query: SearchQuery) -> list[HistoryEvent]:
        phrases = [words(w) for w in query.text.split()]
        found = []
        for target in dict.fromkeys(query.targets):
            for seq, e in zip(self.seqs.get(target, []), self.events.get(target, []), strict=True):
                if e.command not in ("PRIVMSG", "NOTICE"):
                    continue
                if query.start is not None and e.time <= query.start:
                    continue
                if query.end is not None and e.time >= query.end:
                    continue
                if query.sender and casefold(e.source.split("!")[0]) != query.sender:
                    continue
                if (
                    query.private_since is not None
                    and target[:1] != "#"
                    and e.time < query.private_since
                ):
                    continue
                if text_matches(e.text, phrases):
                    found.append((e.time, seq, e))
        found.sort(key=lambda item: item[:2])
        return [e for _, _, e in found[-query.limit :]]

    def purge_history(
        self, before: float, target: str | None = None, exclude: Sequence[str] = ()
    ) -> int:
        """Everything :meth:`purge_step` removes, at once."""
        return self.purge_step(before, target, exclude, most=0).removed

    def purge_step(
        self,
        before: float,
        target: str | None = None,
        exclude: Sequence[str] = (),
        after: str = "",
        most: int = PURGE_CHUNK,
    ) -> PurgeProgress:
        """Remove at most ``most`` (0: no bound) events older than ``before``: of
        ``target``, or of every conversation from ``after`` on (in key order) but those
        in ``exclude``."""
        keys = [target] if target is not None else sorted(k for k in self.events if k >= after)
        skip = set(exclude)
        removed = 0
        for key in keys:
            if key in skip or key not in self.events:
                continue
            events = self.events[key]
            # Events are in time order: the old ones come first.
            old = bisect.bisect_left(events, before, key=lambda e: e.time)
            if most:
                old = min(old, most - removed)
            del events[:old]
            del self.seqs[key][:old]
            removed += old
            if not events:
                del self.events[key], self.seqs[key]
            if most and removed >= most:
                return PurgeProgress(removed, key)  # this one may hold more
        return PurgeProgress(removed, None)
