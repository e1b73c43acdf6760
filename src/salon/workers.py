"""``salon serve --workers N``: N cluster nodes on one machine, on the same ports.

The supervisor is this small synchronous process (no event loop, no Redis client). It holds
the data directory's lock, makes what every worker must share before any starts (the
cloaking key, the self-signed certificate, the first copy of each worker's store), starts a
private redis-server on a Unix socket in the data directory when the config has no
``[cluster]``, and then runs N ``salon serve`` processes (workers). Each worker is a cluster
node with its own data directory ``DATA/workers/I`` and binds every listener with
SO_REUSEPORT, so the kernel spreads new connections over the workers. A worker that dies (a
crash, kill -9, fenced by Redis: exit 3) is started again, after a delay that doubles while
it keeps dying young. SIGTERM or SIGINT stops every worker cleanly, then Redis.
docs/cluster.md, "Workers on one machine", is the operators' side; docs/architecture.md,
"Scale-out", says why it is built so.
"""

from __future__ import annotations

import contextlib
import ctypes
import importlib.util
import logging
import os
import select
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import FrameType

from salon import datadir
from salon.config import ClusterSection, Config, validate
from salon.errors import UsageError
from salon.net import tls

log = logging.getLogger("salon.workers")

MAX_WORKERS = 64
WORKERS_DIR = "workers"
REDIS_SOCKET = "redis.sock"
REDIS_LOG = "redis.log"
STORE = "salon.db"
CLOAK_KEY = "cloak.key"
# A Unix socket's path is at most 107 bytes (sun_path, with its NUL).
SOCKET_PATH_MAX = 107
REDIS_START_TIMEOUT = 10.0
STOP_TIMEOUT = 10.0  # seconds a worker or Redis may take to stop before SIGKILL
# Restarts: the first after FIRST_DELAY, doubling up to MAX_DELAY while the worker keeps
# dying within HEALTHY seconds of being ready; a worker that lived longer starts over.
FIRST_DELAY = 0.5
MAX_DELAY = 30.0
HEALTHY = 60.0
POLL = 0.1
PR_SET_PDEATHSIG = 1


def worker_count(text: str) -> int:
    """--workers' value: 1 to MAX_WORKERS (raises ValueError with the reason)."""
    try:
        value = int(text)
    except ValueError:
        raise ValueError(f"{text!r} is not a number of workers") from None
    if not 1 <= value <= MAX_WORKERS:
        raise ValueError(f"{value} workers: from 1 to {MAX_WORKERS}")
    return value


def worker_dir(data: Path, number: int) -> Path:
    return data / WORKERS_DIR / str(number)


def redis_socket(data: Path) -> Path:
    return data.resolve() / REDIS_SOCKET


def private_cluster(data: Path) -> ClusterSection:
    """The [cluster] of the workers' private redis-server (no [cluster] in the config)."""
    return ClusterSection(redis=f"unix://{redis_socket(data)}")


def worker_config(cfg: Config, number: int) -> Config:
    """Worker ``number``'s config: a node of [cluster] (or of the private Redis) named after
    its number, with its own data directory, the supervisor's certificate and blobs."""
    data = cfg.data_path
    cluster = cfg.cluster or private_cluster(data)
    base = cluster.node or socket.gethostname()
    cluster = replace(cluster, node=f"{base}/{number}"[-64:])
    tls_section = cfg.tls
    if not tls_section.cert and (cfg.listen.tls_port or cfg.listen.https_port):
        # One certificate for every worker (a client pins one fingerprint); STS stays off
        # as for any self-signed certificate.
        cert, key = data / tls.SELF_SIGNED_CERT, data / tls.SELF_SIGNED_KEY
        tls_section = replace(tls_section, cert=str(cert), key=str(key), sts=False)
    server = replace(cfg.server, data_dir=str(worker_dir(data, number)))
    # One blob directory for every worker, as for the nodes of a cluster (docs/files.md,
    # "Across cluster nodes"): the supervisor's, not one in each worker's data directory.
    files = replace(cfg.files, dir=str(cfg.files_path.absolute()))
    out = replace(cfg, server=server, cluster=cluster, tls=tls_section, files=files)
    validate(out)
    return out


