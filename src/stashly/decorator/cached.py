"""``Cached``: the decorator. One key plan per function, the call flow for its mode, ``invalidate``.

A call binds its arguments to the signature, builds the key, and asks the engine: a hit returns the stored
value validated into the return annotation; a miss runs the function once per key (single-flight), stores
the result and returns it. Backend failures never reach the caller unless ``strict``. The call itself is
:mod:`.flow_async` (and its generated twin :mod:`.flow_sync`).
"""

from __future__ import annotations

import functools
import inspect
import sys
import typing
from collections.abc import Callable, Iterable
from datetime import timedelta
from typing import Any, Concatenate, overload

from .. import keys
from ..config.settings import parse_name
from ..errors import ConfigError
from ..manager import CacheManager, default_manager
from ..sentinels import NOT_SET, NotSet
from ..ttl import check_ttl
from . import flow_async, flow_sync
from .plan import Plan, check_duration, check_lease, check_refresh_ahead
from .protocols import BoundCachedFunction, CachedClassMethod, CachedDecorator, CachedFunction, P, R, S
from .remover import Remover
from .tagging import TagSpec

__all__ = ["Cached"]


class Cached:
    """Decorators that cache a function's result in a namespace.

    >>> auth_cache = Cached(namespace="auth", ttl=60)
    >>> @auth_cache.cached
    ... def get_me(user_id: int) -> dict[str, int]:
    ...     return {"id": user_id}
    >>> get_me(5)            # miss: runs the function and stores the result
    {'id': 5}
    >>> get_me(5)            # hit
    {'id': 5}
    >>> get_me.invalidate(5)
    True

    ``manager`` defaults to the process-wide :func:`~stashly.default_manager`, resolved on first call (so
    decorating at import time connects to nothing). ``strict`` defaults to the manager's setting.
    """

    def __init__(
        self,
        namespace: str | None = None,
        *,
        ttl: float | timedelta | NotSet | None = NOT_SET,
        manager: CacheManager | None = None,
        strict: bool | None = None,
    ) -> None:
        self.namespace: str | None = None if namespace is None else parse_name(namespace, "Cached(namespace=...)")
        self.ttl: float | NotSet | None = check_ttl(ttl, f"Cached(namespace={namespace!r})")
        self._manager = manager
        self.strict = strict

    @property
    def manager(self) -> CacheManager:
        """The manager this cache stores through."""
        return self._manager or default_manager()

    # A function whose first parameter is a class is typed for ``@classmethod`` above it (see CachedClassMethod).
    @overload
    def cached(self, fn: Callable[Concatenate[type[S], P], R], /) -> CachedClassMethod[S, P, R]: ...
    @overload
    def cached(self, fn: Callable[P, R], /) -> CachedFunction[P, R]: ...
    @overload
    def cached(
        self,
        fn: None = None,
        /,
        *,
        ttl: float | timedelta | NotSet | None = NOT_SET,
        key: str | None = None,
        ignore: Iterable[str] = (),
        http: bool = False,
        lock: bool = False,
        lock_lease: float = 10.0,
        refresh_ahead: float | None = None,
        fail_safe: float | timedelta | None = None,
        fail_safe_throttle: float | timedelta | None = 5.0,
        soft_timeout: float | timedelta | None = None,
        hard_timeout: float | timedelta | None = None,
        tags: TagSpec | None = None,
        result_tags: Callable[[Any], Iterable[str]] | None = None,
        share: bool = False,
    ) -> CachedDecorator: ...

    def cached(
        self,
        fn: Callable[P, R] | None = None,
        /,
        *,
        ttl: float | timedelta | NotSet | None = NOT_SET,
        key: str | None = None,
        ignore: Iterable[str] = (),
        http: bool = False,
        lock: bool = False,
        lock_lease: float = 10.0,
        refresh_ahead: float | None = None,
        fail_safe: float | timedelta | None = None,
        fail_safe_throttle: float | timedelta | None = 5.0,
        soft_timeout: float | timedelta | None = None,
        hard_timeout: float | timedelta | None = None,
        tags: TagSpec | None = None,
        result_tags: Callable[[Any], Iterable[str]] | None = None,
        share: bool = False,
    ) -> CachedFunction[P, R] | CachedDecorator:
        """Cache ``fn``'s results; use bare (``@cache.cached``) or with options (``@cache.cached(ttl=30)``).

        ``ttl`` overrides the cache's TTL for this function; ``key`` is a template such as
        ``"profile:{user_id}"`` (fields must be parameters; values are escaped); ``ignore`` names parameters
        left out of the key (a database session, a logger). ``http=True`` (FastAPI endpoints) adds ``ETag``,
        ``304 Not Modified``, ``Cache-Control`` and ``X-Cache`` headers: see :mod:`stashly.integrations.fastapi`.
        ``lock=True`` makes one process compute a missing entry while the others wait for it (for at most
        ``lock_lease`` seconds, the lock's lifetime): see :mod:`stashly.decorator.stampede`. ``refresh_ahead=0.2``
        recomputes an entry in the background when a hit finds less than 20% of its TTL left, serving the
        current value meanwhile: see :mod:`stashly.decorator.refresh`.

        ``fail_safe=timedelta(hours=1)`` keeps an entry readable that long past its TTL: it is recomputed after the
        TTL as usual, but if the function raises, the last good value is returned instead of the exception (an
        invalidation still removes it); that value is then served as fresh for ``fail_safe_throttle`` seconds (5 by
        default; ``None`` retries on every call), so a failing source is not asked on every call.
        ``soft_timeout`` (with ``fail_safe``) returns that value when the function
        is slower than this, and ``hard_timeout`` raises :class:`~stashly.FactoryTimeoutError` when there is no such
        value; either way the computation finishes in the background and stores its result.

        ``tags=["user:{user_id}", "users"]`` files each entry under tags (fixed, templates over the arguments, or
        a callable of the call's arguments): :meth:`CacheManager.invalidate_tags` then drops all of a tag's entries,
        across functions and namespaces (see :mod:`stashly.decorator.tagging`). ``result_tags=lambda user:
        [f"org:{user.org_id}"]`` adds tags read from the result (not with ``http=True``); such an entry is stored only
        if no tag invalidation ran while it was computed, and a hit reads its tags after the entry (one more round
        trip on Redis).

        ``share=True`` decodes an entry held in process (``memory://``, the local tier) once and hands the same
        read-only value to every hit: dicts and lists refuse changes (``TypeError``; copy to change); another value (a
        model) is shared only if nothing in it can change. For large values read often; elsewhere each hit decodes
        as usual.

        >>> rates = Cached(namespace="rates", ttl=60, manager=CacheManager(url="memory://"))
        >>> @rates.cached(fail_safe=timedelta(minutes=10), soft_timeout=0.5)
        ... def exchange_rate(currency: str) -> float:
        ...     return 1.08                     # pretend: a rates API, which may fail or hang
        >>> exchange_rate("EUR")
        1.08
        """

        def decorate(fn: Callable[P, R], localns: dict[str, Any] | None = None) -> CachedFunction[P, R]:
            _check_decoratable(fn, key)
            if localns is None:
                localns = _defining_scope()
            plan = Plan(
                fn,
                namespace=self.namespace,
                manager=self._manager,
                strict=self.strict,
                ttl=self.ttl if ttl is NOT_SET else ttl,
                template=key,
                ignore=ignore,
                localns=localns,
                lock_lease=check_lease(lock_lease, keys.function_name(fn)) if lock else None,
                refresh_ahead=check_refresh_ahead(refresh_ahead, keys.function_name(fn)),
                **_resilience(keys.function_name(fn), fail_safe, fail_safe_throttle, soft_timeout, hard_timeout),
                tags=tags,
                result_tags=result_tags,
                share=share,
            )
            if http and share:
                raise ConfigError(
                    f"@cached {plan.name}: share is not available with http=True (the entry is the response)"
                )
            if http and result_tags is not None:
                raise ConfigError(
                    f"@cached {plan.name}: result_tags is not available with http=True (the entry is the response); "
                    "tag the endpoint by its arguments, e.g. tags=['user:{current_user.id}']"
                )
            is_async = inspect.iscoroutinefunction(fn)
            if http:
                from ..integrations.fastapi.endpoints import http_endpoint  # the only path that needs FastAPI

                wrapper = http_endpoint(plan, is_async)
            else:
                wrapper = flow_async.wrapper(plan) if is_async else flow_sync.wrapper(plan)
            return typing.cast(CachedFunction[P, R], _attach(wrapper, plan, is_async))

        return typing.cast(CachedDecorator, decorate) if fn is None else decorate(fn, _defining_scope())

    @overload
    def remove(self, fn: CachedFunction[P, R], /) -> Remover[P, R]: ...
    @overload
    def remove(self, fn: BoundCachedFunction[S, P, R], /) -> Remover[Concatenate[S, P], R]: ...
    def remove(self, fn: Any, /) -> Remover[..., Any]:
        """Drop ``fn``'s entries: call it with ``fn``'s arguments, or decorate a function that changes the data.

        >>> auth_cache = Cached(namespace="auth", ttl=60, manager=CacheManager(url="memory://"))
        >>> @auth_cache.cached
        ... def get_me(user_id: int) -> dict[str, int]:
        ...     return {"id": user_id}
        >>> get_me(5)
        {'id': 5}
        >>> auth_cache.remove(get_me)(5)          # same as get_me.invalidate(5)
        True
        >>> @auth_cache.remove(get_me)            # after update_me runs, drop get_me's entry for the
        ... def update_me(user_id: int, email: str) -> None: ...   # arguments the two share by name
        """
        if getattr(fn, "invalidate", None) is None:
            raise TypeError(f"{keys.function_name(fn)} is not a @cached function, so it has no entries to remove")
        return Remover(fn)


