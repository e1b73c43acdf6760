"""Flood control: a token bucket per registered client, as ergo's fakelag (irc/fakelag.go).

A client may send ``burst`` lines at once; its budget then refills at ``rate`` lines a
second. A line that finds less than one token waits (the core stops reading the client's
lines until :meth:`Flood.ready`), so flooding slows a client down instead of losing its
lines; the RecvQ still bounds what may wait. Costly commands take more (:meth:`penalize`).
Addresses in ``exempt`` have an endless budget.

The bucket's state is kept on the client (``tokens``, ``token_time``) and every method
takes the current time, so this module has no clock of its own.
"""

from __future__ import annotations

import ipaddress

from salon.config import FloodSection
from salon.server.client import Client

ENDLESS = float("inf")


class Flood:
    __slots__ = ("burst", "enabled", "exempt", "rate")

    def __init__(self, config: FloodSection) -> None:
        self.enabled = config.enabled
        self.rate = config.rate
        self.burst = float(config.burst)
        self.exempt = config.exempt

    def start(self, client: Client, now: float) -> None:
        """A new connection: a full budget (an endless one for an exempt address)."""
        client.tokens = self.burst
        client.token_time = now
        if self.enabled and self.exempt:
            addr = ipaddress.ip_address(client.ip)
            if any(addr in net for net in self.exempt):
                client.tokens = ENDLESS

    def level(self, client: Client, now: float) -> float:
        """The client's budget at ``now``: what it had, refilled since (not yet capped)."""
        return client.tokens + (now - client.token_time) * self.rate

    def take(self, client: Client, now: float) -> bool:
        """Spend one token for a line; False (and nothing spent) when there is none."""
        if client.tokens == ENDLESS:
            return True
        tokens = self.level(client, now)
        client.token_time = now
        if tokens < 1.0:
            client.tokens = tokens
            return False
        client.tokens = min(tokens, self.burst) - 1.0
        return True

    def ready(self, client: Client, now: float) -> bool:
        """Whether a throttled client has a token again."""
        return self.level(client, now) >= 1.0

    def penalize(self, client: Client, cost: float) -> None:
        """A costly command takes ``cost`` more from the budget: under flood control, the
        client's next lines wait for it to refill."""
        if self.enabled and client.tokens != ENDLESS:
            client.tokens -= cost
