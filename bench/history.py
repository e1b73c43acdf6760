"""``python -m bench.history``: history at scale, through real IRC connections.

Builds (or takes from the cache) a data set of 1M or 10M messages through the store's
public interface (:mod:`bench.histdata`), starts ``salon serve`` on a copy of it, and
measures over IRC what users feel:

- CHATHISTORY LATEST, BEFORE and AROUND in the busiest channel (a msgid a year back),
  CHATHISTORY TARGETS and SEARCH (a rare, a mid-frequency and a common word, the common
  word in a small channel, a 4-letter prefix) as one logged-in user with 22 channels and
  its private conversations: p50 and p99 over repetitions;
- start-up time until the IRC port answers, and bytes on disk per message;
- the delivery latency of a 100 msg/s private conversation between two other users:
  idle, while that user repeats a SEARCH for a common word, and while it repeats TARGETS;
- optionally (``--retention``) the same latency while the server purges the oldest year
  at start (``retention_days = 365``).

Output: a table on stdout and JSON lines in ``bench/results/``. The method and the figures
are in docs/BENCHMARKS.md ("History at scale").
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import datetime as dt
import itertools
import os
import platform
import shlex
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench import cli, histdata, procstat, report, servers
from bench.loadgen import percentile

EXIT_OK = 0
EXIT_FAILED = 1  # a query failed, or messages of the conversation were lost
EXIT_NO_START = 3  # the server could not be started

# The reader's capabilities: those of salon's web client, labeled-response (to match
# replies to requests) and sasl. No draft/event-playback, as the web client.
READER_CAPS = (
    "batch server-time message-tags labeled-response draft/chathistory soju.im/search sasl"
)
HISTORY_LIMIT = 100  # messages a CHATHISTORY or SEARCH asks for (the web client's)
TARGETS_DAYS = 30  # the window of CHATHISTORY TARGETS and how many (the web client's)
TARGETS_LIMIT = 50
RATE = 100.0  # messages a second of the measured conversation
REQUEST_TIMEOUT = 300.0

# The targets at 10M messages (issue 17, point 4): p99 in ms, and the rest.
TARGETS_10M = {
    "latest": 5.0,
    "before": 20.0,
    "around": 20.0,
    "targets": 10.0,
    "search_rare": 20.0,
    "search_common": 100.0,
}
TARGET_STARTUP_S = 2.0
TARGET_BYTES_PER_MESSAGE = 300.0


def log(msg: str) -> None:
    print(f"[history {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------- IRC


@dataclass
class Line:
    tags: dict[str, str]
    source: str
    command: str
    params: list[str]


def parse(raw: str) -> Line:
    """An IRC line, tags unescaped only as far as this client needs (it reads none)."""
    tags: dict[str, str] = {}
    rest = raw
    if rest.startswith("@"):
        head, _, rest = rest.partition(" ")
        for item in head[1:].split(";"):
            key, _, value = item.partition("=")
            tags[key] = value
    source = ""
    if rest.startswith(":"):
        source, _, rest = rest[1:].partition(" ")
    trailing = None
    if " :" in rest:
        rest, _, trailing = rest.partition(" :")
    params = rest.split()
    if trailing is not None:
        params.append(trailing)
    return Line(tags, source, params[0].upper() if params else "", params[1:])


@dataclass
class Reply:
    seconds: float
    lines: list[Line]

    @property
    def fail(self) -> str | None:
        for line in self.lines:
            if line.command in ("FAIL", "ERROR") or line.command.startswith("4"):
                return " ".join([line.command, *line.params])
        return None

    @property
    def results(self) -> int:
        """Messages (CHATHISTORY, SEARCH) or conversations (TARGETS) in the reply."""
        return sum(1 for x in self.lines if x.command in ("PRIVMSG", "NOTICE", "CHATHISTORY"))


class Irc:
    """One IRC connection: labeled requests (labeled-response), waits for a line, and a
    hook that sees every PRIVMSG as it arrives (with its arrival time)."""

    def __init__(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, nick: str
    ) -> None:
        self.reader, self.writer, self.nick = reader, writer, nick
        self.labels = itertools.count(1)
        self.pending: dict[str, tuple[asyncio.Future[list[Line]], list[Line]]] = {}
        self.batches: dict[str, str] = {}  # batch reference -> label of its request
        self.outer: dict[str, str] = {}  # the same, for the batch that is the whole reply
        self.waiters: list[tuple[Callable[[Line], bool], asyncio.Future[Line]]] = []
        self.on_privmsg: Callable[[int, Line], None] | None = None
        self.closed = False
        self.task = asyncio.ensure_future(self._read())

    @classmethod
    async def connect(
        cls,
        port: int,
        nick: str,
        *,
        caps: str = "",
        account: str | None = None,
        password: str = "",
        timeout: float = 60.0,
    ) -> Irc:
        reader, writer = await asyncio.open_connection("127.0.0.1", port, limit=1 << 20)
        irc = cls(reader, writer, nick)
        try:
            await asyncio.wait_for(irc._register(caps, account, password), timeout)
        except BaseException:
            irc.close()
            raise
        return irc

    async def _register(self, caps: str, account: str | None, password: str) -> None:
        if caps:
            self.send("CAP LS 302")
            self.send(f"CAP REQ :{caps}")
            ack = await self.wait(lambda x: x.command == "CAP" and x.params[1] in ("ACK", "NAK"))
            if ack.params[1] == "NAK":
                raise RuntimeError(f"capabilities refused: {ack.params[-1]}")
            if account is not None:
                self.send("AUTHENTICATE PLAIN")
                await self.wait(lambda x: x.command == "AUTHENTICATE")
                token = base64.b64encode(f"{account}\0{account}\0{password}".encode()).decode()
                self.send(f"AUTHENTICATE {token}")
                done = await self.wait(lambda x: x.command in ("903", "904", "905", "906"))
                if done.command != "903":
                    raise RuntimeError(f"SASL login as {account} failed: {done.params[-1]}")
            self.send("CAP END")
        self.send(f"NICK {self.nick}")
        self.send(f"USER {self.nick[:10]} 0 * :history bench")
        welcome = await self.wait(lambda x: x.command in ("001", "433", "432", "ERROR"))
        if welcome.command != "001":
            raise RuntimeError(f"registration as {self.nick} failed: {welcome.params}")

    def send(self, line: str) -> None:
        self.writer.write(line.encode() + b"\r\n")

    def wait(self, match: Callable[[Line], bool]) -> asyncio.Future[Line]:
        fut: asyncio.Future[Line] = asyncio.get_running_loop().create_future()
        self.waiters.append((match, fut))
        return fut

    async def join(self, channels: Sequence[str]) -> None:
        """JOIN the channels, and wait for the end of each one's NAMES (an error would
        leave it waiting: the time-out says so)."""
        wanted = {name.lower() for name in channels}
        joined = [
            self.wait(lambda x: x.command == "366" and x.params[1].lower() in wanted)
            for _ in channels
        ]
        for i in range(0, len(channels), 10):
            self.send("JOIN " + ",".join(channels[i : i + 10]))
        await asyncio.wait_for(asyncio.gather(*joined), REQUEST_TIMEOUT)

    async def request(self, line: str, timeout: float = REQUEST_TIMEOUT) -> Reply:
        """Send ``line`` with a label; the reply (a labeled batch, a line or an ACK)."""
        label = f"h{next(self.labels)}"
        fut: asyncio.Future[list[Line]] = asyncio.get_running_loop().create_future()
        self.pending[label] = (fut, [])
        start = time.perf_counter()
        self.send(f"@label={label} {line}")
        try:
            lines = await asyncio.wait_for(fut, timeout)
        finally:
            self.pending.pop(label, None)
        return Reply(time.perf_counter() - start, lines)

    async def _read(self) -> None:
        try:
            while True:
                raw = await self.reader.readline()
                if not raw:
                    break
                now = time.monotonic_ns()
                line = parse(raw.decode("utf-8", "replace").rstrip("\r\n"))
                self._line(line, now)
        except (OSError, asyncio.IncompleteReadError, ValueError):
            pass
        finally:
            self.closed = True
            for fut, _ in self.pending.values():
                if not fut.done():
                    fut.set_exception(ConnectionError(f"{self.nick}: connection closed"))
            for _, waiter in self.waiters:
                if not waiter.done():
                    waiter.set_exception(ConnectionError(f"{self.nick}: connection closed"))

    def _line(self, line: Line, now: int) -> None:
        command = line.command
        if command == "PING":
            self.send("PONG :" + (line.params[-1] if line.params else ""))
            return
        if command == "PRIVMSG" and self.on_privmsg is not None:
            self.on_privmsg(now, line)
        opens = command == "BATCH" and bool(line.params) and line.params[0][:1] == "+"
        label = line.tags.get("label")
        if label is not None and label in self.pending:
            self.pending[label][1].append(line)
            if opens:  # the reply is this batch (labeled-response)
                self.batches[line.params[0][1:]] = label
                self.outer[line.params[0][1:]] = label
            else:  # one line, or an ACK
                self._done(label)
            return
        ref = line.tags.get("batch")
        if ref is not None and ref in self.batches:
            owner = self.batches[ref]
            if opens:  # a batch nested in the reply
                self.batches[line.params[0][1:]] = owner
            if owner in self.pending:
                self.pending[owner][1].append(line)
            return
        if command == "BATCH" and line.params and line.params[0][1:] in self.outer:
            owner = self.outer.pop(line.params[0][1:])
            if owner in self.pending:
                self.pending[owner][1].append(line)
            self._done(owner)
            return
        for i, (match, waiter) in enumerate(self.waiters):
            if not waiter.done() and match(line):
                waiter.set_result(line)
                del self.waiters[i]
                break

    def _done(self, label: str) -> None:
        entry = self.pending.get(label)
        if entry is not None and not entry[0].done():
            entry[0].set_result(entry[1])
        for ref in [r for r, owner in self.batches.items() if owner == label]:
            del self.batches[ref]

    def close(self) -> None:
        if not self.closed:
            with contextlib.suppress(OSError, RuntimeError):
                self.writer.close()
        self.task.cancel()


# ---------------------------------------------------------------------------- measuring


def stats_ms(seconds: Sequence[float]) -> dict[str, Any]:
    ms = sorted(s * 1000 for s in seconds)
    if not ms:
        return {"n": 0, "p50_ms": None, "p99_ms": None, "max_ms": None}
    return {
        "n": len(ms),
        "p50_ms": round(percentile(ms, 0.50), 3),
        "p99_ms": round(percentile(ms, 0.99), 3),
        "max_ms": round(ms[-1], 3),
    }


class Noise:
    """What else took the machine during a measurement: other work on the server's core
    (pinned runs only) and the hypervisor's steal on either core, in % of the window (as
    in ``python -m bench``, see docs/BENCHMARKS.md)."""

    def __init__(self, server: servers.Server) -> None:
        self.server = server
        self.t = time.monotonic()
        self.cpu = procstat.cpu_seconds(server.pid)
        self.cores = [procstat.cpu_core_seconds(c) for c in (servers.SERVER_CPU, servers.GEN_CPU)]

    def done(self) -> dict[str, Any]:
        wall = max(1e-6, time.monotonic() - self.t)
        cpu = procstat.cpu_seconds(self.server.pid) - self.cpu
        cores = [procstat.cpu_core_seconds(c) for c in (servers.SERVER_CPU, servers.GEN_CPU)]
        steal = max(b[1] - a[1] for a, b in zip(self.cores, cores, strict=True))
        other = (cores[0][0] - self.cores[0][0]) - cpu if self.server.pinned else None
        return {
            "server_cpu_pct": round(100 * cpu / wall, 1),
            "other_pct": None if other is None else round(max(0.0, 100 * other / wall), 1),
            "steal_pct": round(max(0.0, 100 * steal / wall), 1),
        }


async def measure_query(
    irc: Irc,
    make: Callable[[int], str],
    reps: int,
    budget: float,
    min_reps: int,
    server: servers.Server,
) -> dict[str, Any]:
    """A request repeated (``make(i)`` for the i-th): the first one apart (cold caches),
    then up to ``reps`` more, or fewer once ``budget`` seconds have passed."""
    noise = Noise(server)
    first = await irc.request(make(0))
    times: list[float] = []
    results: list[int] = []
    fails: list[str] = [first.fail] if first.fail else []
    deadline = time.monotonic() + budget
    for i in range(1, reps + 1):
        reply = await irc.request(make(i))
        times.append(reply.seconds)
        results.append(reply.results)
        if reply.fail:
            fails.append(reply.fail)
        if time.monotonic() > deadline and len(times) >= min_reps:
            break
    out = stats_ms(times)
    out.update(
        first_ms=round(first.seconds * 1000, 3),
        results=max(results) if results else first.results,
        fails=len(fails),
        fail=fails[0] if fails else None,
        **noise.done(),
    )
    return out


class Conversation:
    """A private conversation at a fixed rate from one user to another, each message
    stamped with its send time (``T`` and 20 digits of monotonic ns); the receiver notes
    each message's delivery latency."""

    def __init__(self, sender: Irc, receiver: Irc, rate: float) -> None:
        self.sender, self.receiver, self.rate = sender, receiver, rate
        self.latency: list[float] = []
        self.sent = 0
        self.received = 0
        self.recording = False
        self.window = 0.0
        self._sent_before = self._received_before = 0
        self.this_sent = self.this_received = 0
        receiver.on_privmsg = self._got

    def _got(self, now: int, line: Line) -> None:
        text = line.params[-1] if line.params else ""
        if text.startswith("T") and text[1:21].isdigit():
            self.received += 1
            if self.recording:
                self.latency.append((now - int(text[1:21])) / 1e9)

    async def run(self, duration: float, until: Callable[[], bool] | None = None) -> None:
        await self.send(duration, until)
        await self.drain()

    async def send(self, duration: float, until: Callable[[], bool] | None = None) -> None:
        """Send at the rate for ``duration`` seconds, or until ``until()``."""
        self.latency, self.recording = [], True
        self._sent_before, self._received_before = self.sent, self.received
        start = time.monotonic()
        period = 1.0 / self.rate
        n = 0
        target = self.receiver.nick
        while True:
            now = time.monotonic()
            if now - start >= duration or (until is not None and until()):
                break
            due = start + n * period
            # Late (the generator was busy): send at once, but let the receiver read.
            await asyncio.sleep(max(0.0, due - now))
            self.sender.send(f"PRIVMSG {target} :T{time.monotonic_ns():020d} how is it going")
            n += 1
            self.sent += 1
        self.window = round(time.monotonic() - start, 2)

    async def drain(self, timeout: float = 60.0) -> None:
        """Wait for the messages still on their way (at most ``timeout`` seconds)."""
        deadline = time.monotonic() + timeout
        while self.received < self.sent and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        self.recording = False
        self.this_sent = self.sent - self._sent_before
        self.this_received = self.received - self._received_before

    def result(self) -> dict[str, Any]:
        out = stats_ms(self.latency)
        out.update(
            sent=self.this_sent,
            lost=max(0, self.this_sent - self.this_received),
            window_s=self.window,
        )
        return out


