"""The benchmark scenarios: idle, fanout, fanout500, dm and churn.

Each takes a freshly started server, runs a bounded load against it and returns one result
record (a dict that becomes one JSON line). The headline of every scenario is the server's CPU
time (utime + stime from /proc/<pid>/stat) per unit of work over a measurement window taken
after a warm-up, which does not depend on how fast the generator itself is.
"""

from __future__ import annotations

import asyncio
import math
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from bench.loadgen import (
    MODE_COUNT,
    MODE_DISCARD,
    Client,
    Generator,
    Group,
    Pacer,
    drain,
    percentile,
)
from bench.procstat import (
    cpu_core_seconds,
    cpu_seconds,
    rss_kib,
    run_delay_seconds,
    self_cpu_seconds,
)
from bench.servers import GEN_CPU, SERVER_CPU, Server

SCENARIOS = ("idle", "fanout", "fanout500", "dm", "churn")
GEN_SATURATED_PCT = 90.0

Result = dict[str, Any]


@dataclass
class Params:
    scale: float = 1.0
    duration: float = 10.0  # measurement window at scale 1, seconds
    window: int = 64  # messages in flight per sender at max rate
    batch: int = 16  # refill the window in bursts of at least this many messages
    size: int = 100  # bytes per sent PRIVMSG line, CRLF included
    concurrency: int = 0  # connections set up at once; 0: the server's own default
    join_concurrency: int = 100  # JOINs waiting for their NAMES reply at once
    fixed_rate: float = 500.0  # total msg/s of fanout500 at scale 1

    @property
    def measure_s(self) -> float:
        return max(0.3, self.duration * min(1.0, self.scale))

    @property
    def warmup_s(self) -> float:
        return max(0.1, min(1.0, 0.2 * self.measure_s))

    def count(self, full: int, minimum: int = 1, root: bool = False) -> int:
        """`full` shrunk by the scale factor (by its square root for 2-D shapes)."""
        f = math.sqrt(self.scale) if root else self.scale
        return max(minimum, round(full * min(1.0, f)))

    def connect_concurrency(self, server: Server) -> int:
        return self.concurrency or server.connect_concurrency


@dataclass
class Snap:
    t: float
    server_cpu: float
    gen_cpu: float
    ops: int
    server_wait: float
    gen_wait: float
    # (busy, steal) seconds of the server's and the generator's CPUs (procstat), when
    # the server is pinned to its own (pinned); else they say nothing of it.
    server_core: tuple[float, float] = (0.0, 0.0)
    gen_core: tuple[float, float] = (0.0, 0.0)
    pinned: bool = False


def snap(server: Server, ops: int) -> Snap:
    return Snap(
        t=time.monotonic(),
        server_cpu=cpu_seconds(server.pid),
        gen_cpu=self_cpu_seconds(),
        ops=ops,
        server_wait=run_delay_seconds(server.pid),
        gen_wait=run_delay_seconds(os.getpid(), group=False),
        server_core=cpu_core_seconds(SERVER_CPU),
        gen_core=cpu_core_seconds(GEN_CPU),
        pinned=server.pinned,
    )


def base_result(server: Server, scenario: str, gen: Generator) -> Result:
    return {
        "server": server.name,
        "version": server.version,
        "scenario": scenario,
        "unexpected_disconnects": gen.stats.unexpected_disconnects,
        "failed_registrations": gen.stats.failed_registrations,
        "failed_joins": gen.stats.failed_joins,
    }


