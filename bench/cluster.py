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
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from bench.procstat import cpu_seconds
from bench.servers import default_salon_cmd, free_port


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

    def __init__(self, root: Path, cluster: bool) -> None:
        self.root = root
        self.cluster = cluster
        self.procs: list[subprocess.Popen[bytes]] = []
        self.ports: list[int] = []

    def start(self) -> None:
        redis_url = ""
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
            (data / "salon.toml").write_text(text)
            self.procs.append(
                subprocess.Popen(
                    [*default_salon_cmd(), "serve", "--config", str(data / "salon.toml")],
                    stdout=subprocess.DEVNULL,
                    stderr=(data / "log").open("wb"),
                )
            )
            self.ports.append(port)
            _wait_port(port)

    def cpu(self) -> float:
        return sum(cpu_seconds(p.pid, group=False) for p in self.procs)

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


async def fanout(s: Setup, members: int, messages: int, rate: float) -> tuple[float, int, int]:
    peers = [Peer(s.ports[i % len(s.ports)], f"f{i}") for i in range(members)]
    for p in peers:
        await p.connect("#bench")
    await asyncio.sleep(0.5)
    sender = peers[0]
    cpu0 = s.cpu()
    for n in range(messages):
        sender.send(f"PRIVMSG #bench :message {n} of the fan-out")
        if n % 20 == 19:
            await asyncio.sleep(20 / rate)
    want = messages * (members - 1)
    got = await _settle(lambda: sum(p.received for p in peers[1:]), want)
    cpu = s.cpu() - cpu0
    for p in peers:
        await p.close()
    return cpu, got, want


async def dm(s: Setup, pairs: int, messages: int, rate: float) -> tuple[float, int, int]:
    senders = [Peer(s.ports[0], f"ds{i}") for i in range(pairs)]
    receivers = [Peer(s.ports[-1], f"dr{i}") for i in range(pairs)]
    for p in senders + receivers:
        await p.connect(None)
    await asyncio.sleep(0.5)
    cpu0 = s.cpu()
    for n in range(messages):
        i = n % pairs
        senders[i].send(f"PRIVMSG dr{i} :private message {n}")
        if n % 20 == 19:
            await asyncio.sleep(20 / rate)
    got = await _settle(lambda: sum(p.received for p in receivers), messages)
    cpu = s.cpu() - cpu0
    for p in senders + receivers:
        await p.close()
    return cpu, got, messages


async def churn(s: Setup, count: int) -> tuple[float, int, int]:
    cpu0 = s.cpu()
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
    return s.cpu() - cpu0, done, count


async def main_async(args: argparse.Namespace) -> None:
    rows = []
    for name in args.scenarios.split(","):
        per: dict[str, tuple[float, int, int]] = {}
        for cluster in (False, True):
            root = Path(tempfile.mkdtemp(prefix="salon-cluster-bench-"))
            s = Setup(root, cluster)
            try:
                s.start()
                await asyncio.sleep(0.5)
                if name == "fanout":
                    per[str(cluster)] = await fanout(s, args.members, args.messages, args.rate)
                elif name == "dm":
                    per[str(cluster)] = await dm(s, 50, args.messages * 2, args.rate * 4)
                else:
                    per[str(cluster)] = await churn(s, args.churn)
            finally:
                s.stop()
                shutil.rmtree(root, ignore_errors=True)
        single, both = per["False"], per["True"]
        us1 = single[0] / max(single[1], 1) * 1e6
        us2 = both[0] / max(both[1], 1) * 1e6
        rows.append((name, us1, us2, us2 / us1, single[2] - single[1], both[2] - both[1]))
    print(
        f"{'scenario':8} {'one µs/op':>10} {'two µs/op':>10} {'ratio':>6} {'lost 1':>7} {'lost 2':>7}"
    )
    for name, us1, us2, ratio, lost1, lost2 in rows:
        print(f"{name:8} {us1:10.2f} {us2:10.2f} {ratio:6.2f} {lost1:7d} {lost2:7d}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--members", type=int, default=100)
    parser.add_argument("--messages", type=int, default=2000)
    parser.add_argument("--rate", type=float, default=400.0, help="fan-out messages per second")
    parser.add_argument("--churn", type=int, default=300)
    parser.add_argument("--scenarios", default="fanout,dm,churn")
    if shutil.which("redis-server") is None:
        sys.exit("bench.cluster: redis-server is not installed (Debian package redis-server)")
    asyncio.run(main_async(parser.parse_args()))


if __name__ == "__main__":
    main()
