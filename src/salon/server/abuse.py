"""Abuse protection in the core: K-lines, D-lines and channel flood protection.

- K-line: a ``user@host`` mask (globs; the host is matched against the hostname and the
  IP); checked when a connection registers and applied at once to connected users.
- D-line: an IP address or CIDR network; applied at once to connected users, and the
  shell refuses new connections from it (:meth:`Abuse.dline_for`, exposed as
  ``Server.dline_for``).
- Channel flood: per member and channel, at most ``[flood] channel_messages`` messages
  per ``channel_period`` seconds; a member beyond it is muted in that channel for
  ``channel_mute`` seconds (its messages refused with 404). Channel operators and voiced
  members, operators and ``[flood] exempt`` addresses are exempt. Active when
  ``[flood] enabled`` is.

Bans persist as :class:`~salon.store.base.ServerBan` (kind "K" or "D") with an optional
expiry; expired bans are removed once a second by :meth:`Abuse.tick`.
"""

from __future__ import annotations

import ipaddress
import logging
import time
from collections import deque
from typing import TYPE_CHECKING

from salon.errors import CommandError
from salon.proto import numerics as n
from salon.server.channel import Channel, mask_matches
from salon.server.client import Client
from salon.server.events import Unban
from salon.server.responsebuffer import ResponseBuffer
from salon.store.base import BanStore, ServerBan

if TYPE_CHECKING:
    from salon.server.core import Server

log = logging.getLogger("salon.abuse")

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def parse_network(text: str) -> Network | None:
    try:
        return ipaddress.ip_network(text, strict=False)
    except ValueError:
        return None


def _address(ip: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        addr = ipaddress.ip_address(ip)
    except ValueError:
        return None
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        return addr.ipv4_mapped
    return addr


def describe(ban: ServerBan, now: float) -> str:
    """A ban as KLINE LIST and the operator setting it see it."""
    if ban.expires is None:
        left = "permanent"
    else:
        left = f"expires in {max(int(ban.expires - now), 0)} seconds"
    when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(ban.created))
    return f"{ban.mask} ({left}; set by {ban.setter} on {when}): {ban.reason}"


