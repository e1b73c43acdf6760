"""IRCv3 draft/metadata-3: key/value metadata on users and channels, and who hears of it.

A user's keys are ``Client.metadata``, a channel's ``Channel.metadata`` (key -> value).
They change only through the :class:`~salon.server.events.Metadata` event (see
``apply.apply_metadata``), except a client's own keys set before it registered (the
``before-connect`` token), which become events when it registers (:func:`registered`).
The keys of a logged-in user are its account's too (``Server.account_metadata``, kept in
the store): they come back when it logs in again.

A client's subscriptions and the times of its recent changes are its :class:`MetaState`.
The METADATA command is in handlers/metadata.py.

Spec: "When metadata is updated, users who have subscribed to the changed key will
receive a METADATA message notifying them of the change. For channel metadata, this
applies only to subscribers who are members of the updated channel. For user metadata,
this applies only to subscribers who either share a channel with the updated user or are
monitoring them." In draft/metadata-3 that message is RPL_KEYVALUE (RPL_KEYNOTSET for a
removed key), addressed to the subscriber.
"""

from __future__ import annotations

import re
from collections import deque
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING

from salon.config import Config
from salon.errors import FailError
from salon.proto import numerics as n
from salon.proto.casemap import casefold
from salon.proto.message import Message
from salon.server import caps
from salon.server.channel import Channel
from salon.server.client import Client

if TYPE_CHECKING:
    from salon.server.core import Server
    from salon.server.responsebuffer import ResponseBuffer

# "Key names are restricted to the ranges a-z, 0-9, and _./-. The empty string is an
# invalid value." The length bound keeps a key and its value within one line.
_KEY = re.compile(r"[a-z0-9_./-]{1,64}")
# C0 controls and DEL (IRC formatting codes among them): not in a name or a status.
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_COLOR = re.compile(r"#(?:[0-9a-fA-F]{3}|[0-9a-fA-F]{6})")
_URL = re.compile(r"https?://[^\s/?#]+[^\s]*")
# Keys shown as text next to a nick: no control characters.
_TEXT_KEYS = frozenset({"display-name", "pronouns", "status"})


class MetaState:
    """A client's subscriptions (in the order made) and its recent changes."""

    __slots__ = ("changes", "subs")

    def __init__(self) -> None:
        self.subs: dict[str, None] = {}
        self.changes: deque[float] = deque()


def state(client: Client) -> MetaState:
    meta: MetaState | None = client.meta
    if meta is None:
        meta = client.meta = MetaState()
    return meta


def cap_value(config: Config) -> str:
    """The capability's value (CAP LS 302)."""
    cfg = config.metadata
    return (
        f"before-connect,max-subs={cfg.max_subs},max-keys={cfg.max_keys},"
        f"max-value-bytes={cfg.max_value_bytes}"
    )


def valid_key(key: str) -> bool:
    return _KEY.fullmatch(key) is not None


def check_value(key: str, value: str, max_bytes: int) -> str:
    """The value to store for ``key`` (it may be normalized), or FailError. The spec leaves
    values free ("Values can take any form, but MUST be encoded using UTF-8"); the keys
    salon's clients show get the checks common sense asks for."""
    if len(value.encode()) > max_bytes:
        raise FailError("METADATA", _INVALID_VALUE, key, f"Value longer than {max_bytes} bytes")
    if key in _TEXT_KEYS and _CONTROL.search(value):
        raise FailError("METADATA", _INVALID_VALUE, key, "Value contains control characters")
    if key == "color" and value:
        if not _COLOR.fullmatch(value):
            raise FailError("METADATA", _INVALID_VALUE, key, "A color is #rgb or #rrggbb")
        return value.lower()
    if key == "avatar" and value and not _URL.fullmatch(value):
        raise FailError("METADATA", _INVALID_VALUE, key, "An avatar is an http(s) URL")
    return value


# The spec's table names VALUE_INVALID; irctest's draft/metadata-3 tests, written with
# ergo's implementation, accept INVALID_VALUE (or UTF8ONLY's INVALID_UTF8) only.
_INVALID_VALUE = "INVALID_VALUE"


def keyvalue(server: Server, nick: str, target: str, key: str, value: str | None) -> Message:
    """RPL_KEYVALUE for ``key`` of ``target`` (RPL_KEYNOTSET when ``value`` is None),
    addressed to ``nick``."""
    if value is None:
        return Message(n.RPL_KEYNOTSET, (nick, target, key, "key not set"), server.name)
    return Message(n.RPL_KEYVALUE, (nick, target, key, "*", value), server.name)


def subscribed(client: Client, key: str) -> bool:
    meta: MetaState | None = client.meta
    return meta is not None and key in meta.subs and bool(client.capmask & caps.METADATA)


def _tell(
    server: Server,
    recipients: Iterable[Client],
    skip: Client | None,
    target: str,
    key: str,
    value: str | None,
) -> None:
    for client in recipients:
        if client is not skip and not client.closed and subscribed(client, key):
            server.send(client, keyvalue(server, client.nick, target, key, value))


def user_changed(server: Server, user: Client, key: str, value: str | None) -> None:
    """Subscribers sharing a channel with ``user``, or monitoring it, hear of the change
    (``user`` itself made it: it has its reply)."""
    recipients = server.common_channel_members(user)
    recipients.update(server.monitors.get(user.nick_cf, ()))
    _tell(server, recipients, user, user.nick, key, value)


def channel_changed(
    server: Server, chan: Channel, setter: Client, key: str, value: str | None
) -> None:
    _tell(server, chan.members, setter, chan.name, key, value)


