"""Passwords and bearer tokens with the standard library only: PBKDF2-HMAC-SHA256 and HMAC-SHA256.

Stored passwords read ``pbkdf2_sha256$<iterations>$<salt>$<digest>`` (base64url), so the iteration count can
be raised later without invalidating existing hashes. Tokens read ``<user_id>.<expiry>.<signature>``: the
signature is HMAC-SHA256 over ``<user_id>.<expiry>`` with the app's secret key, compared in constant time.
"""

from __future__ import annotations

import base64
import binascii
import functools
import hashlib
import hmac
import secrets
import time
from collections.abc import Callable

__all__ = ["hash_password", "issue_token", "verify_password", "verify_token", "waste_time"]

_SCHEME = "pbkdf2_sha256"
_SALT_BYTES = 16


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def hash_password(password: str, *, iterations: int) -> str:
    """A salted PBKDF2-HMAC-SHA256 hash of ``password``, with its parameters, for the ``users`` table."""
    salt = secrets.token_bytes(_SALT_BYTES)
    digest = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, iterations)
    return f"{_SCHEME}${iterations}${_b64(salt)}${_b64(digest)}"


def verify_password(password: str, stored: str) -> bool:
    """Whether ``password`` matches a :func:`hash_password` result; ``False`` for anything malformed."""
    try:
        scheme, iterations, salt, expected = stored.split("$")
        if scheme != _SCHEME:
            return False
        digest = hashlib.pbkdf2_hmac("sha256", password.encode(), _unb64(salt), int(iterations))
        return hmac.compare_digest(digest, _unb64(expected))
    except (ValueError, binascii.Error):
        return False


@functools.lru_cache(maxsize=8)
def _decoy(iterations: int) -> str:
    return hash_password(secrets.token_urlsafe(16), iterations=iterations)


def waste_time(password: str, *, iterations: int) -> None:
    """Verify against a decoy hash, so a login for an unknown email costs what one with a wrong password does.

    Without it, response times tell which emails have accounts.
    """
    verify_password(password, _decoy(iterations))


def _is_decimal(text: str) -> bool:
    return 0 < len(text) <= 20 and text.isascii() and text.isdigit()


def _sign(secret: str, message: str) -> str:
    return _b64(hmac.new(secret.encode(), message.encode(), hashlib.sha256).digest())


def issue_token(user_id: int, *, secret: str, ttl: int, clock: Callable[[], float] = time.time) -> str:
    """A bearer token for ``user_id`` that expires ``ttl`` seconds from now."""
    message = f"{user_id}.{int(clock()) + ttl}"
    return f"{message}.{_sign(secret, message)}"


def verify_token(token: str, *, secret: str, clock: Callable[[], float] = time.time) -> int | None:
    """The user id a token was issued for, or ``None`` if it is malformed, forged or expired."""
    user_id, dot, rest = token.partition(".")
    expiry, dot2, signature = rest.partition(".")
    if not (dot and dot2 and _is_decimal(user_id) and _is_decimal(expiry)):
        return None
    # Compare signatures before looking at the expiry: what a forger learns must not depend on the payload.
    if not hmac.compare_digest(signature.encode(), _sign(secret, f"{user_id}.{expiry}").encode()):
        return None
    if int(expiry) <= clock():
        return None
    return int(user_id)
