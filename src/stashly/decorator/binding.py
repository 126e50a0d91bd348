"""What a cached function needs from its manager (engines, key heads, reader, counters, memos), worked out once
per manager: the default manager is resolved late, at the first call."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .. import keys
from ..engine import AsyncEngine, Engine, Hooks
from ..errors import ConfigError
from ..keys.canonical import salt_part
from ..stats import Site
from ..storage import codec
from ..ttl import resolve_ttl
from .tagging import TaggedCall

if TYPE_CHECKING:
    from ..manager import CacheManager
    from .plan import Plan

__all__ = ["Binding"]


class Binding:
    """What a plan needs from its manager, worked out once per manager (the default manager is resolved late)."""

    __slots__ = (
        "aengine",
        "calls",
        "engine",
        "expiry",
        "fragments",
        "function_head",
        "grace",
        "guard",
        "head",
        "hooks",
        "keys",
        "manager",
        "namespace",
        "prefix",
        "reader",
        "salt",
        "salt_part",
        "site",
        "strict",
        "tag_keys",
    )

    def __init__(self, plan: Plan, manager: CacheManager) -> None:
        settings = manager.settings
        annotation = plan.return_annotation()
        self.manager: CacheManager = manager
        self.engine: Engine = manager.engine
        self.aengine: AsyncEngine = manager.aengine
        self.hooks: Hooks = manager.engine.hooks
        self.prefix: str = settings.prefix
        self.namespace: str = plan.namespace or settings.namespace
        namespace = self.namespace  # site.namespace may be stats.OTHER
        self.head: str = keys.namespace_prefix(settings.prefix, namespace)
        self.guard: str = keys.guard_key(settings.prefix, namespace)
        # Pickled values come back as the objects they were; JSON is validated into the annotation.
        self.reader: codec.Reader = codec.reader_for(annotation if settings.serializer == "json" else None)
        self.salt: bytes = codec.schema_fingerprint(annotation)
        self.salt_part: bytes = salt_part(self.salt)
        self.function_head: str = f"{self.head}{plan.name}:"  # every key of the function starts so
        self.strict: bool = settings.strict if plan.strict is None else plan.strict
        self.expiry: float | None = resolve_ttl(
            plan.ttl, settings.default_ttl, settings.allow_no_expiry, f"@cached {plan.name}"
        )
        self.keys: dict[tuple[Any, ...], str] = {}  # positional int/str arguments -> key, see Plan.key
        # A call's tags and their keys, by its tags, and with its key by its arguments (Plan.tagged_key); the
        # fragment of tags' tokens, by the tags and tokens (tagged_lookup): a hit neither renders nor serialises.
        self.tag_keys: dict[tuple[str, ...], tuple[tuple[str, ...], list[str]]] = {}
        self.calls: dict[tuple[Any, ...], TaggedCall] = {}
        self.fragments: dict[tuple[object, ...], bytes] = {}
        self.site: Site = manager.function_site(namespace, plan.name)
        self.grace: float = plan.fail_safe or 0.0  # a fail-safe entry outlives its logical expiry by this much
        if plan.fail_safe is not None and settings.serializer != "json":
            raise ConfigError(
                f"@cached {plan.name}: fail_safe needs the JSON serializer (its entries carry their logical expiry "
                "in the JSON envelope)"
            )
        if (plan.tags is not None or plan.result_tags is not None) and settings.serializer != "json":
            raise ConfigError(f"@cached {plan.name}: tags need the JSON serializer (entries carry their tags)")
