"""A command's replies to its own client, collected so that labeled-response can wrap them.

Modelled on ergo's ResponseBuffer (irc/responsebuffer.go). IRCv3 labeled-response: "If a
response consists of more than one message, a batch MUST be used to group them into a
single logical response"; no response at all is acknowledged with ``ACK``; a single message
carries the ``label`` tag itself.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from salon.proto.message import Message
from salon.server import caps

if TYPE_CHECKING:
    from salon.server.client import Client
    from salon.server.core import Server


def safe_middle(param: str) -> str:
    word = param.split(" ", 1)[0].lstrip(":")
    return word or "*"


class ResponseBuffer:
    __slots__ = ("client", "label", "messages", "server")

    def __init__(self, server: Server, client: Client, label: str | None) -> None:
        self.server = server
        self.client = client
        self.label = label if label and client.capmask & caps.LABELED_RESPONSE else None
        self.messages: list[Message] = []

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
        if client.closed:
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


def _safe_middles(params: tuple[str, ...]) -> tuple[str, ...]:
    """``params`` with every parameter but the last made fit to be a middle parameter."""
    if params:
        middles = params[:-1]
        if any(not p or " " in p or p[0] == ":" for p in middles):
            return (*(safe_middle(p) for p in middles), params[-1])
    return params