def _die_with_parent() -> None:
    """In a child, before exec: SIGTERM when the supervisor dies, even by SIGKILL, so that
    no worker or Redis outlives it (Linux; elsewhere nothing)."""
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


@dataclass
class Worker:
    number: int
    proc: subprocess.Popen[bytes] | None = None
    ready_fd: int = -1
    ready_at: float = 0.0  # monotonic; 0 until this run is listening
    failures: int = 0  # deaths in a row soon after starting
    restart_at: float = 0.0  # monotonic: when to start it again; 0 while it runs
    ever_ready: bool = False


@dataclass
class Supervisor:
    cfg: Config
    count: int
    argv: Sequence[str]  # the serve arguments every worker gets (without --workers)
    workers: list[Worker] = field(default_factory=list)
    redis: subprocess.Popen[bytes] | None = None
    stopping: bool = False
    _all_ready: bool = False
    _lock: int | None = None

    # ------------------------------------------------------------------ set-up

    def prepare(self) -> None:
        """Everything before the first worker starts (raises UsageError)."""
        cfg = self.cfg
        data = cfg.data_path
        if cfg.cluster is None and shutil.which("redis-server") is None:
            raise UsageError(
                "--workers without a [cluster] section runs a private redis-server:"
                " install it (Debian: apt-get install redis-server) or configure [cluster]"
            )
        if importlib.util.find_spec("redis") is None:  # the workers' (not loaded here)
            raise UsageError("cluster support is not installed: pip install 'salon[cluster]'")
        if cfg.cluster is None and len(str(redis_socket(data))) + 1 > SOCKET_PATH_MAX:
            raise UsageError(
                f"the data directory's path is too long for the private Redis's socket"
                f" ({redis_socket(data)}): use a shorter one or configure [cluster]"
            )
        try:
            data.mkdir(parents=True, exist_ok=True, mode=0o700)
            self._lock = datadir.lock(data)
            cloak = None
            if cfg.cloak.enabled and cfg.postgres is None:
                cloak = data / CLOAK_KEY
                tls.load_secret(cloak)  # made here once: every worker cloaks alike
            if not cfg.tls.cert and (cfg.listen.tls_port or cfg.listen.https_port):
                cert, _key, created = tls.self_signed(data, cfg.server.name)
                if created:
                    log.info("made a self-signed TLS certificate: %s", cert)
            for number in range(1, self.count + 1):
                self._prepare_dir(number, cloak)
        except datadir.DataDirBusy as exc:
            raise UsageError(str(exc)) from None
        except tls.TlsError as exc:
            raise UsageError(f"TLS: {exc}") from None
        except (OSError, sqlite3.Error) as exc:
            raise UsageError(f"cannot use data directory {data}: {exc}") from None
        self.workers = [Worker(number) for number in range(1, self.count + 1)]

    def _prepare_dir(self, number: int, cloak: Path | None) -> None:
        wdir = worker_dir(self.cfg.data_path, number)
        wdir.parent.mkdir(exist_ok=True, mode=0o700)
        wdir.mkdir(exist_ok=True, mode=0o700)
        if cloak is not None:
            shutil.copyfile(cloak, wdir / CLOAK_KEY)
            os.chmod(wdir / CLOAK_KEY, 0o600)
        main, own = self.cfg.data_path / STORE, wdir / STORE
        if self.cfg.postgres is None and main.exists() and not own.exists():
            # A worker's first store is a copy of the one-process store: accounts,
            # channels and history carry over (SQLite's online backup, consistent).
            log.info("worker %d: store copied from %s", number, main)
            with (
                contextlib.closing(sqlite3.connect(main)) as src,
                contextlib.closing(sqlite3.connect(own)) as dst,
            ):
                src.backup(dst)
            os.chmod(own, 0o600)

    # ------------------------------------------------------------------ Redis

    def start_redis(self) -> None:
        """The private redis-server on a Unix socket of the data directory, with nothing
        on disk: the workers' log lives as long as the supervisor (raises UsageError)."""
        data = self.cfg.data_path
        sock = redis_socket(data)
        with contextlib.suppress(FileNotFoundError):
            sock.unlink()  # a killed supervisor's (the lock says none runs now)
        command = [
            "redis-server",
            "--port", "0",
            "--unixsocket", str(sock),
            "--unixsocketperm", "700",
            "--save", "",
            "--appendonly", "no",
            "--dir", str(data.resolve()),
            "--logfile", str(data.resolve() / REDIS_LOG),
            "--daemonize", "no",
        ]  # fmt: skip
        self.redis = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            # Its own session: a Ctrl-C in the terminal stops the workers, which need Redis
            # until they have said goodbye; the supervisor stops it last.
            start_new_session=True,
            preexec_fn=_die_with_parent,  # (no threads here)
        )
        deadline = time.monotonic() + REDIS_START_TIMEOUT
        while not _ping(sock):
            if self.redis.poll() is not None or time.monotonic() > deadline:
                tail = _tail(data / REDIS_LOG)
                self.stop_redis()
                raise UsageError(f"the private redis-server did not start: {tail}")
            time.sleep(0.02)
        log.info("private redis-server on %s (pid %d)", sock, self.redis.pid)

    def stop_redis(self) -> None:
        proc, self.redis = self.redis, None
        if proc is not None:
            _end(proc, signal.SIGTERM)
        with contextlib.suppress(FileNotFoundError):
            redis_socket(self.cfg.data_path).unlink()

    # ------------------------------------------------------------------ workers

    def start(self, worker: Worker) -> None:
        read, write = os.pipe()
        argv = [*self.argv, "--worker", str(worker.number), "--ready-fd", str(write)]
        worker.proc = subprocess.Popen(
            [sys.executable, "-m", "salon", "serve", *argv],
            stdin=subprocess.DEVNULL,
            pass_fds=(write,),
            preexec_fn=_die_with_parent,  # (no threads here)
        )
        os.close(write)
        worker.ready_fd = read
        worker.ready_at = 0.0
        worker.restart_at = 0.0
        log.info("worker %d started, pid %d", worker.number, worker.proc.pid)

    def _close_ready(self, worker: Worker) -> None:
        if worker.ready_fd >= 0:
            os.close(worker.ready_fd)
            worker.ready_fd = -1

    def _check_ready(self, timeout: float) -> None:
        waiting = {w.ready_fd: w for w in self.workers if w.ready_fd >= 0}
        if not waiting:
            time.sleep(timeout)
            return
        with contextlib.suppress(InterruptedError):
            readable, _, _ = select.select(list(waiting), [], [], timeout)
            for fd in readable:
                worker = waiting[fd]
                if os.read(fd, 1):
                    worker.ready_at = time.monotonic()
                    worker.ever_ready = True
                    log.info("worker %d is listening", worker.number)
                    if all(w.ever_ready for w in self.workers) and not self._all_ready:
                        self._all_ready = True
                        log.info("all %d workers are listening", len(self.workers))
                self._close_ready(worker)

    def _reap(self) -> int | None:
        """Look at the workers that exited: start them again later. Returns an exit code
        for the supervisor when a worker could not start at all (the first start)."""
        now = time.monotonic()
        for worker in self.workers:
            proc = worker.proc
            if proc is None or proc.poll() is None:
                continue
            code = proc.returncode
            worker.proc = None
            self._close_ready(worker)
            how = _how(code)
            if not worker.ever_ready:
                # A start that failed before listening: a config or port problem that a
                # restart would repeat; the worker has said why (one line, above).
                log.error("worker %d could not start (%s): stopping", worker.number, how)
                return 2
            lived = now - worker.ready_at if worker.ready_at else 0.0
            worker.failures = 1 if lived >= HEALTHY else worker.failures + 1
            delay = min(MAX_DELAY, FIRST_DELAY * 2 ** (worker.failures - 1))
            worker.restart_at = now + delay
            log.warning(
                "worker %d (pid %d) %s; starting it again in %.1f s",
                worker.number,
                proc.pid,
                how,
                delay,
            )
        return None

    def run(self) -> int:
        """Until SIGTERM or SIGINT; the exit code."""
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, self._on_signal)
        try:
            if self.cfg.cluster is None:
                self.start_redis()
            for worker in self.workers:
                self.start(worker)
            code = 0
            while not self.stopping:
                self._check_ready(POLL)
                if self.stopping:
                    break
                if self.redis is not None and self.redis.poll() is not None:
                    # The workers keep their clients while Redis is away (redis_grace), and
                    # restate the network in a new, empty one (docs/cluster.md, "Failures").
                    how = _how(self.redis.returncode)
                    log.error("the private redis-server exited (%s); starting it again", how)
                    self._revive_redis()
                    continue
                failed = self._reap()
                if failed is not None:
                    code = failed
                    break
                now = time.monotonic()
                for worker in self.workers:
                    if worker.proc is None and worker.restart_at and now >= worker.restart_at:
                        self.start(worker)
            self.stop_workers()
            return code
        finally:
            self.stop_workers()
            self.stop_redis()
            if self._lock is not None:
                datadir.unlock(self._lock)
                self._lock = None

    def _revive_redis(self) -> None:
        """Start the private Redis again, trying with a doubling delay until it starts or
        the supervisor is told to stop (meanwhile a worker past redis_grace exits 3)."""
        self.stop_redis()
        delay = FIRST_DELAY
        while not self.stopping:
            try:
                self.start_redis()
                return
            except UsageError as exc:
                log.error("%s; trying again in %.1f s", exc, delay)
            until = time.monotonic() + delay
            while not self.stopping and time.monotonic() < until:
                time.sleep(POLL)
            delay = min(MAX_DELAY, delay * 2)

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        self.stopping = True

    def stop_workers(self) -> None:
        """SIGTERM to every worker (each closes its clients, whose QUITs go to the others
        through Redis), then wait; SIGKILL what is left after STOP_TIMEOUT."""
        running = [w for w in self.workers if w.proc is not None and w.proc.poll() is None]
        for worker in running:
            assert worker.proc is not None
            with contextlib.suppress(ProcessLookupError):
                worker.proc.send_signal(signal.SIGTERM)
        for worker in self.workers:
            if worker.proc is not None:
                _end(worker.proc, None)
                worker.proc = None
            self._close_ready(worker)


