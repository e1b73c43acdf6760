"""Batches and history on the client side: IRCv3 ``batch``, ``draft/multiline`` batches and
``draft/chathistory`` (LATEST on join and after a reconnect, BEFORE for scrolling back).

:class:`History` holds what one link has open: the batches the server started and not yet
ended, and which CHATHISTORY request each buffer waits for. The session makes a fresh one for
every link.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from salon.client.model import MAX_LINES, Buffer, HistoryAdded, Line
from salon.client.text import format_time, utc
from salon.proto import Message

if TYPE_CHECKING:
    from salon.client.session import Session


@dataclass
class Batch:
    ref: str
    type: str
    params: tuple[str, ...]
    tags: dict[str, str]
    parent: Batch | None
    messages: list[Message] = field(default_factory=list)


class History:
    """The open batches and the CHATHISTORY requests in flight on one link."""

    def __init__(self) -> None:
        self.batches: dict[str, Batch] = {}
        self.pending: dict[str, str] = {}  # buffer key -> "LATEST" or "BEFORE"

    def collect(self, ref: str, msg: Message) -> bool:
        """Keep ``msg`` (tagged with batch ``ref``) for the end of its batch, if it is open."""
        batch = self.batches.get(ref)
        if batch is None:
            return False
        batch.messages.append(msg)
        return True

    def request(self, s: Session, buf: Buffer, sub: str) -> None:
        """Ask for the page of ``buf`` after its newest line (LATEST) or before its oldest
        (BEFORE); one request per buffer at a time."""
        if not s.has_history or not s.registered or buf.history_pending:
            return
        limit = s.settings.history
        try:
            server_max = int(s.isupport.get("CHATHISTORY", "0") or 0)
        except ValueError:
            server_max = 0
        if server_max > 0:
            limit = min(limit, server_max)
        refs = [line for line in buf.lines if line.kind in ("message", "action", "notice")]
        refs = [line for line in refs if line.msgid] or refs
        if sub == "BEFORE":
            if not refs:
                sub, ref = "LATEST", "*"
            else:
                ref = _reference(s, refs[0])
        else:
            ref = _reference(s, refs[-1]) if refs else "*"
        buf.history_pending = True
        self.pending[s.key(buf.name)] = sub
        s._send("CHATHISTORY", sub, buf.name, ref, str(limit))


def on_batch(s: Session, msg: Message, now: float) -> None:
    """BATCH +ref type params... opens a batch; BATCH -ref ends it."""
    if not msg.params:
        return
    batches = s._history.batches
    ref = msg.params[0]
    if ref.startswith("+") and len(msg.params) >= 2:
        parent_ref = msg.tags.get("batch", "")
        batches[ref[1:]] = Batch(
            ref[1:],
            msg.params[1],
            tuple(msg.params[2:]),
            dict(msg.tags),
            batches.get(parent_ref),
        )
    elif ref.startswith("-"):
        batch = batches.pop(ref[1:], None)
        if batch is not None:
            _end_batch(s, batch, now)


def _end_batch(s: Session, batch: Batch, now: float) -> None:
    kind = batch.type
    if kind == "draft/multiline":
        combined = combine_multiline(batch)
        if combined is None:
            return
        if batch.parent is not None:
            batch.parent.messages.append(combined)
        else:
            s._dispatch(combined, now)
    elif kind == "chathistory":
        _chathistory(s, batch, now)
    elif batch.parent is not None:
        batch.parent.messages.extend(batch.messages)
    else:
        for m in batch.messages:
            s._dispatch(m.with_tags({k: v for k, v in m.tags.items() if k != "batch"}), now)


def _reference(s: Session, line: Line) -> str:
    types = s.isupport.get("MSGREFTYPES", "")
    if line.msgid and (not types or "msgid" in types.split(",")):
        return f"msgid={line.msgid}"
    return f"timestamp={format_time(line.time)}"


def _chathistory(s: Session, batch: Batch, now: float) -> None:
    """A page of history: merged into the buffer's lines, in time order, without repeats."""
    target = batch.params[0] if batch.params else ""
    key = s.key(target)
    sub = s._history.pending.pop(key, "LATEST")
    buf = s.buffer(target)
    if buf is None:
        kind = "channel" if s.is_channel(target) else "query"
        buf = s._add_buffer(target, kind)
    buf.history_pending = False
    lines = [
        pair[1]
        for pair in (s._message_line(m, utc(now), history=True) for m in batch.messages)
        if pair is not None
    ]
    known = {line.key() for line in buf.lines}
    fresh = [line for line in lines if line.key() not in known]
    if sub == "BEFORE" and len(batch.messages) < s.settings.history:
        buf.history_exhausted = True
    if fresh:
        buf.lines = sorted(buf.lines + fresh, key=lambda line: line.time)
        if len(buf.lines) > MAX_LINES and sub != "BEFORE":
            del buf.lines[: len(buf.lines) - MAX_LINES]
    s._emit(HistoryAdded(buf, len(fresh), older=sub == "BEFORE"))


def combine_multiline(batch: Batch) -> Message | None:
    """draft/multiline: the batch's PRIVMSGs (or NOTICEs) as one message joined with newlines
    (no newline before a line tagged draft/multiline-concat)."""
    parts: list[str] = []
    first: Message | None = None
    for m in batch.messages:
        if m.command not in ("PRIVMSG", "NOTICE") or len(m.params) < 2:
            continue
        if first is None:
            first = m
            parts.append(m.params[1])
        elif "draft/multiline-concat" in m.tags:
            parts[-1] += m.params[1]
        else:
            parts.append(m.params[1])
    if first is None:
        return None
    tags = {k: v for k, v in batch.tags.items() if k != "batch"}
    for key in ("time", "msgid"):
        if key not in tags and key in first.tags:
            tags[key] = first.tags[key]
    if batch.parent is not None:
        tags["batch"] = batch.parent.ref
    return Message(first.command, (first.params[0], "\n".join(parts)), first.source, tags)
