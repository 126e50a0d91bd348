"""The public surface is exactly __all__, and importing stashly has no side effects."""

from __future__ import annotations

import subprocess
import sys

import stashly

EXPECTED = {
    "MISSING",
    "NOT_SET",
    "CacheManager",
    "CacheStats",
    "CacheUnavailableError",
    "Cached",
    "CachedFunction",
    "ConfigError",
    "FactoryTimeoutError",
    "LocalTier",
    "MemoryBackendWarning",
    "SerializationError",
    "Settings",
    "StashlyError",
    "UnstableKeyError",
    "ValueTooLargeError",
    "default_manager",
    "set_default_manager",
}


def test_all_is_pinned() -> None:
    assert set(stashly.__all__) == EXPECTED
    for name in stashly.__all__:
        assert getattr(stashly, name) is not None


def test_errors_share_one_base() -> None:
    for name in [
        "CacheUnavailableError",
        "ConfigError",
        "SerializationError",
        "UnstableKeyError",
        "ValueTooLargeError",
    ]:
        assert issubclass(getattr(stashly, name), stashly.StashlyError)


def test_import_connects_nothing_and_builds_no_manager() -> None:
    code = (
        "import sys, socket\n"
        "socket.socket.connect = lambda *a: sys.exit('connected at import')\n"
        "import stashly, stashly.manager\n"
        "assert stashly.manager._default is None\n"
        "assert 'fastapi' not in sys.modules and 'sqlalchemy' not in sys.modules\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, env={"STASHLY_URL": "redis://127.0.0.1:1/0"})
