"""Is this process one of several? The memory backend keeps entries per process, which several workers of one
server turn into stale reads: an update invalidates the entry in the worker that served it, and the others keep
serving their copies until they expire. This module says so, once per process.

What can be seen from inside a worker:

- a uvicorn worker is a ``multiprocessing`` child of the supervisor with ``uvicorn`` imported; a gunicorn worker (or
  its master, with ``--preload``) has ``gunicorn`` imported and ``SERVER_SOFTWARE=gunicorn/...`` in its environment;
- both copy the master's command line into ``sys.argv`` (fork keeps it; multiprocessing's spawn restores it), so
  ``--workers N`` / ``-w N`` is visible, and both servers take ``WEB_CONCURRENCY`` as the default count;
- on Linux, ``/proc`` shows the worker's siblings: a count set in ``gunicorn.conf.py`` or ``uvicorn.run(workers=N)``;
- a store made before ``os.fork()`` and used after it (gunicorn ``--preload``, a fork-started process pool) is
  reported by the memory backend itself, which calls :func:`warn_forked`.
"""

from __future__ import annotations

import multiprocessing
import os
import re
import sys
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path

from .errors import MemoryBackendWarning

__all__ = ["several_workers", "warn_forked", "warn_if_several_workers"]

_warned_in: int | None = None  # the pid that warned: a forked child has not


def warn_if_several_workers() -> None:
    """Warn (once per process) when this process looks like one of several workers of a uvicorn or gunicorn server."""
    if _warned_in != os.getpid():
        reason = several_workers()
        if reason is not None:
            _warn(reason)


def warn_forked(creator: int) -> None:
    """Warn (once per process) that a memory store made in process ``creator`` is now used by a forked child."""
    if _warned_in != os.getpid():
        _warn(f"this process was forked from process {creator} after it made this cache")


def _warn(reason: str) -> None:
    global _warned_in
    _warned_in = os.getpid()
    warnings.warn(
        f"stashly: memory:// keeps a separate cache in each process, and {reason}. A write or an invalidation in one "
        "process is not seen by the others, which keep serving stale entries until they expire. Use Redis "
        "(STASHLY_URL=redis://...) to share one cache between processes.",
        MemoryBackendWarning,
        stacklevel=3,
    )


def several_workers(
    environ: Mapping[str, str] = os.environ, argv: Sequence[str] | None = None, proc: Path = Path("/proc")
) -> str | None:
    """Why this process is one of several server workers, as in ``"this process is one of 2 uvicorn workers
    (--workers 2)"``; ``None`` when it is not, or cannot tell."""
    server = _server(environ)
    if server is None:
        return None
    argv = sys.argv if argv is None else argv
    declared = _declared_workers(server, argv, environ)
    siblings = _siblings(proc)
    if declared is not None and declared[0] >= max(siblings, 2):
        return f"this process is one of {declared[0]} {server} workers ({declared[1]})"
    if siblings >= 2:
        return f"this process is one of {siblings} {server} worker processes"
    return None


def _server(environ: Mapping[str, str]) -> str | None:
    if "gunicorn" in sys.modules and environ.get("SERVER_SOFTWARE", "").startswith("gunicorn"):
        return "gunicorn"
    if "uvicorn" in sys.modules and multiprocessing.parent_process() is not None:
        return "uvicorn"
    return None


def _declared_workers(server: str, argv: Sequence[str], environ: Mapping[str, str]) -> tuple[int, str] | None:
    """The worker count the command line or ``WEB_CONCURRENCY`` asks for, and how it was asked."""
    if server == "uvicorn" and "--reload" in argv:
        return None  # the reloader runs one worker, whatever the count says
    flags = ("--workers", "-w") if server == "gunicorn" else ("--workers",)
    found = None
    for index, word in enumerate(argv):
        flag, equals, value = word.partition("=")
        if flag in flags:
            value = value if equals else (argv[index + 1] if index + 1 < len(argv) else "")
            found = value, f"{flag} {value}"
        elif server == "gunicorn" and word.startswith("-w") and word[2:].isdigit():
            found = word[2:], word
    if found is None and environ.get("WEB_CONCURRENCY"):
        found = environ["WEB_CONCURRENCY"], f"WEB_CONCURRENCY={environ['WEB_CONCURRENCY']}"
    return (int(found[0]), found[1]) if found is not None and found[0].isdigit() else None


def _siblings(proc: Path) -> int:
    """How many children of this process's parent run the same program as it does (itself included); 0 when
    ``/proc`` cannot say. Numbers are ignored: multiprocessing gives each child its own pipe handle."""
    mine = _program(proc / "self")
    if mine is None:
        return 0
    try:
        parent = os.getppid()
        count = 0
        for entry in os.scandir(proc):
            if entry.name.isdigit() and _parent_of(Path(entry.path)) == parent and _program(Path(entry.path)) == mine:
                count += 1
        return count
    except OSError:
        return 0


def _parent_of(process: Path) -> int | None:
    try:
        stat = (process / "stat").read_bytes()
    except OSError:
        return None  # it exited meanwhile, or is not ours to read
    # pid (comm) state ppid ...: comm may hold spaces and parentheses, so split after its last ')'
    fields = stat[stat.rfind(b")") + 2 :].split()
    return int(fields[1]) if len(fields) > 1 and fields[1].isdigit() else None


def _program(process: Path) -> bytes | None:
    try:
        return re.sub(rb"\d+", b"#", (process / "cmdline").read_bytes())
    except OSError:
        return None
