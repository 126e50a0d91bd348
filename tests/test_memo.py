"""The hot path's memos are bounded and drop their oldest eighth when full, never all of them at once."""

from __future__ import annotations

from stashly import CacheManager
from stashly.decorator.plan import Plan
from stashly.memo import SIZE, remember


def test_a_full_memo_drops_only_its_oldest_entries() -> None:
    memo: dict[int, int] = {}
    for key in range(5):
        remember(memo, key, key * 10, size=3)
    assert memo == {2: 20, 3: 30, 4: 40}  # an eighth of 3 rounds up to one entry
    for key in range(5, 22):
        remember(memo, key, key * 10, size=16)
    assert list(memo) == list(range(6, 22))  # full at 2..17: two went before 18 came, two more before 20


def test_a_cached_function_keeps_its_recent_keys_past_the_bound() -> None:
    def double(n: int) -> int:
        return n * 2

    with CacheManager("memory://") as manager:
        plan = Plan(double, namespace="m", manager=manager, strict=None, ttl=60, template=None, ignore=())
        binding = plan.binding()
        keys = [plan.key(binding, (n,), {}) for n in range(SIZE + 10)]
        memo = binding.keys
        assert memo[(SIZE + 9,)] == keys[-1]
        assert {(n,) for n in range(SIZE // 8, SIZE + 10)} == memo.keys()  # the oldest eighth went, no more