async def repeat(irc: Irc, line: str, stop: asyncio.Event, seconds: list[float]) -> None:
    """Send ``line`` again as soon as its reply is in, until ``stop`` is set."""
    while not stop.is_set():
        reply = await irc.request(line)
        seconds.append(reply.seconds)


async def delivery(
    conv: Conversation,
    duration: float,
    server: servers.Server,
    load: tuple[Irc, str] | None = None,
) -> dict[str, Any]:
    """The conversation's latency over ``duration`` s, with ``load`` (a client and the
    request it repeats) running meanwhile."""
    stop = asyncio.Event()
    load_times: list[float] = []
    task = None
    noise = Noise(server)
    if load is not None:
        task = asyncio.ensure_future(repeat(load[0], load[1], stop, load_times))
    await conv.send(duration)
    stop.set()
    if task is not None:
        await asyncio.wait_for(task, REQUEST_TIMEOUT)
    await conv.drain()
    out = conv.result()
    out.update(noise.done())
    if load is not None:
        load_stats = stats_ms(load_times)
        out.update(load_requests=load_stats["n"], load_p50_ms=load_stats["p50_ms"])
    return out


# ---------------------------------------------------------------------------- a run


@dataclass
class Run:
    """One server on a copy of the data set."""

    server: servers.Server
    data: Path  # what backend.disk_bytes measures
    startup: dict[str, Any] = field(default_factory=dict)


