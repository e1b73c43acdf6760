"""The store thread (net/storage.py) checkpoints the WAL beside the writer."""

from __future__ import annotations

import time
from pathlib import Path

from corehelpers import START

from salon.store.base import HistoryEvent


def test_wal_checkpoints_run_beside_the_writer(tmp_path: Path) -> None:
    """Commits never checkpoint (no fsync on the path of a message): the storage's own
    thread copies the WAL into the database file, and closing leaves no WAL behind."""
    import asyncio

    from salon.net.storage import CHECKPOINT_EVERY, Storage
    from salon.store.sqlite import SQLiteStore

    path = tmp_path / "salon.db"
    store = SQLiteStore(path)
    store.checkpoints_elsewhere()  # what Storage does; its thread starts after the writes
    size = path.stat().st_size
    text = "x" * 400
    for chunk in range(20):  # about 2,000 pages: twice SQLite's own checkpoint mark
        with store.transaction():
            store.append_history(
                [
                    HistoryEvent(
                        f"m{chunk}-{i}", START, "#c", "PRIVMSG", "a!a@h", None, ("#c", text)
                    )
                    for i in range(400)
                ]
            )
    wal = path.with_name(path.name + "-wal")
    assert wal.stat().st_size > 4_000_000
    assert path.stat().st_size == size  # nothing copied on commit
    loop = asyncio.new_event_loop()
    storage = Storage(store, loop, lambda call, result: None)
    try:
        # The file grows page by page while a checkpoint runs: wait for the whole copy.
        deadline = time.monotonic() + 20 * CHECKPOINT_EVERY
        while path.stat().st_size <= 3_000_000 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert path.stat().st_size > 3_000_000
    finally:
        storage.close()
        loop.close()
    assert not wal.exists() or wal.stat().st_size == 0
