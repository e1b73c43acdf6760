"""The core alone, in one process: no sockets, no event loop, no storage thread.

``python -m bench.inproc`` drives :class:`salon.server.core.Server` the way the shell does
(feed a burst of lines per sender, run the turn's store calls, complete them, flush the
outboxes) and prints the core's CPU time per delivery (fan-out) and per private message,
with history on and off. It isolates what the core costs from what syscalls cost, so a
change on the per-message path can be measured in seconds and without noise from the
generator. The store is a no-op (``--store sqlite`` for a real SQLite file, indexed the
way the storage thread indexes it: see :meth:`Core.upkeep`).
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import os
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from salon.config import from_mapping
from salon.net.storage import FLOOD_ROWS, MAINTAIN_EVERY, UPKEEP_SLICE
from salon.server.client import Client, Kind
from salon.server.core import Server
from salon.server.effects import Close, StoreCall
from salon.store.memory import MemoryStore


class NullStore(MemoryStore):
    """Keeps nothing: the core's cost without the store's."""

    @contextlib.contextmanager
    def transaction(self) -> Iterator[None]:
        yield

    def append_history(self, events: Sequence[Any]) -> None:
        return None


class Core:
    def __init__(self, history: bool, store: str) -> None:
        config = from_mapping(
            {
                "server": {"name": "bench.salon"},
                "flood": {"enabled": False},
                "connections": {"max_per_ip": 0, "throttle": 0},
                "limits": {"sendq": 1 << 26, "recvq": 1 << 24, "max_channels": 100},
                "history": {"enabled": history},
                "log": {"level": "warning"},
            }
        )
        self.now = 1000.0
        self.server = Server(config, now=self.now)
        if store == "sqlite":
            from salon.store.sqlite import SQLiteStore

            self.tmp = tempfile.TemporaryDirectory()
            self.store: Any = SQLiteStore(Path(self.tmp.name) / "salon.db")
        else:
            self.store = NullStore()
        self.server.load(self.store)
        self.port = 1
        self.maintained = time.process_time()

    def upkeep(self) -> None:
        """What the storage thread does between transactions (``Storage._upkeep``): every
        MAINTAIN_EVERY seconds (of this process's CPU time, which under the bench's load
        the real server spends in about as much wall time) index the backlog, in one go
        when it is FLOOD_ROWS or more, in slices otherwise."""
        maintain = getattr(self.store, "maintain", None)
        if maintain is None or time.process_time() - self.maintained < MAINTAIN_EVERY:
            return
        self.maintained = time.process_time()
        left = maintain(0)
        while left:
            left = maintain(left if left >= FLOOD_ROWS else UPKEEP_SLICE)

    def turn(self) -> int:
        """Run the turn's store calls and flush every outbox; return bytes written."""
        server = self.server
        while True:
            calls = [e for e in server.take_effects() if isinstance(e, StoreCall)]
            if not calls:
                break
            with self.store.transaction():
                results = [call.call(self.store) for call in calls]
            for call, result in zip(calls, results, strict=True):
                server.complete_store(call, result, self.now)
        written = 0
        for client in server.take_dirty():
            client.dirty = False
            out = client.outbox
            if out:
                written += len(out[0] if len(out) == 1 else b"".join(out))
                out.clear()
                client.outbytes = 0
        return written

    def register(self, nick: str, *channels: str) -> Client:
        self.port += 1
        client = self.server.connect(Kind.IRC, "127.0.0.1", self.port, self.now)
        lines = f"NICK {nick}\r\nUSER {nick} 0 * :{nick}\r\n"
        lines += "".join(f"JOIN {c}\r\n" for c in channels)
        self.server.feed(client, lines.encode(), self.now)
        self.turn()
        for effect in self.server.take_effects():
            assert not isinstance(effect, Close), effect
        return client


def run(history: bool, store: str, scenario: str, seconds: float) -> float:
    core = Core(history, store)
    body = "T" + "0" * 20 + " " + "x" * 60
    if scenario == "fanout":
        chans = [f"#fan{i}" for i in range(20)]
        members = [
            [core.register(f"u{c}x{m}", chan) for m in range(100)] for c, chan in enumerate(chans)
        ]
        senders = [
            (ms[0], f"PRIVMSG {chans[c]} :{body}\r\n".encode() * 16) for c, ms in enumerate(members)
        ]
        per_burst = 20 * 16 * 99
    else:
        pairs = [(core.register(f"a{i}"), core.register(f"b{i}")) for i in range(500)]
        senders = [(a, f"PRIVMSG b{i} :{body}\r\n".encode() * 16) for i, (a, _) in enumerate(pairs)]
        per_burst = 500 * 16
    server = core.server
    # As the shell does after start (salon.net.runner.serve).
    gc.collect()
    gc.freeze()
    gc.set_threshold(100_000, 50, 100)
    if os.environ.get("NOGC"):
        gc.disable()
    done = 0
    cpu0 = time.process_time()
    deadline = cpu0 + seconds
    while time.process_time() < deadline:
        core.now += 0.001
        for client, data in senders:
            server.feed(client, data, core.now)
        core.turn()
        core.upkeep()
        done += per_burst
    return (time.process_time() - cpu0) / done * 1e6


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=3.0)
    ap.add_argument("--store", choices=("null", "sqlite"), default="null")
    ap.add_argument("--scenarios", default="fanout,dm")
    ap.add_argument("--profile", action="store_true", help="cProfile the history-on run")
    ap.add_argument("--history", choices=("both", "on", "off"), default="both")
    args = ap.parse_args()
    for scenario in args.scenarios.split(","):
        figures: dict[bool, float] = {}
        modes = {"both": (False, True), "on": (True,), "off": (False,)}[args.history]
        for history in modes:
            if args.profile and history:
                import cProfile
                import pstats

                prof = cProfile.Profile()
                prof.enable()
                figures[history] = run(history, args.store, scenario, args.seconds)
                prof.disable()
                pstats.Stats(prof).sort_stats("tottime").print_stats(25)
            else:
                figures[history] = run(history, args.store, scenario, args.seconds)
        unit = "delivery" if scenario == "fanout" else "message"
        shown = ", ".join(f"history {'on' if h else 'off'} {f:.3f}" for h, f in figures.items())
        if len(figures) == 2:
            shown += f" ({figures[True] / figures[False]:.2f} times)"
        print(f"{scenario:7s} µs/{unit}: {shown}, store {args.store}")


if __name__ == "__main__":
    main()