async def start(
    args: argparse.Namespace,
    backend: histdata.Backend,
    entry: Path,
    workdir: Path,
    history: dict[str, float] | None = None,
) -> Run:
    port = servers.free_port()
    rundir = workdir / f"salon-{port}"
    rundir.mkdir(parents=True)
    t0 = time.monotonic()
    data, config = backend.serve(entry / "data", rundir)
    log(f"copied the data set to {rundir} in {time.monotonic() - t0:.1f} s")
    conf = rundir / "salon.toml"
    servers.render("salon.toml.tmpl", port, rundir, conf)
    settings = dict(history or {})
    if args.query_budget is not None:
        settings["query_budget"] = args.query_budget
    extra = "".join(f"{key} = {value!r}\n" for key, value in settings.items())
    with open(conf, "a") as f:
        f.write(config + ("\n[history]\n" + extra if extra else ""))
    # Nothing of the copy waits to be written back by the kernel during the start.
    await asyncio.to_thread(os.sync)
    salon_cmd = shlex.split(args.salon_cmd)
    t0 = time.monotonic()
    server = servers.spawn(
        "salon", [*salon_cmd, "serve", "--config", str(conf)], rundir, port, args.pin
    )
    await servers.wait_listening(server, timeout=600.0, poll=0.01)
    listening = time.monotonic() - t0
    probe = await Irc.connect(port, "lat_probe")
    registered = time.monotonic() - t0
    probe.send("QUIT")
    probe.close()
    log(f"salon pid {server.pid} on port {port}: listening after {listening:.2f} s")
    return Run(
        server, data, {"listen_s": round(listening, 3), "registered_s": round(registered, 3)}
    )


