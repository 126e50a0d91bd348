"""What ``@cached`` returns, as a type checker sees it: descriptors that bind like methods, typed per mode.

At runtime the decorated function is a plain wrapper with attributes (:func:`.cached._attach`); these protocols
are the types its users see: ``CachedFunction`` for a function, ``BoundCachedFunction`` once read from an instance,
``CachedClassMethod`` for a function taking ``cls``, ``CachedDecorator`` for ``@cache.cached(...)`` with options.
``tests/typing/check_types.py`` pins what mypy and pyright make of each.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any, Concatenate, ParamSpec, Protocol, Self, TypeVar, overload

__all__ = ["BoundCachedFunction", "CachedClassMethod", "CachedDecorator", "CachedFunction"]

P = ParamSpec("P")
Q = ParamSpec("Q")
R = TypeVar("R")
S = TypeVar("S")
R_co = TypeVar("R_co", covariant=True)
S_contra = TypeVar("S_contra", contravariant=True)

# An ``async def`` is the one case a cached function's ``invalidate`` is awaitable. mypy calls the two overloads
# that say so "overlapping" because a plain ``def`` may also return a coroutine; the runtime asks
# ``inspect.iscoroutinefunction``, and so does the first overload in effect: a coroutine return means ``async def``.


class CachedFunction(Protocol[P, R_co]):
    """What ``@cached`` returns: the function, plus ``invalidate`` and ``cache_key`` for the same arguments.

    Typed as the descriptor it is: on a class, ``Service.lookup`` keeps ``self`` (``Service.lookup(service, 5)``,
    ``Service.lookup.invalidate(service, 5)``); on an instance, ``Service().lookup(5)`` drops it, as does a
    ``@classmethod`` for ``cls``. ``invalidate`` returns ``bool``, or a coroutine of it for an ``async def``.
    """

    @property
    def __wrapped__(self) -> Callable[P, R_co]:
        """The undecorated function."""
        ...

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R_co:
        """The cached call: a hit returns the stored value, a miss runs the function and stores its result."""
        ...

    @overload
    def invalidate(  # type: ignore[overload-overlap]
        self: CachedFunction[P, Coroutine[Any, Any, Any]], *args: P.args, **kwargs: P.kwargs
    ) -> Coroutine[Any, Any, bool]: ...
    @overload
    def invalidate(self, *args: P.args, **kwargs: P.kwargs) -> bool: ...
    def invalidate(self, *args: P.args, **kwargs: P.kwargs) -> bool | Coroutine[Any, Any, bool]:
        """Drop the entry for these arguments: ``True`` if one was removed (a coroutine for ``async def``)."""
        ...

    def refresh(self, *args: P.args, **kwargs: P.kwargs) -> R_co:
        """Compute the entry for these arguments now and store it, whatever is stored; the new value (awaitable
        for ``async def``). An invalidation during the computation still wins, as for any fill."""
        ...

    def bypass(self, *args: P.args, **kwargs: P.kwargs) -> R_co:
        """Call the function without the cache: nothing is read, nothing stored."""
        ...

    def max_age(self, seconds: float, /) -> Callable[P, R_co]:
        """The cached call for one call that accepts only an entry computed at most ``seconds`` ago; an older
        one is recomputed and stored: ``lookup.max_age(5)(user_id)`` (awaitable for ``async def``)."""
        ...

    def cache_key(self, *args: P.args, **kwargs: P.kwargs) -> str:
        """The backend key these arguments map to."""
        ...

    # mypy checks the bound ``self`` of the second overload against ``Callable[...]`` only, pyright against the
    # protocol only: the third (a ``Callable`` no instance binds, for mypy) and the fourth (the same binding, for
    # pyright) make both agree; tests/typing/check_types.py pins every case.
    @overload
    def __get__(self, instance: None, owner: type[Any] | None = None, /) -> Self: ...
    @overload
    def __get__(
        self: Callable[Concatenate[S, Q], R], instance: S, owner: type[Any] | None = None, /
    ) -> BoundCachedFunction[S, Q, R]: ...
    @overload
    def __get__(
        self: Callable[..., Any], instance: object, owner: type[Any] | None = None, /
    ) -> CachedFunction[P, R_co]: ...
    @overload
    def __get__(
        self: CachedFunction[Concatenate[S, Q], R], instance: S, owner: type[Any] | None = None, /
    ) -> BoundCachedFunction[S, Q, R]: ...
    @overload
    def __get__(self, instance: object, owner: type[Any] | None = None, /) -> Self: ...
    def __get__(self, instance: object, owner: type[Any] | None = None, /) -> Any:
        """Method binding, as for any function: read from its class a method keeps ``self``; read from an
        instance it is bound to it; a ``@staticmethod`` (whose first parameter the instance does not fit) is
        never bound."""
        ...


class CachedClassMethod(CachedFunction[Concatenate[type[S_contra], Q], R_co], Protocol[S_contra, Q, R_co]):
    """What ``@cached`` returns for a function whose first parameter is a class: put ``@classmethod`` above it.

    Read from its class or an instance, it is bound to the class: ``Service.lookup(5)``.
    """

    def __get__(  # type: ignore[override]
        self, instance: object, owner: type[Any] | None = None, /
    ) -> BoundCachedFunction[type[S_contra], Q, R_co]:
        """Bound to the class, as ``@classmethod`` does."""
        ...


class BoundCachedFunction(Protocol[S_contra, Q, R_co]):
    """A cached method bound to an instance (or a cached classmethod to its class): ``Service().lookup``.

    The call drops ``self``; ``invalidate`` and ``cache_key`` are the function's own, so they still take it
    (``service.lookup.invalidate(service, 5)``, the same as ``Service.lookup.invalidate(service, 5)``).
    """

    @property
    def __wrapped__(self) -> Callable[Concatenate[S_contra, Q], R_co]:
        """The undecorated function (``self`` first)."""
        ...

    def __call__(self, *args: Q.args, **kwargs: Q.kwargs) -> R_co:
        """The cached call, ``self`` already bound."""
        ...

    @overload
    def invalidate(  # type: ignore[overload-overlap]
        self: BoundCachedFunction[S_contra, Q, Coroutine[Any, Any, Any]],
        instance: S_contra,
        /,
        *args: Q.args,
        **kwargs: Q.kwargs,
    ) -> Coroutine[Any, Any, bool]: ...
    @overload
    def invalidate(self, instance: S_contra, /, *args: Q.args, **kwargs: Q.kwargs) -> bool: ...
    def invalidate(self, instance: S_contra, /, *args: Q.args, **kwargs: Q.kwargs) -> bool | Coroutine[Any, Any, bool]:
        """Drop the entry for ``instance`` and these arguments (a coroutine for ``async def``)."""
        ...

    def refresh(self, instance: S_contra, /, *args: Q.args, **kwargs: Q.kwargs) -> R_co:
        """Compute and store the entry for ``instance`` and these arguments now; the new value."""
        ...

    def bypass(self, instance: S_contra, /, *args: Q.args, **kwargs: Q.kwargs) -> R_co:
        """Call the method without the cache."""
        ...

    def max_age(self, seconds: float, /) -> Callable[Concatenate[S_contra, Q], R_co]:
        """The cached call accepting only an entry at most ``seconds`` old, taking ``instance`` first."""
        ...

    def cache_key(self, instance: S_contra, /, *args: Q.args, **kwargs: Q.kwargs) -> str:
        """The backend key ``instance`` and these arguments map to."""
        ...


class CachedDecorator(Protocol):
    """What ``@cache.cached(...)`` with options returns: the decorator, typed as ``@cache.cached`` is."""

    @overload
    def __call__(self, fn: Callable[Concatenate[type[S], P], R], /) -> CachedClassMethod[S, P, R]: ...
    @overload
    def __call__(self, fn: Callable[P, R], /) -> CachedFunction[P, R]: ...
    def __call__(self, fn: Callable[P, R], /) -> CachedFunction[P, R]:
        """Cache ``fn``."""
        ...
