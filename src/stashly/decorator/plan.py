"""The plan of one cached function: its key recipe, its TTL and what it stores for a result. No I/O.

Everything about a decorated function that does not depend on a call is worked out once, at decoration:
the signature, which arguments are keyed, the template, the TTL. What depends on the manager (the default
manager is resolved late) is worked out once per manager: the :class:`Binding`.
"""

from __future__ import annotations

import functools
import inspect
import logging
import typing
from collections.abc import Callable, Iterable, Sequence
from datetime import timedelta
from typing import TYPE_CHECKING, Any

import pydantic

from .. import keys
from ..engine import Lookup
from ..errors import SerializationError
from ..keys.canonical import hashed, name_part
from ..keys.encoding import encode_value
from ..manager import default_manager
from ..memo import remember
from ..sentinels import NOT_SET, NotSet
from ..tags import core as tag_names
from ..ttl import TTL, check_ttl
from .binding import Binding
from .context import is_context
from .tagging import CallTags, TaggedCall, TagSpec

if TYPE_CHECKING:
    from ..manager import CacheManager

__all__ = ["Binding", "Plan", "Serialized", "check_duration", "check_lease", "check_refresh_ahead"]

logger: logging.Logger = logging.getLogger("stashly.plan")  # the documented name, wherever the module lives
_EMPTY = inspect.Parameter.empty
_RECEIVERS = ("self", "cls")
_MEMO_TEXT = 256  # longer strings are not remembered (the memo must stay small)


class Serialized(dict[str, Any]):
    """A result already serialized for storage (``@cached(http=True)``'s response bodies): stored as it is,
    never narrowed into the return annotation."""


