"""``stashly tags``: the tokens of tags, and ``--invalidate`` doing what ``invalidate_tags`` does, on one server
and on Cluster."""

from __future__ import annotations

from pathlib import Path

import pytest

from stashly import CacheManager

from tests.support import backend_url
from tests.test_cli import failed, run, run_json


@pytest.mark.parametrize("backend", ["redis", "cluster"])
def test_tags_shows_tokens_and_invalidates(request: pytest.FixtureRequest, backend: str, tmp_path: Path) -> None:
    url = backend_url(request, backend)
    with CacheManager(url, namespace="app") as cm:
        cm.set("user:5", {"id": 5}, tags=["user:5", "org:1"])
        code, document = run_json("tags", "user:5", "never", "--url", url, cwd=tmp_path)
        assert code == 0
        (used, unused) = document["tags"]
        assert (used["tag"], used["key"]) == ("user:5", "stashly::tag:user:5")
        assert used["token"] is not None
        assert used["ttl_seconds"] > 0
        assert unused == {"tag": "never", "key": "stashly::tag:never", "token": None, "ttl_seconds": None}
        text = run("tags", "user:5", "never", "--url", url, cwd=tmp_path)
        assert f"user:5: token {used['token']}" in text.stdout
        assert "never: no token: no entry is current under it" in text.stdout

        code, document = run_json("tags", "user:5", "never", "--invalidate", "--url", url, cwd=tmp_path)
        assert code == 0
        assert document == {"invalidated": ["user:5", "never"], "in_use": 1}
        assert cm.get("user:5") is None  # the entry is a miss for the application too


def test_a_bad_tag_is_a_usage_error(tmp_path: Path) -> None:
    failed(run("tags", "has space", "--url", "redis://127.0.0.1:1", cwd=tmp_path), 2, "without spaces")
