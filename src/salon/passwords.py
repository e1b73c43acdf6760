"""Password hashing (argon2id). Slow on purpose: callers run it off the event loop."""

from __future__ import annotations

import functools
import secrets

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

_hasher = PasswordHasher()


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def verify_password(hashed: str, password: str) -> bool:
    try:
        return _hasher.verify(hashed, password)
    except (VerificationError, InvalidHashError):
        return False


@functools.cache
def dummy_hash() -> str:
    """A hash of a random secret, verified against when a name is unknown so that the
    timing does not reveal which names exist. Made on first use (it costs ~50 ms)."""
    return hash_password(secrets.token_hex(16))


def verify_nothing(password: str) -> bool:
    """As slow as :func:`verify_password`, and always False."""
    verify_password(dummy_hash(), password)
    return False
