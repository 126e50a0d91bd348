"""A bad config.json is reported when the manager is built, with a real file: explicitly built managers at their
construction, the default manager at its first build. Decorating stays lazy: it reads no file, opens no connection.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import stashly
from stashly import Cached, CacheManager, ConfigError

from tests.harness.server import RedisServer

BAD = {"redis": {"host": "127.0.0.1", "port": "6379", "ttl": 60}}  # a port as a string: the classic


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    return tmp_path


def write(path: Path, document: object) -> Path:
    path.write_text(json.dumps(document), encoding="utf-8")
    return path


def expected_error(path: Path) -> str:
    return rf"^config\.json {path}: redis\.port: expected an integer in 1\.\.65535, found '6379' \(str\)$"


def test_a_bad_config_json_in_the_working_directory_fails_the_constructor(workdir: Path) -> None:
    path = write(workdir / "config.json", BAD)
    with pytest.raises(ConfigError, match=expected_error(path)):
        CacheManager()
    with pytest.raises(ConfigError, match=expected_error(path)):
        CacheManager(url="memory://")  # every source is validated, even one fully overridden


def test_from_config_fails_at_once(tmp_path: Path) -> None:
    path = write(tmp_path / "settings.json", BAD)
    with pytest.raises(ConfigError, match=expected_error(path)):
        CacheManager.from_config(path)


def test_the_default_manager_fails_at_its_first_build_and_is_built_once_the_file_is_fixed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write(tmp_path / "stashly.json", BAD)
    monkeypatch.setenv("STASHLY_CONFIG", str(path))
    for _ in range(2):  # a failed build is not remembered: each use reports the file again
        with pytest.raises(ConfigError, match=expected_error(path)):
            stashly.default_manager()
    write(path, {"redis": {"url": "memory://", "namespace": "fixed"}})
    manager = stashly.default_manager()
    assert manager.settings.namespace == "fixed"
    assert stashly.default_manager() is manager


def test_decorating_reads_no_settings_and_the_first_call_raises_the_config_error(workdir: Path) -> None:
    path = write(workdir / "config.json", BAD)
    cache = Cached(namespace="users", ttl=30)  # no manager: the default one, built at the first call

    @cache.cached
    def user(user_id: int) -> dict[str, int]:
        return {"id": user_id}

    with pytest.raises(ConfigError, match=expected_error(path)):  # raised, never swallowed as a cache failure
        user(1)
    with pytest.raises(ConfigError, match=expected_error(path)):
        stashly.default_manager()  # what an application calls at startup to fail there instead


def test_decorating_without_a_manager_opens_no_connection(
    disposable_redis: RedisServer, workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write(workdir / "config.json", {"redis": {"url": disposable_redis.url, "namespace": "lazy"}})
    with disposable_redis.client() as admin:
        before = admin.info("stats")["total_connections_received"]
        cache = Cached(namespace="users", ttl=30)

        @cache.cached
        def user(user_id: int) -> dict[str, int]:
            return {"id": user_id}

        assert admin.info("stats")["total_connections_received"] == before
        assert user(1) == {"id": 1}  # the first call builds the default manager from config.json, and connects
        assert admin.info("stats")["total_connections_received"] > before
        assert admin.exists(user.cache_key(1)) == 1
    stashly.default_manager().close()
