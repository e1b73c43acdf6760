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
import sys
import time
from typing import Any

from salon.config import Config, load
from salon.errors import UsageError
from salon.prompt import read_password


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
    create.add_argument("password", nargs="?", help="asked for (twice) when not given")
    delete = actions.add_parser("delete", help="delete an account")
    delete.add_argument("name")
    listing = actions.add_parser("list", help="list the accounts")
    data_options(create, delete, listing)


def data_options(*parsers: Any) -> None:
    """--config and --data-dir, for commands that work on the data directory."""
    for p in parsers:
        p.add_argument("--config", metavar="FILE", help="TOML config file")
        p.add_argument("--data-dir", metavar="DIR", help="data directory (overrides the config)")


def data_config(args: argparse.Namespace) -> Config:
    return load(getattr(args, "config", None)).with_overrides(
        server__data_dir=getattr(args, "data_dir", None)
    )


def run_account(args: argparse.Namespace) -> int:
    """Mistakes (a bad or taken name, a short password, no such account, a data directory
    that is a file) raise :class:`~salon.errors.UsageError`: one line, exit code 2. Nothing
    is created on disk unless an account is: ``list`` and ``delete`` never make a data
    directory, and ``create`` makes it only once the name and password are good."""
    from salon import datadir
    from salon.proto.casemap import casefold
    from salon.server.accounts import check_password_shape, hash_credentials
    from salon.server.fileserv import FileServ
    from salon.server.nicks import valid_nick
    from salon.server.services import ChanServ, NickServ
    from salon.store.base import AccountRecord
    from salon.store.sqlite import SQLiteStore

    cfg = data_config(args)
    action = getattr(args, "action", None)
    if action is None:
        raise UsageError("give an action: create, delete or list")
    if cfg.postgres is not None:
        # Servers on the database keep accounts in memory, and no lock keeps them away.
        raise UsageError(
            "the store is PostgreSQL ([postgres]): manage accounts online (REGISTER,"
            " NickServ); this command works on a data directory's SQLite store"
        )
    data = cfg.data_path
    if data.exists() and not data.is_dir():
        raise UsageError(f"the data directory {data} is not a directory")
    db = data / "salon.db"
    name = getattr(args, "name", "")
    if action == "create":
        if not valid_nick(name, cfg.limits.nicklen):
            raise UsageError(f"{name!r} is not a valid nickname")
        if casefold(name) in {casefold(bot.nick) for bot in (NickServ, ChanServ, FileServ)}:
            raise UsageError(f"{name!r} is the name of a service: choose another")
    elif not db.exists():
        if action == "list":
            print(f"salon account: no accounts ({data} has no database yet)", file=sys.stderr)
            return 0
        raise UsageError(f"no account {name!r} ({data} has no database yet)")

    def open_store() -> SQLiteStore:
        try:
            data.mkdir(parents=True, exist_ok=True, mode=0o700)
            if action != "list":
                # A running server keeps accounts in memory and would overwrite this
                # change (or be contradicted by it): writes wait until it is stopped.
                datadir.lock(data)  # released when this command exits
            return SQLiteStore(db)
        except datadir.DataDirBusy as exc:
            raise UsageError(
                f"{exc}: stop the server first, or use NickServ (REGISTER, DROP) online"
            ) from None
        except Exception as exc:  # OSError, sqlite3.Error
            raise UsageError(f"cannot open the database in {data}: {exc}") from None

    store = open_store() if db.exists() else None
    try:
        existing = {casefold(r.name): r for r in store.load_accounts()} if store else {}
        if action == "list":
            if not existing:
                print(f"salon account: no accounts in {data}", file=sys.stderr)
            for record in sorted(existing.values(), key=lambda r: casefold(r.name)):
                created = time.strftime("%Y-%m-%d", time.gmtime(record.created))
                print(f"{record.name}\t{created}\t{record.email or '-'}")
            return 0
        if action == "delete":
            if store is None or casefold(name) not in existing:
                raise UsageError(f"no account {name!r}")
            with store.transaction():
                store.delete_account(name)
            print(f"deleted account {existing[casefold(name)].name}")
            return 0
        # create
        if casefold(name) in existing:
            raise UsageError(f"account {existing[casefold(name)].name!r} already exists")
        password = args.password
        if password is None:
            password = read_password(confirm=True)
        shape = check_password_shape(password, cfg.accounts.password_min_length)
        if shape is not None:
            raise UsageError(shape[1])
        password_hash, scram_creds = hash_credentials(password, cfg.accounts.scram_iterations)
        record = AccountRecord(name, password_hash, scram_creds, created=time.time())
        if store is None:
            store = open_store()
        with store.transaction():
            store.save_account(record)
        print(f"created account {name}")
        return 0
    finally:
        if store is not None:
            store.close()
