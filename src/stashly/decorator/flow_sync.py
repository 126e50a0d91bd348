# Generated from decorator/flow_async.py by scripts/unasync.py.
# Edit the source, then run `make unasync`.
"""The cached call, written once: hit, miss, single-flight, stampede lock, fill, refresh-ahead, invalidation.

Written for asyncio in ``flow_async.py``; ``flow_sync.py`` is generated from it by ``scripts/unasync.py``
(``make unasync``), so the sync and async decorators cannot drift apart. The decorator (:mod:`.cached`) and the
FastAPI endpoints (:mod:`stashly.integrations.fastapi`) build their wrappers from these functions; what does no
I/O (keys, payloads, the lock's polling schedule) lives in :mod:`.plan` and :mod:`.stampede`. The pieces that
differ by mode stay hand-written: single-flight (threads vs tasks) and where a refresh runs (thread vs task).
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from time import perf_counter_ns, sleep
from typing import Any, TypeAlias

from .. import keys
from ..backends.base import Lock
from ..engine import Lookup, Token, current
from ..errors import FactoryTimeoutError
from ..sentinels import MISSING
from ..storage import codec
from ..tags import core as tag_names
from ..tags import uncommitted
from .plan import Binding, Plan, check_max_age
from .refresh import LEASE, Refresher, refresh_failed
from .singleflight import Overdue, SingleFlight
from .stampede import Filled, Wait, lock_for
from .tagging import TaggedCall

__all__ = [
    "Compute",
    "computation",
    "fill",
    "invalidator",
    "limiter",
    "recomputer",
    "refresh",
    "resolve",
    "still_current",
    "tagged_lookup",
    "with_result_tags",
    "wrapper",
]

Compute: TypeAlias = Callable[[Token, Lock], Filled]
"""A computation ready to run: given the guard token (and the lock, if held), it computes and stores."""


def computation(plan: Plan, binding: Binding, key: str, call: Callable[[], Any], tags: bytes | None = None) -> Compute:
    """Run ``call`` and store its result, guarded by a token (and a lock, if given), inside the fill hook;
    ``tags`` is the fragment of its tags' tokens, read before the computation began."""

    def run(token: Token, lock: Lock) -> Filled:
        site = binding.site
        site.fills += 1
        started = perf_counter_ns()
        try:
            result = call()
        except BaseException:
            site.fill_errors += 1
            raise
        engine = binding.engine
        ttl = engine.jittered(binding.expiry)
        storable, filed = (True, tags) if plan.result_tags is None else with_result_tags(plan, binding, result, tags)
        payload = plan.payload(binding, result, key, ttl, filed) if storable else None
        if payload is not None:
            stored_for = None if ttl is None else ttl + binding.grace  # fail-safe: kept past its logical expiry
            engine.fill(key, payload, stored_for, binding.guard, token, binding.strict, site, lock)
        site.fill_ns[(perf_counter_ns() - started).bit_length()] += 1
        return result, payload

    def compute(token: Token, lock: Lock) -> Filled:
        span = binding.hooks.fill_span
        if span is None:
            return run(token, lock)
        with span(binding.namespace, plan.name):
            return run(token, lock)

    return compute


def fill(
    plan: Plan,
    binding: Binding,
    key: str,
    found: Lookup,
    call: Callable[[], Any],
    reader: codec.Reader | None = None,
    tags: bytes | None = None,
) -> Filled:
    """Compute (``call``) and store a missing entry; under the stampede lock when ``lock=True``.

    ``reader`` reads an entry another process stored meanwhile, when ``call`` stores something other than
    the return annotation (``http=True``'s responses); the binding's reader by default. See
    :mod:`.stampede` for the lock's rules: the holder re-reads before computing, a waiter polls for at most one
    lease, and a lock the backend refuses means computing without it (the store still guarded).
    """
    compute = computation(plan, binding, key, call, tags)
    lease = plan.lock_lease
    if lease is None:
        return compute(found.token, None)
    engine, site, strict = binding.engine, binding.site, binding.strict
    read = binding.reader if reader is None else reader
    lock_key, owner = lock_for(binding.prefix, key)
    token = found.token
    wait = Wait(lease)
    while True:
        taken = engine.acquire(lock_key, owner, lease, site, strict)
        if taken is None:
            return compute(token, None)  # the backend refused the lock (logged): compute, still guarded
        if taken:
            try:
                found = engine.lookup(key, binding.guard, read, strict, site)  # stored just before our lock?
                found = still_current(plan, binding, key, found, tags)
                if found.value is not MISSING:
                    return found.value, found.raw
                return compute(found.token, (lock_key, owner))
            finally:
                engine.release(lock_key, owner, site)
        delay = wait.next_delay()
        if delay is None:
            return compute(token, None)  # waited a whole lease: compute ourselves, the store still guarded
        sleep(delay)
        found = engine.lookup(key, binding.guard, read, strict, site)
        found = still_current(plan, binding, key, found, tags)
        if found.value is not MISSING:
            return found.value, found.raw
        token = found.token


