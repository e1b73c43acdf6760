"""What a cluster costs (issue 19, point 10): CPU per operation summed over every process
of a two-node cluster (both salon nodes and their redis-server) against one salon process,
in the same run, with the same clients::

    .venv/bin/python -m bench.cluster [--members 100] [--messages 2000] [--rate 400]

Scenarios: ``fanout`` (one sender, a channel whose members are spread over both nodes:
every message crosses), ``dm`` (pairs whose two users are on different nodes) and ``churn``
(connect, register, join, quit; alternately on each node). History is on (each node's own
SQLite). Nothing is pinned: on a 2-core machine the generator, the nodes and Redis share
the cores, so these are costs, not throughput (docs/BENCHMARKS.md).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.procstat import cpu_seconds, tree_cpu_seconds
from bench.servers import default_salon_cmd, free_port

# `python -c _PROFILED OUT ARGS...`: `python -m salon ARGS...` under cProfile, on CPU time.
_PROFILED = (
    "import cProfile, runpy, sys, time; out = sys.argv.pop(1); sys.argv[0] = 'salon'; "
    "p = cProfile.Profile(time.process_time); p.enable()\n"
    "try: runpy.run_module('salon', run_name='__main__')\n"
    "except SystemExit: pass\n"
    "finally: p.disable(); p.dump_stats(out)"
)


class Peer:
    """One IRC client: registers, counts the PRIVMSG lines it receives."""

    def __init__(self, port: int, nick: str) -> None:
        self.port = port
        self.nick = nick
        self.received = 0
        self.msgids: list[str] = []
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None
        self.task: asyncio.Task[None] | None = None

    async def connect(self, channel: str | None) -> None:
        self.reader, self.writer = await asyncio.open_connection("127.0.0.1", self.port)
        self.writer.write(f"NICK {self.nick}\r\nUSER b 0 * :b\r\n".encode())
        if channel:
            self.writer.write(f"JOIN {channel}\r\n".encode())
        wanted = b" 366 " if channel else b" 376 "
        while True:
            line = await self.reader.readline()
            if not line:
                raise ConnectionError(f"{self.nick}: closed while registering")
            if wanted in line:
                break
        self.task = asyncio.get_running_loop().create_task(self._read())

    async def _read(self) -> None:
        assert self.reader is not None
        while line := await self.reader.readline():
            if b" PRIVMSG " in line:
                self.received += 1

    def send(self, line: str) -> None:
        assert self.writer is not None
        self.writer.write(line.encode() + b"\r\n")

    async def close(self) -> None:
        if self.writer is not None:
            self.writer.write(b"QUIT\r\n")
            self.writer.close()
            try:
                await self.writer.wait_closed()
            except OSError:
                pass
        if self.task is not None:
            self.task.cancel()


class Setup:
    """The processes of one side: one salon, or two nodes and a redis-server."""

    def __init__(
        self,
        root: Path,
        cluster: bool,
        profile: Path | None = None,
        src: Path | None = None,
        store: str = "sqlite",
        pg: Any = None,
    ) -> None:
        self.root = root
        self.src = src
        self.store = store
        # The PostgreSQL server (bench.pgserver.PostgresServer) of --store postgres: its
        # processes are counted with this side's while the side runs.
        self.pg = pg
        self.cluster = cluster
        self.profile = profile
        self.procs: list[subprocess.Popen[bytes]] = []
        self.ports: list[int] = []

    def start(self) -> None:
        redis_url = ""
        dsn = ""
        if self.store == "postgres":
            # One new database for the side: the one process's, or both nodes' (shared).
            dsn = self.pg.dsn(self.pg.create_database())
        if self.cluster:
            redis_port = free_port()
            self.procs.append(
                subprocess.Popen(
                    [
                        "redis-server",
                        "--port",
                        str(redis_port),
                        "--bind",
                        "127.0.0.1",
                        "--save",
                        "",
                        "--appendonly",
                        "no",
                        "--dir",
                        str(self.root),
                    ],
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
            )
            redis_url = f"redis://127.0.0.1:{redis_port}/0"
            _wait_port(redis_port)
        for i in range(2 if self.cluster else 1):
            port = free_port()
            data = self.root / f"node{i}"
            data.mkdir()
            text = (
                f"[server]\nname = 'bench.salon'\ndata_dir = '{data}'\n"
                f"[listen]\nhost = '127.0.0.1'\nirc_port = {port}\nplain_port = 0\n"
                "http_port = 0\ntls_port = 0\n[flood]\nenabled = false\n"
                "[connections]\nmax_per_ip = 0\nthrottle = 0\n[log]\nlevel = 'warning'\n"
            )
            if self.cluster:
                text += f"[cluster]\nredis = '{redis_url}'\nnode = 'n{i}'\nprefix = 'bench'\n"
            if self.store == "off":
                text += "[history]\nenabled = false\n"
            elif self.store == "postgres":
                text += f"[postgres]\ndsn = '{dsn}'\n"
            (data / "salon.toml").write_text(text)
            env = dict(os.environ)
            if self.src is not None:
                env["PYTHONPATH"] = str(self.src)
            cmd = default_salon_cmd()
            if self.profile is not None:
                # cProfile on CPU time (its default clock is the wall's: a node preempted
                # by another process would seem to spend that time in what it was doing);
                # the file is written when the node exits (SIGTERM stops it cleanly).
                out = self.profile / f"{'node' if self.cluster else 'one'}{i}.prof"
                cmd = [cmd[0], "-c", _PROFILED, str(out)]
            self.procs.append(
                subprocess.Popen(
                    [*cmd, "serve", "--config", str(data / "salon.toml")],
                    stdout=subprocess.DEVNULL,
                    stderr=(data / "log").open("wb"),
                    env=env,
                )
            )
            self.ports.append(port)
            _wait_port(port)

    def cpu(self) -> float:
        return sum(self.cpus())

    def cpus(self) -> list[float]:
        """CPU seconds of each process: redis-server first in a cluster, then the nodes,
        then every PostgreSQL process together (with --store postgres)."""
        found = [cpu_seconds(p.pid, group=False) for p in self.procs]
        if self.pg is not None:
            found.append(tree_cpu_seconds(self.pg.proc.pid))
        return found

    def stop(self) -> None:
        for p in reversed(self.procs):
            p.terminate()
        for p in self.procs:
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()


def _wait_port(port: int) -> None:
    import socket

    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"port {port} did not open")


async def _settle(count: Callable[[], int], want: int, timeout: float = 30) -> int:
    deadline = time.monotonic() + timeout
    last, still = -1, 0.0
    while time.monotonic() < deadline:
        got = count()
        if got >= want:
            return got
        if got == last:
            still += 0.05
            if still > 3:
                return got
        else:
            last, still = got, 0.0
        await asyncio.sleep(0.05)
    return count()


Result = tuple[list[float], int, int]  # CPU seconds of each process, operations done, wanted


def _spent(s: Setup, before: list[float]) -> list[float]:
    return [b - a for a, b in zip(before, s.cpus(), strict=True)]


async def fanout(s: Setup, members: int, messages: int, rate: float) -> Result:
    peers = [Peer(s.ports[i % len(s.ports)], f"f{i}") for i in range(members)]
    for p in peers:
        await p.connect("#bench")
    await asyncio.sleep(0.5)
    sender = peers[0]
    cpu0 = s.cpus()
    for n in range(messages):
        sender.send(f"PRIVMSG #bench :message {n} of the fan-out")
        if n % 20 == 19:
            await asyncio.sleep(20 / rate)
    want = messages * (members - 1)
    got = await _settle(lambda: sum(p.received for p in peers[1:]), want)
    cpu = _spent(s, cpu0)
    for p in peers:
        await p.close()
    return cpu, got, want


async def dm(s: Setup, pairs: int, messages: int, rate: float) -> Result:
    senders = [Peer(s.ports[0], f"ds{i}") for i in range(pairs)]
    receivers = [Peer(s.ports[-1], f"dr{i}") for i in range(pairs)]
    for p in senders + receivers:
        await p.connect(None)
    await asyncio.sleep(0.5)
    cpu0 = s.cpus()
    for n in range(messages):
        i = n % pairs
        senders[i].send(f"PRIVMSG dr{i} :private message {n}")
        if n % 20 == 19:
            await asyncio.sleep(20 / rate)
    got = await _settle(lambda: sum(p.received for p in receivers), messages)
    cpu = _spent(s, cpu0)
    for p in senders + receivers:
        await p.close()
    return cpu, got, messages


async def churn(s: Setup, count: int) -> Result:
    cpu0 = s.cpus()
    done = 0

    async def worker(k: int) -> None:
        nonlocal done
        for n in range(k, count, 10):
            p = Peer(s.ports[n % len(s.ports)], f"c{n}")
            await p.connect("#churn")
            await p.close()
            done += 1

    await asyncio.gather(*(worker(k) for k in range(10)))
    await asyncio.sleep(0.5)
    return _spent(s, cpu0), done, count


async def run_side(
    args: argparse.Namespace,
    name: str,
    cluster: bool,
    src: Path | None,
    profile: Path | None,
    pg: Any = None,
) -> Result:
    root = Path(tempfile.mkdtemp(prefix="salon-cluster-bench-"))
    s = Setup(root, cluster, profile, src, getattr(args, "store", "sqlite"), pg)
    try:
        s.start()
        await asyncio.sleep(0.5)
        if name == "fanout":
            return await fanout(s, args.members, args.messages, args.rate)
        if name == "dm":
            return await dm(s, 50, args.messages * 2, args.rate * 4)
        return await churn(s, args.churn)
    finally:
        s.stop()
        shutil.rmtree(root, ignore_errors=True)


async def main_async(args: argparse.Namespace) -> None:
    sides: list[tuple[str, bool, Path | None]] = [("one", False, None), ("two", True, None)]
    if args.before:
        before = Path(args.before) / "src"
        sides = [("one", False, None), ("two", True, None),
                 ("one-before", False, before), ("two-before", True, before)]  # fmt: skip
    profile = Path(args.profile) if args.profile else None
    if profile is not None:
        profile.mkdir(parents=True, exist_ok=True)
    pg = None
    if args.store == "postgres":
        from bench.pgserver import PostgresServer, find_bindir

        bindir = find_bindir()
        if bindir is None:
            sys.exit("bench.cluster: PostgreSQL is not installed (Debian package postgresql)")
        pg = PostgresServer(bindir)
        pg.start(free_port())
    try:
        await _scenarios(args, sides, profile, pg)
    finally:
        if pg is not None:
            pg.stop()


async def _scenarios(
    args: argparse.Namespace,
    sides: list[tuple[str, bool, Path | None]],
    profile: Path | None,
    pg: Any,
) -> None:
    print(f"store {args.store}; load average before: "
          + " ".join(f"{x:.2f}" for x in os.getloadavg()))  # fmt: skip
    for name in args.scenarios.split(","):
        runs: dict[str, list[Result]] = {label: [] for label, _c, _s in sides}
        for r in range(args.repeat):
            # The sides take turns, in the other order every other round.
            for label, cluster, src in sides if r % 2 == 0 else sides[::-1]:
                prof = profile / f"{name}-{label}" if profile is not None else None
                if prof is not None:
                    prof.mkdir(exist_ok=True)
                runs[label].append(await run_side(args, name, cluster, src, prof, pg))
        us: dict[str, float] = {}
        for label, results in runs.items():
            per_op = [sum(cpus) / max(got, 1) * 1e6 for cpus, got, _w in results]
            us[label] = statistics.median(per_op)
            lost = [want - got for _c, got, want in results]
            parts = [statistics.median(c[i] / max(g, 1) * 1e6 for c, g, _w in results)
                     for i in range(len(results[0][0]))]  # fmt: skip
            print(
                f"{name:7} {label:10} µs/op {us[label]:9.2f}  runs "
                + ", ".join(f"{x:.2f}" for x in per_op)
                + "  per process "
                + " ".join(f"{x:.2f}" for x in parts)
                + f"  lost {lost}"
            )
        for suffix in ("", "-before"):
            if f"one{suffix}" in us:
                one, two = us[f"one{suffix}"], us[f"two{suffix}"]
                # A run too short for the clock's ticks (10 ms) may measure no CPU at all.
                ratio = f"{two / one:.2f}" if one else "n/a (no CPU measured for one)"
                print(f"{name:7} ratio{suffix or ' (this tree)'}: {ratio}")
    print(f"load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--members", type=int, default=100)
    parser.add_argument("--messages", type=int, default=2000)
    parser.add_argument("--rate", type=float, default=400.0, help="fan-out messages per second")
    parser.add_argument("--churn", type=int, default=300)
    parser.add_argument("--scenarios", default="fanout,dm,churn")
    parser.add_argument("--repeat", type=int, default=1, help="rounds; medians are shown")
    parser.add_argument(
        "--before", help="a worktree of another commit: its salon runs too, alternating"
    )
    parser.add_argument("--profile", help="a directory for each salon process's cProfile file")
    parser.add_argument(
        "--store",
        choices=("sqlite", "off", "postgres"),
        default="sqlite",
        help="history in each salon's own SQLite (the default), off, or in one PostgreSQL "
        "that both nodes share (its CPU counted too)",
    )
    if shutil.which("redis-server") is None:
        sys.exit("bench.cluster: redis-server is not installed (Debian package redis-server)")
    asyncio.run(main_async(parser.parse_args()))


if __name__ == "__main__":
    main()
