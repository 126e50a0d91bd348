"""``Cached.remove``: drop a cached function's entries by calling it, or after every call of a write function."""

from __future__ import annotations

import asyncio
import functools
import inspect
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any, Generic, ParamSpec, TypeVar, overload

from .. import keys

if TYPE_CHECKING:
    from .protocols import CachedFunction

__all__ = ["Remover"]

P = ParamSpec("P")
Q = ParamSpec("Q")
R_co = TypeVar("R_co", covariant=True)
W = TypeVar("W")


class Remover(Generic[P, R_co]):
    """What :meth:`Cached.remove` returns: an invalidation with the cached function's signature, or a decorator.

    As a decorator on a write function (a ``PATCH`` endpoint), it drops the cached function's entry after
    every call, even one that raised, for the write function's arguments that share names with the cached
    function's parameters. Called, it returns ``invalidate``'s answer: ``bool``, or a coroutine of it when the
    cached function is an ``async def`` (``R`` is the cached function's return type).
    """

    def __init__(self, target: CachedFunction[P, R_co]) -> None:
        self._target = target
        self.__signature__: inspect.Signature = inspect.signature(target.__wrapped__)
        self.__name__: str = target.__name__  # type: ignore[attr-defined]

    # A lone function argument is decoration, as at runtime (a function is never a keyable argument).
    @overload
    def __call__(self, write: Callable[Q, W], /) -> Callable[Q, W]: ...  # type: ignore[overload-overlap]
    @overload
    def __call__(  # type: ignore[overload-overlap]  # a coroutine return means ``async def``: see cached.py
        self: Remover[P, Coroutine[Any, Any, Any]], *args: P.args, **kwargs: P.kwargs
    ) -> Coroutine[Any, Any, bool]: ...
    @overload
    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> bool: ...

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
            try:
                bound = write_signature.bind(*args, **kwargs)
            except TypeError as exc:
                raise TypeError(f"{keys.function_name(write)}(): {exc}") from None
            bound.apply_defaults()
            return {name: bound.arguments[name] for name in shared}

        if inspect.iscoroutinefunction(write):

            @functools.wraps(write)
            async def async_write(*args: Any, **kwargs: Any) -> Any:
                drop = arguments(args, kwargs)
                try:
                    return await write(*args, **kwargs)
                finally:
                    if target_is_async:
                        await invalidate(**drop)
                    else:  # a sync invalidation does network I/O: keep it off the event loop
                        await asyncio.to_thread(invalidate, **drop)

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