def resolve(
    plan: Plan,
    binding: Binding,
    key: str,
    found: Lookup,
    call: Callable[[], Any],
    flight: SingleFlight[Filled],
    reader: codec.Reader | None = None,
    tags: bytes | None = None,
) -> tuple[Any, bytes | None, str]:
    """A miss answered: the value, its stored bytes, and ``"MISS"`` — or ``"STALE"`` for ``fail_safe``'s last
    good value when the recomputation raised or ran past ``soft_timeout``.

    One computation per key runs (single-flight, keyed by the guard token too: a call after an invalidation never
    joins a computation from before it). With a timeout the caller stops waiting but the computation goes on and
    stores its result; without a stale value ``hard_timeout`` raises :class:`~stashly.FactoryTimeoutError`.
    """
    stale = found.stale if plan.fail_safe is not None else MISSING
    wait_at_most = plan.hard_timeout if stale is MISSING else plan.soft_timeout

    def miss() -> Filled:
        return fill(plan, binding, key, found, call, reader, tags)

    try:
        value, payload = flight.run((key, found.token), miss, wait_at_most)
    except Overdue:
        if stale is MISSING:
            raise FactoryTimeoutError(
                f"@cached {plan.name} did not return within hard_timeout={plan.hard_timeout} s (it goes on in the "
                "background and stores its result)"
            ) from None
        plan.served_stale(binding, key, "ran past soft_timeout")
        return stale, found.raw, "STALE"
    except Exception as exc:
        if stale is MISSING:
            raise
        plan.served_stale(binding, key, f"raised {type(exc).__name__}")
        keep_serving(plan, binding, key, found, stale, tags)
        return stale, found.raw, "STALE"
    return value, payload, "MISS"


def keep_serving(plan: Plan, binding: Binding, key: str, found: Lookup, value: Any, tags: bytes | None = None) -> None:
    """After a failed recomputation, store the last good value as fresh for ``fail_safe_throttle`` seconds, so the
    failing source is asked again only then (guarded like any fill: an invalidation since wins). Never past the
    entry's own end (its remaining TTL, ``ttl + fail_safe`` after it was computed): the bound of fail-safe holds."""
    throttle = plan.fail_safe_throttle
    if throttle is None:
        return
    left = found.ttl  # the stale entry's remaining life (read with it), None: no expiry
    stored_for = throttle + binding.grace if left is None else min(throttle + binding.grace, left)
    if stored_for <= 0:
        return
    storable, filed = (True, tags) if plan.result_tags is None else with_result_tags(plan, binding, value, tags)
    if not storable:
        return
    engine = binding.engine
    payload = engine.encode(value, key, min(throttle, stored_for), filed)
    engine.fill(key, payload, stored_for, binding.guard, found.token, binding.strict, binding.site)


def refresh(plan: Plan, binding: Binding, key: str, token: Token, compute: Compute) -> None:
    """Recompute a hit close to expiry, in the background, if no other process is refreshing it (its lock is free)
    and none has just done it (the holder re-reads the entry first, as the stampede lock's holder does: a hit that
    read the old entry just before another refresh stored the new one must not compute it again).

    A lock the backend refused (``None``, logged) means no refresh: the entry lives out its TTL.
    """
    engine, site = binding.engine, binding.site
    lock_key, owner = lock_for(binding.prefix, key)
    try:
        if engine.acquire(lock_key, owner, LEASE, site, False):
            try:
                found = engine.lookup(key, binding.guard, binding.reader, binding.strict, site, True)
                if found.value is MISSING:  # the re-read is bookkeeping, not a caller's lookup: uncounted
                    site.misses -= 1
                else:
                    site.hits -= 1
                if found.value is MISSING or plan.refresh_due(binding, found):
                    compute(token, (lock_key, owner))
            finally:
                engine.release(lock_key, owner, site)
    except Exception as exc:  # nobody to raise to: the caller already has its value
        refresh_failed(key, exc)


