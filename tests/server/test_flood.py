"""The flood token bucket alone (salon.server.flood), on a clock the test sets.

Modelled on ergo's irc/fakelag_test.go: every call takes the time, so the test steps it.
"""

from __future__ import annotations

import ipaddress

from salon.config import FloodSection
from salon.server.client import Client, Kind
from salon.server.flood import Flood


def bucket(
    *,
    enabled: bool = True,
    rate: float = 2.0,
    burst: int = 3,
    exempt: tuple[ipaddress.IPv4Network, ...] = (),
) -> tuple[Flood, Client]:
    flood = Flood(FloodSection(enabled=enabled, rate=rate, burst=burst, exempt=exempt))
    client = Client(1, Kind.IRC, "192.0.2.7", 6697, 100.0)
    flood.start(client, 100.0)
    return flood, client


def test_a_burst_then_nothing_until_it_refills() -> None:
    flood, client = bucket()
    assert [flood.take(client, 100.0) for _ in range(4)] == [True, True, True, False]
    assert not flood.ready(client, 100.4)  # 0.8 of a token at 2 a second
    assert flood.ready(client, 100.5)
    assert flood.take(client, 100.5)
    assert not flood.take(client, 100.5)


def test_the_budget_refills_up_to_the_burst_and_no_further() -> None:
    flood, client = bucket()
    for _ in range(3):
        assert flood.take(client, 100.0)
    # An hour of silence is worth one burst, not 7200 lines.
    assert [flood.take(client, 3700.0) for _ in range(4)] == [True, True, True, False]


def test_a_refused_line_spends_nothing() -> None:
    flood, client = bucket(rate=1.0, burst=1)
    assert flood.take(client, 100.0)
    assert not flood.take(client, 100.5)
    assert not flood.take(client, 100.9)
    assert flood.take(client, 101.0)  # the half second before counts: one token at 101


def test_a_penalty_delays_the_next_lines() -> None:
    flood, client = bucket()
    assert flood.take(client, 100.0)
    flood.penalize(client, 4.0)  # 2 - 4: two tokens in debt
    assert not flood.ready(client, 101.0)
    assert flood.ready(client, 101.5)


def test_an_exempt_address_never_runs_out() -> None:
    flood, client = bucket(exempt=(ipaddress.ip_network("192.0.2.0/24"),))
    assert all(flood.take(client, 100.0) for _ in range(1000))
    flood.penalize(client, 50.0)
    assert flood.take(client, 100.0)
    other = Client(2, Kind.IRC, "198.51.100.1", 6697, 100.0)
    flood.start(other, 100.0)
    assert [flood.take(other, 100.0) for _ in range(4)] == [True, True, True, False]


def test_disabled_flood_control_takes_no_penalty() -> None:
    flood, client = bucket(enabled=False)
    tokens = client.tokens
    flood.penalize(client, 10.0)
    assert client.tokens == tokens
