"""Generate the sync twin of each async source module, as httpcore does: the async code is the only copy.

    python scripts/unasync.py           # (re)write every generated file
    python scripts/unasync.py --check   # exit 1, naming the files, if a generated file is not what its source gives

The rewrite is textual, word by word (identifiers, docstrings and comments alike): ``async def`` becomes ``def``,
``await x`` becomes ``x``, and the names in ``NAMES`` become their sync spelling (``AsyncBackend`` ->
``Backend``, ``aread`` -> ``read``), as do the modules of ``FILES`` (``from .proxy_async import`` -> ``from
.proxy_sync import``). ``Awaitable[T]`` becomes ``T``. A source line ending in ``# unasync: TEXT`` becomes
``TEXT`` (indentation kept), and ``# unasync: drop`` removes the line: the escape hatch for the few places where
the two modes differ (``asyncio.sleep`` vs ``time.sleep`` imports).

``make lint`` runs ``--check``, so a generated file never drifts from its source.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent / "src" / "stashly"

FILES: dict[str, str] = {
    # async source (the one to edit)      -> generated sync twin
    "backends/proxy_async.py": "backends/proxy_sync.py",
    "backends/layers/breaker_async.py": "backends/layers/breaker_sync.py",
    "backends/layers/tiered_async.py": "backends/layers/tiered_sync.py",
    "backends/redis/single_async.py": "backends/redis/single_sync.py",
    "engine/engine_async.py": "engine/engine_sync.py",
    "engine/replay_async.py": "engine/replay_sync.py",
    "decorator/flow_async.py": "decorator/flow_sync.py",
    "integrations/fastapi/endpoint_async.py": "integrations/fastapi/endpoint_sync.py",
}

NAMES: dict[str, str] = {
    "AsyncBackend": "Backend",
    "AsyncProxyBackend": "ProxyBackend",
    "AsyncGuardedBackend": "GuardedBackend",
    "AsyncTieredBackend": "TieredBackend",
    "AsyncEngine": "Engine",
    "AsyncSingleFlight": "SingleFlight",
    "AsyncFlow": "Flow",
    "AsyncIterator": "Iterator",
    "AsyncGenerator": "Generator",
    "__aenter__": "__enter__",
    "__aexit__": "__exit__",
    "aclose": "close",
    "aget": "get",
    "aget_many": "get_many",
    "aread": "read",
    "aload": "load",
    "alookup": "lookup",
    "afill": "fill",
    "aacquire": "acquire",
    "arelease": "release",
    "adelete": "delete",
    "adelete_namespace": "delete_namespace",
    "aretire_namespace": "retire_namespace",
    "acount_namespace": "count_namespace",
    "astore": "store",
    "aset": "set",
    "afill_under_lock": "fill_under_lock",
    "arun": "run",
    "acomputation": "computation",
    "astart": "start",
    "asleep": "sleep",
    "_async": "_sync",
    "aengine": "engine",
    "AsyncRedisBackend": "RedisBackend",
    "AsyncScript": "Script",
    "LoopConnections": "ThreadConnections",
    "PerLoop": "Lazy",
    "_loops": "_client",
    "abatches_of": "batches_of",
    "async_pool": "pool",
}

# Each source module's name becomes its twin's where another source imports it (``_async`` in NAMES cannot do
# that: there is no word boundary inside ``proxy_async``).
MODULES: dict[str, str] = {Path(source).stem: Path(target).stem for source, target in FILES.items()}

_PRAGMA = re.compile(r"^(?P<indent>\s*)(?P<code>.*?)\s*# unasync: (?P<text>.*)$")
_RENAMES = {**NAMES, **MODULES}
_WORD = re.compile(r"\b(" + "|".join(sorted(map(re.escape, _RENAMES), key=len, reverse=True)) + r")\b")
_SYNTAX = [
    (re.compile(r"\basync (def|with|for)\b"), r"\1"),
    (re.compile(r"\bawait "), ""),
    (re.compile(r"\bAwaitable\[\]"), "None"),
]


def _strip_awaitable(text: str) -> str:
    """``Awaitable[T]`` -> ``T``, brackets matched (``Awaitable[tuple[int, str]]`` -> ``tuple[int, str]``)."""
    out, i = [], 0
    while (start := text.find("Awaitable[", i)) != -1:
        if start and (text[start - 1].isalnum() or text[start - 1] == "_"):
            out.append(text[i : start + 1])
            i = start + 1
            continue
        depth, j = 1, start + len("Awaitable[")
        while depth:
            depth += {"[": 1, "]": -1}.get(text[j], 0)
            j += 1
        out.append(text[i:start])
        out.append(_strip_awaitable(text[start + len("Awaitable[") : j - 1]))
        i = j
    out.append(text[i:])
    return "".join(out)


def unasync(source: str, origin: str) -> str:
    """The sync module for an async ``source`` (``origin`` is named in the generated file's first line)."""
    lines = []
    for line in source.splitlines():
        pragma = _PRAGMA.match(line)
        if pragma:
            if pragma["text"].strip() == "drop":
                continue
            line = pragma["indent"] + pragma["text"].strip()
        for pattern, replacement in _SYNTAX:
            line = pattern.sub(replacement, line)
        # Module names are renamed in imports only: a docstring naming its own source file keeps the name.
        renames = _RENAMES if line.lstrip().startswith(("from ", "import ")) else NAMES
        line = _WORD.sub(lambda m, renames=renames: renames.get(m.group(1), m.group(1)), line)
        lines.append(line)
    text = _strip_awaitable("\n".join(lines) + "\n")
    # two lines: one would pass ruff's line length only for short paths
    header = f"# Generated from {origin} by scripts/unasync.py.\n# Edit the source, then run `make unasync`.\n"
    return _formatted(header + text, origin)


def _formatted(text: str, origin: str) -> str:
    """``text`` as ruff leaves it: imports the sync twin no longer needs (``Awaitable``) removed, sorted, and
    formatted (dropping ``await`` shortens lines it would join), so generated files pass ``make lint`` too."""
    ruff = Path(sys.executable).with_name("ruff")
    command = str(ruff) if ruff.exists() else shutil.which("ruff")
    if command is None:
        raise SystemExit("unasync: ruff not found (make lint installs it in .venv)")
    name = str(ROOT / origin.replace("_async", "_sync"))
    for step in (["check", "--fix", "--select", "F401,I", "--exit-zero", "--quiet"], ["format"]):
        done = subprocess.run(
            [command, *step, "--stdin-filename", name, "-"], input=text, capture_output=True, text=True, check=False
        )
        if done.returncode != 0:
            raise SystemExit(f"unasync: ruff {step[0]} failed on the twin of {origin}: {done.stderr}")
        text = done.stdout
    return text


def main(argv: list[str]) -> int:
    check = "--check" in argv
    stale = []
    for source, target in FILES.items():
        source_path, target_path = ROOT / source, ROOT / target
        if not source_path.exists():
            continue
        wanted = unasync(source_path.read_text(), source)
        if check:
            if not target_path.exists() or target_path.read_text() != wanted:
                stale.append(target)
        elif not target_path.exists() or target_path.read_text() != wanted:
            target_path.write_text(wanted)
            print(f"wrote src/stashly/{target}")
    if stale:
        print("generated files out of date (run `make unasync`):", *stale, sep="\n  ", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
