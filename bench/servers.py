"""Starting and stopping the servers under test: salon, ngIRCd and InspIRCd.

Each server runs pinned to CPU 0 (``taskset -c 0``) in its own process group, from a config
rendered from ``bench/configs/*.tmpl`` into a scratch run directory. ``taskset`` execs the
server, so the pid we hold is the server's own and /proc/<pid> measures it.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

CONFIGS = Path(__file__).resolve().parent / "configs"
REPO = Path(__file__).resolve().parent.parent
SERVER_CPU = 0
GEN_CPU = 1
SERVER_NAMES = ("salon", "ngircd", "inspircd")
# Also runnable on request: salon with its message history (SQLite, committed before
# delivery) switched off, to see what that costs.
EXTRA_SERVERS = ("salon-nohist",)

# Connections the generator sets up at once (connect + NICK/USER until 001), per server.
# ngIRCd listens with a hard-coded backlog of 10: more pending connects overflow its accept
# queue and the kernel drops handshakes, which clients only retry after 1, 3, 7... seconds.
# InspIRCd 3 completes registrations in a once-a-second timer, so each takes up to 1 s and
# only many at once give a useful rate. salon (asyncio) listens with a backlog of 100.
CONNECT_CONCURRENCY = {"salon": 64, "salon-nohist": 64, "ngircd": 8, "inspircd": 1000}

# Every process this module started and has not reaped yet, killed on exit (see kill_all).
_LIVE: list[subprocess.Popen[bytes]] = []


class ServerStartError(RuntimeError):
    """The server could not be started (missing binary, crashed at start, never listened)."""


@dataclass
class Server:
    name: str
    port: int
    rundir: Path
    proc: subprocess.Popen[bytes]
    log_path: Path
    version: str = ""
    connect_concurrency: int = 64
    pinned: bool = False  # runs on SERVER_CPU alone (taskset)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None

    def log_tail(self, n: int = 20) -> str:
        try:
            lines = self.log_path.read_text(errors="replace").splitlines()
        except OSError:
            return ""
        return "\n".join(lines[-n:])

    def stop(self) -> None:
        stop_process(self.proc)


def default_salon_cmd() -> list[str]:
    venv_python = REPO / ".venv" / "bin" / "python"
    python = str(venv_python) if venv_python.exists() else sys.executable
    return [python, "-m", "salon"]


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def render(template: str, port: int, rundir: Path, dest: Path) -> None:
    text = (CONFIGS / template).read_text()
    dest.write_text(text.replace("@PORT@", str(port)).replace("@RUNDIR@", str(rundir)))


def raise_nofile(limit: int = 20000) -> int:
    """Raise RLIMIT_NOFILE (inherited by the servers) towards `limit`; return the soft limit."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < limit:
        try:  # root may raise the hard limit too
            resource.setrlimit(resource.RLIMIT_NOFILE, (limit, limit))
            return limit
        except (ValueError, OSError):
            limit = hard
    if soft == resource.RLIM_INFINITY or soft < limit:
        resource.setrlimit(resource.RLIMIT_NOFILE, (limit, hard))
        return limit
    return soft


def pin_generator() -> bool:
    """Pin this process (the load generator) to GEN_CPU; False when there are too few CPUs."""
    cpus = os.sched_getaffinity(0)
    if SERVER_CPU not in cpus or GEN_CPU not in cpus:
        return False
    os.sched_setaffinity(0, {GEN_CPU})
    return True


PACKAGES = {
    "ngircd": ("/usr/sbin/ngircd", "ngircd"),
    "inspircd": ("/usr/sbin/inspircd", "inspircd"),
}


def ensure_installed(name: str) -> str:
    """Path of the server binary, installing the Debian package with apt-get when missing."""
    binary, package = PACKAGES[name]
    found = binary if os.path.exists(binary) else shutil.which(name)
    if found:
        return found
    if shutil.which("apt-get") is None:
        raise ServerStartError(f"{name} is not installed and apt-get is not available")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    cmd = ["apt-get", "install", "-y", "-q", "--no-install-recommends", package]
    print(f"[bench] installing {package}: {shlex.join(cmd)}", file=sys.stderr)
    if subprocess.run(cmd, env=env, check=False).returncode != 0:
        subprocess.run(["apt-get", "update", "-q"], env=env, check=False)
        subprocess.run(cmd, env=env, check=False)
    found = binary if os.path.exists(binary) else shutil.which(name)
    if not found:
        raise ServerStartError(f"could not install {package}")
    return found