async def measure(
    args: argparse.Namespace,
    backend: histdata.Backend,
    entry: Path,
    manifest: histdata.Manifest,
    workdir: Path,
) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    run = await start(args, backend, entry, workdir)
    server = run.server
    try:
        rows.append(
            {"measure": "startup", "what": "start-up until the IRC port answers", **run.startup}
        )
        reader = manifest.reader
        irc = await Irc.connect(
            server.port,
            reader["nick"],
            caps=READER_CAPS,
            account=reader["account"],
            password=reader["password"],
        )
        await irc.join(reader["channels"])
        log(f"{reader['nick']} logged in, in {len(reader['channels'])} channels")
        busiest = manifest.busiest["name"]
        small = manifest.small["name"]
        words = manifest.words
        year_back = manifest.year_back or ["0"]
        now = time.time()
        since = dt.datetime.fromtimestamp(now - TARGETS_DAYS * 86400, dt.UTC)
        until = dt.datetime.fromtimestamp(now + 60, dt.UTC)
        targets_line = (
            f"CHATHISTORY TARGETS timestamp={_stamp(since)} timestamp={_stamp(until)}"
            f" {TARGETS_LIMIT}"
        )
        search = f"SEARCH text={{}};limit={HISTORY_LIMIT}"
        queries: list[tuple[str, str, Callable[[int], str]]] = [
            (
                "latest",
                "CHATHISTORY LATEST, busiest channel",
                lambda i: f"CHATHISTORY LATEST {busiest} * {HISTORY_LIMIT}",
            ),
            (
                "before",
                "CHATHISTORY BEFORE a msgid a year back",
                lambda i: (
                    f"CHATHISTORY BEFORE {busiest} msgid={year_back[i % len(year_back)]} {HISTORY_LIMIT}"
                ),
            ),
            (
                "around",
                "CHATHISTORY AROUND a msgid a year back",
                lambda i: (
                    f"CHATHISTORY AROUND {busiest} msgid={year_back[i % len(year_back)]} {HISTORY_LIMIT}"
                ),
            ),
            (
                "targets",
                f"CHATHISTORY TARGETS ({len(reader['channels'])} channels + DMs)",
                lambda i: targets_line,
            ),
            ("search_rare", "SEARCH, a rare word", lambda i: search.format(words["rare"])),
            ("search_mid", "SEARCH, a mid-frequency word", lambda i: search.format(words["mid"])),
            ("search_common", "SEARCH, a common word", lambda i: search.format(words["common"])),
            (
                "search_common_in",
                "SEARCH, a common word, in= a small channel",
                lambda i: f"SEARCH in={small};text={words['common']};limit={HISTORY_LIMIT}",
            ),
            (
                "search_prefix",
                "SEARCH, a 4-letter prefix",
                lambda i: search.format(words["prefix"]),
            ),
        ]
        wanted = set(args.queries)
        for key, what, make in queries:
            if key not in wanted:
                continue
            res = await measure_query(irc, make, args.reps, args.budget, args.min_reps, server)
            row = {"measure": key, "what": what, "request": make(1), **res}
            rows.append(row)
            log(
                f"{what}: p50 {row['p50_ms']} ms, p99 {row['p99_ms']} ms (n={row['n']}, "
                f"first {row['first_ms']} ms, {row['results']} results, {row['fails']} failed)"
            )
        if args.duration > 0:
            sender = await Irc.connect(server.port, "lat_a")
            receiver = await Irc.connect(server.port, "lat_b")
            conv = Conversation(sender, receiver, args.rate)
            await conv.run(1.0)  # warm-up
            loads: list[tuple[str, str, tuple[Irc, str] | None]] = [
                ("delivery_idle", "delivery latency, idle", None),
                (
                    "delivery_search",
                    f"delivery latency while one user repeats SEARCH text={words['common']}",
                    (irc, search.format(words["common"])),
                ),
                (
                    "delivery_targets",
                    "delivery latency while one user repeats CHATHISTORY TARGETS",
                    (irc, targets_line),
                ),
            ]
            for key, what, load in loads:
                res = await delivery(conv, args.duration, server, load)
                rows.append({"measure": key, "what": what, "rate": args.rate, **res})
                log(
                    f"{what}: p50 {res['p50_ms']} ms, p99 {res['p99_ms']} ms, max {res['max_ms']}"
                    f" ms, {res['sent']} sent, {res['lost']} lost"
                    + (f", {res['load_requests']} requests of the load" if load else "")
                )
            sender.close()
            receiver.close()
        irc.close()
    finally:
        server.stop()
        backend.stop()
    if not args.keep:
        shutil.rmtree(server.rundir, ignore_errors=True)
    return rows


