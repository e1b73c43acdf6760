"""Where a cluster's file blobs could live: 100 MiB through PostgreSQL against a directory.

``python -m bench.blobstore`` starts a real PostgreSQL (bench.pgserver), then streams
``--mib`` of random bytes (incompressible, as photos and videos are) in and out of it as
rows of 256 KiB ``bytea`` chunks (one transaction, a server-side cursor for the read), and
the same bytes through a file (write, fsync, rename; read). For each: seconds, the growth
of this process's peak RSS, the growth of the server's RSS, WAL and table bytes. The
figures back the choice in docs/files.md ("Across cluster nodes").
"""

from __future__ import annotations

import argparse
import hashlib
import os
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from bench.histdata import reachable
from bench.pgserver import PostgresServer, find_bindir
from bench.procstat import rss_kib
from bench.servers import free_port

CHUNK = 256 << 10
MIB = 1 << 20


def _hwm_kib() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return 0


def _chunks(total: int, seed: bytes) -> Iterator[bytes]:
    """Pseudo-random bytes, made as they are sent (never all in memory)."""
    block = hashlib.sha256(seed).digest() * (CHUNK // 32)
    for n in range(total // CHUNK):
        yield hashlib.sha256(n.to_bytes(8, "big")).digest() + block[32:]


def through_postgres(server: PostgresServer, total: int) -> dict[str, float]:
    import psycopg

    dsn = server.dsn(server.create_database())
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(
            "CREATE TABLE blob_chunks (blob text, n int, data bytea, PRIMARY KEY (blob, n))"
        )
        # Compressing random bytes only costs CPU.
        conn.execute("ALTER TABLE blob_chunks ALTER data SET STORAGE EXTERNAL")
        pid = int(conn.execute("SELECT pg_backend_pid()").fetchone()[0])  # type: ignore[index]
        lsn0 = conn.execute("SELECT pg_current_wal_lsn()").fetchone()[0]  # type: ignore[index]
        hwm0, srv0 = _hwm_kib(), rss_kib(pid, group=False)
        sent = hashlib.sha256()
        t0 = time.perf_counter()
        srv_peak = srv0
        with conn.transaction(), conn.cursor() as cur:
            for n, piece in enumerate(_chunks(total, b"pg")):
                sent.update(piece)
                cur.execute("INSERT INTO blob_chunks VALUES ('b', %s, %s)", (n, piece))
                if n % 64 == 0:
                    srv_peak = max(srv_peak, rss_kib(pid, group=False))
        write_s = time.perf_counter() - t0
        wal = conn.execute("SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), %s)", (lsn0,)).fetchone()[
            0
        ]  # type: ignore[index]
        size = conn.execute("SELECT pg_total_relation_size('blob_chunks')").fetchone()[0]  # type: ignore[index]
        got = hashlib.sha256()
        t0 = time.perf_counter()
        with conn.transaction(), conn.cursor(name="read") as cur:
            cur.itersize = 4
            cur.execute("SELECT data FROM blob_chunks WHERE blob = 'b' ORDER BY n")
            for n, (piece,) in enumerate(cur):
                got.update(piece)
                if n % 64 == 0:
                    srv_peak = max(srv_peak, rss_kib(pid, group=False))
        read_s = time.perf_counter() - t0
    assert got.digest() == sent.digest(), "the bytes read back differ"
    return {
        "write s": write_s,
        "read s": read_s,
        "client peak RSS +MiB": (_hwm_kib() - hwm0) / 1024,
        "server RSS +MiB": (srv_peak - srv0) / 1024,
        "WAL MiB": float(wal) / MIB,
        "table MiB": float(size) / MIB,
    }


def through_directory(root: Path, total: int) -> dict[str, float]:
    hwm0 = _hwm_kib()
    temp, final = root / "temp", root / "blob"
    sent = hashlib.sha256()
    t0 = time.perf_counter()
    with open(temp, "wb") as fh:
        for piece in _chunks(total, b"dir"):
            sent.update(piece)
            fh.write(piece)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(temp, final)
    write_s = time.perf_counter() - t0
    got = hashlib.sha256()
    t0 = time.perf_counter()
    with open(final, "rb") as fh:
        while piece := fh.read(CHUNK):
            got.update(piece)
    read_s = time.perf_counter() - t0
    assert got.digest() == sent.digest(), "the bytes read back differ"
    return {
        "write s": write_s,
        "read s": read_s,
        "client peak RSS +MiB": (_hwm_kib() - hwm0) / 1024,
        "server RSS +MiB": 0.0,
        "WAL MiB": 0.0,
        "table MiB": final.stat().st_size / MIB,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mib", type=int, default=100)
    args = ap.parse_args()
    total = args.mib * MIB
    bindir = find_bindir()
    if bindir is None:
        raise SystemExit("PostgreSQL is not installed (Debian package postgresql)")
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        (root / "pg").mkdir()
        reachable(root / "pg")
        server = PostgresServer(bindir, root / "pg", ())
        server.start(free_port())
        try:
            rows = {
                "directory": through_directory(root, total),
                "postgresql": through_postgres(server, total),
            }
        finally:
            server.stop()
    keys = list(rows["directory"])
    print(f"{args.mib} MiB   " + "  ".join(f"{k:>20s}" for k in keys))
    for name, row in rows.items():
        print(f"{name:12s}" + "  ".join(f"{row[k]:20.2f}" for k in keys))


if __name__ == "__main__":
    main()
