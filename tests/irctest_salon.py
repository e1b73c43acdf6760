"""irctest controller for salon.

irctest (https://github.com/progval/irctest) imports this module with
``pytest --controller irctest_salon`` when ``tests/`` is on PYTHONPATH; see
``scripts/irctest.sh``. It runs inside irctest's own virtualenv, not salon's, so it is
not collected by salon's pytest run and not type-checked with the package.

Every test gets a fresh salon process with its own config and data directory in a
temporary directory; the process (and its whole process group) is killed afterwards.

With ``SALON_IRCTEST_NODES=2`` every test gets two salon nodes instead, A and B, each with
its own config and data directory (its own SQLite store) and a ``[cluster]`` section on a
fresh key prefix of one redis-server per irctest process (per xdist worker, started when
first needed, with tests/redisserver.py). The port irctest connects to is then a
round-robin forwarder (tests/roundrobin.py): the test's first connection goes to A, the
second to B, the third to A... so every test that uses two clients has them on two nodes.

The salon interpreter is ``$SALON_PYTHON`` when set, else the repo's ``.venv/bin/python``,
else the interpreter running irctest (with the repo's ``src`` put on its PYTHONPATH).
"""

from __future__ import annotations

import atexit
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from irctest.basecontrollers import (
    BaseServerController,
    DirectoryBasedController,
    ProcessStopped,
)
from irctest.runner import NotImplementedByController
from roundrobin import RoundRobin

REPO_DIR = Path(__file__).resolve().parent.parent
# 1 (the default): one salon per test; 2: two cluster nodes behind a round-robin forwarder.
NODES_ENV = "SALON_IRCTEST_NODES"
OPER_NAME = "operuser"
OPER_PASSWORD = "operpassword"
NODE_NAMES = ("a", "b")

CONFIG_TEMPLATE = """\
[server]
name = "My.Little.Server"
description = "test server"
data_dir = {data_dir}
password = {password}

[listen]
host = {hostname}
irc_port = {irc_port}
tls_port = {tls_port}
plain_port = 0
http_port = {http_port}

[tls]
cert = {tls_cert}
key = {tls_key}
sts = false

[connections]
# Every test connects many clients from 127.0.0.1 (exempt anyway): no limits at all.
max_per_ip = 0
throttle = 0

[cloak]
# Hosts are cloaked as in production (irctest only expects them to look like hosts).
enabled = true

[limits]
nicklen = 32

[flood]
enabled = false
channel_messages = 0

[accounts]
registration_before_connect = {before_connect}
registration_requires_email = {requires_email}
registration_throttle = 0
password_min_length = 1
services_server = "My.Little.Services"

[log]
level = {log_level}

[[oper]]
name = {oper_name}
password = {oper_hash}
"""

CLUSTER_TEMPLATE = """
[cluster]
redis = {redis}
node = {node}
prefix = {prefix}
"""

_oper_hash: str | None = None


def toml_str(value: str) -> str:
    """Quote ``value`` as a TOML basic string."""
    out = []
    for ch in value:
        if ch in '"\\':
            out.append("\\" + ch)
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


def toml_bool(value: bool) -> str:
    return "true" if value else "false"


def salon_python() -> tuple[str, dict[str, str]]:
    """The interpreter that runs salon, and the environment to run it with."""
    env = dict(os.environ)
    env.pop("PYTHONPATH", None)  # irctest's PYTHONPATH is no business of salon's
    env["PYTHONUNBUFFERED"] = "1"
    explicit = os.environ.get("SALON_PYTHON")
    if explicit:
        return explicit, env
    venv_python = REPO_DIR / ".venv" / "bin" / "python"
    if venv_python.exists():
        return str(venv_python), env
    env["PYTHONPATH"] = str(REPO_DIR / "src")
    return sys.executable, env


