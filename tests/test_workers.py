"""memory:// under several processes: one MemoryBackendWarning per process, from a real fork, a real
``uvicorn --workers 2``, and real sibling processes shaped like gunicorn's workers.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.request
import warnings
from collections.abc import Callable
from pathlib import Path

import pytest

from stashly import CacheManager, MemoryBackendWarning
from stashly.workers import _declared_workers, _siblings

from tests.harness.process import free_port

LINUX_PROC = pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs Linux /proc")
SRC = str(Path(__file__).resolve().parents[1] / "src")


def in_forked_child(body: Callable[[], int]) -> int:
    """Run ``body`` in a real forked child, its warnings recorded rather than raised; its exit code back."""
    pid = os.fork()
    if pid == 0:
        code = 99
        try:
            signal.alarm(30)  # a deadlocked child must not hang the run
            with warnings.catch_warnings():
                warnings.simplefilter("always")
                code = body()
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status)


def memory_warnings(caught: list[warnings.WarningMessage]) -> list[str]:
    return [str(item.message) for item in caught if issubclass(item.category, MemoryBackendWarning)]


# --- a forked child


def test_a_forked_child_using_the_parents_memory_cache_is_warned_once() -> None:
    manager = CacheManager(url="memory://", namespace="fork")
    manager.set("k", "parent")
    parent = os.getpid()

    def child() -> int:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            assert manager.get("k") == "parent"  # the copy of the parent's entries
            manager.set("k", "child")
            manager.get("k")
        found = memory_warnings(caught)
        if len(found) != 1:
            return 1
        return 0 if f"forked from process {parent} after it made this cache" in found[0] else 2

    assert in_forked_child(child) == 0
    assert manager.get("k") == "parent"  # what the warning is about: the child's write never reached the parent


def test_a_memory_cache_made_in_the_child_is_not_a_fork_warning() -> None:
    CacheManager(url="memory://").set("k", 1)  # a parent store that the child never touches

    def child() -> int:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            own = CacheManager(url="memory://")
            own.set("k", 1)
            own.get("k")
        return len(memory_warnings(caught))

    assert in_forked_child(child) == 0


def test_a_process_pool_started_by_fork_warns_in_the_worker() -> None:
    manager = CacheManager(url="memory://", namespace="pool")
    results = multiprocessing.get_context("fork").SimpleQueue()

    def work() -> None:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            manager.set("k", 1)
        results.put(memory_warnings(caught))

    process = multiprocessing.get_context("fork").Process(target=work)
    process.start()
    process.join(30)
    assert process.exitcode == 0
    found = results.get()
    assert len(found) == 1
    assert "forked from process" in found[0]


def test_a_lock_held_at_the_fork_does_not_deadlock_the_child() -> None:
    manager = CacheManager(url="memory://", namespace="lock")
    store = manager._backend
    held, release = threading.Event(), threading.Event()

    def holder() -> None:
        with store._lock:  # type: ignore[attr-defined]
            held.set()
            release.wait(30)

    thread = threading.Thread(target=holder)
    thread.start()
    held.wait(30)
    try:
        # The child has the held lock but not the thread that would release it.
        assert in_forked_child(lambda: 0 if manager.get("k", "default") == "default" else 1) == 0
    finally:
        release.set()
        thread.join(30)


# --- uvicorn --workers 2, for real

APP = """
import os
from stashly import CacheManager

manager = CacheManager(url="memory://")


async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    manager.get("k")
    body = str(os.getpid()).encode()
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"%d" % len(body))]})
    await send({"type": "http.response.body", "body": body})
