"""An in-memory Store: for the core's in-process tests and for throwaway servers."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence

from salon.store.base import (
    AccountRecord,
    ChannelRecord,
    HistoryEvent,
    HistoryQuery,
    PurgeProgress,
    SearchQuery,
    ServerBan,
    dm_other,
    is_dm,
)

_MESSAGES = frozenset({"PRIVMSG", "NOTICE", "TAGMSG"})


def select_window(events: Sequence[HistoryEvent], query: HistoryQuery) -> list[HistoryEvent]:
    """Apply a :class:`HistoryQuery` to one conversation's events (oldest first)."""

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
        for i, e in enumerate(events)
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
        self.private_channels: set[str] = set()
        self.events: dict[str, list[HistoryEvent]] = {}
        self.partners: dict[tuple[str, str], str] = {}
        self.commits = 0

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
        self.accounts[record.name.lower()] = record

    def delete_account(self, name: str) -> None:
        self.accounts.pop(name.lower(), None)

    # channels
    def load_channels(self) -> list[ChannelRecord]:
        return list(self.channels.values())

    def save_channel(self, record: ChannelRecord) -> None:
        self.channels[record.name.lower()] = record

    def delete_channel(self, name: str) -> None:
        self.channels.pop(name.lower(), None)

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

    # rejoin (an empty list forgets the account)
    def load_rejoins(self) -> list[tuple[str, list[str]]]:
        return [(a, list(names)) for a, names in self.rejoins.items()]

    def set_rejoin(self, account: str, channels: Sequence[str]) -> None:
        if channels:
            self.rejoins[account] = list(channels)
        else:
            self.rejoins.pop(account, None)

    # history
    def append_history(self, events: Sequence[HistoryEvent]) -> None:
        for event in events:
            self.events.setdefault(event.target, []).append(event)
            if is_dm(event.target) and event.party and event.display:
                self.partners[(event.party, event.target)] = event.display
                other = dm_other(event.target, event.party)
                self.partners[(other, event.target)] = event.source.split("!", 1)[0]

    def dm_partners(self, party: str) -> list[tuple[str, str]]:
        return [(conv, name) for (p, conv), name in self.partners.items() if p == party]

    def history_event(self, target: str, msgid: str) -> HistoryEvent | None:
        for event in self.events.get(target, []):
            if event.msgid == msgid:
                return event
        return None

    def rename_history(self, old: str, new: str) -> None:
        moved = self.events.pop(old, [])
        self.events.setdefault(new, []).extend(e._replace(target=new) for e in moved)

    def history(self, query: HistoryQuery) -> list[HistoryEvent]:
        return select_window(self.events.get(query.target, []), query)

    def history_position(self, target: str, msgid: str) -> tuple[float, int] | None:
        for i, event in enumerate(self.events.get(target, [])):
            if event.msgid == msgid:
                return event.time, i
        return None

    def history_time_of(self, target: str, msgid: str) -> float | None:
        for event in self.events.get(target, []):
            if event.msgid == msgid:
                return event.time
        return None

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
        for target in targets:
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
        events = self.events.get(target, [])
        for i, event in enumerate(events):
            if event.msgid == msgid:
                del events[i]
                return True
        return False

    def search_history(self, query: SearchQuery) -> list[HistoryEvent]:
        words = query.text.lower().split()
        found = []
        for target in query.targets:
            for e in self.events.get(target, []):
                if e.command not in ("PRIVMSG", "NOTICE"):
                    continue
                if query.start is not None and e.time <= query.start:
                    continue
                if query.end is not None and e.time >= query.end:
                    continue
                if query.sender and e.source.split("!")[0].lower() != query.sender:
                    continue
                if (
                    query.private_since is not None
                    and target[:1] != "#"
                    and e.time < query.private_since
                ):
                    continue
                if all(w in e.text.lower() for w in words):
                    found.append(e)
        found.sort(key=lambda e: e.time)
        return found[-query.limit :]

    def purge_history(
        self, before: float, target: str | None = None, exclude: Sequence[str] = ()
    ) -> int:
        removed = 0
        keys = [target] if target is not None else [k for k in self.events if k not in exclude]
        for key in keys:
            events = self.events.get(key, [])
            kept = [e for e in events if e.time >= before]
            removed += len(events) - len(kept)
            self.events[key] = kept
        return removed

    def purge_step(
        self,
        before: float,
        target: str | None = None,
        exclude: Sequence[str] = (),
        after: str = "",
        most: int = 0,
    ) -> PurgeProgress:
        """All at once: a list in memory needs no chunks."""
        return PurgeProgress(self.purge_history(before, target, exclude), None)
