"""``Cached``: the decorator. One key plan per function, thin sync and async drivers, ``invalidate``.

A call binds its arguments to the signature, builds the key, and asks the manager: a hit returns the stored
value validated into the return annotation; a miss runs the function once per key (single-flight), stores
the result and returns it. Backend failures never reach the caller unless ``strict``.
"""

from __future__ import annotations

import functools
import inspect
import logging
import sys
import typing
from collections.abc import Awaitable, Callable, Iterable, Sequence
from datetime import timedelta
from typing import Any, Generic, ParamSpec, Protocol, TypeVar, overload

import pydantic

from . import codec, keys
from .backends.base import Lock
from .context import is_context
from .manager import CacheManager, Lookup, Token, default_manager
from .sentinels import MISSING, NOT_SET, NotSet
from .settings import parse_name
from .singleflight import AsyncSingleFlight, SingleFlight
from .stampede import Filled, afill_under_lock, fill_under_lock
from .ttl import TTL, check_ttl, resolve_ttl

__all__ = ["Cached", "CachedFunction"]

P = ParamSpec("P")
R = TypeVar("R")
R_co = TypeVar("R_co", covariant=True)
Q = ParamSpec("Q")
W = TypeVar("W")

logger = logging.getLogger("stashly")
_EMPTY = inspect.Parameter.empty
_RECEIVERS = ("self", "cls")


class CachedFunction(Protocol[P, R_co]):
    """What ``@cached`` returns: the function, plus ``invalidate`` and ``cache_key`` for the same arguments."""

    @property
    def __wrapped__(self) -> Callable[P, R_co]: ...

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R_co: ...

    def invalidate(self, *args: P.args, **kwargs: P.kwargs) -> Any:
        """Drop the entry for these arguments: ``True`` if one was removed (awaitable for ``async def``)."""
        ...

    def cache_key(self, *args: P.args, **kwargs: P.kwargs) -> str:
        """The backend key these arguments map to."""
        ...


class _Binding:
    """What a plan needs from its manager, worked out once per manager (the default manager is resolved late)."""

    __slots__ = ("expiry", "guard", "head", "manager", "reader", "salt", "strict")

    def __init__(self, plan: _Plan, manager: CacheManager) -> None:
        settings = manager.settings
        annotation = plan.return_annotation()
        self.manager = manager
        namespace = plan.namespace or settings.namespace
        self.head = keys.namespace_prefix(settings.prefix, namespace)
        self.guard = keys.guard_key(settings.prefix, namespace)
        self.reader = codec.reader_for(annotation)
        self.salt = codec.schema_fingerprint(annotation)
        self.strict = settings.strict if plan.strict is None else plan.strict
        self.expiry = resolve_ttl(plan.ttl, settings.default_ttl, settings.allow_no_expiry, f"@cached {plan.name}")


