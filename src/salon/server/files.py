"""The file host's state in the core, sans-I/O: which files exist, where they were posted,
who may upload and who may read ("files follow history"), upload tokens, and the
FILEHOST ISUPPORT tokens. The HTTP side (:mod:`salon.net.filehost`) asks this module for
every decision, so that each one is made from live state at request time.

docs/files.md describes the model; the rules about bytes and names are in
:mod:`salon.server.filepolicy`.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, replace
from enum import Enum
from typing import TYPE_CHECKING, Any

from salon.proto import numerics as n
from salon.proto.casemap import casefold
from salon.server.filepolicy import FILE_PATH
from salon.server.history import is_private
from salon.store.base import FileRecord, FileRef, FileStore, dm_other, is_dm

if TYPE_CHECKING:
    from salon.server.client import Client
    from salon.server.core import Server
    from salon.server.responsebuffer import ResponseBuffer

log = logging.getLogger("salon.files")

# Upload tokens (TOKEN GENERATE FILEHOST): seconds valid, uploads allowed.
TOKEN_TTL = 600.0
TOKEN_USES = 20
# The ISUPPORT tokens of soju.im/FILEHOST: the upload URL.
ISUPPORT_NAMES = ("soju.im/FILEHOST", "draft/FILEHOST")
UPLOAD_PATH = "/upload"
FILE_PREFIX = "/f/"
_FILE_COMMANDS = ("PRIVMSG", "NOTICE")


class Access(Enum):
    ALLOWED = "allowed"
    LOGIN = "login"  # 401: who asks must say who they are
    FORBIDDEN = "forbidden"  # 403


@dataclass(frozen=True, slots=True)
class Principal:
    """Who makes an HTTP request: an account (Basic, or a token of a logged-in user), or a
    guest's live connection (a token, when guests may upload)."""

    account: str | None  # casefolded
    client_id: int | None = None
    nick: str = ""  # a guest's, casefolded (FileRecord.owner_nick)


@dataclass(slots=True)
class Token:
    principal: Principal
    client_id: int
    expires: float
    uses: int = TOKEN_USES