def remember(server: Server, user: Client, key: str, value: str | None) -> None:
    """Keep a logged-in user's key as its account's."""
    if user.account is None:
        return
    keys = server.account_metadata.setdefault(casefold(user.account), {})
    if value is None:
        keys.pop(key, None)
    else:
        keys[key] = value


def persist(server: Server, user: Client, key: str, value: str | None) -> None:
    """Write a logged-in user's change to its account in the store."""
    if user.account is not None:
        account = casefold(user.account)
        server.store(lambda store: store.set_metadata(account, key, value), idempotent=True)


def logged_in(server: Server, user: Client) -> None:
    """``user`` logged in: the account's keys that the session did not set come back (and
    its subscribers hear of them); the session's own become the account's."""
    if user.account is None:
        return
    account = casefold(user.account)
    stored = server.account_metadata.setdefault(account, {})
    for key, value in list(stored.items()):
        if key not in user.metadata:
            user.metadata[key] = value
            user_changed(server, user, key, value)
    local = server.clients.get(user.id) is user
    for key, value in user.metadata.items():
        if stored.get(key) != value:
            stored[key] = value
            if local:  # written once, by the process holding the connection
                persist(server, user, key, value)


def registered(server: Server, client: Client) -> dict[str, str]:
    """The keys ``client`` has as it registers: its account's, and those it set before
    (which win, and become its account's). They are taken from the client: the caller
    makes them events."""
    keys: dict[str, str] = {}
    if client.account is not None:
        keys.update(server.account_metadata.get(casefold(client.account), {}))
    preset = client.metadata
    client.metadata = {}
    for key, value in preset.items():
        if keys.get(key) != value:
            keys[key] = value
            persist(server, client, key, value)
    return keys


def readable(chan: Channel, client: Client) -> bool:
    """Whether ``client`` may read ``chan``'s keys (and learn who is in it): a member, or
    anyone for a channel that is neither secret, invite-only nor keyed."""
    if client in chan.members:
        return True
    return not ("s" in chan.modes or "i" in chan.modes or chan.key is not None)


def batch(server: Server, rb: ResponseBuffer, target: str, lines: list[Message]) -> None:
    """``lines`` as a ``metadata`` batch about ``target`` (when the client has batch)."""
    if not rb.client.capmask & caps.BATCH:
        for line in lines:
            rb.add(line)
        return
    ref = server.new_batch_id()
    rb.add(Message("BATCH", ("+" + ref, "metadata", target), server.name))
    for line in lines:
        rb.add(line.with_tags({"batch": ref}))
    rb.add(Message("BATCH", ("-" + ref,), server.name))


def subscribed_lines(
    server: Server, client: Client, target: str, keys: dict[str, str]
) -> list[Message]:
    """RPL_KEYVALUE to ``client`` for the ``keys`` of ``target`` it subscribed to."""
    meta: MetaState | None = client.meta
    if meta is None or not meta.subs:
        return []
    return [
        keyvalue(server, client.nick, target, key, value)
        for key, value in keys.items()
        if key in meta.subs
    ]


def sync_lines(server: Server, client: Client, chan: Channel) -> list[Message]:
    """What ``client`` subscribed to of ``chan`` and of its other members."""
    lines = subscribed_lines(server, client, chan.name, chan.metadata)
    for member in chan.members:
        if member is not client and member.metadata:
            lines += subscribed_lines(server, client, member.nick, member.metadata)
    return lines


def join_burst(server: Server, client: Client, chan: Channel, rb: ResponseBuffer) -> None:
    """Spec: "On joining a channel, users will get the channel's current metadata ...
    and get the same information for all users who are in the channel. Specifically,
    they get that information for the keys they are subscribed to." """
    if not client.capmask & caps.METADATA or client.meta is None:
        return
    lines = sync_lines(server, client, chan)
    if lines:
        batch(server, rb, chan.name, lines)


def joined(server: Server, client: Client, chan: Channel) -> None:
    """``client`` joined ``chan``: the members that did not share a channel with it yet
    learn its keys, as subscribers would of a change."""
    if not client.metadata:
        return
    elsewhere = [c for c in client.channels.values() if c is not chan]
    for member in chan.members:
        if member is client or member.closed or member.meta is None:
            continue
        if any(member in c.members for c in elsewhere):
            continue
        for line in subscribed_lines(server, member, client.nick, client.metadata):
            server.send(member, line)


def monitored(server: Server, client: Client, user: Client, rb: ResponseBuffer) -> None:
    """Spec: "Clients SHOULD receive the current values of keys they are subscribed to
    when they MONITOR a user"."""
    for line in subscribed_lines(server, client, user.nick, user.metadata):
        rb.add(line)


def whois(server: Server, asker: Client, target: Client, rb: ResponseBuffer) -> None:
    """RPL_WHOISKEYVALUE for each key of ``target``, to a client with the capability."""
    if asker.capmask & caps.METADATA:
        for key, value in target.metadata.items():
            rb.numeric(n.RPL_WHOISKEYVALUE, target.nick, key, "*", value)


def own_batch(server: Server, client: Client, keys: Mapping[str, str]) -> list[Message]:
    """Spec: clients "receive their current metadata ... in a metadata batch with their
    own nick as target as part of the registration burst ... If none exists, the server
    MUST send an empty batch instead." Empty when the client lacks the capability."""
    if not client.capmask & caps.METADATA:
        return []
    lines = [keyvalue(server, client.nick, client.nick, k, v) for k, v in keys.items()]
    if not client.capmask & caps.BATCH:
        return lines
    ref = server.new_batch_id()
    return [
        Message("BATCH", ("+" + ref, "metadata", client.nick), server.name),
        *(line.with_tags({"batch": ref}) for line in lines),
        Message("BATCH", ("-" + ref,), server.name),
    ]