class _Plan:
    """Everything about one decorated function that does not depend on a call: signature, key recipe, TTL."""

    def __init__(
        self,
        fn: Callable[..., Any],
        *,
        namespace: str | None,
        manager: CacheManager | None,
        strict: bool | None,
        ttl: TTL | NotSet,
        template: str | None,
        ignore: Iterable[str],
        localns: dict[str, Any] | None = None,
        lock_lease: float | None = None,
    ) -> None:
        self.fn = fn
        self.lock_lease = lock_lease
        self.localns = localns
        self.name = keys.function_name(fn)
        self.namespace = namespace
        self.strict = strict
        self.ttl = check_ttl(ttl, f"@cached {self.name}")
        self._manager = manager
        self._binding: _Binding | None = None
        self.signature = inspect.signature(fn)
        params = list(self.signature.parameters.values())
        self._names = tuple(p.name for p in params)
        ignored = frozenset(ignore)
        unknown = ignored.difference(self._names)
        if unknown:
            raise ValueError(f"@cached {self.name}: ignore= names {sorted(unknown)}, not parameters of {self._names}")
        self._keyed = tuple(name not in ignored for name in self._names)
        self._receiver = (
            bool(params) and params[0].name in _RECEIVERS and params[0].kind <= params[0].POSITIONAL_OR_KEYWORD
        )
        self._template = keys.KeyTemplate(template, self._names, self.name) if template is not None else None
        # Fast binding applies when every parameter can be passed by position or keyword (the common case).
        self._simple = all(p.kind is p.POSITIONAL_OR_KEYWORD for p in params)
        self._defaults = tuple(p.default for p in params)
        self._index = {name: i for i, name in enumerate(self._names)}
        self._annotation: Any = NOT_SET

    def return_annotation(self) -> Any:
        """The return annotation (``Any`` when absent), resolved lazily so forward references can be defined later."""
        if self._annotation is NOT_SET:
            if self.signature.return_annotation is _EMPTY:
                self._annotation = Any
            else:
                try:
                    self._annotation = typing.get_type_hints(self.fn, localns=self.localns, include_extras=True).get(
                        "return", Any
                    )
                except Exception as exc:
                    raise TypeError(f"@cached {self.name}: cannot resolve its return annotation: {exc}") from exc
        return self._annotation

    def binding(self) -> _Binding:
        manager = self._manager or default_manager()
        binding = self._binding
        if binding is None or binding.manager is not manager:
            binding = self._binding = _Binding(self, manager)
        return binding

    def bind(self, args: Sequence[Any], kwargs: dict[str, Any]) -> Sequence[Any]:
        """The argument values in signature order, defaults applied; raises ``TypeError`` like the call would."""
        count = len(args)
        if self._simple and count <= len(self._names):
            if not kwargs and count == len(self._names):
                return args
            values = [*args, *self._defaults[count:]]
            for name, value in kwargs.items():
                i = self._index.get(name, -1)
                if i < count:  # unknown name, or given twice: let inspect produce the right TypeError
                    break
                values[i] = value
            else:
                if _EMPTY not in values[count:]:
                    return values
        bound = self.signature.bind(*args, **kwargs)
        bound.apply_defaults()
        return tuple(bound.arguments.values())

    def key(self, binding: _Binding, args: Sequence[Any], kwargs: dict[str, Any]) -> str:
        values = self.bind(args, kwargs)
        if self._template is not None:
            return binding.head + self._template.render(dict(zip(self._names, values, strict=True)))
        pairs: list[tuple[str, object]] = []
        for name, value, keyed in zip(self._names, values, self._keyed, strict=True):
            if keyed and not is_context(value):
                pairs.append((name, value))
        if self._receiver and self._keyed[0]:
            pairs[0] = (self._names[0], keys.receiver_key(values[0], f"{self._names[0]} of {self.name}"))
        return f"{binding.head}{self.name}:{keys.digest(pairs, salt=binding.salt, where=self.name)}"

    def payload(self, result: object, key: str) -> bytes | None:
        """The bytes to store for ``result``, or ``None`` when it must not be stored (a framework response)."""
        if is_context(result):
            return None
        if self._annotation is Any and _is_structured(result):
            _warn_unannotated(self.name, result)
        return codec.encode(result, key)

    def fill(self, binding: _Binding, key: str, found: Lookup, call: Callable[[], Any]) -> Filled:
        """Compute (``call``) and store a missing entry; under the stampede lock when ``lock=True``."""
        manager = binding.manager

        def compute(token: Token, lock: Lock) -> Filled:
            result = call()
            payload = self.payload(result, key)
            if payload is not None:
                manager._fill(key, payload, binding.expiry, binding.guard, token, binding.strict, lock)
            return result, payload

        if self.lock_lease is None:
            return compute(found.token, None)

        def look() -> Lookup:
            return manager._lookup_sync(key, binding.guard, binding.reader, binding.strict)

        return fill_under_lock(manager, key, self.lock_lease, look, found.token, compute)

    async def afill(self, binding: _Binding, key: str, found: Lookup, call: Callable[[], Awaitable[Any]]) -> Filled:
        """Async :meth:`fill`."""
        manager = binding.manager

        async def compute(token: Token, lock: Lock) -> Filled:
            result = await call()
            payload = self.payload(result, key)
            if payload is not None:
                await manager._afill(key, payload, binding.expiry, binding.guard, token, binding.strict, lock)
            return result, payload

        if self.lock_lease is None:
            return await compute(found.token, None)

        async def look() -> Lookup:
            return await manager._alookup(key, binding.guard, binding.reader, binding.strict)

        return await afill_under_lock(manager, key, self.lock_lease, look, found.token, compute)


def _is_structured(value: object) -> bool:
    return isinstance(value, pydantic.BaseModel) or (
        hasattr(value, "__dataclass_fields__") and not isinstance(value, type)
    )