def window_fields(s0: Snap, s1: Snap, op: str) -> Result:
    wall = s1.t - s0.t
    ops = s1.ops - s0.ops
    cpu = s1.server_cpu - s0.server_cpu
    gen_pct = 100.0 * (s1.gen_cpu - s0.gen_cpu) / wall if wall > 0 else 0.0
    return {
        "op": op,
        "window_s": round(wall, 3),
        "ops": ops,
        "ops_per_s": round(ops / wall, 1) if wall > 0 else 0.0,
        "server_cpu_s": round(cpu, 3),
        "server_cpu_pct": round(100.0 * cpu / wall, 1) if wall > 0 else 0.0,
        "cpu_us_per_op": round(1e6 * cpu / ops, 3) if ops > 0 else None,
        "gen_cpu_pct": round(gen_pct, 1),
        "gen_saturated": gen_pct >= GEN_SATURATED_PCT,
        # Runnable but not running: another process had the core, or (for a server with
        # threads, all pinned to one core) another of its own threads did.
        "server_wait_pct": round(100.0 * (s1.server_wait - s0.server_wait) / wall, 1)
        if wall > 0
        else 0.0,
        "gen_wait_pct": round(100.0 * (s1.gen_wait - s0.gen_wait) / wall, 1) if wall > 0 else 0.0,
        **interference(s0, s1, cpu),
    }


def interference(s0: Snap, s1: Snap, server_cpu: float) -> Result:
    """What else took the pinned CPUs in the window, in % of it: busy time on the server's
    core that was not the server's (other processes, or kernel work done there for them),
    and the hypervisor's steal on either core (the larger). None when the server is not
    pinned (--no-pin, one CPU, no taskset): then the cores say nothing of it."""
    wall = s1.t - s0.t
    if not s0.pinned or wall <= 0:
        return {"other_pct": None, "steal_pct": None}
    busy = s1.server_core[0] - s0.server_core[0]
    steal = max(s1.server_core[1] - s0.server_core[1], s1.gen_core[1] - s0.gen_core[1])
    return {
        # Tick-based counters: a few % either way; never below 0.
        "other_pct": round(max(0.0, 100.0 * (busy - server_cpu) / wall), 1),
        "steal_pct": round(100.0 * steal / wall, 1),
    }


def latency_fields(samples: Sequence[int]) -> Result:
    ordered = sorted(samples)
    return {
        "latency_samples": len(ordered),
        "latency_p50_ms": round(percentile(ordered, 0.50) / 1e6, 3) if ordered else None,
        "latency_p99_ms": round(percentile(ordered, 0.99) / 1e6, 3) if ordered else None,
    }


def finish(result: Result, server: Server, gen: Generator) -> Result:
    st = gen.stats
    result["unexpected_disconnects"] = st.unexpected_disconnects
    result["failed_registrations"] = st.failed_registrations
    result["failed_joins"] = st.failed_joins
    alive = server.alive()
    result["server_alive"] = alive
    errors = list(st.errors)
    if not alive:
        errors.append(f"server exited with {server.proc.returncode}: {server.log_tail(5)}")
    result["errors"] = errors
    result["ok"] = (
        alive
        and result.get("lost", 0) == 0
        and st.unexpected_disconnects == 0
        and st.failed_registrations == 0
        and st.failed_joins == 0
    )
    return result


async def setup_channels(
    server: Server, gen: Generator, p: Params, nchan: int, members: int, tag: str
) -> list[list[Client]]:
    clients = await gen.connect_many(nchan * members, p.connect_concurrency(server))
    chans: list[list[Client]] = [[] for _ in range(nchan)]
    for i, c in enumerate(clients):
        chans[i % nchan].append(c)
    pairs = [(c, f"#{tag}{ci}") for ci, cs in enumerate(chans) for c in cs]
    await gen.join_many(pairs, p.join_concurrency)
    return chans