async def measure_retention(
    args: argparse.Namespace,
    backend: histdata.Backend,
    entry: Path,
    manifest: histdata.Manifest,
    workdir: Path,
) -> dict[str, Any]:
    """Delivery latency while the server purges the oldest year (``retention_days =
    365``, which it does about a second after it starts), until its log says it purged
    (and 3 s more), or ``--retention-timeout``."""
    run = await start(args, backend, entry, workdir, {"retention_days": 365})
    server, data = run.server, run.data
    try:
        sender = await Irc.connect(server.port, "lat_a")
        receiver = await Irc.connect(server.port, "lat_b")
        conv = Conversation(sender, receiver, args.rate)
        peak = backend.disk_bytes(data)
        seen: list[float] = []
        looked = 0.0

        def purged() -> bool:
            nonlocal peak, looked
            if time.monotonic() - looked < 0.5:
                return False
            looked = time.monotonic()
            peak = max(peak, backend.disk_bytes(data))
            if not seen and "history retention" in _read(server.log_path):
                seen.append(looked)
            return bool(seen) and looked - seen[0] > 3.0

        noise = Noise(server)
        t0 = time.monotonic()
        await conv.run(args.retention_timeout, until=purged)
        res = conv.result()
        res.update(noise.done())
        sender.close()
        receiver.close()
    finally:
        server.stop()
        backend.stop()
    text = _read(server.log_path)
    removed = None
    for line in text.splitlines():
        if "history retention: removed" in line:
            removed = int(line.rsplit("removed", 1)[1].split()[0])
    slow = [
        float(line.rsplit("took", 1)[1].split()[0])
        for line in text.splitlines()
        if "slow storage" in line
    ]
    res.update(
        measure="retention",
        what="delivery latency during the retention purge (retention_days = 365)",
        rate=args.rate,
        purge_seen=bool(seen),
        purge_seen_after_s=round(seen[0] - t0, 1) if seen else None,
        removed=removed,
        slowest_storage_call_s=max(slow) if slow else None,
        disk_before=manifest.build.get("disk_bytes"),
        disk_peak=peak,
        disk_after=backend.disk_bytes(data),
    )
    if not args.keep:
        shutil.rmtree(server.rundir, ignore_errors=True)
    return res


