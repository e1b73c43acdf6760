"""Durability of history (issue 5) on a real salon process: nothing received is lost when it is killed in the middle of a burst."""

from __future__ import annotations

import contextlib
import signal
import sqlite3
import threading
import time
from pathlib import Path

from conftest import LineClient, SalonProcess

from salon.proto.message import parse

TAGS = "message-tags server-time echo-message"


class Burster:
    """One client of the burst: a thread that sends lines until the connection dies, and
    one that records the msgid of every PRIVMSG it receives (echoes included)."""

    def __init__(self, client: LineClient, name: str, partner: str) -> None:
        self.sock = client.sock
        self.sock.settimeout(10)
        self.leftover = client.buf
        self.name = name
        self.partner = partner
        self.sent = 0
        self.received: dict[str, str] = {}  # msgid -> text
        self.stop = threading.Event()
        self.threads = [
            threading.Thread(target=self._send, daemon=True),
            threading.Thread(target=self._read, daemon=True),
        ]

    def start(self) -> None:
        for thread in self.threads:
            thread.start()

    def join(self) -> None:
        for thread in self.threads:
            thread.join(10)
            assert not thread.is_alive()

    def _send(self) -> None:
        seq = 0
        with contextlib.suppress(OSError):
            while not self.stop.is_set():
                chunk = []
                for _ in range(25):
                    chunk.append(f"PRIVMSG #burst :{self.name} channel {seq}\r\n")
                    chunk.append(f"PRIVMSG {self.partner} :{self.name} private {seq}\r\n")
                    seq += 1
                self.sock.sendall("".join(chunk).encode())
                self.sent += len(chunk)

    def _read(self) -> None:
        buf = self.leftover
        with contextlib.suppress(OSError):
            while True:
                data = self.sock.recv(262144)
                if not data:
                    break
                buf += data
                *lines, buf = buf.split(b"\n")
                for raw in lines:
                    if b" PRIVMSG " not in raw:
                        continue
                    msg = parse(raw.rstrip(b"\r"))
                    self.received[msg.tags["msgid"]] = msg.params[-1]


def test_nothing_received_is_lost_when_the_server_is_killed(tmp_path: Path) -> None:
    server = SalonProcess(
        tmp_path,
        history={"chathistory_limit": 1_000_000},
        limits={"sendq": 16 * 1024 * 1024},
    ).start()
    clients: list[LineClient] = []
    try:
        names = [f"user{i}" for i in range(4)]
        for name in names:
            client = LineClient(server.irc_port)
            clients.append(client)
            client.register(name, TAGS)
            client.send("JOIN #burst")
            client.expect(r" 366 ")
        bursters = [
            Burster(client, name, names[(i + 1) % len(names)])
            for i, (client, name) in enumerate(zip(clients, names, strict=True))
        ]
        for burster in bursters:
            burster.start()
        started = time.monotonic()
        # Kill it while the burst is in full flow: the senders never stop by themselves.
        while time.monotonic() - started < 1.0 or not any(b.received for b in bursters):
            time.sleep(0.01)
        server.stop(signal.SIGKILL)
        killed_after = time.monotonic() - started
        for burster in bursters:
            burster.stop.set()
        for burster in bursters:
            burster.join()

        received: dict[str, str] = {}
        for burster in bursters:
            received.update(burster.received)
        sent = sum(b.sent for b in bursters)

        server.start()  # the same data directory, after the crash
        with sqlite3.connect(f"file:{server.data_dir / 'salon.db'}?mode=ro", uri=True) as db:
            rows = db.execute("SELECT msgid, target, text FROM history WHERE command = 'PRIVMSG'")
            stored = {msgid: (target, text) for msgid, target, text in rows}
        lost = sorted(set(received) - set(stored))
        channel = {m for m, (target, _) in stored.items() if target == "#burst"}
        print(
            f"\nSIGKILL after {killed_after:.2f} s: {sent} lines sent, {len(received)} distinct"
            f" messages received by some client, {len(stored)} stored ({len(channel)} in"
            f" #burst), {len(stored) - len(set(received) & set(stored))} stored but never"
            f" delivered, {len(lost)} lost"
        )
        assert received, "nothing was delivered before the kill"
        assert len(received) < sent, "the burst was over before the kill"
        assert lost == [], [received[m] for m in lost[:10]]
        assert all(stored[m][1] == text for m, text in received.items())

        # The restarted server serves the same history to a client.
        reader = LineClient(server.irc_port)
        clients.append(reader)
        reader.register("reader", "batch draft/chathistory " + TAGS)
        reader.send("JOIN #burst")
        reader.expect(r" 366 ")
        reader.send("CHATHISTORY LATEST #burst * 1000000")
        reader.expect(r"BATCH \+\S+ chathistory #burst")
        played = set()
        while True:
            msg = parse(reader.readline())
            if msg.command == "BATCH":
                break
            played.add(msg.tags["msgid"])
        assert played == channel
        assert {m for m, text in received.items() if " channel " in text} <= played
    finally:
        for client in clients:
            client.close()
        server.stop()
