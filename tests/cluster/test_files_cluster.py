"""Issue 20's file host across the nodes of issue 19, on real processes: two ``salon serve``
nodes on one real redis-server and one real PostgreSQL (the files' metadata), sharing one
blob directory (files.dir). An upload on one node is read, checked and deleted on the other."""

from __future__ import annotations

import hashlib
import re
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from conftest import LineClient, SalonProcess, free_port
from filehelpers import account, basic, path_of, request, upload
from test_loopback import cluster  # noqa: F401 - the fixture

pytestmark = pytest.mark.e2e

QUOTA = 100
REFS = "SELECT count(*) FROM file_refs"


@pytest.fixture(params=["postgres", "sqlite"])
def store_dsn(request: pytest.FixtureRequest) -> str:
    """One PostgreSQL for both nodes (its DSN), or a SQLite store per node ("")."""
    return str(request.getfixturevalue("postgres_dsn")) if request.param == "postgres" else ""


def _node(start: Callable[..., SalonProcess], name: str, dsn: str, blobs: Path) -> SalonProcess:
    port = free_port()
    store = {"postgres": {"dsn": dsn, "retry_for": 5.0}} if dsn else {}
    return start(
        name,
        **store,
        listen={"http_port": port},
        accounts={"password_min_length": 4, "registration_throttle": 0},
        files={
            "public_url": f"http://127.0.0.1:{port}",
            "min_free": 0,
            "min_free_percent": 0.0,
            "quota": QUOTA,
            "dir": str(blobs),
        },
    )


def _until(check: Callable[[], bool]) -> None:
    """The other node hears of a change through the bus, a few milliseconds later."""
    deadline = time.monotonic() + 5
    while not check():
        assert time.monotonic() < deadline
        time.sleep(0.02)


def test_files_across_two_nodes(
    cluster: Callable[..., SalonProcess],  # noqa: F811 - the fixture
    store_dsn: str,
    tmp_path: Path,
) -> None:
    blobs = tmp_path / "shared-files"
    a = _node(cluster, "a", store_dsn, blobs)
    b = _node(cluster, "b", store_dsn, blobs)
    alice = account(LineClient, a, "alice", "#secret")
    alice.send("MODE #secret +s")
    alice.expect(r"MODE #secret \+s")
    bob = account(LineClient, b, "bob", "#secret")
    account(LineClient, b, "carol")
    # Uploaded on A, posted in a +s channel: on B, whoever may read #secret's history.
    data = b"plans made on node a\n"
    up = upload(a, data, "plans.txt", basic("alice"))
    assert up.status == 201, up.body
    url = up.header("Location")
    path = path_of(url)
    alice.send(f"PRIVMSG #secret :look {url}")
    bob.expect(re.escape(url))
    assert request(b, "GET", path).status == 401
    assert request(b, "GET", path, headers=basic("carol")).status == 403
    got = request(b, "GET", path, headers=basic("bob"))
    assert got.status == 200 and hashlib.sha256(got.body).digest() == hashlib.sha256(data).digest()
    # Membership is checked live on B: bob leaves, on his node.
    bob.send("PART #secret")
    bob.expect(r"PART #secret")
    assert request(b, "GET", path, headers=basic("bob")).status == 403
    # A token from node A uploads on node B (one load balancer in front of both).
    alice.send("TOKEN GENERATE FILEHOST")
    token = alice.expect(r"TOKEN GENERATE FILEHOST (\S+)").group(1)
    bearer = {"Authorization": f"Bearer {token}"}
    # The quota is the account's on every node: 21 bytes used on A, 80 more refused on B
    # (once B has heard of the token: 401 until then).
    _until(lambda: upload(b, b"x" * 80, "big.bin", bearer).status == 507)
    small = upload(b, b"from b\n", "b.txt", bearer)
    assert small.status == 201, small.body
    assert request(a, "GET", path_of(small.header("Location")), headers=basic("alice")).body == (
        b"from b\n"
    )
    # Deleted on A: 410 on B.
    assert request(a, "DELETE", path, headers=basic("alice")).status == 204
    _until(lambda: request(b, "GET", path, headers=basic("alice")).status == 410)
    # The metadata is stored once in the shared store, or by each node in its own; the
    # bytes once, in the shared directory.
    query = "SELECT name, deleted > 0 FROM files ORDER BY created"
    expected = ([("plans.txt", True), ("b.txt", False)], (0,))  # the refs went with the file

    def stored() -> list[tuple[list[tuple[str, bool]], Any]]:
        if store_dsn:
            import psycopg

            with psycopg.connect(store_dsn) as conn:
                return [(conn.execute(query).fetchall(), conn.execute(REFS).fetchone())]
        found = []
        for node in (a, b):
            with sqlite3.connect(Path(node.data_dir) / "salon.db") as db:
                rows = [(name, bool(gone)) for name, gone in db.execute(query)]
                found.append((rows, db.execute(REFS).fetchone()))
        return found

    # (Each node's storage thread writes a moment after the change.)
    _until(lambda: stored() == [expected] * len(stored()))
    # Both blobs are still there: a blob no file uses goes only after UNLINK_GRACE.
    assert len([p for p in blobs.rglob("*") if p.is_file() and len(p.name) == 64]) == 2


def test_a_shared_blob_directory_keeps_what_other_nodes_are_writing(tmp_path: Path) -> None:
    """A node starting sweeps only dead uploads' temp files, and unlinks a blob no file uses
    only once nobody has stored those bytes again for the grace period."""
    import os

    from salon.net.filehost import STALE_TEMP, UNLINK_GRACE, Blobs

    blobs = Blobs(tmp_path)
    blobs.create()
    live, dead = blobs.tmp / "live", blobs.tmp / "dead"
    live.write_bytes(b"another node's upload under way")
    dead.write_bytes(b"a dead node's upload")
    old = time.time() - STALE_TEMP - 1
    os.utime(dead, (old, old))
    blobs.create(shared=True)
    assert live.exists() and not dead.exists()
    blob = hashlib.sha256(b"x").hexdigest()
    path = blobs.path(blob)
    path.parent.mkdir(parents=True)
    path.write_bytes(b"x")  # just stored (again)
    blobs.delete(blob, UNLINK_GRACE)
    assert path.exists()
    old = time.time() - UNLINK_GRACE - 1
    os.utime(path, (old, old))
    blobs.delete(blob, UNLINK_GRACE)
    assert not path.exists()
    blobs.create()  # one process (and salon files gc): every leftover goes
    assert not live.exists()


def test_the_files_command_leaves_a_clusters_files_alone(tmp_path: Path) -> None:
    """``salon files`` works on one data directory's SQLite store; on PostgreSQL, or with a
    blob directory other nodes use, it refuses in one line (FileServ works online)."""
    import subprocess
    import sys

    for section in ('[postgres]\nhost = "db"\n', '[cluster]\nredis = "redis://127.0.0.1:1"\n'):
        conf = tmp_path / "salon.toml"
        conf.write_text(f'[server]\ndata_dir = "{tmp_path / "data"}"\n{section}')
        for action in ("list", "gc", "verify"):
            done = subprocess.run(
                [sys.executable, "-m", "salon", "files", action, "--config", str(conf)],
                capture_output=True,
                text=True,
                timeout=60,
            )
            assert done.returncode == 2, done.stderr
            err = done.stderr.strip()
            assert "\n" not in err and "manage files online (FileServ)" in err, err
    assert not (tmp_path / "data").exists()
