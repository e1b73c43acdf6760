"""The life of one link to the server, as data: the phases of registration (CAP, SASL, the
welcome) and the events that move between them.

Modelled on h11's ``_state.py``: everything that moves the link from one phase to another is
in :data:`TRANSITIONS`, and :func:`next_phase` is the only way to take a step. A step the table
does not list is a bug in the session, so it raises instead of guessing.

The order on a link (IRCv3 capability negotiation, "CAP LS 302" then REQ, AUTHENTICATE, END):

    CLOSED -connect-> GREETING -heard-> CAP_LS -caps listed-> CAP_REQ [-sasl-> SASL]
        -cap end-> CAP_END -welcome-> REGISTERED

A server without CAP welcomes us straight from CAP_LS. Any phase before REGISTERED can end in
FAILED (one Fatal for the link; nothing more is read from it), and any phase in CLOSED.
"""

from __future__ import annotations

from enum import Enum, auto


class Phase(Enum):
    CLOSED = auto()  # no link
    GREETING = auto()  # connected, CAP LS / NICK / USER sent; the peer has said nothing yet
    CAP_LS = auto()  # the peer spoke; its CAP LS list is not complete yet
    CAP_REQ = auto()  # the list is in; our CAP REQs wait for ACK or NAK
    SASL = auto()  # AUTHENTICATE under way
    CAP_END = auto()  # CAP END sent (after SASL succeeded, when asked for): waiting for 001
    REGISTERED = auto()  # 001 received
    FAILED = auto()  # registration cannot go on: a Fatal was emitted


class LinkEvent(Enum):
    CONNECT = auto()  # connection_made
    HEARD = auto()  # the first line of the peer (and it looks like IRC, or FATAL follows)
    CAPS_LISTED = auto()  # the last line of CAP LS
    SASL = auto()  # AUTHENTICATE <mechanism> sent
    CAP_END = auto()  # CAP END sent
    WELCOME = auto()  # 001
    FATAL = auto()
    LOST = auto()  # connection_lost


_BEFORE_WELCOME = (Phase.GREETING, Phase.CAP_LS, Phase.CAP_REQ, Phase.SASL, Phase.CAP_END)

TRANSITIONS: dict[tuple[Phase, LinkEvent], Phase] = {
    (Phase.GREETING, LinkEvent.HEARD): Phase.CAP_LS,
    (Phase.CAP_LS, LinkEvent.CAPS_LISTED): Phase.CAP_REQ,
    # SASL normally starts once the REQs are answered; a CAP NEW before the LS list ends can
    # get there from CAP_LS too.
    (Phase.CAP_LS, LinkEvent.SASL): Phase.SASL,
    (Phase.CAP_REQ, LinkEvent.SASL): Phase.SASL,
    (Phase.CAP_LS, LinkEvent.CAP_END): Phase.CAP_END,
    (Phase.CAP_REQ, LinkEvent.CAP_END): Phase.CAP_END,
    (Phase.SASL, LinkEvent.CAP_END): Phase.CAP_END,
    # A server without CAP welcomes us without CAP END; a second 001 changes nothing.
    (Phase.CAP_LS, LinkEvent.WELCOME): Phase.REGISTERED,
    (Phase.CAP_REQ, LinkEvent.WELCOME): Phase.REGISTERED,
    (Phase.CAP_END, LinkEvent.WELCOME): Phase.REGISTERED,
    (Phase.REGISTERED, LinkEvent.WELCOME): Phase.REGISTERED,
    # ERROR can arrive on a session fed before it was told of a connection.
    (Phase.CLOSED, LinkEvent.FATAL): Phase.FAILED,
    **{(phase, LinkEvent.FATAL): Phase.FAILED for phase in _BEFORE_WELCOME},
    **{(phase, LinkEvent.CONNECT): Phase.GREETING for phase in Phase},
    **{(phase, LinkEvent.LOST): Phase.CLOSED for phase in Phase},
}


class LinkStateError(RuntimeError):
    """A step :data:`TRANSITIONS` does not allow: a bug in the session."""


def next_phase(phase: Phase, event: LinkEvent) -> Phase:
    try:
        return TRANSITIONS[phase, event]
    except KeyError:
        raise LinkStateError(f"{event.name} is not possible in phase {phase.name}") from None
