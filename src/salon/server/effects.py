"""Effects: what the core asks its shell to do. The core never does I/O itself."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Generic, TypeVar

if TYPE_CHECKING:
    from salon.server.client import Client
    from salon.server.responsebuffer import Held, ResponseBuffer
    from salon.store.base import Store

T = TypeVar("T")


@dataclass(slots=True)
class Close:
    """Flush what is queued for the client, then close its connection."""

    client: Client


@dataclass(slots=True)
class Offload:
    """Run ``work`` away from the event loop (a thread), then call ``done`` in the core.

    While it runs, the client's further input waits, so commands keep their order.
    ``held``: the command's label and early replies, answered with what ``done`` adds.
    """

    client: Client
    work: Callable[[], Any]
    done: Callable[[Any, ResponseBuffer], None]
    held: Held | None = None


@dataclass(slots=True)
class StoreCall(Generic[T]):
    """Run ``call(store)`` on the storage thread, then ``done(result)`` in the core.

    Every store call of one event-loop turn runs in one transaction (grouped commits).
    With ``client`` set, that client's input waits until ``done`` ran: a sender has at most
    one write in flight, which bounds the write queue and slows a flooding sender down
    (fakelag) instead of dropping anything.

    With ``read`` set, the call only reads history: the shell runs it on a reader of its
    own, beside the writer, so that no read delays a commit (and the deliveries behind it).
    It sees every transaction committed before it was asked for.

    With ``background`` set, the call is upkeep that nobody waits for (a purge's step):
    the shell runs it in a transaction of its own when no other call waits, and a store
    that can (``yield_to``) cuts it short when one arrives meanwhile.

    With ``idempotent`` set, the call writes a record as the core now holds it (an account, a
    registered channel, a server ban, a metadata key, a read marker, channels to rejoin,
    the file host's records) or deletes one: writing it again changes nothing. A cluster
    node with a store of its own that rebuilds the network from the bus's log at its
    start keeps these writes of the replay (the log may carry records that other nodes
    made while its store was not there to see them) and drops the others (history, which
    its store holds already as far as it saw it).
    """

    call: Callable[[Store], T]
    done: Callable[[T], None] | None = None
    client: Client | None = None
    read: bool = False
    background: bool = False
    idempotent: bool = False


@dataclass(slots=True)
class BusOp:
    """Entries (JSON texts) for the cluster's bus, made during one event-loop turn: the
    shell hands them to the sequencer in one call, in this order. They come back, in the
    network's one order, through ``Server.bus_entries`` (this node's own too: nothing they
    change is applied before that). Only made when clustering is on."""

    entries: list[str]


Effect = Close | Offload | StoreCall[Any] | BusOp