class Plan:
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
        refresh_ahead: float | None = None,
        fail_safe: float | None = None,
        fail_safe_throttle: float | None = None,
        soft_timeout: float | None = None,
        hard_timeout: float | None = None,
        tags: TagSpec | None = None,
        result_tags: Callable[[Any], Iterable[str]] | None = None,
        share: bool = False,
    ) -> None:
        self.fn = fn
        self.share = share
        if result_tags is not None and not callable(result_tags):
            raise TypeError(
                f"@cached {keys.function_name(fn)}: result_tags is a callable of the result, not {result_tags!r}"
            )
        self.result_tags = result_tags
        self.fail_safe = fail_safe
        self.fail_safe_throttle = fail_safe_throttle
        self.soft_timeout = soft_timeout
        self.hard_timeout = hard_timeout
        self.lock_lease = lock_lease
        self.refresh_ahead = refresh_ahead
        self.localns = localns
        self.name: str = keys.function_name(fn)
        self.namespace = namespace
        self.strict = strict
        self.ttl: float | NotSet | None = check_ttl(ttl, f"@cached {self.name}")
        self._manager = manager
        self._binding: Binding | None = None
        self.signature: inspect.Signature = inspect.signature(fn)
        params = list(self.signature.parameters.values())
        self._names = tuple(p.name for p in params)
        ignored = frozenset(ignore)
        unknown = ignored.difference(self._names)
        if unknown:
            raise ValueError(f"@cached {self.name}: ignore= names {sorted(unknown)}, not parameters of {self._names}")
        self._keyed = tuple(name not in ignored for name in self._names)
        self._name_parts = tuple(name_part(name) for name in self._names)
        self.tags: CallTags | None = None if tags is None else CallTags(tags, self._names, self.name)
        self._tags_by_arguments = self.tags is None or self.tags.from_arguments
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

    def binding(self) -> Binding:
        manager = self._manager or default_manager()
        binding = self._binding
        if binding is None or binding.manager is not manager:
            binding = self._binding = Binding(self, manager)
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
                if not any(value is _EMPTY for value in values[count:]):  # identity: never call __eq__
                    return values
        try:
            bound = self.signature.bind(*args, **kwargs)
        except TypeError as exc:  # the call, invalidate, cache_key and remove all bind here: name the function
            raise TypeError(f"{self.name}(): {exc}") from None
        bound.apply_defaults()
        return tuple(bound.arguments.values())

    def key(self, binding: Binding, args: tuple[Any, ...], kwargs: dict[str, Any]) -> str:
        """The full key for a call. Calls with only positional ``int`` and ``str`` arguments (exactly those
        types: ``1``, ``1.0`` and ``True`` are equal as dict keys but must key apart) are remembered."""
        if not kwargs and not self._receiver:  # self._remembered spelled out: every untagged hit
            for arg in args:
                kind = type(arg)
                if kind is not int and (kind is not str or len(arg) > _MEMO_TEXT):
                    break
            else:
                memo = binding.keys
                key = memo.get(args)
                if key is None:
                    key = self._plain_key(binding, args)
                    remember(memo, args, key)
                return key
        return self._key(binding, args, kwargs)

    def _plain_key(self, binding: Binding, args: tuple[Any, ...]) -> str:
        """:meth:`_key` of a call with positional ``int`` and ``str`` arguments only, each one (no defaults):
        the same digest, without the general path's binding and checks (a large key set's every call)."""
        if len(args) != len(self._names) or self._template is not None:
            return self._key(binding, args, {})
        if len(args) == 1 and self._keyed[0]:  # the commonest: one argument
            return binding.function_head + hashed([binding.salt_part, self._name_parts[0], encode_value(args[0], 0)])
        parts = [binding.salt_part]
        for name, value, keyed in zip(self._name_parts, args, self._keyed, strict=True):
            if keyed:
                parts.append(name)
                parts.append(encode_value(value, 0))
        return binding.function_head + hashed(parts)

    def _remembered(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> bool:
        """Whether what a call derives from its arguments (key, tags) is kept in a memo keyed by ``args``."""
        if kwargs or self._receiver:
            return False
        for arg in args:
            kind = type(arg)
            if kind is not int and (kind is not str or len(arg) > _MEMO_TEXT):
                return False
        return True

    def _key(self, binding: Binding, args: Sequence[Any], kwargs: dict[str, Any]) -> str:
        values = self.bind(args, kwargs)
        if self._template is not None:
            return binding.head + self._template.render(dict(zip(self._names, values, strict=True)))
        pairs: list[tuple[str, object]] = []
        for name, value, keyed in zip(self._names, values, self._keyed, strict=True):
            if keyed and not is_context(value):
                pairs.append((name, value))
        if self._receiver and self._keyed[0]:
            pairs[0] = (self._names[0], keys.receiver_key(values[0], f"{self._names[0]} of {self.name}"))
        return f"{binding.function_head}{keys.digest(pairs, salt=binding.salt, where=self.name)}"

    def tags_for(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[str, ...]:
        """The tags of a call (none without ``tags=``)."""
        if self.tags is None:
            return ()
        return self.tags(self._names, self.bind(args, kwargs), args, kwargs)

    def tagged_key(self, binding: Binding, args: tuple[Any, ...], kwargs: dict[str, Any]) -> TaggedCall:
        """:meth:`key`, the call's tags and their keys, with the tag epoch's last under ``result_tags`` (a fill
        needs it). Remembered per argument tuple like the key, unless a callable names the tags (called each time)."""
        by_args = self._tags_by_arguments and self._remembered(args, kwargs)
        if by_args:
            found = binding.calls.get(args)
            if found is not None:
                return found
        names = self.tags_for(args, kwargs)
        tagged = binding.tag_keys.get(names)
        if tagged is None:
            tag_keys = [keys.tag_key(binding.prefix, name) for name in names]
            if self.result_tags is not None:
                tagged = (*names, tag_names.EPOCH), [*tag_keys, keys.tags_epoch_key(binding.prefix)]
            else:
                tagged = names, tag_keys
            remember(binding.tag_keys, names, tagged)
        if by_args:  # remembered here with its key: not in binding.keys as well
            found = TaggedCall(self._key(binding, args, kwargs), *tagged)
            remember(binding.calls, args, found)
            return found
        return TaggedCall(self.key(binding, args, kwargs), *tagged)

    def payload(
        self, binding: Binding, result: object, key: str, ttl: float | None, tags: bytes | None = None
    ) -> bytes | None:
        """The bytes to store for ``result`` (fresh for ``ttl`` seconds, for ``fail_safe``; filed under the tag
        tokens ``tags``), or ``None`` when it must not be stored (a framework response)."""
        if is_context(result):
            return None
        annotation = self._annotation
        if annotation is Any and _is_structured(result):
            _warn_unannotated(self.name, result)
        elif _is_model(annotation) and type(result) is not annotation and not isinstance(result, Serialized):
            result = _narrowed(annotation, result, key)  # store what the annotation declares, not extra fields
        return binding.engine.encode(result, key, None if self.fail_safe is None else ttl, tags)

    def refresh_due(self, binding: Binding, found: Lookup) -> bool:
        """Whether a hit is close enough to expiry to be recomputed in the background (``refresh_ahead``)."""
        return (
            self.refresh_ahead is not None
            and found.ttl is not None
            and binding.expiry is not None
            and found.ttl - binding.grace < self.refresh_ahead * binding.expiry
        )

    def served_stale(self, binding: Binding, key: str, why: str) -> None:
        """Count and log a ``fail_safe`` answer: the last good value, past its TTL, because the recomputation
        ``why``."""
        binding.site.stale_serves += 1
        binding.engine.failures.served_stale(key, self.name, why)


def _is_structured(value: object) -> bool:
    return isinstance(value, pydantic.BaseModel) or (
        hasattr(value, "__dataclass_fields__") and not isinstance(value, type)
    )


def _is_model(annotation: Any) -> bool:
    return isinstance(annotation, type) and issubclass(annotation, pydantic.BaseModel)


def _narrowed(model: type[pydantic.BaseModel], result: object, key: str) -> pydantic.BaseModel:
    """``result`` (a subclass instance, an ORM row) as exactly ``model``: a row's password hash is left out.

    A subclass instance keeps only ``model``'s fields (Pydantic serializes a value as its declared type).
    """
    try:
        if isinstance(result, model):
            return model.model_validate(model.__pydantic_serializer__.to_python(result, by_alias=True))
        return model.model_validate(result, from_attributes=True)
    except pydantic.ValidationError as exc:
        raise SerializationError(
            f"cannot cache the value for key {key!r}: a {type(result).__qualname__} does not validate as the "
            f"return annotation {model.__qualname__} ({exc.error_count()} errors)"
        ) from None


@functools.lru_cache(maxsize=256)
def _warn_unannotated_once(name: str, kind: str) -> None:
    logger.warning(
        "@cached %s returned a %s but has no return annotation: every field of the %s is stored and cache hits "
        "will return plain JSON (dicts); annotate the return type with what callers should get back: for a "
        "FastAPI endpoint its response model, so the fields it filters out (a password hash) are never stored, "
        "or use @cached(http=True), which stores what the client receives",
        name,
        kind,
        kind,
        extra={"namespace": None, "function": name, "outcome": "unannotated"},
    )


def _warn_unannotated(name: str, value: object) -> None:
    _warn_unannotated_once(name, type(value).__qualname__)


def check_refresh_ahead(fraction: float | None, where: str) -> float | None:
    if fraction is None:
        return None
    if isinstance(fraction, bool) or not isinstance(fraction, int | float) or not 0 < fraction < 1:
        raise ValueError(f"@cached {where}: refresh_ahead must be a fraction of the TTL in (0, 1), got {fraction!r}")
    return float(fraction)


def check_max_age(seconds: float, where: str) -> float:
    """``max_age`` in seconds, checked, as milliseconds."""
    if isinstance(seconds, bool) or not isinstance(seconds, int | float) or not 0 <= seconds < float("inf"):
        raise ValueError(f"@cached {where}: max_age must be a number of seconds >= 0, got {seconds!r}")
    return seconds * 1000


def check_lease(lease: float, where: str) -> float:
    if isinstance(lease, bool) or not isinstance(lease, int | float) or not 0 < lease < float("inf"):
        raise ValueError(f"@cached {where}: lock_lease must be a positive number of seconds, got {lease!r}")
    return float(lease)


def check_duration(value: float | timedelta | None, option: str, where: str) -> float | None:
    """A positive number of seconds (or a ``timedelta``) for ``option``; ``None`` stays ``None``."""
    if value is None:
        return None
    if isinstance(value, timedelta):
        value = value.total_seconds()
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value < float("inf"):
        raise ValueError(f"@cached {where}: {option} must be a positive number of seconds or timedelta, not {value!r}")
    return float(value)