@functools.lru_cache(maxsize=256)
def _warn_unannotated_once(name: str, kind: str) -> None:
    logger.warning(
        "@cached %s returned a %s but has no return annotation: cache hits will return plain JSON (dicts); "
        "annotate the return type (-> %s) to get the same type back",
        name,
        kind,
        kind,
    )


def _warn_unannotated(name: str, value: object) -> None:
    _warn_unannotated_once(name, type(value).__qualname__)


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
        self.namespace = None if namespace is None else parse_name(namespace, "Cached(namespace=...)")
        self.ttl = check_ttl(ttl, f"Cached(namespace={namespace!r})")
        self._manager = manager
        self.strict = strict

    @property
    def manager(self) -> CacheManager:
        """The manager this cache stores through."""
        return self._manager or default_manager()

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
    ) -> Callable[[Callable[P, R]], CachedFunction[P, R]]: ...

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
    ) -> CachedFunction[P, R] | Callable[[Callable[P, R]], CachedFunction[P, R]]:
        """Cache ``fn``'s results; use bare (``@cache.cached``) or with options (``@cache.cached(ttl=30)``).

        ``ttl`` overrides the cache's TTL for this function; ``key`` is a template such as
        ``"profile:{user_id}"`` (fields must be parameters; values are escaped); ``ignore`` names parameters
        left out of the key (a database session, a logger). ``http=True`` (FastAPI endpoints) adds ``ETag``,
        ``304 Not Modified``, ``Cache-Control`` and ``X-Cache`` headers: see :mod:`stashly.fastapi`.
        ``lock=True`` makes one process compute a missing entry while the others wait for it (for at most
        ``lock_lease`` seconds, the lock's lifetime): see :mod:`stashly.stampede`.
        """

        def decorate(fn: Callable[P, R], localns: dict[str, Any] | None = None) -> CachedFunction[P, R]:
            _check_decoratable(fn, key)
            if localns is None:
                localns = _defining_scope()
            plan = _Plan(
                fn,
                namespace=self.namespace,
                manager=self._manager,
                strict=self.strict,
                ttl=self.ttl if ttl is NOT_SET else ttl,
                template=key,
                ignore=ignore,
                localns=localns,
                lock_lease=check_lease(lock_lease, keys.function_name(fn)) if lock else None,
            )
            is_async = inspect.iscoroutinefunction(fn)
            if http:
                from .integrations.fastapi import http_endpoint  # the only path that needs FastAPI

                wrapper = http_endpoint(plan, is_async)
            else:
                wrapper = _async_wrapper(plan) if is_async else _sync_wrapper(plan)
            return typing.cast(CachedFunction[P, R], _attach(wrapper, plan, is_async))

        return decorate if fn is None else decorate(fn, _defining_scope())

    def remove(self, fn: CachedFunction[P, Any]) -> Remover[P]:
        """Drop ``fn``'s entries: call it with ``fn``'s arguments, or decorate a function that changes the data.

        >>> auth_cache.remove(get_me)(5)          # same as get_me.invalidate(5)
        False
        >>> @auth_cache.remove(get_me)            # after update_me runs, drop get_me's entry for the
        ... def update_me(user_id: int, email: str) -> None: ...   # arguments the two share by name
        """
        if getattr(fn, "invalidate", None) is None:
            raise TypeError(f"{keys.function_name(fn)} is not a @cached function, so it has no entries to remove")
        return Remover(fn)