def _resilience(
    where: str,
    fail_safe: float | timedelta | None,
    fail_safe_throttle: float | timedelta | None,
    soft_timeout: float | timedelta | None,
    hard_timeout: float | timedelta | None,
) -> dict[str, float | None]:
    """The checked fail-safe and timeout options (seconds)."""
    options = {
        "fail_safe": check_duration(fail_safe, "fail_safe", where),
        "fail_safe_throttle": check_duration(fail_safe_throttle, "fail_safe_throttle", where),
        "soft_timeout": check_duration(soft_timeout, "soft_timeout", where),
        "hard_timeout": check_duration(hard_timeout, "hard_timeout", where),
    }
    if options["soft_timeout"] is not None and options["fail_safe"] is None:
        raise ValueError(f"@cached {where}: soft_timeout needs fail_safe (it returns the last good value, kept by it)")
    return options


def _defining_scope() -> dict[str, Any] | None:
    """The local names where the decorator is applied, for string annotations naming local classes.

    Frame 2 up is the code that wrote ``@cache.cached``: for the bare form ``cached`` calls ``decorate``
    directly, for the ``cached(...)`` form the caller calls ``decorate``; both put it two frames above here.
    Module-level functions need nothing: their globals resolve the annotations.
    """
    frame = sys._getframe(2)
    return None if frame.f_locals is frame.f_globals else dict(frame.f_locals)


