"""Connection limits per address, enforced when a connection is accepted.

Two limits, both per network of ``[connections] cidr_ipv4`` / ``cidr_ipv6`` bits (an
IPv4 address, an IPv6 /64 by default, like ergo's ``ip-limits``):

- at most ``max_per_ip`` connections open at once;
- at most ``throttle`` new connections per ``throttle_window`` seconds (a sliding
  window). Refused attempts are not counted, so a client that keeps reconnecting gets
  in again as soon as its old connections leave the window.

Addresses in ``exempt`` (loopback by default) are not limited. 0 turns a limit off.
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

    def admit(self, key: Key, now: float) -> str | None:
        """Count a new connection from ``key``; or the reason it is refused."""
        if self.max_open and self.open.get(key, 0) >= self.max_open:
            return f"Too many connections from your address (at most {self.max_open})"
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
        self.open[key] = self.open.get(key, 0) + 1
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
