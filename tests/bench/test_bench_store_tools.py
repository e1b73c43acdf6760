"""Smoke tests of the store's measuring tools (bench.write_floor, bench.purge_latency): they
run on a tiny input and report what they did. No timing assertion."""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest
from storehelpers import fill

from bench import purge_latency, write_floor
from salon.store.base import HistoryEvent, dm_key
from salon.store.sqlite import SQLiteStore


def test_write_floor_measures_every_layout(capsys: pytest.CaptureFixture[str]) -> None:
    assert write_floor.main(["--rows", "600", "--group", "50", "--repeat", "1"]) == 0
    out = capsys.readouterr().out
    for name in write_floor.LAYOUTS:
        line = next(line for line in out.splitlines() if line.split()[:1] == [name])
        assert float(line.split()[1]) > 0


def test_write_floor_refuses_an_unknown_layout(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        write_floor.main(["--layouts", "table,nosuch"])
    assert exc.value.code == 2
    assert "unknown layout 'nosuch'" in capsys.readouterr().err


def test_purge_latency_commits_every_message_and_purges(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    store = SQLiteStore(tmp_path / "salon.db")
    old = time.time() - 400 * 86400
    key = dm_key("a", "b")
    fill(
        store,
        [
            HistoryEvent(f"{i:011x}abcd{i:x}", old + i, key, "PRIVMSG", "a!~a@h", None,
                         ("b", f"old {i}"), (), "", "a")
            for i in range(300)
        ],
    )  # fmt: skip
    store.index_pending()
    store.close()
    assert purge_latency.main(["--db", str(tmp_path / "salon.db"), "--seconds", "1"]) == 0
    out = capsys.readouterr().out
    found = re.match(r"(\d+) messages: .* (\d+) events removed", out)
    assert found is not None, out
    assert int(found[1]) >= 50 and int(found[2]) == 300


def test_purge_latency_deletes_one_conversation(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """--target deletes that conversation's whole history (recent events too), nothing
    else, and the report says the WAL's largest size and the pages before and after."""
    store = SQLiteStore(tmp_path / "salon.db")
    now = time.time()
    fill(
        store,
        [
            HistoryEvent(f"{i:011x}abcd{i:x}", now - 1000 + i, target, "PRIVMSG", "a!~a@h",
                         None, (target, f"said {i}"), (), "", "")
            for i in range(400)
            for target in ("#busy" if i % 4 else "#other",)
        ],
    )  # fmt: skip
    store.index_pending()
    store.close()
    argv = ["--db", str(tmp_path / "salon.db"), "--seconds", "1", "--target", "#busy"]
    assert purge_latency.main(argv) == 0
    out = capsys.readouterr().out
    found = re.match(r"(\d+) messages: .* (\d+) events removed; WAL at most [\d.]+ MiB; pages", out)
    assert found is not None, out
    assert int(found[2]) == 300
    store = SQLiteStore(tmp_path / "salon.db")
    left = store.conn.execute(
        "SELECT target, COUNT(*) FROM history WHERE target LIKE '#%' GROUP BY target"
    )
    assert [tuple(r) for r in left] == [("#other", 100)]
    store.close()


def test_purge_latency_time_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """--every adds a row per window: its messages, steps, events removed and checkpoints;
    the rows' events add up to the total."""
    store = SQLiteStore(tmp_path / "salon.db")
    old = time.time() - 400 * 86400
    fill(
        store,
        [
            HistoryEvent(f"{i:011x}abcd{i:x}", old + i, dm_key("a", "b"), "PRIVMSG", "a!~a@h",
                         None, ("b", f"old {i}"), (), "", "a")
            for i in range(300)
        ],
    )  # fmt: skip
    store.index_pending()
    store.close()
    argv = ["--db", str(tmp_path / "salon.db"), "--seconds", "1.5", "--every", "0.5"]
    assert purge_latency.main(argv) == 0
    lines = capsys.readouterr().out.splitlines()
    header = lines.index(next(line for line in lines if line.startswith("from s")))
    rows = [line.split(" | ") for line in lines[header + 1 :]]
    assert len(rows) >= 3
    assert sum(int(row[5]) for row in rows) == 300
    assert sum(int(row[1]) for row in rows) >= 100
    assert any(int(row[6]) > 0 for row in rows)  # the checkpointer ran, every 0.5 s


def test_purge_latency_refuses_a_window_of_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    SQLiteStore(tmp_path / "salon.db").close()
    with pytest.raises(SystemExit) as exc:
        purge_latency.main(["--db", str(tmp_path / "salon.db"), "--every", "0"])
    assert exc.value.code == 2
    assert "--every: must be more than 0" in capsys.readouterr().err
