"""The ``stashly`` command line: ``ping``, ``stats``, ``get``, ``flush`` and ``keys`` against the configured Redis.

Settings resolve as for a :class:`~stashly.CacheManager` (options > ``STASHLY_*`` > ``config.json`` > defaults);
the Redis client is built by the library's own policy (TLS, ACL user, timeouts). On Redis Cluster the commands
cover every primary (``get`` reads on the node owning the key); behind Sentinel they talk to the primary the
sentinels name, and say which node answered (:mod:`~stashly.cli.session`). Expected failures print one line,
``stashly: error: ...``, and exit with a code of their own: 1 nothing found (or not confirmed), 2 usage, 3
configuration, 4 Redis unreachable, refused or failing; with ``--json`` a JSON document with an ``error`` field is
printed too. Nothing it prints contains a password or a secret, and nothing a terminal would act on: control and
bidi characters from Redis or the command line are shown as escapes (:func:`~stashly.cli.output.safe`,
:func:`~stashly.cli.output.dumps`).

:mod:`~stashly.cli.parser` holds the grammar, :mod:`~stashly.cli.commands`, :mod:`~stashly.cli.ping` and
:mod:`~stashly.cli.stats` the commands, :mod:`~stashly.cli.output` what is printed; stored bytes are read
through :mod:`stashly.storage.inspect`.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

from redis.exceptions import AuthenticationError, NoPermissionError, RedisClusterException, RedisError, ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from ..errors import CacheUnavailableError, ConfigError
from .exits import CONFIG, NOTHING, OK, UNAVAILABLE, USAGE, Failure
from .output import dumps, mask, safe, say, silence_stdout
from .parser import UsageError, build_parser, wants_json
from .session import Session, settings_for

__all__ = ["main"]


def main(argv: list[str] | None = None) -> int:
    """Run the command line with ``argv`` (default: ``sys.argv[1:]``); the exit code."""
    argv = sys.argv[1:] if argv is None else argv
    try:
        args = build_parser().parse_args(argv)
    except UsageError as exc:
        return _error(USAGE, str(exc), None, wants_json(argv))
    except SystemExit as exc:  # argparse: --help, --version
        return exc.code if isinstance(exc.code, int) else USAGE if exc.code else OK
    as_json: bool = getattr(args, "json", False)
    session: Session | None = None
    try:
        settings = settings_for(args)
        session = Session(settings, args)
        run: Callable[[Session], int] = args.run
        return run(session)
    except Failure as exc:
        return _error(exc.code, str(exc), session, as_json, exc.document)
    except ConfigError as exc:
        return _error(CONFIG, str(exc), session, as_json)
    except BrokenPipeError:  # the reader went away (| head): stop quietly
        silence_stdout()
        return NOTHING
    except (CacheUnavailableError, RedisError, RedisClusterException, OSError) as exc:  # the last: no node answers
        return _error(UNAVAILABLE, _unavailable(exc, session), session, as_json)
    except KeyboardInterrupt:
        return _error(130, "interrupted", session, as_json)
    finally:
        if session is not None:
            session.close()


def _unavailable(exc: BaseException, session: Session | None) -> str:
    cause = exc.__cause__ if isinstance(exc, CacheUnavailableError) and exc.__cause__ else exc
    where = session.where if session else "Redis"
    user = (session.settings.username if session else None) or "default"
    detail = f"{type(cause).__name__}: {cause}"
    if isinstance(cause, AuthenticationError) or "NOAUTH" in str(cause) or "WRONGPASS" in str(cause):
        return f"authentication failed at {where} as user {user!r}: {cause}"
    if isinstance(cause, NoPermissionError):
        return f"permission denied at {where} for user {user!r}: {cause}"
    if isinstance(cause, RedisTimeoutError | TimeoutError):
        timeout = session.settings.socket_timeout if session else "?"
        return f"timed out talking to {where} (timeout {timeout} s; --timeout to wait longer): {detail}"
    if isinstance(cause, ResponseError):
        return f"{where} refused a command: {detail}"
    return f"cannot reach {where}: {detail}"


def _error(
    code: int, message: str, session: Session | None, as_json: bool, document: dict[str, Any] | None = None
) -> int:
    """Report a failure: one line on stderr; with ``--json`` also ``document`` with the line as its ``error``."""
    if session is not None:  # a second lock: no message may carry a credential, whatever produced it
        for secret in (session.settings.password, *session.settings.secrets):
            message = message.replace(secret, "***") if secret else message
    message = safe(mask(message))
    say(f"error: {message}")
    if as_json:
        try:
            sys.stdout.write(dumps((document or {}) | {"error": message}) + "\n")
            sys.stdout.flush()
        except BrokenPipeError:
            silence_stdout()
    return code