async def measure(
    server: Server,
    groups: Sequence[Group],
    start: Callable[[], None],
    stop: Callable[[], None],
    lat: list[int],
    p: Params,
    op: str,
) -> Result:
    """Run the load for warm-up + window, then stop it and wait for every message to arrive."""

    def delivered() -> int:
        return sum(g.received for g in groups)

    start()
    await asyncio.sleep(p.warmup_s)
    s0 = snap(server, delivered())
    l0 = len(lat)
    sent0 = sum(g.sent for g in groups)
    await asyncio.sleep(p.measure_s)
    s1 = snap(server, delivered())
    l1 = len(lat)
    sent1 = sum(g.sent for g in groups)
    stop()
    await drain(groups, timeout=max(3.0, 2 * p.measure_s))
    expected = sum(g.expected for g in groups)
    received = sum(g.received for g in groups)
    res = window_fields(s0, s1, op)
    res.update(latency_fields(lat[l0:l1]))
    wall = s1.t - s0.t
    res["messages_per_s"] = round((sent1 - sent0) / wall, 1) if wall > 0 else 0.0
    res["deliveries_per_s"] = res["ops_per_s"]
    res["expected"] = expected
    res["received"] = received
    res["lost"] = max(0, expected - received)
    res["extra_received"] = max(0, received - expected)
    return res


async def run_idle(server: Server, gen: Generator, p: Params) -> Result:
    n = p.count(10000, minimum=4)
    nchan = p.count(100)
    pid = server.pid
    base_rss = rss_kib(pid)
    s0 = snap(server, 0)
    clients = await gen.connect_many(n, p.connect_concurrency(server))
    s1 = snap(server, len(clients))
    pairs = [(c, f"#idle{i % nchan}") for i, c in enumerate(clients)]
    joined = await gen.join_many(pairs, p.join_concurrency)
    s2 = snap(server, joined)
    # Let the server settle (and the joins' fan-out drain) before reading its memory.
    await asyncio.sleep(max(0.3, min(3.0, p.measure_s / 3)))
    rss = rss_kib(pid)
    res = base_result(server, "idle", gen)
    reg = window_fields(s0, s1, "connection")
    res.update(
        {
            "clients": n,
            "channels": nchan,
            "registered": len(clients),
            "joined": joined,
            "op": "connection",
            "conn_per_s": reg["ops_per_s"],
            "join_per_s": round(joined / (s2.t - s1.t), 1) if s2.t > s1.t else 0.0,
            "rss_base_kib": base_rss,
            "rss_kib": rss,
            "rss_kib_per_conn": round((rss - base_rss) / len(clients), 2) if clients else None,
            "cpu_us_per_op": reg["cpu_us_per_op"],
            "cpu_us_per_join": (
                round(1e6 * (s2.server_cpu - s1.server_cpu) / joined, 3) if joined else None
            ),
            "window_s": reg["window_s"],
            "gen_cpu_pct": reg["gen_cpu_pct"],
            "gen_saturated": reg["gen_saturated"],
            "server_wait_pct": reg["server_wait_pct"],
            "gen_wait_pct": reg["gen_wait_pct"],
            "other_pct": reg["other_pct"],
            "steal_pct": reg["steal_pct"],
            "lost": 0,
        }
    )
    return finish(res, server, gen)


async def measure_max_rate(
    server: Server, groups: Sequence[Group], lat: list[int], p: Params, op: str
) -> Result:
    """:func:`measure` with every group sending as fast as its window allows."""

    def start() -> None:
        for g in groups:
            g.active = True
            g.pump()

    def stop() -> None:
        for g in groups:
            g.active = False

    return await measure(server, groups, start, stop, lat, p, op)


