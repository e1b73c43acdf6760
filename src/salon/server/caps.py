"""IRCv3 capabilities that salon offers, as bits for cheap per-recipient variant keys."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

# Bits that change how a message is serialized for a recipient (its "variant").
MESSAGE_TAGS: Final = 1 << 0
SERVER_TIME: Final = 1 << 1
ACCOUNT_TAG: Final = 1 << 2
BATCH: Final = 1 << 3
# Bits that change which messages a recipient gets, or their shape.
ECHO_MESSAGE: Final = 1 << 8
MULTI_PREFIX: Final = 1 << 9
USERHOST_IN_NAMES: Final = 1 << 10
AWAY_NOTIFY: Final = 1 << 11
INVITE_NOTIFY: Final = 1 << 12
EXTENDED_JOIN: Final = 1 << 13
ACCOUNT_NOTIFY: Final = 1 << 14
CHGHOST: Final = 1 << 15
SETNAME: Final = 1 << 16
LABELED_RESPONSE: Final = 1 << 17
CAP_NOTIFY: Final = 1 << 18
EXTENDED_MONITOR: Final = 1 << 19
STANDARD_REPLIES: Final = 1 << 20
CHATHISTORY: Final = 1 << 21
EVENT_PLAYBACK: Final = 1 << 22
MULTILINE: Final = 1 << 23
CHANNEL_RENAME: Final = 1 << 24
READ_MARKER: Final = 1 << 25
MESSAGE_REDACTION: Final = 1 << 26
SEARCH: Final = 1 << 27
SASL: Final = 1 << 28
ACCOUNT_REGISTRATION: Final = 1 << 29
METADATA: Final = 1 << 30

# The part of a client's capability mask that selects its serialization variant.
VARIANT_MASK: Final = MESSAGE_TAGS | SERVER_TIME | ACCOUNT_TAG | BATCH
# A client with none of these gets no tags at all (allowed_tags).
TAGGED: Final = VARIANT_MASK | LABELED_RESPONSE

# name -> bit, in the order CAP LS lists them.
CAPABILITIES: Final[dict[str, int]] = {
    "account-notify": ACCOUNT_NOTIFY,
    "account-tag": ACCOUNT_TAG,
    "away-notify": AWAY_NOTIFY,
    "batch": BATCH,
    "cap-notify": CAP_NOTIFY,
    "chghost": CHGHOST,
    "echo-message": ECHO_MESSAGE,
    "extended-join": EXTENDED_JOIN,
    "draft/account-registration": ACCOUNT_REGISTRATION,
    "draft/chathistory": CHATHISTORY,
    "draft/channel-rename": CHANNEL_RENAME,
    "draft/event-playback": EVENT_PLAYBACK,
    "draft/extended-monitor": EXTENDED_MONITOR,
    "draft/message-redaction": MESSAGE_REDACTION,
    "draft/metadata-3": METADATA,
    "draft/multiline": MULTILINE,
    "draft/read-marker": READ_MARKER,
    "extended-monitor": EXTENDED_MONITOR,
    "invite-notify": INVITE_NOTIFY,
    "labeled-response": LABELED_RESPONSE,
    "message-tags": MESSAGE_TAGS,
    "multi-prefix": MULTI_PREFIX,
    "sasl": SASL,
    "server-time": SERVER_TIME,
    "setname": SETNAME,
    "standard-replies": STANDARD_REPLIES,
    "userhost-in-names": USERHOST_IN_NAMES,
    "soju.im/search": SEARCH,
}


def allowed_tags(tags: Mapping[str, str] | None, mask: int) -> dict[str, str] | None:
    """The tags a recipient with capability ``mask`` may see.

    message-tags: "Servers MUST NOT send messages with tags to clients that haven't
    enabled the message-tags capability" — except the tags that their own capabilities
    define (server-time's ``time``, batch's ``batch``, account-tag's ``account``).
    """
    if not tags:
        return None
    if "label" in tags and not mask & LABELED_RESPONSE:
        tags = {k: v for k, v in tags.items() if k != "label"}
    if mask & MESSAGE_TAGS:
        out = dict(tags)
        if not mask & SERVER_TIME:
            out.pop("time", None)
        if not mask & ACCOUNT_TAG:
            out.pop("account", None)
        if not mask & BATCH:
            out.pop("batch", None)
        return out or None
    out = {}
    if mask & SERVER_TIME and "time" in tags:
        out["time"] = tags["time"]
    if mask & ACCOUNT_TAG and "account" in tags:
        out["account"] = tags["account"]
    if mask & BATCH and "batch" in tags:
        out["batch"] = tags["batch"]
    # draft/multiline defines its concat tag: its clients see it without message-tags.
    if mask & MULTILINE and "draft/multiline-concat" in tags:
        out["draft/multiline-concat"] = tags["draft/multiline-concat"]
    # labeled-response works without message-tags: the label tag is its own.
    if "label" in tags:
        out["label"] = tags["label"]
    return out or None
