"""TOKEN (IRCv3 draft/authtoken, PR #602): short-lived tokens for services beside IRC;
salon's one service is its file host (docs/files.md)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from salon.proto.message import Message
from salon.server import caps
from salon.server.files import Files

if TYPE_CHECKING:
    from salon.server.client import Client
    from salon.server.core import Server
    from salon.server.responsebuffer import ResponseBuffer


def cmd_token(server: Server, client: Client, msg: Message, rb: ResponseBuffer) -> None:
    """draft/authtoken: ``TOKEN GENERATE FILEHOST`` gives a short-lived upload token, in
    a ``draft/authtoken`` batch for clients with batch."""
    files: Files = server.files
    sub = msg.params[0].upper()
    if sub == "SERVICELIST":
        rb.add(Message("TOKEN", ("SERVICELIST", "FILEHOST" if files.enabled else ""), server.name))
        return
    if sub != "GENERATE":
        rb.fail("TOKEN", "INVALID_PARAMS", "Unknown TOKEN subcommand")
        return
    service = msg.params[1].upper() if len(msg.params) > 1 else ""
    if service != "FILEHOST" or not files.enabled:
        rb.fail("TOKEN", "UNKNOWN_SERVICE", service or "*", "No such service")
        return
    if not files.may_upload(client):
        rb.fail("TOKEN", "ACCOUNT_REQUIRED", "FILEHOST", "Log in to share files")
        return
    token = files.new_token(client)
    line = Message("TOKEN", ("GENERATE", "FILEHOST", token), server.name)
    if client.capmask & caps.BATCH:
        ref = server.new_batch_id()
        rb.add(Message("BATCH", (f"+{ref}", "draft/authtoken", "FILEHOST"), server.name))
        rb.add(Message(line.command, line.params, line.source, {"batch": ref}))
        rb.add(Message("BATCH", (f"-{ref}",), server.name))
    else:
        rb.add(line)