"""


def serve(tmp_path: Path, *arguments: str, wait_for: int) -> tuple[str, set[bytes]]:
    """Run uvicorn on the app above on a free loopback port until ``wait_for`` processes answer (or 60 s): what it
    wrote to stderr, and the pids that answered."""
    (tmp_path / "app.py").write_text(APP, encoding="utf-8")
    port = free_port()
    env = {key: value for key, value in os.environ.items() if not key.startswith(("STASHLY_", "WEB_CONCURRENCY"))}
    env |= {"PYTHONPATH": SRC, "PYTHONUNBUFFERED": "1"}
    env.pop("PYTHONWARNINGS", None)
    command = [sys.executable, "-m", "uvicorn", "app:app", "--host", "127.0.0.1", "--port", str(port), *arguments]
    stderr = tmp_path / "stderr.txt"
    with stderr.open("wb") as sink:
        server = subprocess.Popen(command, cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=sink)
        pids: set[bytes] = set()
        try:
            deadline = time.monotonic() + 60
            while len(pids) < wait_for and time.monotonic() < deadline and server.poll() is None:
                try:
                    with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5) as response:
                        pids.add(response.read())
                except OSError:
                    time.sleep(0.1)
        finally:
            server.send_signal(signal.SIGINT)
            try:
                server.wait(30)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait(30)
    return stderr.read_text(encoding="utf-8", errors="replace"), pids


def test_uvicorn_with_two_workers_warns_in_each_worker(tmp_path: Path) -> None:
    output, pids = serve(tmp_path, "--workers", "2", wait_for=1)
    assert pids, output
    assert output.count("MemoryBackendWarning") == 2, output
    assert output.count("this process is one of 2 uvicorn workers (--workers 2)") == 2


def test_uvicorn_with_one_worker_does_not_warn(tmp_path: Path) -> None:
    output, pids = serve(tmp_path, "--workers", "1", wait_for=1)
    assert pids, output
    assert "MemoryBackendWarning" not in output


# --- what the detector reads: the command line, WEB_CONCURRENCY, and the processes beside this one


@pytest.mark.parametrize(
    ("server", "argv", "environ", "expected"),
    [
        ("uvicorn", ["uvicorn", "app:app", "--workers", "4"], {}, (4, "--workers 4")),
        ("uvicorn", ["uvicorn", "app:app", "--workers=3"], {}, (3, "--workers 3")),
        ("uvicorn", ["uvicorn", "app:app"], {"WEB_CONCURRENCY": "2"}, (2, "WEB_CONCURRENCY=2")),
        ("uvicorn", ["uvicorn", "app:app", "--workers", "1"], {"WEB_CONCURRENCY": "4"}, (1, "--workers 1")),
        ("uvicorn", ["uvicorn", "app:app", "--reload", "--workers", "4"], {}, None),
        ("uvicorn", ["uvicorn", "app:app", "-w", "4"], {}, None),  # not a uvicorn flag
        ("gunicorn", ["gunicorn", "-w", "3", "app:app"], {}, (3, "-w 3")),
        ("gunicorn", ["gunicorn", "-w5", "app:app"], {}, (5, "-w5")),
        ("gunicorn", ["gunicorn", "--workers", "x", "app:app"], {}, None),
        ("gunicorn", ["gunicorn", "app:app"], {}, None),
    ],
)
def test_the_declared_worker_count(
    server: str, argv: list[str], environ: dict[str, str], expected: tuple[int, str] | None
) -> None:
    assert _declared_workers(server, argv, environ) == expected


GUNICORN_LIKE = """
import os, sys, warnings
import gunicorn  # the stand-in package: what a worker forked from the arbiter has imported
from stashly import CacheManager

go_read, go_write = os.pipe()
hold_read, hold_write = os.pipe()
done_read, done_write = os.pipe()
children = []
for _ in range(3):
    pid = os.fork()
    if pid == 0:  # a worker: forked from the master, so it keeps its argv, then builds its app (no --preload)
        os.close(go_write), os.close(hold_write), os.close(done_read)
        os.read(go_read, 1)  # every sibling exists before anyone looks
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            CacheManager(url="memory://").set("k", 1)
        os.write(done_write, ("|".join(str(w.message) for w in caught) + "\\n").encode())
        os.read(hold_read, 1)  # alive, as workers are, until every sibling has looked
        os._exit(0)
    children.append(pid)
os.close(go_read), os.close(hold_read), os.close(done_write)
os.write(go_write, b"go!")
with os.fdopen(done_read) as done:
    lines = [done.readline() for _ in children]
os.close(hold_write)
for pid in children:
    os.waitpid(pid, 0)
sys.stdout.write("".join(lines))
"""


@LINUX_PROC
@pytest.mark.parametrize(
    ("argv", "environ", "reason"),
    [
        (["-w", "3"], {}, "one of 3 gunicorn workers (-w 3)"),
        ([], {}, "one of 3 gunicorn worker processes"),  # gunicorn.conf.py's count: only the siblings tell
    ],
)
def test_gunicorn_shaped_workers_warn(tmp_path: Path, argv: list[str], environ: dict[str, str], reason: str) -> None:
    (tmp_path / "gunicorn").mkdir()
    (tmp_path / "gunicorn" / "__init__.py").write_text("", encoding="utf-8")
    (tmp_path / "main.py").write_text(GUNICORN_LIKE, encoding="utf-8")
    env = {key: value for key, value in os.environ.items() if not key.startswith("STASHLY_")}
    env |= {"PYTHONPATH": f"{SRC}{os.pathsep}{tmp_path}", "SERVER_SOFTWARE": "gunicorn/23.0.0", **environ}
    result = subprocess.run(
        [sys.executable, str(tmp_path / "main.py"), *argv], env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert len(lines) == 3, result.stdout
    assert all(reason in line and "MemoryBackendWarning" not in line for line in lines)
    assert all(line.startswith("stashly: memory:// keeps a separate cache in each process") for line in lines)


def test_without_a_server_nothing_is_detected_even_with_web_concurrency(tmp_path: Path) -> None:
    code = "import warnings\nwarnings.simplefilter('error')\nimport stashly\nstashly.CacheManager().set('k', 1)\n"
    env = {key: value for key, value in os.environ.items() if not key.startswith("STASHLY_")}
    env |= {"PYTHONPATH": SRC, "WEB_CONCURRENCY": "4"}
    result = subprocess.run(
        [sys.executable, "-c", code, "--workers", "4"], env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr


@LINUX_PROC
def test_siblings_are_counted_from_proc() -> None:
    assert _siblings(Path("/proc")) >= 1  # this process, at least
    assert _siblings(Path("/nonexistent")) == 0