def tagged_lookup(
    plan: Plan, binding: Binding, call: TaggedCall, reader: codec.Reader, with_ttl: bool = False
) -> tuple[Lookup, bytes | None] | None:
    """The lookup of ``call`` (:meth:`Plan.tagged_key`), with the tokens its tags have now (read with the entry,
    before anything is computed), as the fragment a fill stores; the entry counts only if it carries the same.
    ``None`` when the call must bypass the cache: the tokens cannot be known (backend down, an invalidation of the
    entry or a tag pending) or a tag was written by this context's open transaction (read-your-writes).

    With ``result_tags`` the fragment also carries the tag epoch read with them (:data:`~stashly.tags.core.EPOCH`),
    for :func:`with_result_tags`; an entry then counts when every tag it was stored with is current."""
    engine, site, strict, names = binding.engine, binding.site, binding.strict, call.names
    if not names:
        return engine.lookup(call.key, binding.guard, reader, strict, site, with_ttl), None
    if uncommitted.MARKS.get() is not None and not uncommitted.current().isdisjoint(names):
        return None  # its own change must be seen, and nothing computed from uncommitted rows stored
    looked = engine.lookup_tagged(call.key, binding.guard, reader, strict, site, with_ttl, call.tag_keys)
    if looked is None:
        return None
    found, tokens = looked
    last = call.last
    if last is None or last[0] != tokens:  # the tokens changed (or first read): their fragment, remembered
        if None in tokens:  # a tag without a token (first use, invalidated, expired): no entry can be current
            drawn = engine.draw_tokens(call.tag_keys, tokens, site, strict)
            if drawn is None:
                return None
            tokens = list(drawn)
        probe = (names, *tokens)
        fragment = binding.fragments.get(probe) or tag_names.remembered_fragment(binding.fragments, probe)
        call.last = last = tokens, fragment, codec.TAGGED + fragment
    fragment = last[1]
    if plan.result_tags is None:
        if found.raw.startswith(last[2], codec.TAGS_AT):  # the hit: filed under these tokens (codec.carries_tags)
            return found, fragment
        return current(found, fragment, site), fragment
    return still_current(plan, binding, call.key, found, fragment), fragment


def still_current(plan: Plan, binding: Binding, key: str, found: Lookup, tags: bytes | None) -> Lookup:
    """``found``, or a miss when one of its tags was invalidated since it was stored: compared with the tokens
    read for the call (``tags``), or, with ``result_tags``, read again for every tag the entry carries."""
    if plan.result_tags is None or found.value is MISSING:
        return current(found, tags, binding.site)
    if binding.engine.tags_current(found.raw, key, binding.site):
        return found
    return found._replace(value=MISSING, stale=MISSING)


def with_result_tags(plan: Plan, binding: Binding, result: object, tags: bytes | None) -> tuple[bool, bytes | None]:
    """Whether ``result`` may be stored, and the fragment of its tags, from the arguments and from ``result``.
    Not stored: a tag invalidation ran while it was computed (the tag epoch read before it has changed), a tag
    of the result is uncommitted in this context, or the tokens cannot be read."""
    assert plan.result_tags is not None
    assert tags is not None  # tagged_lookup read the epoch into it
    filed = tag_names.parse_fragment(tags)
    epoch = filed.pop(tag_names.EPOCH)
    named = plan.result_tags(result)
    if isinstance(named, str | bytes):
        raise TypeError(f"@cached {plan.name}: result_tags returned the single string {named!r}; return a list")
    names = [name for name in tag_names.checked_tags(named, f"@cached {plan.name} result_tags") if name not in filed]
    if not uncommitted.current().isdisjoint(names):
        return False, None
    engine, site, strict = binding.engine, binding.site, binding.strict
    if names:
        tokens = engine.tag_tokens([keys.tag_key(binding.prefix, n) for n in names], site, strict, True)
        if tokens is None:
            return False, None
        filed.update(zip(names, tokens, strict=True))
    now = engine.tag_tokens([keys.tags_epoch_key(binding.prefix)], site, strict)  # after the tokens
    return now == [epoch], tag_names.fragment(filed) if filed else None


