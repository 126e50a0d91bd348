"""The opt-in pickle serializer: every payload signed with HMAC-SHA256, verified before anything is unpickled.

Unpickling runs code, so a pickled entry is only ever loaded after its signature checks out against one of
the configured secrets. The signature covers the format version, the full key and the payload, so an entry
copied to another key fails too. The algorithm is fixed here, never read from the payload. Entry layout::

    b"stashly-pickle:1:" + hex(HMAC-SHA256(secret, b"1\\n" + key + b"\\n" + pickled)) + b":" + pickled

Key rotation: ``secrets=[new, old]`` signs with ``new`` and accepts both.
"""

from __future__ import annotations

import hashlib
import hmac
import pickle
from collections.abc import Sequence

from ..errors import SerializationError
from ..sentinels import MISSING, Missing

__all__ = ["SignedPickle", "pickle_format"]

_VERSION = b"1"
_KIND = b"stashly-pickle:"
_MAGIC = _KIND + _VERSION + b":"
_SIGNATURE = 64  # hex characters of a SHA-256 HMAC


def pickle_format(raw: bytes) -> bytes | None:
    """The format version stored bytes declare as a signed pickle (``b"1"``), or ``None`` when they are not one.

    Nothing is verified or unpickled: this tells what the bytes claim to be, for inspection.
    """
    return raw[len(_KIND) :].partition(b":")[0] if raw.startswith(_KIND) else None


class SignedPickle:
    """Encode with the first secret, accept any; bad or missing signatures read as :data:`MISSING`."""

    def __init__(self, secrets: Sequence[str]) -> None:
        if not secrets:
            raise ValueError("SignedPickle needs at least one secret")
        self._keys = [secret.encode() for secret in secrets]

    def __repr__(self) -> str:
        return f"SignedPickle(<{len(self._keys)} secrets>)"

    @staticmethod
    def _sign(secret: bytes, key: str, pickled: bytes) -> bytes:
        message = _VERSION + b"\n" + key.encode("utf-8", "surrogatepass") + b"\n" + pickled
        return hmac.new(secret, message, hashlib.sha256).hexdigest().encode()

    def encode(self, value: object, key: str) -> bytes:
        try:
            pickled = pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)
        except Exception as exc:
            kind = type(value)
            raise SerializationError(
                f"cannot pickle a value of type {kind.__module__}.{kind.__qualname__} for key {key!r}: "
                f"{type(exc).__name__}"
            ) from None
        return _MAGIC + self._sign(self._keys[0], key, pickled) + b":" + pickled

    def decode(self, raw: bytes, key: str) -> object | Missing:
        if not raw.startswith(_MAGIC) or raw[len(_MAGIC) + _SIGNATURE : len(_MAGIC) + _SIGNATURE + 1] != b":":
            return MISSING
        signature = raw[len(_MAGIC) : len(_MAGIC) + _SIGNATURE]
        pickled = raw[len(_MAGIC) + _SIGNATURE + 1 :]
        if not any(hmac.compare_digest(signature, self._sign(secret, key, pickled)) for secret in self._keys):
            return MISSING
        value: object = pickle.loads(pickled)  # only after the signature matched
        return value
