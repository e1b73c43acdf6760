"""``salon account ...``: account administration straight on the data directory.

::

    salon account create NAME [PASSWORD] [--config FILE] [--data-dir DIR]
    salon account delete NAME [--config FILE] [--data-dir DIR]
    salon account list [--config FILE] [--data-dir DIR]

The server reads accounts when it starts: run these while it is stopped (a running
server does not see the change, and would keep serving what it loaded). Users register
themselves over IRC with ``REGISTER`` or ``/msg NickServ REGISTER``.
"""

from __future__ import annotations

import argparse
import getpass
import sys
import time
from typing import Any

from salon.config import Config, load


def add_account_parser(sub: Any) -> None:
    account = sub.add_parser(
        "account",
        help="create, delete or list accounts (server stopped)",
        description="Account administration on the data directory. Run it while the "
        "server is stopped: the server reads accounts when it starts.",
    )
    actions = account.add_subparsers(dest="action", metavar="ACTION", parser_class=type(account))
    create = actions.add_parser("create", help="create an account")
    create.add_argument("name")
    create.add_argument("password", nargs="?", help="asked for when not given")
    delete = actions.add_parser("delete", help="delete an account")
    delete.add_argument("name")
    listing = actions.add_parser("list", help="list the accounts")
    for p in (create, delete, listing):
        p.add_argument("--config", metavar="FILE", help="TOML config file")
        p.add_argument("--data-dir", metavar="DIR", help="data directory (overrides the config)")


def _config(args: argparse.Namespace) -> Config:
    return load(getattr(args, "config", None)).with_overrides(
        server__data_dir=getattr(args, "data_dir", None)
    )


def run_account(args: argparse.Namespace) -> int:
    from salon.proto.casemap import casefold
    from salon.server.accounts import check_password_shape, hash_credentials
    from salon.server.handlers.registration import valid_nick
    from salon.store.base import AccountRecord
    from salon.store.sqlite import SQLiteStore

    cfg = _config(args)
    action = getattr(args, "action", None)
    if action is None:
        print("salon account: give an action: create, delete or list", file=sys.stderr)
        return 2
    data = cfg.data_path
    try:
        data.mkdir(parents=True, exist_ok=True)
        store = SQLiteStore(data / "salon.db")
    except Exception as exc:  # OSError, sqlite3.Error
        print(f"salon account: cannot open the database in {data}: {exc}", file=sys.stderr)
        return 2
    try:
        existing = {casefold(r.name): r for r in store.load_accounts()}
        if action == "list":
            for record in sorted(existing.values(), key=lambda r: casefold(r.name)):
                created = time.strftime("%Y-%m-%d", time.gmtime(record.created))
                print(f"{record.name}\t{created}\t{record.email or '-'}")
            return 0
        name = args.name
        if action == "delete":
            if casefold(name) not in existing:
                print(f"salon account: no account {name!r}", file=sys.stderr)
                return 1
            with store.transaction():
                store.delete_account(name)
            print(f"deleted account {existing[casefold(name)].name}")
            return 0
        # create
        if not valid_nick(name, cfg.limits.nicklen):
            print(f"salon account: {name!r} is not a valid nickname", file=sys.stderr)
            return 2
        if casefold(name) in existing:
            print(f"salon account: account {name!r} already exists", file=sys.stderr)
            return 1
        password = args.password
        if password is None:
            if sys.stdin.isatty():
                password = getpass.getpass("Password: ")
            else:
                password = sys.stdin.readline().rstrip("\n")
        shape = check_password_shape(password, cfg.accounts.password_min_length)
        if shape is not None:
            print(f"salon account: {shape[1]}", file=sys.stderr)
            return 2
        password_hash, scram_creds = hash_credentials(password, cfg.accounts.scram_iterations)
        record = AccountRecord(name, password_hash, scram_creds, created=time.time())
        with store.transaction():
            store.save_account(record)
        print(f"created account {name}")
        return 0
    finally:
        store.close()