class Remover(Generic[P]):
    """What :meth:`Cached.remove` returns: an invalidation with the cached function's signature, or a decorator.

    As a decorator on a write function (a ``PATCH`` endpoint), it drops the cached function's entry after
    every call, even one that raised, for the write function's arguments that share names with the cached
    function's parameters.
    """

    def __init__(self, target: CachedFunction[P, Any]) -> None:
        self._target = target
        self.__signature__ = inspect.signature(target.__wrapped__)
        self.__name__ = target.__name__  # type: ignore[attr-defined]

    @overload
    def __call__(self, write: Callable[Q, W], /) -> Callable[Q, W]: ...
    @overload
    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> Any: ...

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if len(args) == 1 and not kwargs and inspect.isfunction(args[0]):
            return self._after(args[0])  # a function is never a keyable argument: this is decoration
        return self._target.invalidate(*args, **kwargs)

    def _after(self, write: Callable[..., Any]) -> Callable[..., Any]:
        target = self._target
        invalidate: Callable[..., Any] = target.invalidate
        write_signature = inspect.signature(write)
        wanted = self.__signature__.parameters
        shared = [name for name in wanted if name in write_signature.parameters]
        missing = [p.name for p in wanted.values() if p.name not in shared and p.default is p.empty]
        where = f"@remove({keys.function_name(target.__wrapped__)}) on {keys.function_name(write)}"
        if missing:
            raise TypeError(f"{where}: {keys.function_name(write)} has no parameters named {missing}")
        target_is_async = inspect.iscoroutinefunction(target)

        def arguments(args: tuple[Any, ...], kwargs: dict[str, Any]) -> dict[str, Any]:
            bound = write_signature.bind(*args, **kwargs)
            bound.apply_defaults()
            return {name: bound.arguments[name] for name in shared}

        if inspect.iscoroutinefunction(write):

            @functools.wraps(write)
            async def async_write(*args: Any, **kwargs: Any) -> Any:
                drop = arguments(args, kwargs)
                try:
                    return await write(*args, **kwargs)
                finally:
                    outcome = invalidate(**drop)
                    if target_is_async:
                        await outcome

            return async_write
        if target_is_async:
            raise TypeError(f"{where}: {keys.function_name(target.__wrapped__)} is async; make the writer async too")

        @functools.wraps(write)
        def sync_write(*args: Any, **kwargs: Any) -> Any:
            drop = arguments(args, kwargs)
            try:
                return write(*args, **kwargs)
            finally:
                invalidate(**drop)

        return sync_write


def check_lease(lease: float, where: str) -> float:
    if isinstance(lease, bool) or not isinstance(lease, int | float) or not 0 < lease < float("inf"):
        raise ValueError(f"@cached {where}: lock_lease must be a positive number of seconds, got {lease!r}")
    return float(lease)


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


def _sync_wrapper(plan: _Plan) -> Callable[..., Any]:
    fn = plan.fn
    flight: SingleFlight[Filled] = SingleFlight()

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        binding = plan.binding()
        key = plan.key(binding, args, kwargs)
        found = binding.manager._lookup_sync(key, binding.guard, binding.reader, binding.strict)
        if found.value is not MISSING:
            return found.value

        def fill() -> Filled:
            return plan.fill(binding, key, found, lambda: fn(*args, **kwargs))

        # Keyed by the guard token too: a call after an invalidation never joins a computation from before it.
        return flight.run((key, found.token), fill)[0]

    return wrapper


def _async_wrapper(plan: _Plan) -> Callable[..., Any]:
    fn = plan.fn
    flight: AsyncSingleFlight[Filled] = AsyncSingleFlight()

    @functools.wraps(fn)
    async def wrapper(*args: Any, **kwargs: Any) -> Any:
        binding = plan.binding()
        key = plan.key(binding, args, kwargs)
        found = await binding.manager._alookup(key, binding.guard, binding.reader, binding.strict)
        if found.value is not MISSING:
            return found.value

        async def fill() -> Filled:
            return await plan.afill(binding, key, found, lambda: fn(*args, **kwargs))

        return (await flight.run((key, found.token), fill))[0]

    return wrapper


def _attach(wrapper: Callable[..., Any], plan: _Plan, is_async: bool) -> Callable[..., Any]:
    """Give ``wrapper`` its ``invalidate`` and ``cache_key``, both taking the cached function's arguments."""

    def sync_invalidate(*args: Any, **kwargs: Any) -> bool:
        binding = plan.binding()
        return binding.manager._delete(plan.key(binding, args, kwargs), binding.guard, binding.strict)

    async def async_invalidate(*args: Any, **kwargs: Any) -> bool:
        binding = plan.binding()
        return await binding.manager._adelete(plan.key(binding, args, kwargs), binding.guard, binding.strict)

    def cache_key(*args: Any, **kwargs: Any) -> str:
        return plan.key(plan.binding(), args, kwargs)

    invalidate = async_invalidate if is_async else sync_invalidate
    for helper, name in ((invalidate, "invalidate"), (cache_key, "cache_key")):
        functools.update_wrapper(helper, plan.fn)  # carries fn's signature: the helpers take its arguments
        helper.__name__, helper.__qualname__ = name, f"{plan.fn.__qualname__}.{name}"
    wrapper.invalidate = invalidate  # type: ignore[attr-defined]
    wrapper.cache_key = cache_key  # type: ignore[attr-defined]
    return wrapper
