"""The ``salon chat`` client core, sans-I/O: feed it bytes and keystrokes, get events back.

The terminal front ends (:mod:`salon.tui`) own the sockets, the event loop and the screen.
"""

from salon.client.model import Buffer, Event, Line, Member
from salon.client.session import Session, Settings

__all__ = ["Buffer", "Event", "Line", "Member", "Session", "Settings"]
