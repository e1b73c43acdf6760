"""The ``salon`` command: serve, check-config, hash-password, chat, account, files, db.

Every error is one line on stderr, ``salon <command>: <what went wrong>``: exit code 2 for
a mistake of the user (a bad argument, a bad config, end of input at a prompt), 1 for a
failure at run time (``salon chat`` could not connect or log in), 130 for Ctrl-C.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import NoReturn

from salon import __version__
from salon.admin import add_account_parser, run_account
from salon.config import EXAMPLE_PATH, Config, load
from salon.errors import ConfigError, UsageError
from salon.filesadmin import add_files_parser, run_files
from salon.prompt import read_password
from salon.tui.cli import add_chat_parser, run_chat

SERVE_EPILOG = f"""\
With no options, salon serves IRC on 127.0.0.1:6667, IRC over TLS on 127.0.0.1:6697
(with a self-signed certificate made on first start), the plain-text chat on
127.0.0.1:6000 and IRC over WebSocket on http://127.0.0.1:8080, keeping its state in
./salon-data. Flags override the config file.
Every setting is described in the commented example config:
  {EXAMPLE_PATH}
"""


class Parser(argparse.ArgumentParser):
    """argparse with one-line errors and exit code 2. A command without subcommands takes
    its positionals and options in any order (``salon chat HOST --tls '#python'``)."""

    _intermixing = False

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: {message} (try --help)\n")

    def parse_known_args(  # type: ignore[override]
        self, args: Sequence[str] | None = None, namespace: argparse.Namespace | None = None
    ) -> tuple[argparse.Namespace, list[str]]:
        if self._subparsers is not None or self._intermixing:
            return super().parse_known_args(args, namespace)
        # parse_known_intermixed_args calls parse_known_args twice (options, then
        # positionals): those calls take the plain path above.
        self._intermixing = True
        try:
            parsed, extras = self.parse_known_intermixed_args(args, namespace)
        finally:
            self._intermixing = False
        if extras:
            # Said here, so that the message names the subcommand (salon chat: ...).
            self.error(f"unrecognized arguments: {' '.join(extras)}")
        return parsed, extras


def _port(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port number") from None
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"{value} is not a port number (0 to 65535)")
    return value


def _workers(text: str) -> int:
    from salon.workers import worker_count

    try:
        return worker_count(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


# The serve options a worker is given again by its supervisor.
SERVE_OPTIONS = (
    "config", "host", "irc_port", "tls_port", "plain_port", "http_port", "https_port",
    "data_dir", "server_name",
)  # fmt: skip


def build_parser() -> Parser:
    parser = Parser(prog="salon", description="salon: a self-hosted chat server that speaks IRC.")
    parser.add_argument("--version", action="version", version=f"salon {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)

    serve = sub.add_parser(
        "serve",
        help="run the server",
        description="Run the salon server.",
        epilog=SERVE_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    serve.add_argument("--config", metavar="FILE", help="TOML config file (see the example)")
    serve.add_argument("--host", help="address to listen on (default 127.0.0.1)")
    serve.add_argument("--irc-port", type=_port, help="IRC port, 0 = off (default 6667)")
    serve.add_argument("--tls-port", type=_port, help="IRC over TLS port, 0 = off (default 6697)")
    serve.add_argument("--plain-port", type=_port, help="plain-text port, 0 = off (default 6000)")
    serve.add_argument(
        "--http-port", type=_port, help="HTTP and IRC over WebSocket port, 0 = off (default 8080)"
    )
    serve.add_argument(
        "--https-port", type=_port, help="the same over TLS (wss://), 0 = off (default 0)"
    )
    serve.add_argument("--data-dir", metavar="DIR", help="data directory (default ./salon-data)")
    serve.add_argument("--server-name", metavar="NAME", help="server name (default salon.local)")
    serve.add_argument(
        "--workers",
        type=_workers,
        metavar="N",
        help="run N processes on the same ports under a supervisor (docs/cluster.md)",
    )
    # Given by the supervisor to each worker it starts: its number, and the pipe it writes
    # a byte to once it is listening.
    serve.add_argument("--worker", type=int, default=0, help=argparse.SUPPRESS)
    serve.add_argument("--ready-fd", type=int, default=-1, help=argparse.SUPPRESS)

    check = sub.add_parser(
        "check-config", help="validate a config file", description="Validate a config file."
    )
    check.add_argument("file", metavar="FILE")

    hashpw = sub.add_parser(
        "hash-password",
        help="hash a password for an [[oper]] block",
        description="Print the argon2id hash of a password (asked for, twice, when not given).",
    )
    hashpw.add_argument("password", nargs="?")

    sub.add_parser("example-config", help="print the commented example config")
    add_chat_parser(sub)
    add_account_parser(sub)
    add_files_parser(sub)

    db = sub.add_parser(
        "db", help="move the store between databases", description="Database tools."
    )
    dbsub = db.add_subparsers(
        dest="db_command", metavar="ACTION", parser_class=Parser, required=True
    )
    imp = dbsub.add_parser(
        "import",
        help="copy a data directory's store into PostgreSQL",
        description="Copy a data directory's SQLite store (accounts, channels, bans, markers,"
        " history...) and its cloaking key into an empty PostgreSQL database.",
    )
    imp.add_argument("data_dir", metavar="DATA_DIR")
    imp.add_argument(
        "--dsn",
        required=True,
        help="libpq connection string, e.g. 'host=db.example user=salon dbname=salon'"
        " or postgresql://salon@db.example/salon",
    )
    cluster = sub.add_parser(
        "cluster", help="look at a cluster's nodes", description="Cluster tools (issue 19)."
    )
    clsub = cluster.add_subparsers(
        dest="cluster_command", metavar="ACTION", parser_class=Parser, required=True
    )
    st = clsub.add_parser(
        "status",
        help="the nodes on the config's Redis, their users and how far behind the log they are",
        description="Show the nodes of the network that the config's [cluster] section joins.",
    )
    st.add_argument(
        "--config", metavar="FILE", help="a config with [cluster], or of salon serve --workers"
    )
    st.add_argument("--data-dir", metavar="DIR", help="the data directory of salon serve --workers")
    return parser


def _cluster_status(args: argparse.Namespace) -> int:
    cfg = load(args.config).with_overrides(server__data_dir=args.data_dir)
    cluster = cfg.cluster
    if cluster is None:
        # The private Redis of salon serve --workers, while it runs.
        from salon.workers import private_cluster, redis_socket

        if not redis_socket(cfg.data_path).exists():
            where = args.config or "the default config"
            raise UsageError(
                f"{where} has no [cluster] section, and no salon serve --workers runs"
                f" on {cfg.data_path}"
            )
        cluster = private_cluster(cfg.data_path)
    try:
        from salon.net.bus import BusError, status
    except ImportError:
        raise UsageError("cluster support is not installed: pip install 'salon[cluster]'")
    import asyncio

    try:
        nodes, length = asyncio.run(status(cluster))
    except BusError as exc:
        print(f"salon cluster status: {exc}", file=sys.stderr)
        return 1
    print(f"log {cluster.prefix}:log: {length} entries; {len(nodes)} node(s)")
    for node in nodes:
        alive = f"heartbeat {node.ttl:.1f} s left" if node.ttl > 0 else "dead, not yet reaped"
        print(
            f"node {node.number} {node.name}: {node.users} users, "
            f"{node.lag} entries behind, {alive}"
        )
    return 0


def _serve(args: argparse.Namespace) -> int:
    from salon.net.runner import StartupError, run

    cfg = load(args.config).with_overrides(
        listen__host=args.host,
        listen__irc_port=args.irc_port,
        listen__tls_port=args.tls_port,
        listen__plain_port=args.plain_port,
        listen__http_port=args.http_port,
        listen__https_port=args.https_port,
        server__data_dir=args.data_dir,
        server__name=args.server_name,
    )
    if args.workers:
        from salon.workers import supervise

        _log_to_stderr(cfg, "supervisor ")
        argv: list[str] = []
        for name in SERVE_OPTIONS:
            value = getattr(args, name)
            if value is not None:
                argv += ["--" + name.replace("_", "-"), str(value)]
        return supervise(cfg, args.workers, argv)
    ready = None
    prog = "salon serve"
    if args.worker:
        from salon.workers import worker_config

        cfg = worker_config(cfg, args.worker)
        prog = f"salon serve: worker {args.worker}"
        ready = _ready_pipe(args.ready_fd)
    _log_to_stderr(cfg, f"worker {args.worker} " if args.worker else "")
    try:
        run(cfg, ready, args.worker)
    except StartupError as exc:
        # One write: workers share the supervisor's stderr, and print's two writes (the
        # text, then the newline) could interleave with another worker's line.
        sys.stderr.write(f"{prog}: {exc}\n")
        sys.stderr.flush()
        return 2
    except KeyboardInterrupt:
        pass
    return 0


def _log_to_stderr(cfg: Config, source: str) -> None:
    """The log on stderr; ``source`` ("worker 2 ", "supervisor ") says which process."""
    logging.basicConfig(
        level=getattr(logging, cfg.log.level.upper()),
        format=f"%(asctime)s %(levelname)s {source}%(name)s: %(message)s",
        stream=sys.stderr,
    )


def _ready_pipe(fd: int) -> Callable[[object], None] | None:
    """What tells the supervisor that this worker listens: a byte on its pipe."""
    if fd < 0:
        return None

    def ready(_shell: object) -> None:
        with contextlib.suppress(OSError):
            os.write(fd, b"1")
            os.close(fd)

    return ready


def _db_import(args: argparse.Namespace) -> int:
    try:
        import psycopg
    except ImportError:
        raise UsageError("PostgreSQL support is not installed: pip install 'salon[postgres]'")
    from salon.store.pgimport import import_data_dir
    from salon.store.postgres import first_line

    try:
        counts = import_data_dir(Path(args.data_dir), args.dsn)
    except psycopg.ProgrammingError as exc:  # a malformed DSN
        raise UsageError(f"--dsn: {first_line(exc)}") from None
    except psycopg.Error as exc:
        print(f"salon db import: PostgreSQL: {first_line(exc)}", file=sys.stderr)
        return 1
    print(", ".join(f"{table} {n}" for table, n in counts.items()))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    prog = f"salon {args.command}" if args.command else "salon"
    if getattr(args, "db_command", None):
        prog += f" {args.db_command}"
    if getattr(args, "cluster_command", None):
        prog += f" {args.cluster_command}"
    try:
        return _dispatch(parser, args)
    except UsageError as exc:
        print(f"{prog}: {exc}", file=sys.stderr)
        return 2
    except ConfigError as exc:
        print(f"{prog}: config error: {exc}", file=sys.stderr)
        return 2
    except EOFError:
        print(f"\n{prog}: end of input", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"\n{prog}: interrupted", file=sys.stderr)
        return 130


def _dispatch(parser: Parser, args: argparse.Namespace) -> int:
    if args.command == "serve":
        return _serve(args)
    if args.command == "check-config":
        cfg: Config = load(args.file)
        cfg.motd_lines()  # a motd_file that cannot be read fails here, not at start
        if cfg.tls.cert and (cfg.listen.tls_port or cfg.listen.https_port):
            # Loaded as serve would: a file that is no PEM, or a key of another cert.
            from salon.net import tls

            try:
                tls.server_context(Path(cfg.tls.cert), Path(cfg.tls.key))
            except tls.TlsError as exc:
                raise ConfigError(f"tls: {exc}") from None
        print(f"{args.file}: ok ({cfg.server.name}, IRC port {cfg.listen.irc_port})")
        return 0
    if args.command == "hash-password":
        from salon.passwords import hash_password

        password = args.password
        if password is None:
            password = read_password(confirm=True)
        if not password:
            raise UsageError("empty password")
        print(hash_password(password))
        return 0
    if args.command == "chat":
        return run_chat(args)
    if args.command == "account":
        return run_account(args)
    if args.command == "files":
        return run_files(args)
    if args.command == "db":
        return _db_import(args)
    if args.command == "cluster":
        return _cluster_status(args)
    if args.command == "example-config":
        sys.stdout.write(EXAMPLE_PATH.read_text())
        return 0
    parser.print_help()
    return 2
