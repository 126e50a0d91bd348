"""``stashly.fastapi``: the former spelling of :mod:`stashly.integrations.fastapi`, kept as an alias."""

from .integrations.fastapi import CONTEXT_TYPES, etag, if_none_match, stats_router

__all__ = ["CONTEXT_TYPES", "etag", "if_none_match", "stats_router"]
