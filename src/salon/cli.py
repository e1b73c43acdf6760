"""The ``salon`` command: serve, check-config, hash-password."""

from __future__ import annotations

import argparse
import getpass
import logging
import sys
from collections.abc import Sequence
from typing import NoReturn

from salon import __version__
from salon.config import EXAMPLE_PATH, Config, load
from salon.errors import ConfigError

SERVE_EPILOG = f"""\
With no options, salon serves IRC on 127.0.0.1:6667, IRC over TLS on 127.0.0.1:6697
(with a self-signed certificate made on first start) and the plain-text chat on
127.0.0.1:6000, keeping its state in ./salon-data. Flags override the config file.
Every setting is described in the commented example config:
  {EXAMPLE_PATH}
"""


class Parser(argparse.ArgumentParser):
    """argparse with one-line errors and exit code 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: {message} (try --help)\n")


def _port(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port number") from None
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"{value} is not a port number (0 to 65535)")
    return value


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
    serve.add_argument("--data-dir", metavar="DIR", help="data directory (default ./salon-data)")
    serve.add_argument("--server-name", metavar="NAME", help="server name (default salon.local)")

    check = sub.add_parser(
        "check-config", help="validate a config file", description="Validate a config file."
    )
    check.add_argument("file", metavar="FILE")

    hashpw = sub.add_parser(
        "hash-password",
        help="hash a password for an [[oper]] block",
        description="Print the argon2id hash of a password (asked for when not given).",
    )
    hashpw.add_argument("password", nargs="?")

    sub.add_parser("example-config", help="print the commented example config")
    from salon.tui.cli import add_chat_parser

    add_chat_parser(sub)
    from salon.admin import add_account_parser

    add_account_parser(sub)
    return parser


def _serve(args: argparse.Namespace) -> int:
    from salon.net.runner import StartupError, run

    cfg = load(args.config).with_overrides(
        listen__host=args.host,
        listen__irc_port=args.irc_port,
        listen__tls_port=args.tls_port,
        listen__plain_port=args.plain_port,
        server__data_dir=args.data_dir,
        server__name=args.server_name,
    )
    logging.basicConfig(
        level=getattr(logging, cfg.log.level.upper()),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    try:
        run(cfg)
    except StartupError as exc:
        print(f"salon serve: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        pass
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        if args.command == "serve":
            return _serve(args)
        if args.command == "check-config":
            cfg: Config = load(args.file)
            cfg.motd_lines()  # a motd_file that cannot be read fails here, not at start
            print(f"{args.file}: ok ({cfg.server.name}, IRC port {cfg.listen.irc_port})")
            return 0
        if args.command == "hash-password":
            from salon.passwords import hash_password

            password = args.password
            if password is None:
                password = (
                    getpass.getpass("Password: ") if sys.stdin.isatty() else sys.stdin.readline()
                )
                password = password.rstrip("\n")
            if not password:
                print("salon hash-password: empty password", file=sys.stderr)
                return 2
            print(hash_password(password))
            return 0
        if args.command == "chat":
            from salon.tui.cli import run_chat

            return run_chat(args)
        if args.command == "account":
            from salon.admin import run_account

            return run_account(args)
        if args.command == "example-config":
            sys.stdout.write(EXAMPLE_PATH.read_text())
            return 0
    except ConfigError as exc:
        print(f"salon: config error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("\nsalon: interrupted", file=sys.stderr)
        return 130
    parser.print_help()
    return 2
