"""The file host under a big transfer: a 100 MiB upload and its download through a real
server process, while another user's PING round trips are timed over IRC.

    python -m bench.files [--mib 100]

Prints the transfer rates, the server's peak RSS (VmHWM) before and after, whether the
downloaded bytes match by sha256, and the PING round trips (p50, p99, max) during the
transfers. docs/BENCHMARKS.md, "File host", keeps the figures.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import http.client
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.servers import free_port


def vm(pid: int, key: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) * 1024
    raise KeyError(key)


def wait_port(port: int, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise RuntimeError(f"port {port} never opened")


def irc(port: int, nick: str, *lines: str) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    sock.sendall(
        "".join(f"{line}\r\n" for line in (f"NICK {nick}", f"USER {nick} 0 * :b", *lines)).encode()
    )
    buf = b""
    while b" 376 " not in buf and b" 422 " not in buf:
        buf += sock.recv(65536)
    return sock


PINGER = """
import socket, sys, time
port, stop_at = int(sys.argv[1]), float(sys.argv[2])
sock = socket.create_connection(("127.0.0.1", port), timeout=10)
sock.sendall(b"NICK pinger\\r\\nUSER pinger 0 * :p\\r\\n")
buf = b""
while b" 376 " not in buf and b" 422 " not in buf:
    buf += sock.recv(65536)
n = 0
while time.time() < stop_at:
    n += 1
    token = b"b%d" % n
    start = time.perf_counter()
    sock.sendall(b"PING " + token + b"\\r\\n")
    buf = b""
    while token not in buf:
        buf += sock.recv(65536)
    print(time.time(), time.perf_counter() - start, flush=True)
    time.sleep(0.02)
"""


class Pinger:
    """Another user, in a process of its own: a PING every 20 ms, each round trip timed
    (time, seconds)."""

    def __init__(self, port: int, seconds: float) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-c", PINGER, str(port), str(time.time() + seconds)],
            stdout=subprocess.PIPE,
            text=True,
        )

    def results(self) -> list[tuple[float, float]]:
        out, _ = self.proc.communicate(timeout=120)
        return [(float(a), float(b)) for a, b in (line.split() for line in out.splitlines())]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mib", type=int, default=100)
    args = parser.parse_args()
    size = args.mib << 20
    irc_port, http_port, plain_port = free_port(), free_port(), free_port()
    with tempfile.TemporaryDirectory() as tmp:
        config = Path(tmp) / "salon.toml"
        config.write_text(
            f'[server]\nname = "bench.salon"\ndata_dir = "{tmp}/data"\n'
            f"[listen]\nirc_port = {irc_port}\nplain_port = {plain_port}\ntls_port = 0\n"
            f"http_port = {http_port}\n[accounts]\npassword_min_length = 4\n"
            f'[files]\npublic_url = "http://127.0.0.1:{http_port}"\nmax_size = {size}\n'
            f"quota = {size * 2}\nmin_free = 0\nmin_free_percent = 0.0\n"
            # The pings come every 20 ms: flood control would hold them back.
            "[flood]\nenabled = false\n"
        )
        log = open(Path(tmp) / "server.log", "wb")  # noqa: SIM115 - closed below
        proc = subprocess.Popen(
            [sys.executable, "-m", "salon", "serve", "--config", str(config)],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            wait_port(irc_port)
            wait_port(http_port)
            irc(irc_port, "uploader", "REGISTER * * :sesame")
            time.sleep(1.0)  # the argon2 hash of the registration
            pinger = Pinger(irc_port, 2.0 + args.mib / 10)
            time.sleep(1.0)
            began = time.time()
            before = vm(proc.pid, "VmHWM")
            auth = "Basic " + base64.b64encode(b"uploader:sesame").decode()
            piece = os.urandom(1 << 20)
            sent = hashlib.sha256()

            def body() -> object:
                for i in range(args.mib):
                    chunk = bytes([i & 0xFF]) + piece[1:]
                    sent.update(chunk)
                    yield chunk

            conn = http.client.HTTPConnection("127.0.0.1", http_port, timeout=120)
            start = time.perf_counter()
            conn.request(
                "POST",
                "/upload",
                body=body(),
                headers={"Authorization": auth, "Content-Length": str(size)},
            )  # type: ignore[arg-type]
            response = conn.getresponse()
            response.read()
            up_s = time.perf_counter() - start
            location = response.getheader("Location") or ""
            assert response.status == 201, response.status
            got = hashlib.sha256()
            start = time.perf_counter()
            conn.request("GET", "/" + location.split("/", 3)[3], headers={"Authorization": auth})
            response = conn.getresponse()
            while chunk := response.read(1 << 20):
                got.update(chunk)
            down_s = time.perf_counter() - start
            conn.close()
            ended = time.time()
            after = vm(proc.pid, "VmHWM")
            busy = [rtt for when, rtt in pinger.results() if began <= when <= ended]
            q = statistics.quantiles(busy, n=100)
            print(f"upload {args.mib} MiB: {up_s:.2f} s ({args.mib / up_s:.0f} MiB/s)")
            print(f"download: {down_s:.2f} s ({args.mib / down_s:.0f} MiB/s)")
            print(f"sha256 equal: {got.hexdigest() == sent.hexdigest()}")
            print(f"server VmHWM: {before >> 20} MiB before, {after >> 20} MiB after "
                  f"(+{(after - before) / (1 << 20):.1f} MiB)")  # fmt: skip
            print(f"PING RTT during the transfers ({len(busy)} pings): p50 {q[49] * 1000:.1f} ms, "
                  f"p99 {q[98] * 1000:.1f} ms, max {max(busy) * 1000:.1f} ms")  # fmt: skip
        finally:
            proc.terminate()
            proc.wait(10)
            log.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
