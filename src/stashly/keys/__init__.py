"""Keys: the layout of every key stashly writes, and the canonical encoding of arguments into an entry's digest.

Every backend key is ``<prefix>:<namespace>:<rest>``. For a decorated function ``<rest>`` is its
:func:`function_name` and a :func:`digest` of its arguments, or a :class:`KeyTemplate` rendered from them.
:mod:`~stashly.keys.layout` builds and parses every key form, :mod:`~stashly.keys.canonical` encodes arguments,
:mod:`~stashly.keys.template` renders templates and :mod:`~stashly.keys.slots` places keys on Redis Cluster.
"""

from __future__ import annotations

from .canonical import canonical, digest, receiver_key
from .layout import (
    classify,
    describe,
    entry_key,
    function_name,
    generation_key,
    generation_keys,
    guard_key,
    guard_of,
    head_of,
    internal_kind,
    lock_key,
    locked_key,
    log_fields,
    namespace_prefix,
    prefix_head,
    retired_head,
    tag_key,
    tags_epoch_key,
)
from .template import KeyTemplate

__all__ = [
    "KeyTemplate",
    "canonical",
    "classify",
    "describe",
    "digest",
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
    "receiver_key",
    "retired_head",
    "tag_key",
    "tags_epoch_key",
]