class Files:
    def __init__(self, server: Server) -> None:
        self.server = server
        self.config = server.config.files
        self.enabled = self.config.enabled
        # Messages are looked at for file URLs only when they are kept (the references
        # go in the same commit as the messages).
        self.watching = self.enabled and server.config.history.enabled
        self.records: dict[str, FileRecord] = {}
        self.refs: dict[str, list[FileRef]] = {}
        self.usage: dict[str, int] = {}  # owner -> bytes of its live files
        self.blob_users: dict[str, int] = {}  # blob -> live files with those bytes
        self.tokens: dict[str, Token] = {}
        self.unlinks: list[str] = []  # blobs to unlink (take_unlinks)
        self._last_expiry = server.now
        # client id -> the scheme://host[:port] it reached the HTTP listener by (a
        # WebSocket client), for its FILEHOST URL when no public_url is configured.
        self.web_base: dict[int, str] = {}
        # True while another cluster node's change is applied here (see apply).
        self.applying = False

    # ------------------------------------------------------------------ records

    def load(self, store: FileStore) -> None:
        for record in store.load_files():
            self._index(record)
        for ref in store.load_file_refs():
            if ref.file in self.records:
                self.refs.setdefault(ref.file, []).append(ref)

    def _index(self, record: FileRecord) -> None:
        self.records[record.id] = record
        if not record.deleted:
            self.usage[record.owner] = self.usage.get(record.owner, 0) + record.size
            self.blob_users[record.blob] = self.blob_users.get(record.blob, 0) + 1

    def add(self, record: FileRecord) -> None:
        """A new upload: kept in memory now, written to the store (before the 201)."""
        self._index(record)
        self._store(lambda store: store.save_file(record))
        self._share(["add", asdict(record)])

    def delete(self, record: FileRecord, now: float) -> None:
        """Delete a file: it answers 410 from now on, its references are forgotten, and
        its blob goes once no live file uses it (``unlinks``, for the shell)."""
        if record.deleted:
            return
        gone = replace(record, deleted=now)
        self.records[record.id] = gone
        self._release(record)
        file_id = record.id

        def call(store: FileStore) -> None:
            store.save_file(gone)
            store.delete_refs_of_file(file_id)

        self._store(call)
        self._share(["delete", file_id, now])
        log.info("file deleted id=%s owner=%s", record.id, record.owner)

    def forget(self, record: FileRecord) -> None:
        """Forget a file altogether (an upload nobody posted, expired): 404 from now on."""
        del self.records[record.id]
        if not record.deleted:
            self._release(record)
        file_id = record.id
        self._store(lambda store: store.forget_file(file_id))
        self._share(["forget", file_id])
        log.info("file expired id=%s owner=%s", record.id, record.owner)

    def _release(self, record: FileRecord) -> None:
        self.refs.pop(record.id, None)
        self.usage[record.owner] = max(0, self.usage.get(record.owner, 0) - record.size)
        users = self.blob_users.get(record.blob, 1) - 1
        if users > 0:
            self.blob_users[record.blob] = users
        else:
            self.blob_users.pop(record.blob, None)
            self.unlinks.append(record.blob)

    def take_unlinks(self) -> list[str]:
        """Blobs no live file uses any more: the shell unlinks them (if still unused)."""
        out, self.unlinks = self.unlinks, []
        return out

    def drop_refs(self, match: Callable[[FileRef], bool]) -> None:
        """Forget the references ``match`` picks (their messages are gone: redacted,
        expired, or the history of a private channel that ended); a file left with none
        goes too."""
        dropped: list[FileRef] = []
        now = self.server.now
        for file_id, refs in list(self.refs.items()):
            keep = [ref for ref in refs if not match(ref)]
            if len(keep) == len(refs):
                continue
            dropped += [ref for ref in refs if match(ref)]
            if keep:
                self.refs[file_id] = keep
                continue
            del self.refs[file_id]
            record = self.records.get(file_id)
            if record is not None:
                self.delete(record, now)
        if dropped:
            pairs = [(ref.target, ref.msgid) for ref in dropped]

            def call(store: FileStore) -> None:
                for target, msgid in pairs:
                    store.delete_file_refs(target, msgid)

            self._store(call)
            self._share(["drop", pairs])

    def account_dropped(self, account: str) -> None:
        if self.config.delete_with_account:
            now = self.server.now
            for record in self.owned_by(account):
                self.delete(record, now)

    def expire(self, now: float) -> None:
        """Uploads nobody posted within unclaimed_hours go (row and blob); every file goes
        after max_age_days, when set."""
        cfg = self.config
        unclaimed = now - cfg.unclaimed_hours * 3600
        oldest = now - cfg.max_age_days * 86400 if cfg.max_age_days else None
        for record in list(self.records.values()):
            if record.deleted:
                continue
            if (
                record.created < unclaimed
                and not self.refs.get(record.id)
                and not self.is_avatar(record)
            ):
                self.forget(record)
            elif oldest is not None and record.created < oldest:
                self.delete(record, now)

    def is_avatar(self, record: FileRecord) -> bool:
        """Whether the file is its owner's avatar (draft/metadata-3, the account's keys):
        a picture everyone is shown, so readable with the link alone and never unclaimed.
        Only the owner's own avatar counts: nobody makes another's file public."""
        if not record.owner:
            return False
        avatar = self.server.account_metadata.get(record.owner, {}).get("avatar", "")
        found = FILE_PATH.search(avatar) if "/f/" in avatar else None
        return found is not None and found.group(1) == record.id

    def blob_in_use(self, blob: str) -> bool:
        return self.blob_users.get(blob, 0) > 0

    def owned_by(self, account: str) -> list[FileRecord]:
        cf = casefold(account)
        return [r for r in self.records.values() if r.owner == cf and not r.deleted]

    # ------------------------------------------------------------------ uploading

    def may_upload(self, client: Client) -> bool:
        if not self.enabled or not client.registered:
            return False
        return client.account is not None or self.config.who == "everyone"

    def base_url(self, client: Client) -> str | None:
        """Where this client's uploads go: public_url, or the address a WebSocket client
        reached us by; never an http URL for a client on TLS (soju.im/FILEHOST: "clients
        MUST refuse an http URI when the IRC connection uses TLS")."""
        base = self.config.public_url or self.web_base.get(client.id)
        if not base:
            return None
        if client.tls and not base.startswith("https://"):
            return None
        return base

    def advertise(self, client: Client, rb: ResponseBuffer) -> None:
        """A 005 with the FILEHOST tokens, to a client that may upload (after the welcome
        burst, and again when it logs in later)."""
        if not self.may_upload(client):
            return
        base = self.base_url(client)
        if base is None:
            return
        url = base + UPLOAD_PATH
        tokens = [f"{name}={url}" for name in ISUPPORT_NAMES]
        rb.numeric(n.RPL_ISUPPORT, *tokens, "are supported by this server")

    def principal_of(self, client: Client) -> Principal:
        if client.account is not None:
            return Principal(casefold(client.account))
        return Principal(None, client.id, client.nick_cf)

    def new_token(self, client: Client) -> str:
        token = secrets.token_urlsafe(32)
        made = Token(self.principal_of(client), client.id, self.server.now + TOKEN_TTL)
        self.tokens[token] = made
        who = made.principal
        # Any node may get the upload (behind one load balancer): each knows the token.
        self._share(["token", token, who.account, who.client_id, who.nick, client.id, made.expires])
        return token

    def _connected(self, client_id: int) -> bool:
        """Whether a connection is still there, on this node or (in a cluster) another."""
        client = self.server.clients.get(client_id)
        return (client is not None and not client.closed) or client_id in self.server.remote

    def use_token(self, token: str, now: float, spend: bool = True) -> Principal | None:
        """The principal a Bearer token stands for, one upload spent (with ``spend``);
        None when unknown, expired, used up, or its connection is gone."""
        found = self.tokens.get(token)
        if found is None:
            return None
        if found.expires < now or found.uses <= 0 or not self._connected(found.client_id):
            self.tokens.pop(token, None)
            return None
        if spend:
            found.uses -= 1
        return found.principal

    def tick(self, now: float) -> None:
        """About once a second: expired tokens and files."""
        every = min(60.0, max(1.0, self.config.unclaimed_hours * 3600 / 4))
        if self.enabled and now - self._last_expiry >= every:
            self._last_expiry = now
            self.expire(now)
        clients = self.server.clients
        for key, token in list(self.tokens.items()):
            if token.expires < now or not self._connected(token.client_id):
                del self.tokens[key]
        for cid in [cid for cid in self.web_base if cid not in clients]:
            del self.web_base[cid]

    # ------------------------------------------------------------------ reading

    def access(self, record: FileRecord, who: Principal | None) -> Access:
        """Who may read a file, decided now: anyone with the link when a public channel
        references it (or link_access = "anyone"); else its owner, and whoever may read a
        conversation that references it: a member of the channel now, a side of the
        private conversation."""
        if self.config.link_access == "anyone" or self.is_avatar(record):
            return Access.ALLOWED
        refs = self.refs.get(record.id, ())
        channels = self.server.channels
        for ref in refs:
            if not is_dm(ref.target):
                chan = channels.get(ref.target)
                # A public channel that emptied keeps its history, and so stays public; a
                # private one that emptied took its history, and these references, along.
                if chan is None or not is_private(chan):
                    return Access.ALLOWED
        if who is None:
            return Access.LOGIN
        if who.account is not None and who.account == record.owner:
            return Access.ALLOWED
        if who.account is None and not record.owner and who.nick and who.nick == record.owner_nick:
            return Access.ALLOWED
        for ref in refs:
            if self._may_read(ref, who):
                return Access.ALLOWED
        return Access.FORBIDDEN

    def _may_read(self, ref: FileRef, who: Principal) -> bool:
        server = self.server
        if is_dm(ref.target):
            if who.account is not None:
                side = "~" + who.account
                return side in ref.target.split(" ") and bool(dm_other(ref.target, side))
            client = server.clients.get(who.client_id) if who.client_id is not None else None
            if client is None or client.account is not None:
                return False
            return client.nick_cf in ref.target.split(" ") and ref.time >= client.nick_time
        chan = server.channels.get(ref.target)
        if chan is None:
            return False
        if who.account is not None:
            sessions = server.accounts.sessions.get(who.account, ())
            return any(c in chan.members for c in sessions)
        client = server.clients.get(who.client_id) if who.client_id is not None else None
        return client is not None and client in chan.members

    # ------------------------------------------------------------------ references

    def observe(self, group: Any) -> None:
        """A commit group is sealed (the end of the core's turn): each URL of a known file in
        its messages becomes a reference in the same commit, if the message's sender may
        read the file (an ex-member of a secret channel pasting its files' URLs elsewhere
        makes nothing readable). Done once per group rather than once per message: the
        messages of a server without live files, and nearly every message, pay nothing."""
        if not self.watching or not self.blob_users:
            return  # no live file: no link can name one
        for event in group.events:
            if event.command not in _FILE_COMMANDS or not event.params:
                continue
            text = event.params[-1]
            if "/f/" not in text:
                continue
            seen: set[str] = set()
            for found in FILE_PATH.finditer(text):
                file_id = found.group(1)
                record = self.records.get(file_id)
                if record is None or record.deleted or file_id in seen:
                    continue
                seen.add(file_id)
                if self.access(record, self._sender(event)) is Access.ALLOWED:
                    group.refs.append(FileRef(file_id, event.target, event.msgid, event.time))

    def _sender(self, event: Any) -> Principal:
        """Who sent a message about to be committed: its account; for a guest, its
        connection (still there: a client's other commands wait for its messages'
        commit, so it has neither left nor changed nick) and nick."""
        if event.account is not None:
            return Principal(casefold(event.account))
        nick_cf = casefold(event.source.split("!", 1)[0])
        client = self.server.nicks.get(nick_cf)
        if client is None or client.account is not None:
            return Principal(None, None, nick_cf)
        return Principal(None, client.id, nick_cf)

    def committed(self, refs: Sequence[FileRef]) -> None:
        for ref in refs:
            if ref.file in self.records:
                self.refs.setdefault(ref.file, []).append(ref)
        self._share(["refs", [list(ref) for ref in refs]])

    # ------------------------------------------------------------------ cluster

    def _share(self, op: list[Any]) -> None:
        """In a cluster, send a change to the other nodes (a bus entry): each node keeps
        every file's record and references, to answer the HTTP requests it gets."""
        cluster = self.server.cluster
        if cluster is not None and not self.applying:
            cluster.submit_files(op)

    def _store(self, call: Callable[[FileStore], None]) -> None:
        """A store write; not while another node's change is applied to a store the nodes
        share (that node wrote it)."""
        cluster = self.server.cluster
        if self.applying and cluster is not None and cluster.shared_store:
            return
        self.server.store(call, idempotent=True)

    def apply(self, op: list[Any]) -> None:
        """Another cluster node's change to the files (see _share), made here too. Each
        is idempotent: a node that starts replays the bus's log over what it loaded."""
        self.applying = True
        try:
            kind = op[0]
            if kind == "add":
                record = FileRecord(**op[1])
                if record.id not in self.records:
                    self.add(record)
            elif kind in ("delete", "forget"):
                found = self.records.get(str(op[1]))
                if found is not None and kind == "delete":
                    self.delete(found, float(op[2]))
                elif found is not None:
                    self.forget(found)
            elif kind == "refs":
                new = [
                    ref
                    for ref in (FileRef(str(f), str(t), str(m), float(w)) for f, t, m, w in op[1])
                    if ref not in self.refs.get(ref.file, ())
                ]
                if new:
                    self.committed(new)
                    self._store(lambda store: store.add_file_refs(new))
            elif kind == "drop":
                pairs = {(str(target), str(msgid)) for target, msgid in op[1]}
                self.drop_refs(lambda ref: (ref.target, ref.msgid) in pairs)
            elif kind == "token":
                _, key, account, principal_id, nick, client_id, expires = op
                who = Principal(account, principal_id, nick)
                self.tokens[str(key)] = Token(who, int(client_id), float(expires))
            else:
                log.error("files change of unknown kind %r from another node", kind)
        finally:
            self.applying = False