def _read(path: Path) -> str:
    try:
        return path.read_text(errors="replace")
    except OSError:
        return ""


def _stamp(when: dt.datetime) -> str:
    return when.strftime("%Y-%m-%dT%H:%M:%S.") + f"{when.microsecond // 1000:03d}Z"


# ---------------------------------------------------------------------------- output

QUERIES = (
    "latest",
    "before",
    "around",
    "targets",
    "search_rare",
    "search_mid",
    "search_common",
    "search_common_in",
    "search_prefix",
)


def table(rows: Sequence[dict[str, Any]]) -> str:
    header = ["measure", "p50", "p99", "max", "n", "notes"]
    out: list[list[str]] = []
    for r in rows:
        m = r["measure"]
        if m == "build":
            out.append(
                [
                    f"build ({r['messages']:,} messages, {r['rows']:,} rows)",
                    "",
                    "",
                    "",
                    "",
                    f"{r['seconds']:.0f} s{' (cached)' if r['cached'] else ''}",
                ]
            )
            continue
        if m == "disk":
            out.append(
                [
                    "bytes on disk per message",
                    "",
                    "",
                    "",
                    "",
                    f"{r['bytes_per_message']:.0f} ({r['bytes_per_row']:.0f} per stored event)",
                ]
            )
            continue
        if m == "startup":
            out.append(
                [
                    r["what"],
                    f"{r['registered_s']:.2f} s",
                    "",
                    "",
                    "1",
                    f"listening after {r['listen_s']:.2f} s",
                ]
            )
            continue
        notes = []
        if "results" in r:
            notes.append(f"{r['results']} results, first {report.fmt(r['first_ms'])} ms")
        if r.get("fails"):
            notes.append(f"{r['fails']} FAILED: {r['fail']}")
        if "sent" in r:
            notes.append(f"{r['sent']} sent, {r['lost']} lost")
        if r.get("load_requests") is not None:
            notes.append(
                f"{r['load_requests']} load requests, p50 {report.fmt(r['load_p50_ms'])} ms"
            )
        if m == "retention":
            notes.append(
                f"{r.get('removed')} removed, slowest store call {r.get('slowest_storage_call_s')}"
                f" s, disk {_gb(r.get('disk_before'))} -> peak {_gb(r.get('disk_peak'))}"
                f" -> {_gb(r.get('disk_after'))} GB"
            )
        if r.get("steal_pct") is not None:
            other = r.get("other_pct")
            notes.append(
                f"other/steal {'-' if other is None else f'{other:.0f}'}/{r['steal_pct']:.0f}%"
            )
        out.append(
            [
                r["what"],
                _ms(r["p50_ms"]),
                _ms(r["p99_ms"]),
                _ms(r["max_ms"]),
                str(r["n"]),
                "; ".join(notes),
            ]
        )
    widths = [max(len(h), *(len(row[i]) for row in out)) for i, h in enumerate(header)]

    def line(cells: Sequence[str]) -> str:
        return "| " + " | ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)) + " |"

    lines = [line(header), "|" + "|".join("-" * (w + 2) for w in widths) + "|"]
    return "\n".join(lines + [line(row) for row in out])


def _gb(v: int | None) -> str:
    return "?" if v is None else f"{v / 1e9:.2f}"


