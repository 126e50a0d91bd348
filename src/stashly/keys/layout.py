"""Every key form, built and parsed here only: entries, namespace heads, guards, locks, generations. Pure.

Every key starts with the prefix and a colon (:func:`prefix_head`). An entry is ``<prefix>:<namespace>:<rest>``; for a
decorated function ``<rest>`` is its :func:`function_name` and a digest of its arguments, or a rendered key template.
The keys that keep a namespace's state sit outside every namespace, behind an empty segment no namespace can have
(names are non-empty): ``<prefix>::guard:<namespace>``, ``<prefix>::gen:<namespace>``, ``<prefix>::lock:<entry>`` and
``<prefix>::tag:<tag>``.
On Redis Cluster the guard and lock carry a hash tag after the ``::`` (:mod:`stashly.keys.slots`).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from itertools import repeat

__all__ = [
    "classify",
    "describe",
    "entry_key",
    "function_name",
    "generation_key",
    "generation_keys",
    "guard_key",
    "guard_of",
    "head_of",
    "internal_kind",
    "lock_key",
    "locked_key",
    "log_fields",
    "namespace_prefix",
    "prefix_head",
    "retired_head",
    "tag_key",
]


def prefix_head(prefix: str) -> str:
    """What every key under ``prefix`` starts with, entries and internal keys alike: ``"stashly:"``."""
    return f"{prefix}:"


def entry_key(prefix: str, namespace: str, name: str) -> str:
    """The key of an entry named by the application: ``"stashly:app:user:1"`` for ``user:1``."""
    return f"{prefix}:{namespace}:{name}"


def namespace_prefix(prefix: str, namespace: str) -> str:
    """What every key of ``namespace`` starts with: ``"stashly:app:"``."""
    return f"{prefix}:{namespace}:"


def head_of(key: str) -> str:
    """The namespace head an entry key starts with (neither prefixes nor namespaces contain a colon).

    >>> head_of("stashly:auth:user:1")
    'stashly:auth:'
    """
    end = key.find(":", key.find(":") + 1)
    return key[: end + 1]


def guard_of(key: str) -> str:
    """The guard of the namespace an entry key belongs to: ``"stashly::guard:auth"`` for ``"stashly:auth:…"``."""
    prefix, _, rest = key.partition(":")
    return guard_key(prefix, rest.partition(":")[0])


def guard_key(prefix: str, namespace: str) -> str:
    """The invalidation counter of ``namespace``: ``"stashly::guard:app"``.

    The empty segment after the prefix can never be a namespace (names are non-empty), so the guard is never
    inside any namespace and never removed by a flush.
    """
    return f"{prefix}::guard:{namespace}"


def tag_key(prefix: str, tag: str) -> str:
    """The token of a tag: ``"stashly::tag:user:5"``, outside every namespace like the guard (tags span them)."""
    return f"{prefix}::tag:{tag}"


def tags_epoch_key(prefix: str) -> str:
    """The tag epoch: ``"stashly::tags-epoch"``, a token replaced by every tag invalidation before it drops the
    tags' tokens, so that a fill whose tags come from its result can tell whether one happened while it ran."""
    return f"{prefix}::tags-epoch"


def lock_key(prefix: str, key: str) -> str:
    """The stampede lock of an entry: ``"stashly::lock:stashly:auth:…"``, outside every namespace like the guard."""
    return f"{prefix}::lock:{key}"


def locked_key(lock: str) -> str:
    """The entry a :func:`lock_key` locks: ``"stashly:auth:…"`` for ``"stashly::lock:stashly:auth:…"``."""
    return lock.partition("::lock:")[2]


def generation_key(key: str) -> str:
    """The generation counter of the namespace ``key`` belongs to (an entry key or a namespace's head).

    >>> generation_key("stashly:auth:user:1")
    'stashly::gen:auth'
    """
    prefix, _, rest = key.partition(":")
    return f"{prefix}::gen:{rest.partition(':')[0]}"


def generation_keys(keys: Sequence[str]) -> list[str] | str:
    """:func:`generation_key` of each key, or the one they all share (the usual batch: one namespace), found
    with one string test per key."""
    first = keys[0]
    end = first.find(":", first.find(":") + 1)
    head = first[: end + 1] if end > 0 else None
    if head is not None and all(map(str.startswith, keys, repeat(head))):
        return generation_key(first)
    return [generation_key(key) for key in keys]


def retired_head(key: str) -> str | None:
    """For a generation counter, the head of its namespace's keys (they all just became unreachable).

    >>> retired_head("stashly::gen:auth")
    'stashly:auth:'
    """
    prefix, found, namespace = key.partition("::gen:")
    return f"{prefix}:{namespace}:" if found and ":" not in prefix else None


def internal_kind(key: str, prefix: str) -> str | None:
    """For a key outside every namespace (``<prefix>::<kind>:…``) its kind (``"guard"``, ``"lock"``, ``"gen"``...);
    ``None`` for any other key."""
    internal = key.removeprefix(prefix + "::")
    return internal.partition(":")[0] if internal != key else None


def classify(key: str, prefix: str) -> tuple[str | None, str]:
    """``(namespace, "")`` for an entry, ``(None, "guard" | "lock" | "other")`` for anything else."""
    namespace, separator, _ = key.removeprefix(prefix + ":").partition(":")
    if namespace and separator:
        return namespace, ""
    kind = key.removeprefix(prefix + "::").partition(":")[0] if not namespace else "other"
    return None, kind if kind in ("guard", "lock") else "other"


def log_fields(key: str, outcome: str, function: str | None = None) -> dict[str, str | None]:
    """Structured fields for a log record about ``key`` (``extra=``): its namespace, the cached function when
    known, and what happened. Never the key's text or any value."""
    namespace = key.partition(":")[2].partition(":")[0] or None
    return {"namespace": namespace, "function": function, "outcome": outcome}


def describe(key: str) -> str:
    """How logs name a key: its prefix, namespace and a short digest — never its text, which may carry argument
    values (a ``key=`` template renders them in). ``describe("stashly:auth:profile:alice")`` is
    ``"stashly:auth:…#<8 hex>"``; compute it for a known key to find its log lines."""
    prefix, _, rest = key.partition(":")
    namespace = rest.partition(":")[0]
    return f"{prefix}:{namespace}:…#{hashlib.blake2b(key.encode('utf-8', 'surrogatepass'), digest_size=4).hexdigest()}"


def function_name(fn: Callable[..., object]) -> str:
    """``module.qualname`` of ``fn``, the name its entries are filed under: ``"app.users.get_me"``.

    Lambdas all share ``module.<lambda>``; callables without ``__qualname__`` (``functools.partial``,
    instances) raise ``TypeError`` rather than borrow their type's name and share entries.
    """
    module, qualname = getattr(fn, "__module__", None), getattr(fn, "__qualname__", None)
    if not isinstance(module, str) or not isinstance(qualname, str):
        raise TypeError(f"{fn!r} has no __module__ and __qualname__ to name its cache entries by: use a def")
    return f"{module}.{qualname}"