async def run_fanout(server: Server, gen: Generator, p: Params, fixed: bool) -> Result:
    scenario = "fanout500" if fixed else "fanout"
    nchan = p.count(20, root=True)
    members = p.count(100, minimum=2, root=True)
    chans = await setup_channels(server, gen, p, nchan, members, "fan")
    lat: list[int] = []
    groups: list[Group] = []
    for ci, cs in enumerate(chans):
        if len(cs) < 2:
            continue
        sender, receivers = cs[0], cs[1:]
        g = Group(sender, f"#fan{ci}", len(receivers), p.window, p.batch, p.size)
        groups.append(g)
        sender.mode = MODE_COUNT
        for r in receivers:
            r.group = g
        # At a fixed rate every receiver reads timestamps; at max rate one per channel does.
        for r in receivers if fixed else receivers[:1]:
            r.latency = lat
    res = base_result(server, scenario, gen)
    res.update(
        {
            "clients": sum(len(cs) for cs in chans),
            "channels": nchan,
            "members": members,
            "window_msgs": None if fixed else p.window,
        }
    )
    if fixed:
        rate = p.fixed_rate * len(groups) / 20.0
        pacer = Pacer(groups, rate)
        res["target_msg_per_s"] = rate
        res.update(await measure(server, groups, pacer.start, pacer.stop, lat, p, "delivery"))
        target = rate * sum(g.fan for g in groups) / max(1, len(groups))
        res["target_deliveries_per_s"] = round(target, 1)
        # The server (or the machine) could not keep up with the fixed rate.
        res["behind"] = res["ops_per_s"] < 0.95 * target
    else:
        res.update(await measure_max_rate(server, groups, lat, p, "delivery"))
    return finish(res, server, gen)


async def run_dm(server: Server, gen: Generator, p: Params) -> Result:
    npairs = p.count(500)
    clients = await gen.connect_many(2 * npairs, p.connect_concurrency(server))
    lat: list[int] = []
    groups: list[Group] = []
    for i in range(len(clients) // 2):
        a, b = clients[2 * i], clients[2 * i + 1]
        g = Group(a, b.nick, 1, p.window, p.batch, p.size)
        groups.append(g)
        a.mode = MODE_COUNT
        b.mode = MODE_COUNT
        b.group = g
        if i % 10 == 0:
            b.latency = lat

    res = base_result(server, "dm", gen)
    res.update({"clients": len(clients), "pairs": len(groups), "window_msgs": p.window})
    res.update(await measure_max_rate(server, groups, lat, p, "message"))
    return finish(res, server, gen)


async def run_churn(server: Server, gen: Generator, p: Params) -> Result:
    conc = p.count(p.connect_concurrency(server), root=True)
    done = 0
    quit_timeouts = 0
    running = True

    async def one() -> None:
        nonlocal done, quit_timeouts
        c = await gen.connect(gen.next_nick(), timeout=10.0, keep=False)
        if c is None:
            await asyncio.sleep(0.01)
            return
        done += 1
        loop = asyncio.get_running_loop()
        closed: asyncio.Future[bool] = loop.create_future()
        c.mode = MODE_DISCARD
        c.want_close = True
        c.waiter = closed
        c.write(b"QUIT :bye\r\n")
        try:
            async with asyncio.timeout(10.0):
                await closed
        except TimeoutError:
            quit_timeouts += 1
            gen.stats.note(f"{c.nick}: connection not closed 10s after QUIT")
            c.close()

    async def worker() -> None:
        while running:
            await one()

    tasks = [asyncio.ensure_future(worker()) for _ in range(conc)]
    try:
        await asyncio.sleep(p.warmup_s)
        s0 = snap(server, done)
        await asyncio.sleep(p.measure_s)
        s1 = snap(server, done)
    finally:
        running = False
        await asyncio.gather(*tasks, return_exceptions=True)
    res = base_result(server, "churn", gen)
    res.update({"clients": conc, "concurrency": conc, "registrations": done})
    res.update(window_fields(s0, s1, "registration"))
    res["quit_timeouts"] = quit_timeouts
    res["lost"] = quit_timeouts
    return finish(res, server, gen)


async def run(scenario: str, server: Server, gen: Generator, p: Params) -> Result:
    if scenario == "idle":
        return await run_idle(server, gen, p)
    if scenario == "fanout":
        return await run_fanout(server, gen, p, fixed=False)
    if scenario == "fanout500":
        return await run_fanout(server, gen, p, fixed=True)
    if scenario == "dm":
        return await run_dm(server, gen, p)
    if scenario == "churn":
        return await run_churn(server, gen, p)
    raise ValueError(f"unknown scenario {scenario!r}")
