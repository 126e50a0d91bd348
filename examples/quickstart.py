"""A one-minute tour of stashly: a miss, a hit, an invalidation and a namespace flush.

Runs on the in-memory backend by default; set STASHLY_URL=redis://127.0.0.1:6379/0 to run it on Redis.
"""

from __future__ import annotations

import time

from pydantic import BaseModel

from stashly import Cached, CacheManager


class UserRead(BaseModel):
    id: int
    email: str
    is_active: bool


cm = CacheManager(namespace="quickstart")  # settings: arguments > STASHLY_* env > config.json > memory://
auth_cache = Cached(namespace="quickstart-auth", ttl=60, manager=cm)
calls = 0


@auth_cache.cached
def get_me(user_id: int) -> UserRead:
    """Pretend this is a slow database query."""
    global calls
    calls += 1
    time.sleep(0.05)
    return UserRead(id=user_id, email=f"user{user_id}@example.com", is_active=True)


def timed(label: str, user_id: int) -> None:
    start = time.perf_counter()
    user = get_me(user_id)
    elapsed_ms = (time.perf_counter() - start) * 1000
    print(f"{label:<28} {user!r:<70} {elapsed_ms:7.2f} ms  (function ran {calls}x)")


def main() -> None:
    print(f"backend: {cm.settings.url}\n")
    auth_cache.manager.flush_namespace("quickstart-auth")
    timed("get_me(1)  -> miss", 1)
    timed("get_me(1)  -> hit", 1)
    print(f"key in the backend:          {get_me.cache_key(1)}")
    get_me.invalidate(1)
    timed("after invalidate -> miss", 1)
    timed("get_me(2)  -> miss", 2)

    cm.set("greeting", {"hello": "world"}, ttl=30)
    print(f"\ncm.get('greeting')           {cm.get('greeting')}")
    print(f"cm.get('nothing', default=0) {cm.get('nothing', default=0)}")
    removed = cm.flush_namespace("quickstart-auth")
    print(f"flush_namespace('quickstart-auth') removed {removed} entries")
    timed("after the flush -> miss", 2)
    print(f"\nstats: {cm.stats()}")


if __name__ == "__main__":
    main()
