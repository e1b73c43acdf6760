"""The IRC codec: messages, tags, limits, casemapping and numerics. Standard library only."""

from salon.proto.message import Message, encode_tags, parse, parse_tags

__all__ = ["Message", "encode_tags", "parse", "parse_tags"]
