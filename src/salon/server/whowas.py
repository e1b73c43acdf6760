"""WHOWAS: the nicks that were, newest first, as many as ``[limits] whowas`` keeps."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from salon.server.client import Client

if TYPE_CHECKING:
    from salon.server.core import Server


@dataclass(slots=True)
class WhowasEntry:
    nick: str
    user: str
    host: str
    realname: str
    time: float


def remember(server: Server, client: Client) -> None:
    """Keep ``client``'s nick, user, host and real name (on a nick change or a quit)."""
    if server.whowas.maxlen:
        server.whowas.appendleft(
            WhowasEntry(client.nick, client.user, client.host, client.realname, server.now)
        )
