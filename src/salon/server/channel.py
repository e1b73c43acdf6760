"""Channel state."""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache

from salon.errors import CommandError
from salon.proto import numerics as n
from salon.proto.casemap import casefold
from salon.server.client import Client

# RFC 2812 5.1: "The available modes are as follows: ... o - give/take channel operator
# privilege; v - give/take the voice privilege". Highest rank first.
PREFIX_MODES = "ov"
PREFIX_CHARS = "@+"
MODE_TO_PREFIX = dict(zip(PREFIX_MODES, PREFIX_CHARS, strict=True))
PREFIX_TO_MODE = dict(zip(PREFIX_CHARS, PREFIX_MODES, strict=True))
LIST_MODES = "beI"
PARAM_MODES = "k"  # parameter on set and unset
SET_PARAM_MODES = "l"  # parameter on set only
FLAG_MODES = "CMRimnst"  # M: only logged-in users speak; R: only logged-in users join


@dataclass(slots=True)
class ListEntry:
    mask: str
    setter: str
    time: int


def _glob_piece(text: str) -> str:
    return "".join("." if ch == "?" else re.escape(ch) for ch in text)


@lru_cache(maxsize=4096)
def mask_regex(mask: str) -> re.Pattern[str]:
    """A glob mask (``*`` and ``?``) as a compiled, casefolded regular expression, for
    ``fullmatch``.

    Each ``*`` is not a plain ``.*``: a mask like ``*a*a*a*a*a*a*b`` against a long
    realname made the regex engine try every way to place the stars (seconds of a frozen
    server, from one WHO or ban mask). The parts between stars are found leftmost first
    instead, each in an atomic group that is never re-entered; the leftmost place of a part
    leaves the most room to the next, so that is exact, and the time is linear in the
    subject per part.
    """
    parts = casefold(mask).split("*")
    if len(parts) == 1:
        return re.compile(_glob_piece(parts[0]), re.DOTALL)
    first, *middle, last = parts
    found = "".join(f"(?>.*?{_glob_piece(part)})" for part in middle if part)
    return re.compile(f"{_glob_piece(first)}{found}.*{_glob_piece(last)}", re.DOTALL)


def mask_matches(mask: str, subject: str) -> bool:
    return mask_regex(mask).fullmatch(casefold(subject)) is not None


def normalize_mask(mask: str) -> str:
    """Complete a partial ban mask: ``nick`` -> ``nick!*@*``, ``u@h`` -> ``*!u@h``."""
    if mask.startswith("$"):
        return mask
    if "!" not in mask and "@" not in mask:
        return mask + "!*@*"
    if "!" not in mask:
        return "*!" + mask
    if "@" not in mask:
        return mask + "@*"
    return mask