def server_version(name: str, salon_cmd: list[str]) -> str:
    try:
        if name.startswith("salon"):
            out = subprocess.run(
                [*salon_cmd, "--version"], capture_output=True, timeout=20, check=False
            )
        else:
            out = subprocess.run(
                [ensure_installed(name), "--version"], capture_output=True, timeout=10, check=False
            )
    except (OSError, subprocess.TimeoutExpired):
        return ""
    if name.startswith("salon") and out.returncode != 0:
        return ""
    for line in (out.stdout + out.stderr).decode(errors="replace").splitlines():
        if line.strip():
            return line.strip()[:80]
    return ""


def command(name: str, conf: Path, salon_cmd: list[str]) -> list[str]:
    if name.startswith("salon"):
        return [*salon_cmd, "serve", "--config", str(conf)]
    binary = ensure_installed(name)
    if name == "ngircd":
        return [binary, "-n", "-f", str(conf)]
    cmd = [binary, "--nofork", "--config", str(conf)]
    if os.geteuid() == 0:
        cmd.insert(2, "--runasroot")
    return cmd


async def start(
    name: str,
    workdir: Path,
    salon_cmd: list[str],
    pin: bool,
    timeout: float = 30.0,
    settle: float = 0.3,
) -> Server:
    """Start one server on a fresh port and wait until it accepts connections."""
    port = free_port()
    rundir = workdir / f"{name}-{port}"
    rundir.mkdir(parents=True, exist_ok=True)
    # ngIRCd drops root privileges to "nobody" and then writes its pid file here.
    rundir.chmod(0o777)
    if name.startswith("salon"):
        conf = rundir / "salon.toml"
        render("salon.toml.tmpl", port, rundir, conf)
        if name == "salon-nohist":
            with open(conf, "a") as f:
                f.write("\n[history]\nenabled = false\n")
    elif name == "ngircd":
        conf = rundir / "ngircd.conf"
        render("ngircd.conf.tmpl", port, rundir, conf)
    elif name == "inspircd":
        conf = rundir / "inspircd.conf"
        render("inspircd.conf.tmpl", port, rundir, conf)
        (rundir / "motd.txt").write_text("benchmark instance\n")
    else:
        raise ServerStartError(f"unknown server {name!r}")
    server = spawn(name, command(name, conf, salon_cmd), rundir, port, pin)
    await wait_listening(server, timeout)
    # Let the server finish its start-up work (and our probe connection) before baselines.
    await asyncio.sleep(settle)
    return server


def spawn(name: str, cmd: list[str], rundir: Path, port: int, pin: bool) -> Server:
    """Run a server's command in a process group of its own (pinned to SERVER_CPU when
    ``pin``), its output in ``rundir/server.log``; :func:`kill_all` stops it on exit."""
    pinned = bool(pin and shutil.which("taskset"))
    if pinned:
        cmd = ["taskset", "-c", str(SERVER_CPU), *cmd]
    log_path = rundir / "server.log"
    with open(log_path, "wb") as log:
        try:
            proc = subprocess.Popen(
                cmd,
                cwd=rundir,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        except OSError as e:
            raise ServerStartError(f"{name}: cannot run {shlex.join(cmd)}: {e}") from e
    _LIVE.append(proc)
    return Server(
        name=name,
        port=port,
        rundir=rundir,
        proc=proc,
        log_path=log_path,
        connect_concurrency=CONNECT_CONCURRENCY.get(name, 64),
        pinned=pinned,
    )


async def wait_listening(server: Server, timeout: float, poll: float = 0.05) -> None:
    """Wait until the server accepts a connection on its port (ServerStartError when it
    exits first or does not listen within ``timeout`` seconds: it is stopped then)."""
    name, port, proc = server.name, server.port, server.proc
    deadline = time.monotonic() + timeout
    while True:
        if not server.alive():
            tail = server.log_tail()
            stop_process(proc)
            raise ServerStartError(f"{name} exited with {proc.returncode} at start:\n{tail}")
        try:
            _, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), 1.0)
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()
            return
        except (OSError, TimeoutError):
            pass
        if time.monotonic() > deadline:
            tail = server.log_tail()
            stop_process(proc)
            raise ServerStartError(
                f"{name} did not listen on port {port} in {timeout:.0f}s:\n{tail}"
            )
        await asyncio.sleep(poll)


def stop_process(proc: subprocess.Popen[bytes], grace: float = 5.0) -> None:
    """SIGTERM the process group, SIGKILL it after `grace` seconds, and reap it."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(grace)
        except subprocess.TimeoutExpired:
            pass
    # Children that stayed in the group (none expected) go too.
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(grace)
    if proc in _LIVE:
        _LIVE.remove(proc)


def kill_all() -> None:
    for proc in list(_LIVE):
        stop_process(proc, grace=2.0)
