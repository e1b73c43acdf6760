"""Effects: what the core asks its shell to do. The core never does I/O itself."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from salon.server.client import Client
    from salon.server.responsebuffer import ResponseBuffer


@dataclass(slots=True)
class Close:
    """Flush what is queued for the client, then close its connection."""

    client: Client


@dataclass(slots=True)
class Offload:
    """Run ``work`` away from the event loop (a thread), then call ``done`` in the core.

    While it runs, the client's further input waits, so commands keep their order.
    """

    client: Client
    work: Callable[[], Any]
    done: Callable[[Any, ResponseBuffer], None]
    label: str | None = None


Effect = Close | Offload