def _check_decoratable(fn: object, template: str | None) -> None:
    if isinstance(fn, classmethod | staticmethod):
        raise TypeError("@cached must be applied below @classmethod/@staticmethod (closest to the function)")
    if not callable(fn) or isinstance(fn, type):
        raise TypeError(f"@cached decorates functions and methods, not {fn!r}")
    if getattr(fn, "__name__", None) == "<lambda>" and template is None:
        raise TypeError("@cached cannot tell lambdas apart (they share one name): use a def, or pass key=")
    if inspect.isgeneratorfunction(fn) or inspect.isasyncgenfunction(fn):
        raise TypeError(f"@cached cannot cache generator {keys.function_name(fn)}: return a list instead")


def _attach(wrapper: Callable[..., Any], plan: Plan, is_async: bool) -> Callable[..., Any]:
    """Give ``wrapper`` its ``invalidate``, ``refresh``, ``bypass`` and ``cache_key``, each taking the cached
    function's arguments, and ``max_age(seconds)``, which returns the call taking them."""

    def cache_key(*args: Any, **kwargs: Any) -> str:
        return plan.key(plan.binding(), args, kwargs)

    def bypass(*args: Any, **kwargs: Any) -> Any:
        return plan.fn(*args, **kwargs)

    flow = flow_async if is_async else flow_sync
    helpers = {
        "invalidate": flow.invalidator(plan),
        "refresh": flow.recomputer(plan),
        "bypass": bypass,
        "cache_key": cache_key,
    }
    for name, helper in helpers.items():
        functools.update_wrapper(helper, plan.fn)  # carries fn's signature: the helpers take its arguments
        helper.__name__, helper.__qualname__ = name, f"{plan.fn.__qualname__}.{name}"
        setattr(wrapper, name, helper)
    max_age = flow.limiter(plan)  # takes seconds, not fn's arguments: no signature of fn's
    max_age.__name__, max_age.__qualname__ = "max_age", f"{plan.fn.__qualname__}.max_age"
    wrapper.max_age = max_age  # type: ignore[attr-defined]
    return wrapper
