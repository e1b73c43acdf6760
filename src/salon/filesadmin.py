"""``salon files ...``: the file host's storage, straight on the data directory.

::

    salon files list [--config FILE] [--data-dir DIR]
    salon files rm ID [--config FILE] [--data-dir DIR]
    salon files gc [--config FILE] [--data-dir DIR]
    salon files verify [--config FILE] [--data-dir DIR]

``list`` and ``verify`` only read, and may run beside a server. ``rm`` and ``gc`` change
the data directory and take its lock, like ``salon account``: run them while the server
is stopped (online, FileServ DELETE does what ``rm`` does). docs/files.md.
"""

from __future__ import annotations

import argparse
import hashlib
import sys
import time
from dataclasses import replace
from typing import Any

from salon.admin import data_config, data_options
from salon.errors import UsageError


def add_files_parser(sub: Any) -> None:
    files = sub.add_parser(
        "files",
        help="list, delete, collect or verify shared files",
        description="The file host's storage on the data directory. rm and gc change it: "
        "run them while the server is stopped.",
    )
    actions = files.add_subparsers(dest="action", metavar="ACTION", parser_class=type(files))
    listing = actions.add_parser("list", help="list the files")
    rm = actions.add_parser("rm", help="delete a file (it answers 410 from then on)")
    rm.add_argument("id")
    gc = actions.add_parser("gc", help="remove blobs no file uses, and unfinished uploads")
    verify = actions.add_parser("verify", help="check every file's bytes against its sha256")
    data_options(listing, rm, gc, verify)


def run_files(args: argparse.Namespace) -> int:
    """Mistakes (no such file, a busy data directory) raise UsageError: one line, exit 2.
    ``verify`` exits 1 when a file's bytes are missing or changed."""
    from salon import datadir
    from salon.net.filehost import Blobs
    from salon.store.sqlite import SQLiteStore

    cfg = data_config(args)
    action = getattr(args, "action", None)
    if action is None:
        raise UsageError("give an action: list, rm, gc or verify")
    if cfg.postgres is not None or cfg.cluster is not None:
        # Servers on the database keep the files in memory, and the lock of one data
        # directory does not keep other nodes off a shared files.dir.
        raise UsageError(
            "the store is PostgreSQL ([postgres]) or the files are a cluster's: manage files"
            " online (FileServ); this command works on a data directory's SQLite store"
        )
    data = cfg.data_path
    db = data / "salon.db"
    if not db.is_file():
        print(f"salon files: no files ({data} has no database yet)", file=sys.stderr)
        return 0 if action != "rm" else _no_such(getattr(args, "id", ""))
    if action in ("rm", "gc"):
        try:
            datadir.lock(data)  # released when this command exits
        except datadir.DataDirBusy as exc:
            raise UsageError(f"{exc}: stop the server first, or use FileServ online") from None
    try:
        store = SQLiteStore(db)
    except Exception as exc:  # sqlite3.Error, OSError
        raise UsageError(f"cannot open the database in {data}: {exc}") from None
    blobs = Blobs(cfg.files_path)
    try:
        records = {r.id: r for r in store.load_files()}
        live_blobs = {r.blob for r in records.values() if not r.deleted}
        if action == "list":
            posted: dict[str, int] = {}
            for ref in store.load_file_refs():
                posted[ref.file] = posted.get(ref.file, 0) + 1
            for r in sorted(records.values(), key=lambda r: r.created):
                when = time.strftime("%Y-%m-%d %H:%M", time.gmtime(r.created))
                state = "deleted" if r.deleted else f"posted {posted.get(r.id, 0)}x"
                owner = r.owner or f"guest {r.owner_nick}"
                print(f"{r.id}\t{r.size}\t{r.type}\t{owner}\t{when}\t{state}\t{r.name}")
            return 0
        if action == "rm":
            record = records.get(args.id.lower())
            if record is None or record.deleted:
                return _no_such(args.id)
            with store.transaction():
                store.save_file(replace(record, deleted=time.time()))
                store.delete_refs_of_file(record.id)
            if not any(
                r.blob == record.blob
                for r in records.values()
                if r.id != record.id and not r.deleted
            ):
                blobs.delete(record.blob)
            print(f"deleted {record.id} ({record.name})")
            return 0
        if action == "gc":
            blobs.create()  # the tmp/ of unfinished uploads is emptied
            removed = 0
            for blob in blobs.stored():
                if blob not in live_blobs:
                    blobs.delete(blob)
                    removed += 1
            print(f"removed {removed} unused blobs")
            return 0
        # verify
        bad = 0
        for r in records.values():
            if r.deleted:
                continue
            path = blobs.path(r.blob)
            try:
                digest = hashlib.sha256()
                with open(path, "rb") as fh:
                    while chunk := fh.read(1 << 20):
                        digest.update(chunk)
            except FileNotFoundError:
                print(f"{r.id}: missing {path}")
                bad += 1
                continue
            if digest.hexdigest() != r.blob:
                print(f"{r.id}: changed: {path} no longer has the bytes it had")
                bad += 1
        live = sum(1 for r in records.values() if not r.deleted)
        print(f"{live - bad} of {live} files verified")
        return 1 if bad else 0
    finally:
        store.close()


def _no_such(file_id: str) -> int:
    raise UsageError(f"no file {file_id!r}")