def oper_password_hash() -> str:
    """argon2id hash of OPER_PASSWORD, computed once per process."""
    global _oper_hash
    if _oper_hash is not None:
        return _oper_hash
    try:
        from argon2 import PasswordHasher
    except ImportError:
        python, env = salon_python()
        attempts = [
            [
                python,
                "-c",
                f"from argon2 import PasswordHasher; print(PasswordHasher().hash({OPER_PASSWORD!r}))",
            ],
            [python, "-m", "salon", "hash-password", OPER_PASSWORD],
        ]
        errors = []
        for cmd in attempts:
            res = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=60)
            lines = res.stdout.strip().splitlines()
            if res.returncode == 0 and lines and lines[-1].startswith("$argon2"):
                _oper_hash = lines[-1].strip()
                return _oper_hash
            errors.append(f"{cmd[:3]}: rc={res.returncode} {res.stderr.strip()[-500:]}")
        raise RuntimeError("cannot hash the oper password: " + "; ".join(errors)) from None
    _oper_hash = PasswordHasher().hash(OPER_PASSWORD)
    return _oper_hash


# Controllers whose server is running. irctest makes one controller per test and tests of
# one worker run one after the other, so when a new server starts any other one left here
# belongs to a test that never reached tearDown() (e.g. it skipped inside setUp()).
_running: set[SalonController] = set()


def _kill_leftovers(keep: SalonController | None = None) -> None:
    for controller in list(_running):
        if controller is not keep:
            try:
                controller.kill()
            except Exception:
                pass
            _running.discard(controller)


atexit.register(_kill_leftovers)


def signal_group(proc: subprocess.Popen[bytes], sig: signal.Signals) -> None:
    try:
        # start_new_session=True in execute(): the group id is the leader's pid.
        os.killpg(proc.pid, sig)
    except (ProcessLookupError, PermissionError):
        try:
            proc.send_signal(sig)
        except ProcessLookupError:
            pass


def node_count() -> int:
    value = os.environ.get(NODES_ENV, "1")
    if value not in ("1", "2"):
        raise RuntimeError(f"{NODES_ENV}={value!r}: give 1 or 2")
    return int(value)


_redis: Any = None


def worker_redis() -> Any:
    """This process's redis-server (one per xdist worker), started when first needed and
    stopped when the process exits; every start of a pair of nodes takes a fresh prefix."""
    global _redis
    if _redis is not None and _redis.proc is not None and _redis.proc.poll() is None:
        return _redis
    if str(REPO_DIR) not in sys.path:
        sys.path.append(str(REPO_DIR))  # tests/redisserver.py uses bench/pgserver.py
    from redisserver import RedisServer, find_redis

    program = find_redis()
    if program is None:
        raise RuntimeError(f"{NODES_ENV}=2 needs redis-server (Debian package redis-server)")
    server = RedisServer(program)
    for _attempt in range(3):  # a free port may be taken before redis-server binds it
        try:
            server.start(free_port())
            break
        except RuntimeError:
            server.stop()
            server = RedisServer(program)
    else:
        raise RuntimeError("cannot start redis-server for the two-node mode")
    _redis = server

    def stop() -> None:
        _kill_leftovers()  # nodes first: they leave the cluster through this Redis
        server.stop()

    atexit.register(stop)
    return server


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for_node(proc: subprocess.Popen[bytes], hostname: str, port: int) -> None:
    """Wait until a node answers on ``port``, with irctest's own probe (an unregistered
    connection that QUITs, so it counts nowhere)."""
    started = time.monotonic()
    while True:
        if proc.poll() is not None:
            raise ProcessStopped(f"process returned {proc.returncode}")
        try:
            with socket.create_connection((hostname, port), timeout=1.0) as c:
                c.sendall(b"QUIT :chkport\r\n")
                data = b""
                with contextlib.suppress(OSError):
                    while b"chkport" not in data and b"ERROR" not in data:
                        chunk = c.recv(4096)
                        if not chunk:
                            break
                        data += chunk
            return
        except ConnectionRefusedError:
            if time.monotonic() - started > 60:
                raise
            time.sleep(0.05)


