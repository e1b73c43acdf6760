"""``salon chat``: argument parsing and start-up for the terminal client."""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import sys
from typing import Any

from salon.errors import ConfigError, UsageError
from salon.prompt import read_password

CHAT_EPILOG = """\
examples:
  salon chat                          localhost:6667, joins the server's default channel
  salon chat irc.example.org:6697 --tls '#python' '#rust'
  echo hello | salon chat --plain --nick bot '#lobby'

Settings (your nick, pinned certificates) live in $XDG_CONFIG_HOME/salon/chat.toml.
In the chat, /help lists the commands; bye, quit, exit or over leave.
Passwords can also come from SALON_PASSWORD and SALON_SASL_PASSWORD.
"""

DEFAULT_HOST = "localhost"
DEFAULT_PORT = 6667
DEFAULT_TLS_PORT = 6697
# Joined when no channel is named and the server advertises none (salon's own default).
DEFAULT_CHANNEL = "#lobby"
NICK_RE = re.compile(r"^[A-Za-z\[\]\\`_^{|}][A-Za-z0-9\[\]\\`_^{|}-]*$")


class ArgError(Exception):
    """A bad argument: one line, exit code 2."""


def add_chat_parser(subparsers: Any) -> argparse.ArgumentParser:
    chat: argparse.ArgumentParser = subparsers.add_parser(
        "chat",
        help="chat in the terminal (a friendly IRC client)",
        description="Chat on a salon (or any IRC) server in the terminal.",
        epilog=CHAT_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    chat.add_argument(
        "where",
        nargs="*",
        metavar="HOST[:PORT] | #channel",
        help="server (default localhost:6667) and channels to join (default: the server's "
        "default channel, #lobby on salon unless configured)",
    )
    chat.add_argument("--nick", "-n", help="your nick (asked for and saved when not set)")
    chat.add_argument("--tls", action="store_true", help="connect with TLS (default port 6697)")
    chat.add_argument(
        "--insecure", action="store_true", help="TLS without checking the certificate"
    )
    chat.add_argument("--password", metavar="PASS", help="server password (PASS)")
    chat.add_argument(
        "--sasl",
        metavar="ACCOUNT[:PASSWORD]",
        help="log in with SASL (password asked for when not given)",
    )
    chat.add_argument(
        "--sasl-mechanism",
        choices=["scram-sha-256", "plain"],
        type=str.lower,
        help="SASL mechanism (default: SCRAM-SHA-256 when offered, else PLAIN)",
    )
    chat.add_argument(
        "--plain", action="store_true", help="no TUI: one line per event, stdin is sent"
    )
    return chat


def parse_where(words: list[str], tls: bool) -> tuple[str, int, list[str]]:
    """(host, port, channels) from the positional words."""
    host, port = "", 0
    channels: list[str] = []
    for word in words:
        if word[:1] in "#&":
            if len(word) < 2 or any(c in word for c in " ,\x07"):
                raise ArgError(f"{word!r} is not a channel name")
            channels.append(word)
            continue
        if host:
            raise ArgError(f"two servers given: {host} and {word} (channels start with #)")
        host, port = split_host_port(word)
    return host, port or (DEFAULT_TLS_PORT if tls else 0), channels


def split_host_port(word: str) -> tuple[str, int]:
    m = re.fullmatch(r"\[([0-9A-Fa-f:.]+)\](?::(\w+))?", word)
    if m:
        host, port_text = m.group(1), m.group(2)
    elif word.count(":") == 1:
        host, _, port_text = word.partition(":")
    else:
        host, port_text = word, None
    if not host or not re.fullmatch(r"[A-Za-z0-9.:_-]+", host):
        raise ArgError(f"{word!r} is not a HOST[:PORT]")
    if port_text is None:
        return host, 0
    if not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise ArgError(f"{port_text!r} is not a port number (1 to 65535)")
    return host, int(port_text)


def run_chat(args: argparse.Namespace) -> int:
    try:
        return _run(args)
    except ArgError as exc:
        print(f"salon chat: {exc} (try --help)", file=sys.stderr)
        return 2
    except UsageError as exc:
        print(f"salon chat: {exc}", file=sys.stderr)
        return 2
    except ConfigError as exc:
        print(f"salon chat: config error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("\nsalon chat: interrupted", file=sys.stderr)
        return 130


def _run(args: argparse.Namespace) -> int:
    from salon.client import Session, Settings
    from salon.client.commands import PLAIN_KEYS, TUI_KEYS
    from salon.tui import config as chat_config
    from salon.tui.connection import Target

    cfg = chat_config.load()
    tls = bool(args.tls or (cfg.tls and not args.where))
    host, port, channels = parse_where(list(args.where), tls)
    if not host and cfg.server:
        host, port = split_host_port(cfg.server)
    host = host or DEFAULT_HOST
    port = port or (DEFAULT_TLS_PORT if tls else DEFAULT_PORT)
    # No channel named here or in chat.toml: the server's meeting place, which it advertises
    # (Settings.server_default), else #lobby.
    server_default = not (channels or cfg.channels)
    channels = channels or cfg.channels or [DEFAULT_CHANNEL]

    nick = args.nick or cfg.nick
    if args.nick and not NICK_RE.match(args.nick):
        raise ArgError(f"{args.nick!r} is not a valid nick (letters, digits, _-[]{{}}|^`)")

    password = args.password or os.environ.get("SALON_PASSWORD", "")
    account, sasl_password = "", ""
    if args.sasl or args.sasl_mechanism:
        account, _, sasl_password = (args.sasl or cfg.sasl_account or nick).partition(":")
        sasl_password = sasl_password or os.environ.get("SALON_SASL_PASSWORD", "")
        if not account:
            raise ArgError("--sasl needs an account name")
        if not sasl_password:
            if not sys.stdin.isatty():
                raise ArgError("--sasl needs a password: ACCOUNT:PASSWORD or SALON_SASL_PASSWORD")
            sasl_password = read_password(f"SASL password for {account}: ")
            if not sasl_password:
                raise ArgError("--sasl needs a password")

    if not nick and account and NICK_RE.match(account):
        nick = account  # logging in to an account: its name is the natural nick
    if args.plain and not nick:
        if not sys.stdin.isatty():
            raise ArgError("no nick: pass --nick NAME")
        try:
            nick = input("Your name: ").strip().replace(" ", "_")
        except EOFError:
            print(file=sys.stderr)  # end the prompt's line
            raise UsageError("no nick given (end of input)") from None
        if not nick:
            raise ArgError("no nick given")
        cfg.nick = nick
        cfg.save()
    if nick and not NICK_RE.match(nick):
        raise ArgError(f"{nick!r} is not a valid nick (letters, digits, _-[]{{}}|^`)")

    settings = Settings(
        nick=nick,
        password=password,
        sasl_account=account,
        sasl_password=sasl_password,
        sasl_mechanism=(args.sasl_mechanism or "").upper(),
        channels=tuple(channels),
        server_default=server_default,
        server_name=host,
        help_keys=PLAIN_KEYS if args.plain else TUI_KEYS,
    )
    session = Session(settings)
    target = Target(host, port, tls=tls or args.insecure, insecure=args.insecure)

    def save_pin(where: str, fp: str) -> None:
        cfg.pins[where] = fp
        cfg.save()

    if args.plain:
        return _run_plain(session, target, cfg.pins, save_pin)

    if not (sys.stdin.isatty() and sys.stdout.isatty()):
        raise ArgError("not a terminal: use --plain for pipes and scripts")
    from salon.tui.app import ChatApp

    app = ChatApp(session, target, cfg)
    code = app.run()
    if app.fatal:
        print(f"salon chat: {app.fatal}", file=sys.stderr)
        return 1
    return int(code or 0) if app.return_code is None else app.return_code


def _run_plain(session: Any, target: Any, pins: dict[str, str], save_pin: Any) -> int:
    from salon.tui.plain import PlainClient, is_tty

    async def ask(where: str, fp: str, reason: str) -> bool:
        if not is_tty(sys.stdin):
            return False
        print(
            f"The certificate of {where} could not be verified ({reason}).\n"
            f"SHA-256 fingerprint: {fp}",
            file=sys.stderr,
        )
        try:
            answer = await asyncio.to_thread(input, "Trust it from now on? [y/N] ")
        except EOFError:  # Ctrl-D: no
            print(file=sys.stderr)
            return False
        return answer.strip().lower() in ("y", "yes")

    client = PlainClient(
        session,
        target,
        stdin=sys.stdin,
        stdout=sys.stdout,
        stderr=sys.stderr,
        colour=is_tty(sys.stdout) and not os.environ.get("NO_COLOR"),
        pins=pins,
        ask_trust=ask,
        save_pin=save_pin,
    )
    return asyncio.run(client.run())
