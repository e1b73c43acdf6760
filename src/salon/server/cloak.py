"""IP cloaking: the host users see is a keyed hash of the address, never the address.

``cloak_host(key, "203.0.113.7", "salon")`` gives ``3f1a09c2.be41d077.salon``: the first
label hashes the address (IPv6: its /64, what one customer usually gets), the second the
wider network (IPv4 /24, IPv6 /48), so that a channel ban on ``*!*@*.be41d077.salon``
covers the neighbourhood of an address without revealing it. The key (HMAC-SHA256) is
a secret the shell keeps in the data directory; without it the cloaks cannot be reversed
by hashing every IPv4 address. Changing the key changes every cloak.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import ipaddress

_TAG = b"salon-cloak-v1\0"


def _label(key: bytes, data: bytes) -> str:
    return hmac.new(key, _TAG + data, hashlib.sha256).hexdigest()[:8]


@functools.lru_cache(maxsize=4096)
def cloak_host(key: bytes, ip: str, suffix: str) -> str:
    """The cloaked host of ``ip``: two 8-hex-digit labels and ``suffix``."""
    try:
        addr = ipaddress.ip_address(ip)
    except ValueError:
        word = ip.encode("utf-8", "replace")
        return f"{_label(key, b'?' + word)}.{_label(key, b'?net' + word)}.{suffix}"
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        addr = addr.ipv4_mapped
    # Each label hashes a network: its address bytes and its prefix length.
    if isinstance(addr, ipaddress.IPv4Address):
        size, own, wide = 4, 32, 24
    else:
        size, own, wide = 16, 64, 48
    bits = size * 8
    value = int(addr)

    def network(prefix: int) -> bytes:
        return (value >> (bits - prefix) << (bits - prefix)).to_bytes(size, "big") + bytes([prefix])

    return f"{_label(key, network(own))}.{_label(key, network(wide))}.{suffix}"
