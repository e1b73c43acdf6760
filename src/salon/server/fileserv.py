"""FileServ: the file host from any IRC client, as NickServ is for accounts. LIST and
QUOTA show one's files and quota; INFO shows one file; DELETE deletes one (its owner, or
an operator). docs/files.md."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from salon.proto.casemap import casefold
from salon.server.client import Client
from salon.server.services import Bot
from salon.store.base import FileRecord
from salon.units import size_text

if TYPE_CHECKING:
    from salon.server.core import Server
    from salon.server.files import Files
    from salon.server.responsebuffer import ResponseBuffer

LIST_MOST = 50  # files LIST shows, newest first


class FileServ(Bot):
    nick = "FileServ"
    realname = "File service"
    help_lines = (
        "FileServ manages the files you shared (upload them with your client's upload",
        "button or /upload; see your client's help).",
        "LIST                 your files, newest first",
        "INFO <id>            one file: name, size, type, where it was posted",
        "DELETE <id>          delete a file (its owner, or an operator): gone for everyone",
        "QUOTA                how much of your quota you use",
    )

    def __init__(self, server: Server, cid: int) -> None:
        super().__init__(server, cid)
        self.commands = {
            "HELP": self.cmd_help,
            "LIST": self.cmd_list,
            "INFO": self.cmd_info,
            "DELETE": self.cmd_delete,
            "QUOTA": self.cmd_quota,
        }

    @property
    def files(self) -> Files:
        return self.server.files

    def _account(self, client: Client, rb: ResponseBuffer) -> str | None:
        if client.account is None:
            self.say(rb, "Log in to an account first")
            return None
        return casefold(client.account)

    def _mine(self, client: Client, args: list[str], rb: ResponseBuffer) -> FileRecord | None:
        """The file named by ``args``, when its owner (or an operator) asks."""
        if not args:
            self.say(rb, "Syntax: INFO <id> or DELETE <id> (the id is in the file's URL)")
            return None
        record = self.files.records.get(args[0].lower())
        mine = (
            record is not None
            and client.account is not None
            and (record.owner == casefold(client.account))
        )
        if record is None or record.deleted or not (mine or client.oper is not None):
            self.say(rb, f"No file {args[0]} of yours")
            return None
        return record

    def cmd_list(self, client: Client, args: list[str], rb: ResponseBuffer) -> None:
        account = self._account(client, rb)
        if account is None:
            return
        mine = sorted(self.files.owned_by(account), key=lambda r: -r.created)
        if not mine:
            self.say(rb, "You have no files")
            return
        for record in mine[:LIST_MOST]:
            posted = len(self.files.refs.get(record.id, ()))
            where = f"posted {posted}x" if posted else "not posted"
            self.say(rb, f"{record.id}  {record.name}  {size_text(record.size)}  {where}")
        if len(mine) > LIST_MOST:
            self.say(rb, f"... and {len(mine) - LIST_MOST} older files")

    def cmd_info(self, client: Client, args: list[str], rb: ResponseBuffer) -> None:
        record = self._mine(client, args, rb)
        if record is None:
            return
        when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(record.created))
        self.say(rb, f"{record.id}: {record.name}, {size_text(record.size)}, {record.type}")
        self.say(rb, f"Uploaded {when} by {record.owner or record.owner_nick or 'a guest'}")
        targets = sorted({ref.target for ref in self.files.refs.get(record.id, ())})
        self.say(rb, f"Posted in: {', '.join(targets)}" if targets else "Not posted yet")

    def cmd_delete(self, client: Client, args: list[str], rb: ResponseBuffer) -> None:
        record = self._mine(client, args, rb)
        if record is None:
            return
        self.files.delete(record, self.server.now)
        self.say(rb, f"Deleted {record.name} ({record.id})")

    def cmd_quota(self, client: Client, args: list[str], rb: ResponseBuffer) -> None:
        account = self._account(client, rb)
        if account is None:
            return
        cfg = self.server.config.files
        used = self.files.usage.get(account, 0)
        count = len(self.files.owned_by(account))
        self.say(rb, f"Quota: {size_text(used)} of {size_text(cfg.quota)} used, in {count} files")
