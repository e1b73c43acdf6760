"""METADATA (IRCv3 draft/metadata-3): GET, LIST, SET, CLEAR, SUB, UNSUB, SUBS, SYNC.

The state, its checks and who hears of a change are in salon.server.metadata; a change
is a Metadata event (salon.server.apply.apply_metadata).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import TYPE_CHECKING

from salon.errors import CommandError, FailError
from salon.proto import numerics as n
from salon.proto.casemap import casefold
from salon.proto.message import Message
from salon.server import caps, metadata
from salon.server.channel import Channel
from salon.server.client import Client
from salon.server.events import Metadata
from salon.server.responsebuffer import ResponseBuffer

if TYPE_CHECKING:
    from salon.server.core import Server

# Keys per RPL_METADATASUBOK / UNSUBOK / SUBS line (keys are at most 64 bytes).
_KEYS_A_LINE = 5

Target = Client | Channel


def cmd_metadata(server: Server, client: Client, msg: Message, rb: ResponseBuffer) -> None:
    if not server.config.metadata.enabled:
        if client.registered:
            raise CommandError(n.ERR_UNKNOWNCOMMAND, msg.command, "Unknown command")
        raise CommandError(n.ERR_NOTREGISTERED, "You have not registered")
    if len(msg.params) < 2:
        raise CommandError(n.ERR_NEEDMOREPARAMS, "METADATA", "Not enough parameters")
    sub = msg.params[1].upper()
    handler = SUBCOMMANDS.get(sub)
    if handler is None:
        raise FailError("METADATA", "SUBCOMMAND_INVALID", msg.params[1], "Invalid subcommand")
    handler(server, client, msg.params[0], list(msg.params[2:]), rb)


def _resolve(server: Server, client: Client, name: str) -> Target:
    """The target a client names: ``*`` (itself), a nick or a channel. Spec: "Clients
    that have not completed connection registration MUST use * to target themselves"."""
    if name == "*":
        return client
    if client.registered:
        cf = casefold(name)
        if name.startswith("#"):
            chan = server.channels.get(cf)
            if chan is not None:
                return chan
        else:
            user = server.nicks.get(cf)
            if user is not None and user.registered:
                return user
    raise FailError("METADATA", "INVALID_TARGET", name, "Invalid metadata target")


def _fail(server: Server, code: str, *context: str) -> Message:
    """A FAIL METADATA line inside a reply that goes on (a batch, SUB's keys)."""
    return Message("FAIL", ("METADATA", code, *context), server.name)


def _need(args: list[str]) -> None:
    if not args:
        raise CommandError(n.ERR_NEEDMOREPARAMS, "METADATA", "Not enough parameters")


def _only_self(name: str) -> None:
    """SUB, UNSUB and SUBS are about the client's own subscriptions: target ``*``."""
    if name != "*":
        raise FailError("METADATA", "INVALID_TARGET", name, "Invalid metadata target")


def _name(target: Target) -> str:
    return target.name if isinstance(target, Channel) else target.nick


def _readable(client: Client, target: Target, key: str) -> None:
    if isinstance(target, Channel) and not metadata.readable(target, client):
        raise FailError("METADATA", "KEY_NO_PERMISSION", target.name, key, "Permission denied")


def _writable(client: Client, target: Target, key: str) -> None:
    """Spec: "Clients can set/delete metadata on themselves, and on channels they
    administer" (here: their channel operators)."""
    if target is client:
        return
    if isinstance(target, Channel) and target.is_op(client):
        return
    raise FailError(
        "METADATA",
        "KEY_NO_PERMISSION",
        _name(target),
        key,
        f"You do not have permission to set {key} on {_name(target)}",
    )


def _rate(server: Server, client: Client, target: Target, key: str) -> None:
    """A client's changes are limited to ``rate_changes`` per ``rate_period`` seconds:
    FAIL RATE_LIMITED with the seconds to wait."""
    cfg = server.config.metadata
    changes = metadata.state(client).changes
    now = server.now
    while changes and changes[0] <= now - cfg.rate_period:
        changes.popleft()
    if len(changes) >= cfg.rate_changes:
        wait = max(1, math.ceil(changes[0] + cfg.rate_period - now))
        raise FailError(
            "METADATA", "RATE_LIMITED", _name(target), key, str(wait), "Too many changes"
        )
    changes.append(now)


def _get(server: Server, client: Client, name: str, args: list[str], rb: ResponseBuffer) -> None:
    target = _resolve(server, client, name)
    _need(args)
    _readable(client, target, "*")
    shown = _name(target)
    lines: list[Message] = []
    for key in args:
        if not metadata.valid_key(key):
            lines.append(_fail(server, "KEY_INVALID", key, "Invalid key"))
            continue
        lines.append(metadata.keyvalue(server, client.nick, shown, key, target.metadata.get(key)))
    metadata.batch(server, rb, shown, lines)


def _list(server: Server, client: Client, name: str, args: list[str], rb: ResponseBuffer) -> None:
    target = _resolve(server, client, name)
    _readable(client, target, "*")
    shown = _name(target)
    lines = [
        metadata.keyvalue(server, client.nick, shown, key, value)
        for key, value in target.metadata.items()
    ]
    metadata.batch(server, rb, shown, lines)


