"""Connection limits per address, enforced when a connection is accepted.

Two limits, both per network of ``[connections] cidr_ipv4`` / ``cidr_ipv6`` bits (an
IPv4 address, an IPv6 /64 by default, like ergo's ``ip-limits``):

- at most ``max_per_ip`` connections open at once;
- at most ``throttle`` new connections per ``throttle_window`` seconds (a sliding
  window). Refused attempts are not counted, so a client that keeps reconnecting gets
  in again as soon as its old connections leave the window.

Addresses in ``exempt`` (loopback by default) are not limited. 0 turns a limit off.

On the HTTP port the throttle counts WebSocket upgrades only: plain HTTP requests have a
budget of their own (:class:`RequestBudget`), so that reloading the web page cannot lock
an address out of IRC. ``max_per_ip`` applies there from the accept on, as everywhere.
"""

from __future__ import annotations

import ipaddress
from collections import deque

from salon.config import ConnectionsSection

# (IP version, the address shifted right past the counted network's host bits)
Key = tuple[int, int]


class ConnectionLimits:
    def __init__(self, cfg: ConnectionsSection) -> None:
        self.max_open = cfg.max_per_ip
        self.throttle = cfg.throttle
        self.window = cfg.throttle_window
        self.cidr = {4: cfg.cidr_ipv4, 6: cfg.cidr_ipv6}
        self.exempt = cfg.exempt
        self.open: dict[Key, int] = {}
        self.recent: dict[Key, deque[float]] = {}
        self.enabled = bool(self.max_open or self.throttle)

    def key(self, ip: str) -> Key | None:
        """The network ``ip`` is counted in, or None when it is not limited."""
        if not self.enabled:
            return None
        try:
            addr = ipaddress.ip_address(ip)
        except ValueError:
            return None
        if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
            addr = addr.ipv4_mapped
        if any(addr.version == net.version and addr in net for net in self.exempt):
            return None
        drop = (32 if addr.version == 4 else 128) - self.cidr[addr.version]
        return addr.version, int(addr) >> drop

    def admit(self, key: Key, now: float, throttle: bool = True) -> str | None:
        """Count a new connection from ``key``; or the reason it is refused. Without
        ``throttle`` only the open connections are counted (an HTTP connection, until it
        asks for a WebSocket: :meth:`throttled`)."""
        if self.max_open and self.open.get(key, 0) >= self.max_open:
            return f"Too many connections from your address (at most {self.max_open})"
        if throttle:
            refused = self.throttled(key, now)
            if refused is not None:
                return refused
        self.open[key] = self.open.get(key, 0) + 1
        return None

    def throttled(self, key: Key, now: float) -> str | None:
        """Count a new connection from ``key`` in its throttle window; or the reason it is
        refused (then not counted)."""
        if self.throttle:
            times = self.recent.get(key)
            if times is None:
                times = self.recent[key] = deque()
            cutoff = now - self.window
            while times and times[0] <= cutoff:
                times.popleft()
            if len(times) >= self.throttle:
                wait = int(times[0] + self.window - now) + 1
                return f"Too many new connections from your address; try again in {wait} seconds"
            times.append(now)
        return None

    def release(self, key: Key) -> None:
        """A connection counted by :meth:`admit` closed."""
        left = self.open.get(key, 0) - 1
        if left > 0:
            self.open[key] = left
        else:
            self.open.pop(key, None)

    def prune(self, now: float) -> None:
        """Forget windows with nothing left in them."""
        cutoff = now - self.window
        for key in [k for k, times in self.recent.items() if not times or times[-1] <= cutoff]:
            del self.recent[key]


class RequestBudget:
    """Plain HTTP requests per network (the keys of :class:`ConnectionLimits`): a token
    bucket of ``burst`` requests, refilled at ``rate`` a second. 0 turns it off."""

    def __init__(self, burst: int, rate: float) -> None:
        self.burst = burst
        self.rate = rate
        # key -> (tokens left, when they were counted)
        self.buckets: dict[Key, tuple[float, float]] = {}

    def spend(self, key: Key, now: float) -> float:
        """Take one request from ``key``'s bucket: 0.0, or the seconds until one is left
        (then nothing is taken)."""
        if not self.burst:
            return 0.0
        tokens, then = self.buckets.get(key, (float(self.burst), now))
        tokens = min(float(self.burst), tokens + (now - then) * self.rate)
        if tokens < 1.0:
            self.buckets[key] = (tokens, now)
            return (1.0 - tokens) / self.rate
        self.buckets[key] = (tokens - 1.0, now)
        return 0.0

    def prune(self, now: float) -> None:
        """Forget the buckets that are full again."""
        full = float(self.burst)
        for key in [
            k
            for k, (tokens, then) in self.buckets.items()
            if tokens + (now - then) * self.rate >= full
        ]:
            del self.buckets[key]
