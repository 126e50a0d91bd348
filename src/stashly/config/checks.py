"""Typed value checks shared by the settings and the URL parsers: a value in, the checked value out, or a
:class:`~stashly.errors.ConfigError` naming where the value came from (``source``) and what was expected."""

from __future__ import annotations

import functools
import ipaddress
import math
import os
import ssl
from collections.abc import Callable
from datetime import timedelta
from typing import Final

from stashly.errors import ConfigError

NAME_MAX: Final = 200
"""The longest namespace, prefix or Sentinel service name."""
MAX_SECONDS: Final = 1e9
"""The longest duration a setting may name (about 31 years): beyond about 9.2e9 s, sockets, locks and Redis's
expiry arithmetic overflow, which would fail the first request instead of the configuration."""
MAX_CONNECTIONS: Final = 10_000
"""Redis's default ``maxclients``; redis-py's blocking pool fills a queue of this size when it is first used."""


def show(value: object) -> str:
    text = repr(value)
    return f"{text if len(text) <= 80 else text[:77] + '...'} ({type(value).__name__})"


def error(source: str, expected: str, value: object) -> ConfigError:
    return ConfigError(f"{source}: expected {expected}, found {show(value)}")


def positive_float(value: object, source: str) -> float:
    if isinstance(value, timedelta):
        value = value.total_seconds()
    if isinstance(value, int | float) and not isinstance(value, bool):
        try:
            number = float(value)
        except OverflowError:
            number = math.inf
        if 0 < number <= MAX_SECONDS:  # also refuses NaN and infinities
            return number
    raise error(source, f"a number of seconds > 0 and at most {MAX_SECONDS:.0e}", value)


def integer(value: object, source: str, *, low: int, high: float = math.inf) -> int:
    if isinstance(value, int) and not isinstance(value, bool) and low <= value <= high:
        return value
    bounds = f">= {low}" if high == math.inf else f"in {low}..{high}"
    raise error(source, f"an integer {bounds}", value)


IntegerCheck = Callable[[object, str], int]
positive_int: IntegerCheck = functools.partial(integer, low=1)
connections: IntegerCheck = functools.partial(integer, low=1, high=MAX_CONNECTIONS)
protocol: IntegerCheck = functools.partial(integer, low=2, high=3)
port: IntegerCheck = functools.partial(integer, low=1, high=65535)
db: IntegerCheck = functools.partial(integer, low=0)


def fraction(value: object, source: str) -> float:
    if isinstance(value, int | float) and not isinstance(value, bool) and 0 <= value < 1:
        return float(value)
    raise error(source, "a fraction in [0, 1)", value)


def boolean(value: object, source: str) -> bool:
    if isinstance(value, bool):
        return value
    raise error(source, "true or false", value)


def credential(value: object, source: str) -> str | None:
    # Never echo the value: this parser also reads passwords.
    if not isinstance(value, str):
        raise ConfigError(f"{source}: expected a string, found a value of type {type(value).__name__}")
    if not _encodable(value):
        raise ConfigError(f"{source}: expected valid Unicode, found a lone surrogate (bytes that are not UTF-8?)")
    return value or None


def _encodable(text: str) -> bool:
    # JSON's "\ud800" and environment bytes that are not UTF-8 both arrive as lone surrogates.
    try:
        text.encode()
    except UnicodeEncodeError:
        return False
    return True


def existing_file(value: object, source: str) -> str:
    if isinstance(value, str) and value and os.path.isfile(value):
        return os.path.abspath(value)
    raise error(source, "the path of an existing file", value)


def ca_file(value: object, source: str) -> str:
    """An existing file OpenSSL loads as CA certificates (a wrong file would otherwise fail every connection)."""
    path = existing_file(value, source)
    try:
        ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT).load_verify_locations(cafile=path)
    except (ssl.SSLError, OSError) as exc:
        raise ConfigError(f"{source}: expected PEM CA certificates, found a file OpenSSL cannot load: {exc}") from None
    return path


class _Encrypted(Exception):
    pass


def _refuse_passphrase() -> str:
    raise _Encrypted


def client_certificate(certfile: str | None, keyfile: str | None, sources: tuple[str, str]) -> None:
    """The client certificate and its key load together, and without a passphrase: redis-py has no way to be given
    one here, and OpenSSL would prompt for it on the terminal at the first connection."""
    if certfile is None:
        if keyfile is not None:
            raise ConfigError(f"{sources[1]}: expected ssl_certfile beside it, found a key without its certificate")
        return
    try:
        ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT).load_cert_chain(certfile, keyfile, password=_refuse_passphrase)
    except _Encrypted:
        raise ConfigError(
            f"{sources[1]}: expected an unencrypted private key, found one that needs a passphrase"
        ) from None
    except (ssl.SSLError, OSError) as exc:
        found = "the key in ssl_keyfile" if keyfile else "a private key inside it (or set ssl_keyfile)"
        raise ConfigError(
            f"{sources[0]}: expected a PEM client certificate and {found}, that OpenSSL loads together: {exc}"
        ) from None


MIN_SECRET: Final = 32


def serializer(value: object, source: str) -> str:
    if value in ("json", "pickle"):
        return str(value)
    raise error(source, "'json' or 'pickle'", value)


def secrets(value: object, source: str) -> tuple[str, ...]:
    """A list of HMAC secrets; a string is refused (the environment's comma-separated text is split before)."""
    # Never echo the value: these are signing keys.
    if not isinstance(value, list | tuple):
        found = f"a value of type {type(value).__name__}"
    elif not value:
        found = "an empty list"
    else:
        found = next(filter(None, (_secret_problem(index, item) for index, item in enumerate(value))), "")
        if not found:
            return tuple(value)
    raise ConfigError(
        f"{source}: expected a list of secrets of at least {MIN_SECRET} bytes each (comma-separated in the "
        f"environment), the first signing and all verifying; found {found}"
    )


def _secret_problem(index: int, item: object) -> str | None:
    if not isinstance(item, str):
        return f"item {index} of type {type(item).__name__}"
    if not _encodable(item):
        return f"item {index} with a lone surrogate"
    size = len(item.encode())
    return None if size >= MIN_SECRET else f"item {index} of {size} bytes"


def host(value: object, source: str) -> str:
    if isinstance(value, str) and value:
        inner = value[1:-1] if value.startswith("[") and value.endswith("]") else value
        if ":" in inner:
            try:
                ipaddress.IPv6Address(inner)
            except ValueError:
                pass
            else:
                return f"[{inner.replace('%', '%25')}]"
        elif not any(char in "/?#@[]%" or char.isspace() or not char.isprintable() for char in value):
            return value
    raise error(source, "a host name or IP address", value)


def digits_to_int(text: str) -> object:
    # Anything but plain digits stays a string, which the int parsers then reject by name.
    return int(text) if text.isascii() and text.isdigit() else text
