r"""A command's replies to its own client, collected so that labeled-response can wrap them.

Modelled on ergo's ResponseBuffer (irc/responsebuffer.go). IRCv3 labeled-response: "If a
response consists of more than one message, a batch MUST be used to group them into a
single logical response"; no response at all is acknowledged with ``ACK``; a single message
carries the ``label`` tag itself.

A command that finishes later (after a store call, a commit or slow work off the loop)
:meth:`~ResponseBuffer.detach`\ es its buffer: the :class:`Held` value keeps the label and
what was answered so far, and :meth:`Held.resume` gives them back to the buffer of the
completion. :func:`answer` is the one place where a command's domain errors become replies.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from salon.errors import CommandError, FailError
from salon.proto import numerics as n
from salon.proto.message import Message
from salon.server import caps

if TYPE_CHECKING:
    from salon.server.client import Client
    from salon.server.core import Server

log = logging.getLogger("salon.server")


def safe_middle(param: str) -> str:
    word = param.split(" ", 1)[0].lstrip(":")
    return word or "*"


class ResponseBuffer:
    __slots__ = ("client", "command", "label", "messages", "server", "steps")

    def __init__(
        self, server: Server, client: Client, label: str | None, command: str = "*"
    ) -> None:
        # Events of this command waiting for their turn in the cluster's order
        # (salon.server.cluster.Step): until they are applied, nothing is flushed.
        self.steps: list[Any] | None = None
        self.server = server
        self.client = client
        self.label = label if label and client.capmask & caps.LABELED_RESPONSE else None
        self.messages: list[Message] = []
        # The command answered, named in the reply to a bug (ERR_UNKNOWNERROR).
        self.command = command

    def detach(self, *, replies: bool = True) -> Held:
        """Keep the label, and what was answered so far, for a later completion: this
        buffer is left unlabeled (no early ACK) and empty. ``replies=False`` keeps only the
        label, the replies so far going out with the command as usual: slow work off the
        loop (an Offload) answers in a step of its own, after what the command said."""
        held = Held(self.server, self.client, self.label, [], self.command)
        self.label = None
        if replies:
            held.messages = self.messages
            self.messages = []
        return held

    def add(self, msg: Message) -> None:
        self.messages.append(msg)

    def numeric(self, numeric: str, *params: str) -> None:
        """A numeric addressed to this client: ``:server NNN <nick> params...``.

        Middle parameters often echo the client's own words; one that could not stand as
        a middle parameter on the wire is cut at its first space (``*`` when empty).
        """
        self.messages.append(
            Message(numeric, (self.client.nick, *_safe_middles(params)), self.server.name)
        )

    def notice(self, text: str) -> None:
        self.messages.append(Message("NOTICE", (self.client.nick, text), self.server.name))

    def fail(self, command: str, code: str, *context: str) -> None:
        """IRCv3 standard-replies: ``FAIL <command> <code> [<context>...] <description>``.
        The context often echoes the client's words (``CHATHISTORY :a b``): cut as for
        :meth:`numeric`."""
        self.messages.append(
            Message("FAIL", (command, code, *_safe_middles(context)), self.server.name)
        )

    def flush(self) -> None:
        server = self.server
        client = self.client
        if client.closed or self.steps:
            return
        msgs = self.messages
        self.messages = []
        label = self.label
        if label is not None and len(msgs) > 1 and not client.capmask & caps.BATCH:
            # labeled-response: a multi-message response needs a batch; without the batch
            # capability the messages go out unlabeled.
            label = None
        if label is None:
            for msg in msgs:
                server.send(client, msg)
            return
        self.label = None
        if not msgs:
            server.send(client, Message("ACK", (), server.name, {"label": label}))
        elif (
            len(msgs) > 1
            and msgs[0].command == "BATCH"
            and msgs[-1].command == "BATCH"
            and msgs[0].params[0] == "+" + msgs[-1].params[0][1:]
            and msgs[-1].params[0].startswith("-")
        ):
            # The whole response is one batch: labeled-response lets its opening carry the
            # label instead of wrapping it in another batch.
            tags = dict(msgs[0].tags)
            tags["label"] = label
            server.send(client, msgs[0].with_tags(tags))
            for msg in msgs[1:]:
                server.send(client, msg)
        elif len(msgs) == 1:
            tags = dict(msgs[0].tags)
            tags["label"] = label
            server.send(client, msgs[0].with_tags(tags))
        else:
            ref = server.new_batch_id()
            server.send(
                client,
                Message("BATCH", ("+" + ref, "labeled-response"), server.name, {"label": label}),
            )
            for msg in msgs:
                tags = dict(msg.tags)
                tags.setdefault("batch", ref)
                server.send(client, msg.with_tags(tags))
            server.send(client, Message("BATCH", ("-" + ref,), server.name))


class Held:
    """A command's label and early replies, kept while it waits (see ResponseBuffer.detach)."""

    __slots__ = ("client", "command", "label", "messages", "server")

    def __init__(
        self,
        server: Server,
        client: Client,
        label: str | None,
        messages: list[Message],
        command: str,
    ) -> None:
        self.server = server
        self.client = client
        self.label = label
        self.messages = messages
        self.command = command

    def empty(self) -> bool:
        """Whether there is nothing to answer: no label, no early reply."""
        return self.label is None and not self.messages

    def resume(self, rb: ResponseBuffer | None = None) -> ResponseBuffer:
        """The buffer that answers for the command: a new one, or ``rb`` (the buffer of a
        later command answering under this one's label, as the closing BATCH of a
        multiline batch does); the early replies come first."""
        if rb is None:
            rb = ResponseBuffer(self.server, self.client, None, self.command)
            rb.messages = self.messages
        else:
            rb.messages[:0] = self.messages
        rb.label = self.label
        rb.command = self.command
        self.messages = []
        return rb


def answer(rb: ResponseBuffer, run: Callable[..., None], *args: Any) -> None:
    """Run ``run(*args, rb)`` and send what it answered, through ``rb``: the one place
    where domain errors become replies (CommandError a numeric, FailError a FAIL), for
    commands (Server.dispatch) and for their completions (after a store call, a commit or
    slow work). Any other exception is a bug: logged, and answered without details."""
    try:
        run(*args, rb)
    except CommandError as exc:
        rb.numeric(exc.numeric, *exc.params)
    except FailError as exc:
        rb.fail(exc.command, exc.code, *exc.context)
    except Exception:
        log.exception("bug while answering %s from %r", rb.command, rb.client)
        rb.numeric(n.ERR_UNKNOWNERROR, rb.command, "Internal error")
    rb.flush()


def _safe_middles(params: tuple[str, ...]) -> tuple[str, ...]:
    """``params`` with every parameter but the last made fit to be a middle parameter."""
    if params:
        middles = params[:-1]
        if any(not p or " " in p or p[0] == ":" for p in middles):
            return (*(safe_middle(p) for p in middles), params[-1])
    return params
