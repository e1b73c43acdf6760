"""The commit pipeline: nothing is delivered before it is stored.

A message that history keeps is echoed and delivered only once its event is committed
(durability). The events of one event-loop turn go to the store in one call, a
:class:`CommitGroup`; when it is done, each command waiting in it is finished, in order.
A command that needs a store call of its own before it answers uses :func:`defer`.

These functions are methods of :class:`~salon.server.core.Server` (``server.defer(...)``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from salon.server.client import Client
from salon.server.effects import StoreCall
from salon.server.responsebuffer import Held, ResponseBuffer, answer

if TYPE_CHECKING:
    from salon.server.core import Server

log = logging.getLogger("salon.server")

# What runs once a commit group is committed, for each command waiting in it:
# ``finish(server, client, ok, held, arg)``, with the label and the replies the command
# had produced before it waited (see hold_for_commit; None: nothing held).
Finisher = Callable[["Server", Client, bool, "Held | None", Any], None]


class CommitGroup:
    """Messages of one event-loop turn waiting for one commit (see :func:`commit_group`)."""

    __slots__ = ("events", "refs", "senders", "server", "upto", "waiting")

    def __init__(self, server: Server) -> None:
        self.server = server
        self.events: list[Any] = []
        self.waiting: list[tuple[Client, Held | None, Finisher, Any]] = []
        self.senders: dict[Client, None] = {}
        # References to uploaded files in these messages: server.files.observe adds them
        # when the group is sealed (Server.take_effects), once for all its messages.
        self.refs: list[Any] = []
        # The msgid counter when the group was sealed (Server.take_effects): every msgid
        # made before then is delivered once the group is (see history.replay_on_join).
        self.upto = 0
        # No reference back from the group to its GroupDone: a cycle would leave each
        # group, and every message it holds, to the cyclic garbage collector (see
        # docs/BENCHMARKS.md, "History of speed", 11:04).

    def write(self, store: Any) -> bool:
        store.append_history(self.events)
        if self.refs:
            store.add_file_refs(self.refs)
        return True

    def clients(self) -> list[Client]:
        return list(self.senders)

    def finish(self, result: object) -> None:
        ok = result is True
        server = self.server
        server.uncommitted -= 1
        server.delivered_upto = self.upto
        if ok and self.refs:
            server.files.committed(self.refs)
        for client, held, finisher, arg in self.waiting:
            client.pending_commits -= 1
            if client.pending_commits == 0 and client.blocked:
                client.blocked = False
            if client.closed:
                continue
            try:
                finisher(server, client, ok, held, arg)
            except Exception:
                log.exception("bug delivering a committed message")
        if server.cluster is not None:
            server.cluster.committed()


class GroupDone:
    """The completion of a commit group's store call (the shell calls it in the core)."""

    __slots__ = ("group",)

    def __init__(self, group: CommitGroup) -> None:
        self.group = group

    def __call__(self, result: object) -> None:
        self.group.finish(result)


def commit_group(server: Server) -> CommitGroup:
    """This turn's group of messages waiting for their commit: one store call appends
    all their events; when it is done, each message is delivered, in order."""
    group = server._group
    if group is None:
        group = server._group = CommitGroup(server)
        server.uncommitted += 1
        server.effects.append(StoreCall(group.write, GroupDone(group), None))
    return group


def hold_for_commit(
    server: Server, rb: ResponseBuffer, events: list[Any], finish: Finisher, arg: Any
) -> None:
    """Store ``events`` in this turn's commit group, then run
    ``finish(server, client, ok, held, arg)``: ``held`` is what ``rb`` held so far, and
    its label, for ``finish`` to answer (Held.resume).

    Up to PIPELINE of one client's messages may wait for their commit at once, so a
    pasting client's lines share a transaction; any other command of that client waits
    until they are all delivered (see Server._process_input), so nothing is reordered.
    """
    hold(server, rb.client, events, finish, arg, rb.detach())


def hold(
    server: Server,
    client: Client,
    events: Sequence[Any],
    finish: Finisher,
    arg: Any,
    held: Held | None = None,
) -> None:
    """:func:`hold_for_commit` with nothing to answer but what ``finish`` adds."""
    group = server._group
    if group is None:
        group = commit_group(server)
    group.events += events
    group.waiting.append((client, held, finish, arg))
    group.senders[client] = None
    client.pending_commits += 1


def hold_one(server: Server, client: Client, event: Any, finish: Finisher, arg: Any) -> None:
    """:func:`hold` of one event, with no label and nothing held: the fast path's, once
    per message."""
    group = server._group
    if group is None:
        group = commit_group(server)
    group.events.append(event)
    group.waiting.append((client, None, finish, arg))
    group.senders[client] = None
    client.pending_commits += 1


def after_commit(
    server: Server,
    rb: ResponseBuffer,
    events: list[Any],
    then: Callable[[bool, ResponseBuffer], None],
) -> None:
    """Store ``events`` in this turn's commit group; once it is committed, answer what
    ``rb`` holds (with its label) together with what ``then(ok, out)`` adds."""
    hold_for_commit(server, rb, events, _answer_then, then)


def _answer_then(
    server: Server,
    client: Client,
    ok: bool,
    held: Held | None,
    then: Callable[[bool, ResponseBuffer], None],
) -> None:
    """The Finisher of :func:`after_commit`."""
    answer(held.resume() if held is not None else ResponseBuffer(server, client, None), then, ok)


def nothing_more(ok: bool, rb: ResponseBuffer) -> None:
    """An :func:`after_commit` that only answers what the command held."""
    return None


def defer(
    server: Server,
    rb: ResponseBuffer,
    call: Callable[[Any], Any],
    done: Callable[[Any, ResponseBuffer], None],
    *,
    read: bool = False,
) -> None:
    """Finish a command after a store call: what ``rb`` holds so far, and its label,
    are answered together with what ``done`` adds, once the call has completed. The
    client's input waits meanwhile. ``read``: see :class:`StoreCall`."""
    held = rb.detach()

    def finish(result: Any) -> None:
        answer(held.resume(), done, result)

    server.store(call, finish, rb.client, read=read)