class SalonController(BaseServerController, DirectoryBasedController):
    software_name = "salon"
    supported_sasl_mechanisms = {"PLAIN", "SCRAM-SHA-256"}
    extban_mute_char = "m"
    supports_sts = False
    _port_wait_interval = 0.05

    def create_config(self) -> None:
        super().create_config()
        with self.open_file("salon.toml"):
            pass

    def _not_implemented(self, what: str) -> None:
        # setUp() failed, so tearDown() will not release the ports irctest reserved.
        self.kill()
        raise NotImplementedByController(what)

    def run(
        self,
        hostname: str,
        port: int,
        *,
        password: str | None,
        ssl: bool,
        run_services: bool,
        faketime: str | None,
        websocket_hostname: str | None = None,
        websocket_port: int | None = None,
        **kwargs: Any,
    ) -> None:
        if websocket_hostname not in (None, hostname):
            self._not_implemented("Websocket on an address of its own")
        # run_services: NickServ and ChanServ are built in, nothing more to start.
        assert self.proc is None
        _kill_leftovers(keep=self)

        self.hostname = hostname
        self.port = port
        self.create_config()
        assert self.directory is not None
        cert = key = ""
        if ssl:
            # irctest's own certificate (openssl req + x509 -signkey), as for other servers:
            # the listener on `port` speaks TLS, and there is no plain-text one.
            self.gen_ssl()
            cert, key = str(self.pem_path), str(self.key_path)
        self._faketime_cmd = (
            ["faketime", "-f", faketime] if faketime and shutil.which("faketime") else []
        )
        self.faketime_enabled = bool(self._faketime_cmd)
        common = {
            "password": toml_str(password or ""),
            "hostname": toml_str(hostname),
            "tls_cert": toml_str(cert),
            "tls_key": toml_str(key),
            "log_level": toml_str("debug" if self.debug_mode else "info"),
            "oper_name": toml_str(OPER_NAME),
            "oper_hash": toml_str(oper_password_hash()),
            "before_connect": toml_bool(self.test_config.account_registration_before_connect),
            "requires_email": toml_bool(self.test_config.account_registration_requires_email),
        }
        if node_count() == 2:
            self._run_two_nodes(common, ssl, websocket_port)
            return
        config_path = self.directory / "salon.toml"
        with self.open_file("salon.toml", "w") as fd:
            fd.write(
                CONFIG_TEMPLATE.format(
                    data_dir=toml_str(str(self.directory / "data")),
                    irc_port=0 if ssl else port,
                    tls_port=port if ssl else 0,
                    http_port=websocket_port or 0,
                    **common,
                )
            )
        self._config_path = config_path
        self._start()

    # ------------------------------------------------------------ two nodes

    def _run_two_nodes(self, common: dict[str, str], ssl: bool, websocket_port: int | None) -> None:
        """Write node A's and node B's configs, each on ports of its own (reserved with
        irctest's, released by kill()), and start them behind the forwarder."""
        assert self.directory is not None
        self._node_configs = []
        self._node_ports: list[tuple[int, int]] = []  # (IRC or TLS port, WebSocket port)
        for name in NODE_NAMES:
            irc = self.get_hostname_and_port()[1]
            ws = self.get_hostname_and_port()[1] if websocket_port else 0
            self._node_ports.append((irc, ws))
            (self.directory / name).mkdir()
            config = CONFIG_TEMPLATE.format(
                data_dir=toml_str(str(self.directory / name / "data")),
                irc_port=0 if ssl else irc,
                tls_port=irc if ssl else 0,
                http_port=ws,
                **common,
            )
            self._node_configs.append((name, self.directory / name / "salon.toml", config))
        self._websocket_port = websocket_port
        self._start_two()

    def _start_two(self) -> None:
        """Put the forwarder on the port irctest connects to, then start both nodes on a
        fresh key prefix and wait until each has joined the cluster (a node opens its
        listeners only once it has joined and replayed the log). The forwarder listens
        first: the port irctest chose is free only until something else takes it (another
        program's outgoing connection may), and nothing connects before run() returns."""
        assert self.directory is not None
        listens = [
            (self.hostname, self.port, [(self.hostname, irc) for irc, _ws in self._node_ports])
        ]
        if self._websocket_port:
            listens.append(
                (
                    self.hostname,
                    self._websocket_port,
                    [(self.hostname, ws) for _irc, ws in self._node_ports],
                )
            )
        try:
            self._forwarder: RoundRobin | None = RoundRobin(listens).start()
        except BaseException:
            self.kill()  # setUp() fails, so tearDown() will not release irctest's ports
            raise
        redis = worker_redis()
        prefix = redis.prefix()
        python, env = salon_python()
        self._node_procs: list[tuple[str, subprocess.Popen[bytes], Path]] = []
        for name, path, config in self._node_configs:
            path.write_text(
                config
                + CLUSTER_TEMPLATE.format(
                    redis=toml_str(redis.url), node=toml_str(name), prefix=toml_str(prefix)
                )
            )
            log_path = self.directory / name / "salon.log"
            output: dict[str, Any] = {}
            if not self.debug_mode:
                log_fd = log_path.open("ab")
                output = {"stdout": log_fd, "stderr": log_fd}
            try:
                proc = self.execute(
                    [*self._faketime_cmd, python, "-m", "salon", "serve", "--config", path],
                    proc_name=f"salon-{name}",
                    cwd=self.directory / name,
                    env=env,
                    **output,
                )
            finally:
                if output:
                    log_fd.close()
            self._node_procs.append((name, proc, log_path))
            if self.proc is None:
                self.proc = proc  # irctest's own checks look at self.proc
        _running.add(self)
        try:
            for (name, proc, log_path), (irc, _ws) in zip(
                self._node_procs, self._node_ports, strict=True
            ):
                try:
                    wait_for_node(proc, self.hostname, irc)
                except ProcessStopped as e:
                    tail = log_path.read_text(errors="replace")[-3000:] if log_path.exists() else ""
                    raise ProcessStopped(
                        f"salon node {name} did not start ({e}); its output:\n{tail}"
                    ) from None
            self.port_open = True
        except BaseException:
            self.kill()  # setUp() fails, so tearDown() will not run
            raise

    def _start(self) -> None:
        """Start salon on the config written by run(), and wait for its port."""
        assert self.directory is not None

        python, env = salon_python()
        log_path = self.directory / "salon.log"
        output: dict[str, Any] = {}
        if not self.debug_mode:  # in debug mode, execute() streams the output instead
            log_fd = log_path.open("ab")
            output = {"stdout": log_fd, "stderr": log_fd}
        try:
            self.proc = self.execute(
                [
                    *self._faketime_cmd,
                    python,
                    "-m",
                    "salon",
                    "serve",
                    "--config",
                    self._config_path,
                ],
                proc_name="salon",
                cwd=self.directory,
                env=env,
                **output,
            )
        finally:
            if output:
                log_fd.close()
        _running.add(self)

        self.port_open = False
        try:
            self.wait_for_port()
        except ProcessStopped as e:
            tail = log_path.read_text(errors="replace")[-3000:] if log_path.exists() else ""
            self.kill()
            raise ProcessStopped(f"salon did not start ({e}); its output:\n{tail}") from None
        except BaseException:
            self.kill()  # setUp() fails, so tearDown() will not run
            raise

    def wait_for_services(self) -> None:
        """NickServ and ChanServ are part of salon: up as soon as the port is."""
        self.wait_for_port()

    def registerUser(self, case: Any, username: str, password: str | None = None) -> None:
        """Register an account the way a user would: ``REGISTER * * <password>`` on a
        fresh connection (draft/account-registration after connecting). A password that
        cannot fit an IRC line is written with ``salon account create`` instead, with the
        server stopped for it and started again."""
        assert password
        line = f"REGISTER * * :{password}"
        if len(line.encode()) > 480:
            self._register_offline(username, password)
            return
        client = case.addClient(show_io=False)
        case.sendLine(client, "CAP LS 302")
        case.sendLine(client, "NICK " + username)
        case.sendLine(client, "USER r e g :user")
        case.sendLine(client, "CAP END")
        while case.getRegistrationMessage(client).command != "001":
            pass
        case.getMessages(client)
        case.sendLine(client, line)
        for _ in range(50):
            msgs = case.getMessages(client)
            if any(m.command == "REGISTER" and m.params[:1] == ["SUCCESS"] for m in msgs):
                break
            failed = [m for m in msgs if m.command == "FAIL"]
            assert not failed, failed
        else:
            raise AssertionError(f"no REGISTER SUCCESS for {username}")
        case.sendLine(client, "QUIT")
        case.assertDisconnected(client)

    def _register_offline(self, username: str, password: str) -> None:
        assert self.proc is not None and self.directory is not None
        self.terminate()
        python, env = salon_python()
        two = node_count() == 2
        # Two nodes: each has a store of its own, so the account goes in each.
        configs = (
            [path for _name, path, _text in self._node_configs] if two else [self._config_path]
        )
        for config in configs:
            res = subprocess.run(
                [
                    python,
                    "-m",
                    "salon",
                    "account",
                    "create",
                    username,
                    "--config",
                    str(config),
                ],
                input=password + "\n",
                capture_output=True,
                text=True,
                env=env,
                cwd=self.directory,
                timeout=60,
            )
            assert res.returncode == 0, res.stderr
        if two:
            self._start_two()
        else:
            self._start()

    def _signal_group(self, sig: signal.Signals) -> None:
        assert self.proc is not None
        signal_group(self.proc, sig)

    def _stop(self, grace: float) -> None:
        """SIGTERM the server's process group, SIGKILL it after `grace` seconds."""
        assert self.proc is not None
        if getattr(self, "_node_procs", None):
            self._stop_two(grace)
            return
        self._signal_group(signal.SIGTERM)
        try:
            self.proc.wait(grace)
        except subprocess.TimeoutExpired:
            self._signal_group(signal.SIGKILL)
            self.proc.wait(10)
        # Sweep anything the server left behind in its group.
        self._signal_group(signal.SIGKILL)
        self.proc = None
        _running.discard(self)

    def _stop_two(self, grace: float) -> None:
        """Stop the forwarder, then both nodes together (each leaves the cluster)."""
        forwarder = getattr(self, "_forwarder", None)
        if forwarder is not None:
            forwarder.stop()
            self._forwarder = None
        procs = [proc for _name, proc, _log in self._node_procs]
        for proc in procs:
            signal_group(proc, signal.SIGTERM)
        for proc in procs:
            try:
                proc.wait(grace)
            except subprocess.TimeoutExpired:
                signal_group(proc, signal.SIGKILL)
                proc.wait(10)
            signal_group(proc, signal.SIGKILL)
        self._node_procs = []
        self.proc = None
        _running.discard(self)

    def check_is_alive(self) -> None:
        for name, proc, _log in getattr(self, "_node_procs", None) or []:
            if proc.poll() is not None:
                raise ProcessStopped(f"salon node {name} returned {proc.returncode}")
        super().check_is_alive()

    def kill_proc(self) -> None:
        self._stop(grace=5)

    def terminate(self) -> None:
        """Stop the server gracefully, keeping its directory (used by restart tests)."""
        self._stop(grace=10)

    def kill(self) -> None:
        super().kill()
        self.directory = None  # removed by super().kill(); do not remove it twice
        forwarder = getattr(self, "_forwarder", None)
        if forwarder is not None:  # (a start that failed before any node ran)
            forwarder.stop()
            self._forwarder = None
        _running.discard(self)


def get_irctest_controller_class() -> type[SalonController]:
    return SalonController
