"""Smoke test of the history-at-scale benchmark (``python -m bench.history``): a data set
of 2,000 messages built through the store's interface, served by salon, every query and
delivery measurement run over IRC. No timing assertion: figures this small mean nothing.
"""

from __future__ import annotations

import json
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
from conftest import postgres_bindir

from bench import histdata, history
from salon.store.base import HistoryQuery, dm_key, is_dm, msgid_time
from salon.store.memory import MemoryStore

REPO = Path(__file__).resolve().parents[2]
EXIT_NO_START = 3  # bench/history.py: the server could not be started
QUERIES = set(history.QUERIES)


@pytest.mark.parametrize("store", ["sqlite", "postgres"])
def test_history_bench_smoke(store: str, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    if store == "postgres":
        postgres_bindir()  # installed, or a failure (CI) or a skip
        # PostgreSQL runs as the postgres user, which pytest's own temporary root (mode
        # 700, set again by any pytest that starts meanwhile) keeps out.
        cache = Path(tempfile.mkdtemp(prefix="salon-bench-test-", dir="/var/tmp"))
        cache.chmod(0o711)
    try:
        run_smoke(store, tmp_path, cache)
    finally:
        if cache.parent != tmp_path:
            shutil.rmtree(cache, ignore_errors=True)


def run_smoke(store: str, tmp_path: Path, cache: Path) -> None:
    out = tmp_path / "results"
    cmd = [
        sys.executable,
        "-m",
        "bench.history",
        *("--store", store),
        *("--size", "2000", "--reps", "2", "--min-reps", "1", "--duration", "0.5"),
        *("--retention", "--retention-timeout", "20"),
        *("--cache", str(cache), "--out", str(out)),
        *("--salon-cmd", shlex.join([sys.executable, "-m", "salon"])),
        # Other tests run alongside: let the scheduler place the server and the generator,
        # and give searches a budget no load exhausts (the test checks that every query
        # finds what the data holds; budgets are tested in tests/store/test_store_reads.py).
        "--no-pin",
        *("--query-budget", "30"),
    ]
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=110)
    report = f"exit {proc.returncode}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr[-4000:]}"
    if proc.returncode == EXIT_NO_START:
        pytest.skip(f"salon could not start:\n{report}")
    assert proc.returncode == 0, report
    rows = [json.loads(line) for line in (out / "history-latest.jsonl").read_text().splitlines()]
    by = {r["measure"]: r for r in rows}
    expected = QUERIES | {"build", "disk", "startup", "retention"}
    expected |= {"delivery_idle", "delivery_search", "delivery_targets"}
    assert set(by) == expected, report
    build = by["build"]
    assert build["cached"] is False and build["messages"] >= 1900, build
    assert build["rows"] == build["messages"] + build["events"], build
    assert by["disk"]["bytes_per_message"] > 0
    assert 0 < by["startup"]["listen_s"] <= by["startup"]["registered_s"]
    for key in QUERIES:
        r = by[key]
        assert r["fails"] == 0 and r["n"] >= 1 and r["p99_ms"] > 0, r
    # Each query found what the data set holds for it (the reader may read it all).
    for key in ("latest", "before", "around", "search_common", "search_common_in"):
        assert by[key]["results"] > 0, by[key]
    assert by["latest"]["results"] == 100, by["latest"]
    # TARGETS: at least the reader's channels (each busy within the month asked for).
    assert by["targets"]["results"] >= 10, by["targets"]
    for key in ("delivery_idle", "delivery_search", "delivery_targets", "retention"):
        r = by[key]
        assert r["sent"] > 0 and r["lost"] == 0 and r["n"] == r["sent"], r
    assert by["delivery_search"]["load_requests"] > 0
    assert by["delivery_targets"]["load_requests"] > 0
    # Two years of history, a year kept: about half of it purged.
    retention = by["retention"]
    assert retention["purge_seen"] is True, retention
    assert 0.3 * build["rows"] < retention["removed"] < 0.7 * build["rows"], retention
    assert "| CHATHISTORY LATEST, busiest channel" in proc.stdout, report


def test_built_data_is_what_the_server_stores(tmp_path: Path) -> None:
    """The builder writes through the store interface alone (here the in-memory store),
    and its events look like the server's: msgids carrying their millisecond, private
    conversations keyed by both parties, correspondents recorded for TARGETS, times in
    order over two years; a second call takes the data set from the cache."""
    shape = histdata.shape_for(3000)
    community = histdata.Community(shape, seed=7)
    store = MemoryStore()
    builder = histdata.StoreBuilder(store, group=500)
    builder.save_accounts(community.accounts())
    manifest = histdata.Manifest(shape={}, seed=7)
    end = time.time()
    events = [e for chunk in community.events(end, manifest, chunk=700) for e in chunk]
    builder.append(events)
    assert len(events) == manifest.rows == manifest.messages + manifest.events
    assert len(store.load_accounts()) == sum(1 for u in community.users if u.account)
    times = [e.time for e in events]
    assert times == sorted(times)
    assert end - shape.days * 86400 <= times[0] and times[-1] <= end
    assert len({e.msgid for e in events}) == len(events)
    for e in events:
        assert msgid_time(e.msgid) == e.time, e
    private = [e for e in events if is_dm(e.target)]
    assert 0.1 < len(private) / manifest.messages < 0.3
    by_prefix = {u.prefix: u for u in community.users}
    for e in private:
        sender = by_prefix[e.source]
        assert e.party == sender.party
        recipient = next(u for u in community.users if u.nick == e.params[0])
        assert e.target == dm_key(sender.party, recipient.party)
    # The reader's conversations: recorded for TARGETS, readable with its account.
    reader = manifest.reader
    partners = store.dm_partners("~" + reader["account"])
    assert len(partners) >= 1
    conversation = partners[0][0]
    assert store.history(HistoryQuery(conversation, limit=5))
    busiest = store.history(HistoryQuery(manifest.busiest["name"], limit=1000, events=False))
    assert len(busiest) == min(1000, manifest.busiest["messages"])
    assert set(manifest.year_back) <= {e.msgid for e in events}
    year_ago = end - 365 * 86400
    assert all(
        msgid_time(m) is not None and msgid_time(m) >= year_ago  # type: ignore[operator]
        for m in manifest.year_back
    )
    # The cache: built once, found the second time.
    backend = histdata.SQLiteBackend()
    entry, first, built = histdata.cached(backend, tmp_path, 500, 3, print)
    assert built and (entry / "manifest.json").exists()
    assert first.accounts > 0 and first.reader["channels"] and first.year_back
    assert first.rows == first.messages + first.events > 500
    again, second, built_again = histdata.cached(backend, tmp_path, 500, 3, print)
    assert again == entry and not built_again and second == first