def wrapper(plan: Plan) -> Callable[..., Any]:
    """The decorated function: a hit returns the stored value, a miss computes once per key and stores it."""
    fn = plan.fn
    flight: SingleFlight[Filled] = SingleFlight()
    refresher = Refresher()
    with_ttl = plan.refresh_ahead is not None or plan.fail_safe is not None  # fail-safe: its bound
    tagged = plan.tags is not None or plan.result_tags is not None
    share = plan.share

    @functools.wraps(fn)
    def cached(*args: Any, **kwargs: Any) -> Any:
        binding = plan.binding()
        tags: bytes | None = None
        if tagged:
            filed = plan.tagged_key(binding, args, kwargs)
            key = filed.key
            looked = tagged_lookup(plan, binding, filed, binding.reader, with_ttl)
            if looked is None:  # unprovable (backend down, invalidation pending) or uncommitted: no cache
                return fn(*args, **kwargs)
            found, tags = looked
        else:
            key = plan.key(binding, args, kwargs)
            if not with_ttl:  # an entry held in process answers alone (refresh-ahead and fail-safe need its TTL)
                value = binding.engine.hit(key, binding.reader, binding.site, share)
                if value is not MISSING:
                    return value
            found = binding.engine.lookup(key, binding.guard, binding.reader, binding.strict, binding.site, with_ttl)
        if found.value is not MISSING:
            if plan.refresh_due(binding, found):
                binding.site.stale += 1
                compute = computation(plan, binding, key, functools.partial(fn, *args, **kwargs), tags)
                refresher.start(key, functools.partial(refresh, plan, binding, key, found.token, compute))
            return found.value

        call = functools.partial(fn, *args, **kwargs)
        return (resolve(plan, binding, key, found, call, flight, tags=tags))[0]

    return cached


def recomputer(plan: Plan) -> Callable[..., Any]:
    """``fn.refresh``: compute the entry for these arguments now and store it, whatever is stored (fenced by the
    guard like any fill: an invalidation during the computation still wins); the new value is returned."""

    def refresh_entry(*args: Any, **kwargs: Any) -> Any:
        binding = plan.binding()
        tagged = plan.tagged_key(binding, args, kwargs)
        key = tagged.key
        looked = tagged_lookup(plan, binding, tagged, binding.reader)
        if looked is None:
            return plan.fn(*args, **kwargs)
        found, tags = looked
        compute = computation(plan, binding, key, functools.partial(plan.fn, *args, **kwargs), tags)
        return (compute(found.token, None))[0]

    return refresh_entry


def limiter(plan: Plan) -> Callable[[float], Callable[..., Any]]:
    """``fn.max_age(seconds)``: the cached call for one call that accepts only an entry computed at most
    ``seconds`` ago (by its ``"at"`` stamp, wherever the copy was read from: Redis or the local tier); an older one
    is a miss, recomputed and stored as usual. An entry without a stamp (older format, another serializer) is
    always too old; a ``fail_safe`` fallback older than asked is never served."""
    flight: SingleFlight[Filled] = SingleFlight()

    def max_age(seconds: float) -> Callable[..., Any]:
        oldest = check_max_age(seconds, plan.name)

        def within(*args: Any, **kwargs: Any) -> Any:
            binding = plan.binding()
            tagged = plan.tagged_key(binding, args, kwargs)
            key, site = tagged.key, binding.site
            looked = tagged_lookup(plan, binding, tagged, binding.reader)
            if looked is None:
                return plan.fn(*args, **kwargs)
            found, tags = looked
            if found.value is not MISSING:
                at = codec.born(found.raw)
                if at is not None and at >= time.time() * 1000 - oldest:
                    return found.value
                site.unhit()
                found = found._replace(value=MISSING)
            call = functools.partial(plan.fn, *args, **kwargs)
            return (resolve(plan, binding, key, found._replace(stale=MISSING), call, flight, tags=tags))[0]

        return within

    return max_age


def invalidator(plan: Plan) -> Callable[..., bool]:
    """``fn.invalidate``: drop the entry for the cached function's arguments (and bump the guard)."""

    def invalidate(*args: Any, **kwargs: Any) -> bool:
        binding = plan.binding()
        key = plan.key(binding, args, kwargs)
        return binding.engine.delete(key, binding.guard, binding.site, binding.strict)

    return invalidate