def _ms(v: float | None) -> str:
    if v is None:
        return "-"
    if v >= 1000:
        return f"{v / 1000:.2f} s"
    return f"{v:.3g} ms" if v < 10 else f"{v:.0f} ms"


def targets(rows: Sequence[dict[str, Any]]) -> list[str]:
    """The issue's targets at 10M messages, checked against this run's figures."""
    by = {r["measure"]: r for r in rows}
    out = []
    for key, limit in TARGETS_10M.items():
        p99 = by.get(key, {}).get("p99_ms")
        if p99 is not None:
            out.append(
                f"{'ok  ' if p99 <= limit else 'MISS'} {key} p99 {p99:.1f} ms (target {limit:g})"
            )
    if "startup" in by:
        s = by["startup"]["registered_s"]
        out.append(
            f"{'ok  ' if s <= TARGET_STARTUP_S else 'MISS'} start-up {s:.2f} s (target {TARGET_STARTUP_S:g})"
        )
    if "disk" in by:
        b = by["disk"]["bytes_per_message"]
        ok = b <= TARGET_BYTES_PER_MESSAGE
        out.append(
            f"{'ok  ' if ok else 'MISS'} {b:.0f} bytes per message (target {TARGET_BYTES_PER_MESSAGE:g})"
        )
    idle = by.get("delivery_idle", {}).get("p99_ms")
    for key in ("delivery_search", "delivery_targets", "retention"):
        p99 = by.get(key, {}).get("p99_ms")
        if idle is not None and p99 is not None:
            limit = max(3 * idle, 25.0)
            out.append(
                f"{'ok  ' if p99 <= limit else 'MISS'} {key} p99 {p99:.1f} ms "
                f"(target max(3 x idle, 25 ms) = {limit:.1f})"
            )
    return out


# ---------------------------------------------------------------------------- main


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(
        prog="python -m bench.history",
        description="History at scale: build (or reuse) a data set through the store's "
        "interface, serve it with salon, measure history queries and delivery latency over "
        "IRC. See docs/BENCHMARKS.md.",
    )
    ap.add_argument(
        "--size",
        default="1m",
        help="messages: 1m, 10m, or a number such as 2000 "
        "or 250k (smaller sets get fewer channels and users) (default: %(default)s)",
    )
    ap.add_argument(
        "--seed", type=int, default=1, help="the data set's seed (default: %(default)s)"
    )
    ap.add_argument(
        "--store",
        "--backend",
        dest="backend",
        default="sqlite",
        choices=sorted(histdata.BACKENDS),
        help="the store to build and serve; postgres starts a PostgreSQL of its own"
        " (bench/pgserver.py) (default: %(default)s)",
    )
    ap.add_argument(
        "--cache",
        type=Path,
        default=None,
        help=f"where built data sets are kept (default: {histdata.default_cache()},"
        f" or {histdata.default_cache('postgres')} for postgres run as root)",
    )
    ap.add_argument("--rebuild", action="store_true", help="build the data set even if cached")
    ap.add_argument(
        "--group",
        type=int,
        default=5000,
        help="events per transaction when building (default: %(default)s)",
    )
    ap.add_argument(
        "--index-slice",
        type=int,
        default=5000,
        help="rows per call of the store's background indexing, if it has one, when "
        "building (default: %(default)s)",
    )
    ap.add_argument(
        "--build-only", action="store_true", help="build (or find) the data set, measure nothing"
    )
    ap.add_argument(
        "--reps", type=int, default=30, help="repetitions per query (default: %(default)s)"
    )
    ap.add_argument(
        "--min-reps",
        type=int,
        default=5,
        help="repetitions per query at least, whatever --budget (default: %(default)s)",
    )
    ap.add_argument(
        "--budget",
        type=float,
        default=60.0,
        help="seconds per query after which repetitions stop (default: %(default)s)",
    )
    ap.add_argument(
        "--queries", default=",".join(QUERIES), help="queries to measure (default: all)"
    )
    ap.add_argument(
        "--duration",
        type=float,
        default=20.0,
        help="seconds of conversation per delivery measurement, 0 = none (default: %(default)s)",
    )
    ap.add_argument(
        "--rate", type=float, default=RATE, help="messages a second (default: %(default)s)"
    )
    ap.add_argument(
        "--retention",
        action="store_true",
        help="also measure delivery during a retention purge of the oldest year",
    )
    ap.add_argument(
        "--retention-timeout",
        type=float,
        default=600.0,
        help="longest the retention measurement waits for the purge (default: %(default)s)",
    )
    ap.add_argument(
        "--query-budget",
        type=float,
        default=None,
        help="the server's history.query_budget in seconds (default: salon's own)",
    )
    cli.add_run_options(ap)
    args = ap.parse_args(argv)
    try:
        args.messages = histdata.parse_size(args.size)
    except ValueError as e:
        ap.error(f"--size: {e}")
    if args.cache is None:
        args.cache = histdata.default_cache(args.backend)
    args.queries = [q.strip() for q in args.queries.split(",") if q.strip()]
    for q in args.queries:
        if q not in QUERIES:
            ap.error(f"unknown query {q!r}; choose from {', '.join(QUERIES)}")
    if args.reps < 1 or args.min_reps < 1 or args.rate <= 0 or args.duration < 0:
        ap.error("--reps, --min-reps and --rate must be positive, --duration not negative")
    return args


