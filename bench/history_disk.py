"""Bytes on disk per stored message (issue 17): a data set built through the store API.

``python -m bench.history_disk`` appends ``--messages`` events the way the server makes
them (msgids with their millisecond, ``nick!user@host`` sources, channel and private
conversations, texts of ``--words`` words from a Zipf vocabulary) in transactions of a few
hundred, indexes them as the storage thread does, checkpoints, and prints the file size
per message with each table's and index's share (SQLite's ``dbstat``).
"""

from __future__ import annotations

import argparse
import random
import sqlite3
import tempfile
import time
from pathlib import Path

from salon.store.base import HistoryEvent, dm_key
from salon.store.sqlite import SQLiteStore

SYLLABLES = ("ka", "lo", "mi", "ne", "ru", "ta", "shi", "po", "ve", "da", "an", "el", "or")


def vocabulary(size: int, rng: random.Random) -> list[str]:
    words: set[str] = set()
    while len(words) < size:
        words.add("".join(rng.choice(SYLLABLES) for _ in range(rng.randint(1, 4))))
    return sorted(words, key=len)  # short words are the common ones, as in speech


def events(count: int, seed: int) -> list[HistoryEvent]:
    rng = random.Random(seed)
    vocab = vocabulary(20_000, rng)
    weights = [1 / (rank + 1) for rank in range(len(vocab))]
    nicks = [f"user{i}" for i in range(5_000)]
    channels = [f"#chan{i}" for i in range(2_000)]
    chan_weights = [1 / (rank + 1) for rank in range(len(channels))]
    pairs = [tuple(rng.sample(nicks, 2)) for _ in range(20_000)]
    start_ms = int(time.time() * 1000) - 2 * 365 * 86_400_000
    step = 2 * 365 * 86_400_000 // count
    prefix = f"{rng.getrandbits(16):04x}"
    out = []
    words = iter(rng.choices(vocab, weights, k=count * 12))
    chans = iter(rng.choices(channels, chan_weights, k=count))
    for i in range(count):
        ms = start_ms + i * step + rng.randrange(step)
        text = ""
        while len(text) < 40:
            text += next(words) + " "
        text = text.strip()
        msgid = f"{ms:011x}{prefix}{i + 1:x}"
        if rng.random() < 0.3:
            a, b = rng.choice(pairs)
            source = f"{a}!~{a}@host-{int(a[4:]) % 997}.example.net"
            out.append(
                HistoryEvent(
                    msgid, ms / 1000, dm_key(a, b), "PRIVMSG", source, None, (b, text), (), "", a
                )
            )
        else:
            nick = rng.choice(nicks)
            source = f"{nick}!~{nick}@host-{int(nick[4:]) % 997}.example.net"
            chan = next(chans)
            out.append(
                HistoryEvent(
                    msgid, ms / 1000, chan, "PRIVMSG", source, None, (chan, text), (), "", ""
                )
            )
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--messages", type=int, default=200_000)
    ap.add_argument("--batch", type=int, default=300)
    ap.add_argument("--seed", type=int, default=17)
    args = ap.parse_args()
    evs = events(args.messages, args.seed)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "salon.db"
        store = SQLiteStore(path)
        started = time.perf_counter()
        for i in range(0, len(evs), args.batch):
            with store.transaction():
                store.append_history(evs[i : i + args.batch])
            if i % 20_000 < args.batch:
                while store.maintain(20_000):
                    pass
        while store.maintain(20_000):
            pass
        elapsed = time.perf_counter() - started
        store.close()
        size = path.stat().st_size
        conn = sqlite3.connect(path)
        rows = conn.execute(
            "SELECT name, SUM(pgsize) FROM dbstat GROUP BY name ORDER BY 2 DESC"
        ).fetchall()
        conn.close()
    print(
        f"{args.messages} messages, {size / args.messages:.1f} bytes a message on disk"
        f" ({elapsed / args.messages * 1e6:.1f} µs a message to store and index)"
    )
    for name, total in rows:
        if total / args.messages >= 1:
            print(f"  {name:28s} {total / args.messages:7.1f}")


if __name__ == "__main__":
    main()