class Channel:
    __slots__ = (
        "bans",
        "cf",
        "created",
        "excepts",
        "invex",
        "invited",
        "key",
        "limit",
        "local",
        "members",
        "metadata",
        "modes",
        "name",
        "topic",
        "topic_by",
        "topic_time",
    )

    def __init__(self, name: str, cf: str, now: float) -> None:
        self.name = name
        self.cf = cf
        self.created = int(now)
        # member -> prefix modes held, highest first ("ov", "o", "v" or "").
        self.members: dict[Client, str] = {}
        # In a cluster, the members that are this node's users (see local_members): None
        # until asked for, and again whenever a member joins or leaves.
        self.local: list[Client] | None = None
        # draft/metadata-3 keys (salon.server.metadata).
        self.metadata: dict[str, str] = {}
        self.topic = ""
        self.topic_by = ""
        self.topic_time = 0
        self.modes: set[str] = {"n", "t"}
        self.key: str | None = None
        self.limit: int | None = None
        self.bans: list[ListEntry] = []
        self.excepts: list[ListEntry] = []
        self.invex: list[ListEntry] = []
        self.invited: set[str] = set()

    def __repr__(self) -> str:
        return f"<Channel {self.name} ({len(self.members)})>"

    def local_members(self) -> list[Client]:
        """The members a message is delivered to on a cluster's node: ``members`` holds
        every node's, and another node's user is a Client that is always closed (nothing
        is written to it), which every delivery loop would walk past, on every node, for
        every message. A member closed when the list is made stays closed; one that closes
        later is skipped as ever."""
        local = self.local
        if local is None:
            local = self.local = [m for m in self.members if not m.closed]
        return local

    def is_op(self, client: Client) -> bool:
        return "o" in self.members.get(client, "")

    def prefix_of(self, client: Client, multi: bool) -> str:
        modes = self.members.get(client, "")
        if not modes:
            return ""
        if multi:
            return "".join(MODE_TO_PREFIX[m] for m in modes)
        return MODE_TO_PREFIX[modes[0]]

    def set_prefix(self, client: Client, mode: str, on: bool) -> bool:
        """Give or take a prefix mode; True when it changed."""
        current = self.members[client]
        if on == (mode in current):
            return False
        wanted = set(current) | {mode} if on else set(current) - {mode}
        self.members[client] = "".join(m for m in PREFIX_MODES if m in wanted)
        return True

    def list_for(self, mode: str) -> list[ListEntry]:
        if mode == "b":
            return self.bans
        if mode == "e":
            return self.excepts
        return self.invex

    @staticmethod
    def _matches(mask: str, client: Client) -> bool:
        """One list entry: ``$a:account`` (account extban), ``$m:mask`` (mute extban: only
        for speaking, see :meth:`is_muted`), or a ``nick!user@host`` glob."""
        if mask.startswith("$a:"):
            return client.account is not None and casefold(client.account) == casefold(mask[3:])
        if mask.startswith("$m:"):
            return False
        return mask_matches(mask, client.prefix) or mask_matches(
            mask, f"{client.nick}!{client.user}@{client.ip}"
        )

    def _matches_any(self, entries: list[ListEntry], client: Client) -> bool:
        return any(self._matches(entry.mask, client) for entry in entries)

    def is_muted(self, client: Client) -> bool:
        """Mute extban: a ``$m:<mask>`` ban lets a matching user join but not speak; any
        exception (``+e``) matching it lifts that, a ``$m:<mask>`` one included."""

        def matched(entries: list[ListEntry], mutes_only: bool) -> bool:
            for e in entries:
                if e.mask.startswith("$m:"):
                    if self._matches(e.mask[3:], client):
                        return True
                elif not mutes_only and self._matches(e.mask, client):
                    return True
            return False

        return matched(self.bans, True) and not matched(self.excepts, False)

    def is_banned(self, client: Client) -> bool:
        return (
            bool(self.bans)
            and self._matches_any(self.bans, client)
            and not self._matches_any(self.excepts, client)
        )

    def is_invex(self, client: Client) -> bool:
        return client.nick_cf in self.invited or self._matches_any(self.invex, client)

    def mode_string(self, show_key: bool) -> tuple[str, ...]:
        flags = "".join(sorted(self.modes))
        params = []
        if self.key is not None:
            flags += "k"
            params.append(self.key if show_key else "*")
        if self.limit is not None:
            flags += "l"
            params.append(str(self.limit))
        return ("+" + flags, *params)

    def can_send(self, client: Client, text: str | None) -> None:
        """Raise ERR_CANNOTSENDTOCHAN unless ``client`` may send ``text`` here (None: a
        message without text, TAGMSG): ergo's ``CanSpeak``."""
        modes = self.members.get(client)
        if modes is None:
            if "n" in self.modes:
                raise CommandError(n.ERR_CANNOTSENDTOCHAN, self.name, "Cannot send to channel (+n)")
            modes = ""
        if modes:
            return
        if "m" in self.modes:
            raise CommandError(n.ERR_CANNOTSENDTOCHAN, self.name, "Cannot send to channel (+m)")
        if "M" in self.modes and client.account is None:
            raise CommandError(
                n.ERR_CANNOTSENDTOCHAN,
                self.name,
                "Cannot send to channel (+M): you must be logged in to an account",
            )
        if self.bans and self.is_banned(client):
            raise CommandError(n.ERR_CANNOTSENDTOCHAN, self.name, "Cannot send to channel (+b)")
        if self.bans and self.is_muted(client):
            raise CommandError(n.ERR_CANNOTSENDTOCHAN, self.name, "Cannot send to channel (muted)")
        if (
            text is not None
            and "C" in self.modes
            and text.startswith("\x01")
            and not text.startswith("\x01ACTION")
        ):
            raise CommandError(
                n.ERR_CANNOTSENDTOCHAN, self.name, "Cannot send CTCP to channel (+C)"
            )
