"""A manager's namespace arguments, each validated once: its key head and its counters, and full keys from them."""

from __future__ import annotations

from ..config.settings import Settings, parse_name
from ..memo import remember
from ..stats import Site, Sites
from .layout import namespace_prefix

__all__ = ["Namespaces"]

_HEADS = 1024  # validated namespace arguments remembered per manager


class Namespaces:
    """The namespace arguments a manager has met (``None``: its own), each with its key head
    (``<prefix>:<namespace>:``) and its counters; bounded, the oldest forgotten first."""

    def __init__(self, settings: Settings, sites: Sites) -> None:
        self._prefix = settings.prefix
        self._default = settings.namespace
        self._sites = sites
        self._known: dict[str | None, tuple[str, Site]] = {}

    def full(self, key: str, namespace: str | None) -> tuple[str, Site]:
        """The full backend key of an application key, ``<prefix>:<namespace>:<key>``, and its namespace's
        counters; a key that is not a non-empty, valid Unicode string is refused."""
        if type(key) is not str or not key:
            raise TypeError(f"cache keys are non-empty strings, got {key!r}")
        if not key.isascii():
            try:
                key.encode()
            except UnicodeEncodeError:
                raise ValueError("cache keys must be valid Unicode (a lone surrogate cannot be stored)") from None
        try:
            head, site = self._known[namespace]
        except (KeyError, TypeError):  # first use of this namespace, or not a name at all (resolve says why)
            head, site = self.resolve(namespace)
        return head + key, site

    def resolve(self, namespace: str | None) -> tuple[str, Site]:
        """The key head and the counters of a namespace argument, validated once and then remembered."""
        if namespace is None or type(namespace) is str:
            found = self._known.get(namespace)
            if found is not None:
                return found
        name = self.name(namespace)
        resolved = namespace_prefix(self._prefix, name), self._sites.namespace(name)
        remember(self._known, namespace, resolved, _HEADS)
        return resolved

    def name(self, namespace: str | None) -> str:
        """The namespace an argument names, checked (``None``: the manager's own)."""
        return self._default if namespace is None else parse_name(namespace, "argument namespace")
