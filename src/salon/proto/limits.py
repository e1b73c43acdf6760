"""Protocol limits.

RFC 1459 2.3: "IRC messages are always lines of characters terminated with a CR-LF
(Carriage Return - Line Feed) pair, and these messages shall not exceed 512 characters in
length, counting all characters including the trailing CR-LF."

IRCv3 message-tags: "the tag data MUST NOT exceed 4094 bytes" for a client's tags, and the
whole tags section (server tags included) is at most 8191 bytes including the leading '@'
and trailing space.
"""

MAX_LINE = 512  # bytes, including CR LF
MAX_BODY = MAX_LINE - 2
MAX_CLIENT_TAGS = 4094  # bytes of tag data a client may send
MAX_TAGS = 8191  # bytes of the whole tag section, '@' and space included
MAX_INPUT = MAX_TAGS + MAX_LINE  # the longest line a client may legally send