class Abuse:
    def __init__(self, server: Server) -> None:
        self.server = server
        self.klines: dict[str, ServerBan] = {}
        self.dlines: dict[str, tuple[ServerBan, Network]] = {}
        fl = server.config.flood
        self.chan_limit = fl.channel_messages if fl.enabled else 0
        self.chan_period = fl.channel_period
        self.chan_mute = fl.channel_mute
        # client id -> channel cf -> recent message times; and -> muted until
        self.chan_hits: dict[int, dict[str, deque[float]]] = {}
        self.chan_muted: dict[int, dict[str, float]] = {}
        self._last_prune = server.now

    def load(self, store: BanStore) -> None:
        # At start, the bans saved before: the state this process starts from, not a
        # change of it (no event, nothing to enforce: nobody is connected yet).
        for ban in store.load_server_bans():
            self._keep(ban)

    def _keep(self, ban: ServerBan) -> bool:
        if ban.kind == "K":
            self.klines[ban.mask.lower()] = ban
            return True
        if ban.kind == "D":
            net = parse_network(ban.mask)
            if net is None:
                return False
            self.dlines[str(net)] = (ban, net)
            return True
        return False

    def _live(self, ban: ServerBan) -> bool:
        return ban.expires is None or ban.expires > self.server.now

    # -------------------------------------------------------------- lookups

    def kline_for(self, client: Client) -> ServerBan | None:
        if not self.klines:
            return None
        subjects = (f"{client.user}@{client.host}", f"{client.user}@{client.ip}")
        for ban in self.klines.values():
            if self._live(ban) and any(mask_matches(ban.mask, s) for s in subjects):
                return ban
        return None

    def dline_for(self, ip: str) -> ServerBan | None:
        if not self.dlines:
            return None
        addr = _address(ip)
        if addr is None:
            return None
        for ban, net in self.dlines.values():
            if addr.version == net.version and addr in net and self._live(ban):
                return ban
        return None

    def find(self, kind: str, mask: str) -> ServerBan | None:
        """The K-line (``kind`` "K") or D-line ("D") of ``mask``, as UNKLINE and UNDLINE
        name it (a K-line's mask in any case, a D-line's network in any spelling)."""
        if kind == "K":
            return self.klines.get(mask.lower())
        net = parse_network(mask)
        entry = self.dlines.get(str(net)) if net is not None else None
        return entry[0] if entry is not None else None

    # -------------------------------------------------------------- changes
    # Only the apply functions of the Ban and Unban events (salon.server.apply) call
    # these, and a cluster's restatement of the stores (Cluster._restated_durable adds
    # the bans a node lacks): a K-line or D-line changes by an entry of the network's
    # order, so that every node applies it.

    def add(self, ban: ServerBan) -> list[Client]:
        """Keep and store a ban, then disconnect the connected users it matches."""
        if not self._keep(ban):
            return []
        self.server.store(lambda store: store.save_server_ban(ban), idempotent=True)
        log.info(
            "%s-line added mask=%s by=%s reason=%s", ban.kind, ban.mask, ban.setter, ban.reason
        )
        return self.enforce(ban)

    def remove(self, kind: str, mask: str) -> ServerBan | None:
        ban = self.find(kind, mask)
        if ban is None:
            return None
        if kind == "K":
            del self.klines[mask.lower()]
        else:
            del self.dlines[str(parse_network(mask))]
        stored_kind, stored_mask = ban.kind, ban.mask
        self.server.store(
            lambda store: store.delete_server_ban(stored_kind, stored_mask), idempotent=True
        )
        log.info("%s-line removed mask=%s", kind, ban.mask)
        return ban

    def enforce(self, ban: ServerBan) -> list[Client]:
        server = self.server
        hit = []
        for client in list(server.clients.values()):
            if client.closed:
                continue
            if ban.kind == "K":
                matched = client.registered and self.kline_for(client) is ban
            else:
                matched = self.dline_for(client.ip) is ban
            if matched:
                hit.append(client)
                self.refuse(client, ban, None)
        return hit

    def refuse(self, client: Client, ban: ServerBan, rb: ResponseBuffer | None) -> None:
        out = rb if rb is not None else ResponseBuffer(self.server, client, None)
        what = "K-lined" if ban.kind == "K" else "D-lined"
        out.numeric(n.ERR_YOUREBANNEDCREEP, f"You are banned from this server: {ban.reason}")
        out.flush()
        self.server.drop(client, f"{what}: {ban.reason}")

    def admit(self, client: Client, rb: ResponseBuffer) -> bool:
        """At registration: False (and the client dropped) when a K- or D-line matches."""
        ban = self.kline_for(client) or self.dline_for(client.ip)
        if ban is None:
            return True
        log.info("refused id=%d ip=%s by %s-line %s", client.id, client.ip, ban.kind, ban.mask)
        self.refuse(client, ban, rb)
        return False

    def tick(self, now: float) -> None:
        expired = [b for b in self.klines.values() if b.expires is not None and b.expires <= now]
        expired += [
            b for b, _ in self.dlines.values() if b.expires is not None and b.expires <= now
        ]
        for ban in expired:
            self.server.emit(Unban(ban.kind, ban.mask))
        if now - self._last_prune >= 60:
            self._last_prune = now
            cutoff = now - self.chan_period
            for cid, hits in list(self.chan_hits.items()):
                for cf in [cf for cf, q in hits.items() if not q or q[-1] <= cutoff]:
                    del hits[cf]
                if not hits:
                    del self.chan_hits[cid]
            for cid, mutes in list(self.chan_muted.items()):
                for cf in [cf for cf, until in mutes.items() if until <= now]:
                    del mutes[cf]
                if not mutes:
                    del self.chan_muted[cid]

    # -------------------------------------------------------------- channel flood

    def check_channel_flood(self, chan: Channel, client: Client) -> None:
        """Count a message to ``chan``; raise 404 when the member floods or is muted."""
        if not self.chan_limit or chan.members.get(client) or client.oper is not None:
            return
        if client.tokens == float("inf"):
            return  # an address exempt from flood control ([flood] exempt)
        now = self.server.now
        mutes = self.chan_muted.get(client.id)
        until = mutes.get(chan.cf) if mutes is not None else None
        if until is not None and mutes is not None:
            if until > now:
                raise CommandError(
                    n.ERR_CANNOTSENDTOCHAN,
                    chan.name,
                    f"Cannot send to channel (flooding; muted for {int(until - now) + 1} "
                    "more seconds)",
                )
            del mutes[chan.cf]
        q = self.chan_hits.setdefault(client.id, {}).setdefault(chan.cf, deque())
        while q and q[0] <= now - self.chan_period:
            q.popleft()
        if len(q) >= self.chan_limit:
            q.clear()
            self.chan_muted.setdefault(client.id, {})[chan.cf] = now + self.chan_mute
            log.info("channel flood nick=%s channel=%s", client.nick, chan.name)
            raise CommandError(
                n.ERR_CANNOTSENDTOCHAN,
                chan.name,
                f"Cannot send to channel (flooding; muted for {self.chan_mute:g} seconds)",
            )
        q.append(now)

    def client_gone(self, client: Client) -> None:
        self.chan_hits.pop(client.id, None)
        self.chan_muted.pop(client.id, None)