def _end(proc: subprocess.Popen[bytes], sig: int | None) -> None:
    """Send ``sig`` (unless None: sent already), wait up to STOP_TIMEOUT, then SIGKILL."""
    if proc.poll() is not None:
        return
    if sig is not None:
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(sig)
    try:
        proc.wait(STOP_TIMEOUT)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def _how(code: int) -> str:
    if code < 0:
        try:
            return f"was killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"was killed by signal {-code}"
    if code == 3:
        return "exited 3: fenced by Redis"
    return f"exited {code}"


def _ping(sock: Path) -> bool:
    """Whether Redis answers PING on ``sock`` (a raw RESP exchange: no client library)."""
    try:
        with socket.socket(socket.AF_UNIX) as s:
            s.settimeout(1)
            s.connect(str(sock))
            s.sendall(b"PING\r\n")
            return s.recv(64).startswith(b"+PONG")
    except OSError:
        return False


def _tail(path: Path) -> str:
    with contextlib.suppress(OSError):
        lines = path.read_text(errors="replace").strip().splitlines()
        if lines:
            return lines[-1]
    return "no log"


def supervise(cfg: Config, count: int, argv: Sequence[str]) -> int:
    """``salon serve --workers N``: the exit code (raises UsageError for a one-line error)."""
    supervisor = Supervisor(cfg, count, argv)
    supervisor.prepare()
    bus = "the Redis of [cluster]" if cfg.cluster else "a private redis-server"
    log.info("supervisor pid %d: %d workers on %s", os.getpid(), count, bus)
    code = supervisor.run()
    if code == 0:
        log.info("all %d workers stopped", count)
    return code