def _set(server: Server, client: Client, name: str, args: list[str], rb: ResponseBuffer) -> None:
    _need(args)
    key = args[0]
    value = args[1] if len(args) > 1 else None
    target = _resolve(server, client, name)
    _writable(client, target, key)
    if not metadata.valid_key(key):
        raise FailError("METADATA", "KEY_INVALID", key, "Invalid key")
    cfg = server.config.metadata
    shown = _name(target)
    keys = target.metadata
    if value is None:
        if key not in keys:
            raise FailError("METADATA", "KEY_NOT_SET", shown, key, "Key not set")
    else:
        value = metadata.check_value(key, value, cfg.max_value_bytes)
        if key not in keys and len(keys) >= cfg.max_keys:
            raise FailError("METADATA", "LIMIT_REACHED", shown, "Metadata limit reached")
    if keys.get(key) != value:
        _rate(server, client, target, key)
        _change(server, client, target, key, value)
    rb.add(metadata.keyvalue(server, client.nick, shown, key, value))


def _change(server: Server, client: Client, target: Target, key: str, value: str | None) -> None:
    if not client.registered:
        # Before registration (before-connect) a client's keys are its own business;
        # they become events when it registers (metadata.registered).
        if value is None:
            client.metadata.pop(key, None)
        else:
            client.metadata[key] = value
        return
    channel = target.name if isinstance(target, Channel) else None
    server.emit(Metadata(client.id, channel, key, value))
    if channel is None:
        metadata.persist(server, client, key, value)


def _clear(server: Server, client: Client, name: str, args: list[str], rb: ResponseBuffer) -> None:
    target = _resolve(server, client, name)
    _writable(client, target, "*")
    shown = _name(target)
    keys = list(target.metadata)
    if keys:
        _rate(server, client, target, "*")
    for key in keys:
        _change(server, client, target, key, None)
    metadata.batch(
        server, rb, shown, [metadata.keyvalue(server, client.nick, shown, k, None) for k in keys]
    )


def _lines(rb: ResponseBuffer, numeric: str, keys: list[str]) -> None:
    for i in range(0, len(keys), _KEYS_A_LINE):
        rb.numeric(numeric, *keys[i : i + _KEYS_A_LINE])


def _sub(server: Server, client: Client, name: str, args: list[str], rb: ResponseBuffer) -> None:
    _only_self(name)
    _need(args)
    subs = metadata.state(client).subs
    limit = server.config.metadata.max_subs
    done: list[str] = []
    fails: list[Message] = []
    for key in args:
        if not metadata.valid_key(key):
            fails.append(_fail(server, "KEY_INVALID", key, "Invalid key"))
            continue
        if key not in subs and len(subs) >= limit:
            # Spec: "the server does not process any further keys", and names this one.
            fails.append(
                Message(
                    "FAIL",
                    ("METADATA", "TOO_MANY_SUBS", key, "Too many subscriptions"),
                    server.name,
                )
            )
            break
        subs[key] = None
        if key not in done:
            done.append(key)
    _lines(rb, n.RPL_METADATASUBOK, done)
    for fail in fails:
        rb.add(fail)
    if done and client.registered:
        # Spec: "When subscribing to a key, clients SHOULD receive the current value of
        # that key for channels/users they are receiving updates for"; the server may
        # instead tell them to SYNC each target later.
        for chan in client.channels.values():
            rb.numeric(n.RPL_METADATASYNCLATER, chan.name)


def _unsub(server: Server, client: Client, name: str, args: list[str], rb: ResponseBuffer) -> None:
    _only_self(name)
    _need(args)
    subs = metadata.state(client).subs
    done: list[str] = []
    for key in args:
        if not metadata.valid_key(key):
            rb.fail("METADATA", "KEY_INVALID", key, "Invalid key")
            continue
        subs.pop(key, None)
        if key not in done:
            done.append(key)
    _lines(rb, n.RPL_METADATAUNSUBOK, done)


def _subs(server: Server, client: Client, name: str, args: list[str], rb: ResponseBuffer) -> None:
    _only_self(name)
    keys = list(metadata.state(client).subs)
    lines = [
        Message(n.RPL_METADATASUBS, (client.nick, *keys[i : i + _KEYS_A_LINE]), server.name)
        for i in range(0, len(keys), _KEYS_A_LINE)
    ]
    if not client.capmask & caps.BATCH:
        rb.messages += lines
        return
    # Spec: "a metadata-subs batch containing zero or more RPL_METADATASUBS numerics".
    ref = server.new_batch_id()
    rb.add(Message("BATCH", ("+" + ref, "metadata-subs"), server.name))
    rb.messages += [line.with_tags({"batch": ref}) for line in lines]
    rb.add(Message("BATCH", ("-" + ref,), server.name))


def _sync(server: Server, client: Client, name: str, args: list[str], rb: ResponseBuffer) -> None:
    target = _resolve(server, client, name)
    _readable(client, target, "*")
    shown = _name(target)
    if isinstance(target, Channel):
        lines = metadata.sync_lines(server, client, target)
    else:
        lines = metadata.subscribed_lines(server, client, shown, target.metadata)
    metadata.batch(server, rb, shown, lines)


SUBCOMMANDS: dict[str, Callable[[Server, Client, str, list[str], ResponseBuffer], None]] = {
    "GET": _get,
    "LIST": _list,
    "SET": _set,
    "CLEAR": _clear,
    "SUB": _sub,
    "UNSUB": _unsub,
    "SUBS": _subs,
    "SYNC": _sync,
}
