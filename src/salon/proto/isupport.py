"""RPL_ISUPPORT values, and the token salon adds.

modern.ircdocs.horse, RPL_ISUPPORT: "If the value of a parameter contains a space, a
backslash or an equals sign, it MUST be escaped as \\x20, \\x5C and \\x3D"; clients unescape
any "\\xHH" in a value.
"""

import re

# The channel every front door of the server proposes (server.default_channel): the
# plain-text port puts its users there, the web login offers it, and salon chat joins it
# when no channel was named. No IRCv3 or ISUPPORT token says this, so it is a vendor token:
# IRCv3 names vendor extensions "<vendor>/<name>" (as draft/ICON, soju.im/FILEHOST), and
# other clients ignore a token they do not know.
DEFAULT_CHANNEL = "salon.chat/DEFAULTCHANNEL"

_ESCAPED = re.compile(r"\\x([0-9A-Fa-f]{2})")


def escape_value(value: str) -> str:
    return value.replace("\\", "\\x5C").replace(" ", "\\x20").replace("=", "\\x3D")


def unescape_value(value: str) -> str:
    return _ESCAPED.sub(lambda m: chr(int(m.group(1), 16)), value)