async def run_all(args: argparse.Namespace, meta: dict[str, Any]) -> list[dict[str, Any]]:
    backend = histdata.BACKENDS[args.backend]()
    if args.pin and isinstance(backend, histdata.PostgresBackend):
        backend.serve_cpus = str(servers.SERVER_CPU)
    entry, manifest, built = await asyncio.to_thread(
        histdata.cached,
        backend,
        args.cache,
        args.messages,
        args.seed,
        log,
        rebuild=args.rebuild,
        group=args.group,
        index_slice=args.index_slice,
    )
    b = manifest.build
    meta.update(
        size=histdata.size_label(args.messages),
        backend=backend.name,
        messages=manifest.messages,
        rows=manifest.rows,
        data=str(entry),
        data_built=manifest.built,
        data_code=manifest.code,
    )
    rows: list[dict[str, Any]] = [
        {
            "measure": "build",
            "what": "build",
            "cached": not built,
            "messages": manifest.messages,
            "rows": manifest.rows,
            "channel_messages": manifest.channel_messages,
            "private_messages": manifest.private_messages,
            "events": manifest.events,
            "accounts": manifest.accounts,
            **b,
        },
        {
            "measure": "disk",
            "what": "bytes on disk per message",
            "disk_bytes": b["disk_bytes"],
            "bytes_per_message": b["bytes_per_message"],
            "bytes_per_row": b["bytes_per_row"],
        },
    ]
    log(
        f"data set {entry}: {manifest.messages:,} messages, {manifest.rows:,} rows, "
        f"{'built in' if built else 'cached, built in'} {b['seconds']:.0f} s "
        f"(generating {b['generate_s']:.0f} s, writing {b['write_s']:.0f} s, "
        f"indexing {b['upkeep_s']:.0f} s), {b['bytes_per_message']:.0f} bytes per message"
    )
    if args.build_only:
        return rows
    workdir = Path(tempfile.mkdtemp(prefix="salon-history-"))
    try:
        rows += await measure(args, backend, entry, manifest, workdir)
        if args.retention:
            res = await measure_retention(args, backend, entry, manifest, workdir)
            rows.append(res)
            log(
                f"retention: p50 {res['p50_ms']} ms, p99 {res['p99_ms']} ms, max {res['max_ms']} ms, "
                f"{res['removed']} removed, purge seen after {res['purge_seen_after_s']} s"
            )
    finally:
        backend.stop()
        if args.keep:
            log(f"run directories kept in {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    return rows


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    cli.setup(args, log)
    started = dt.datetime.now(dt.UTC)
    meta: dict[str, Any] = {
        "bench": "history",
        "date": started.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "host": platform.node(),
        "cpus": os.cpu_count(),
        "pinned": args.pin,
        "commit": cli.git_commit(),
        "loadavg_start": _loadavg(),
    }
    try:
        rows = asyncio.run(run_all(args, meta))
    except KeyboardInterrupt:
        log("interrupted")
        return 130
    except servers.ServerStartError as e:
        log(f"cannot start salon: {e}")
        return EXIT_NO_START
    finally:
        servers.kill_all()
    meta["loadavg_end"] = _loadavg()
    results = [{**meta, **r} for r in rows]
    stamp = started.strftime("%Y%m%d-%H%M%S")
    out = args.out / f"history-{meta.get('size', 'x')}-{stamp}.jsonl"
    report.save(results, out, "history-latest.jsonl")
    print()
    print(
        f"salon history at scale, {meta['date']}, commit {meta['commit'] or '?'}, "
        f"{meta.get('messages', 0):,} messages ({meta.get('backend')}), host {meta['host']}, "
        f"load average {meta['loadavg_start']} -> {meta['loadavg_end']}"
    )
    print(table(rows))
    lines = targets(rows)
    if lines:
        print("\nthe targets of issue 17 (set for 10M messages):")
        for line in lines:
            print("  " + line)
    print(f"\nresults: {out}")
    failed = any(r.get("fails") or r.get("lost") for r in rows)
    return EXIT_FAILED if failed else EXIT_OK


def _loadavg() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return ""


if __name__ == "__main__":
    raise SystemExit(main())
