"""The command line's grammar: commands, options, their value checks, and usage errors reported as one line."""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable
from typing import Final, NoReturn

from .. import __version__
from ..config.settings import parse_name
from ..errors import ConfigError
from ..tags.core import check_tag
from .commands import flush, get, list_keys
from .ping import ping
from .session import Session
from .stats import stats
from .tags import tags

__all__ = ["EXIT_CODES", "Parser", "UsageError", "build_parser", "wants_json"]

EXIT_CODES: Final = """exit codes:
  0  done
  1  nothing found (get: no such key; keys: empty namespace), or flush not confirmed
  2  usage error
  3  configuration error (bad option, environment variable or config.json; no Redis configured)
  4  Redis unreachable, timed out, refused the login or a command"""


class UsageError(Exception):
    """A command line argparse rejects: reported as one line, like every other error."""


class Parser(argparse.ArgumentParser):
    """An ``ArgumentParser`` whose errors raise :class:`UsageError` instead of exiting."""

    def error(self, message: str) -> NoReturn:
        """Raise the rejection as a :class:`UsageError` that points at ``--help``."""
        raise UsageError(f"{message} (see {self.prog} --help)")


def wants_json(argv: list[str]) -> bool:
    """Whether ``--json`` is among arguments the parser rejected (so the error is a JSON document too)."""
    probe = Parser(add_help=False)
    probe.add_argument("--json", action="store_true")
    try:
        return bool(probe.parse_known_args(argv)[0].json)
    except UsageError:  # --json=x
        return False


def _name(text: str) -> str:
    try:
        return parse_name(text, "name")
    except ConfigError as exc:
        raise argparse.ArgumentTypeError(str(exc).removeprefix("name: ")) from None


def _key(text: str) -> str:
    try:
        text.encode()
    except UnicodeEncodeError:  # undecodable bytes in argv: stashly never stores such a key
        raise argparse.ArgumentTypeError("expected valid UTF-8") from None
    if not text:
        raise argparse.ArgumentTypeError("expected a non-empty key")
    return text


def _tag(text: str) -> str:
    try:
        return check_tag(text, "tag")
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc).removeprefix("tag: ")) from None


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"expected a number of seconds > 0, found {text!r}")
    return value


def _count(text: str) -> int:
    if not (text.isascii() and text.isdigit()):  # isdigit alone takes "²", which int() then refuses
        raise argparse.ArgumentTypeError(f"expected a whole number >= 0 (0: no limit), found {text!r}")
    return int(text)


def build_parser() -> argparse.ArgumentParser:
    """The ``stashly`` parser; each command's ``run`` default is the function that carries it out."""
    # The shared options are accepted before and after the command; SUPPRESS keeps a subcommand from resetting
    # what was given before it.
    common = Parser(add_help=False)
    group = common.add_argument_group("connection and output (default: STASHLY_* environment, then config.json)")
    hide = argparse.SUPPRESS
    group.add_argument("--url", default=hide, help="redis://[user:password@]host:port/db, rediss://... or unix://...")
    group.add_argument("--config", default=hide, metavar="PATH", help="config.json to read (default ./config.json)")
    group.add_argument("--prefix", default=hide, type=_name, help="key prefix (default stashly)")
    group.add_argument(
        "--timeout",
        default=hide,
        type=_seconds,
        metavar="SECONDS",
        help="connect and command timeout (default: 2, or more if configured)",
    )
    group.add_argument("--json", default=hide, action="store_true", help="print JSON for scripts")
    parser = Parser(
        prog="stashly",
        description="Inspect and manage a stashly cache in Redis.",
        epilog=EXIT_CODES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        parents=[common],
    )
    parser.add_argument("--version", action="version", version=f"stashly {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, run: Callable[[Session], int], help: str) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, parents=[common], help=help, description=help, epilog=EXIT_CODES)
        sub.formatter_class = argparse.RawDescriptionHelpFormatter
        sub.set_defaults(run=run)
        return sub

    command("ping", ping, "connectivity, server version, round-trip time, TLS and user")
    for_stats = command("stats", stats, "key counts, memory and TTLs per namespace (SCAN)")
    for_stats.add_argument("--namespace", type=_name, help="only this namespace")
    for_get = command("get", get, "one entry: decoded value, TTL, size, key digest check")
    for_get.add_argument(
        "key", metavar="KEY", type=_key, help="a full key (stashly:app:user:1) or one in the namespace (user:1)"
    )
    for_get.add_argument("--namespace", type=_name, help="namespace of a relative KEY (default: settings)")
    for_flush = command("flush", flush, "remove every entry of a namespace (asks first)")
    for_flush.add_argument("namespace", metavar="NAMESPACE", type=_name)
    for_flush.add_argument("-y", "--yes", action="store_true", help="do not ask for confirmation")
    for_keys = command("keys", list_keys, "list the keys of a namespace (SCAN)")
    for_keys.add_argument("namespace", metavar="NAMESPACE", type=_name)
    for_keys.add_argument("--limit", type=_count, default=100, help="at most this many keys (default 100; 0: all)")
    for_tags = command("tags", tags, "the current token of each tag (--invalidate: drop them, as invalidate_tags)")
    for_tags.add_argument("tag", metavar="TAG", nargs="+", type=_tag, help="a tag, e.g. user:5")
    for_tags.add_argument("--invalidate", action="store_true", help="invalidate the tags: their entries miss")
    return parser
