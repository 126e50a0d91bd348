"""The FastAPI integration (extra ``stashly[fastapi]``).

``@cache.cached`` works under a route decorator as it is: FastAPI still sees the endpoint's parameters and
dependencies. ``@cache.cached(http=True)`` adds HTTP caching semantics:

- ``ETag``: a strong validator, a digest of the entry's key and stored bytes (the same in every worker and
  after restarts), and ``304 Not Modified`` when ``If-None-Match`` matches — compared only after the
  endpoint's dependencies (authentication) ran, and only against this endpoint's own entry;
- ``Cache-Control: private, max-age=<remaining ttl>`` and ``Vary: Authorization, Cookie`` when the response
  may depend on who asks (a dependency such as ``current_user``, a ``Cookie()`` parameter, a ``Request``
  parameter or a security scheme anywhere in the route's dependencies, a request body, a request that
  carries credentials or a response that sets a cookie); ``public`` only when none of these holds. Every
  ``Header()`` parameter of the endpoint or a dependency is named in ``Vary`` (``x_tenant`` as
  ``X-Tenant``). A miss advertises the TTL less ``ttl_jitter``;
- under a route, the entry is what the client receives: the result validated and serialized through the
  response model with every ``response_model_*`` option (never a field the model filters out), and the
  status and headers the endpoint set (never a cookie); a hit sends it as it is;
- ``X-Cache: HIT`` or ``MISS``; ``BYPASS`` (with ``no-store``) when a tagged call skips the cache: its tags
  cannot be proved current (the backend is down) or the request's open transaction wrote one of them.

A client's ``Cache-Control: no-cache`` revalidates (the ``ETag`` dance); it never forces a recomputation or
an invalidation. Values of the types named in :data:`CONTEXT_TYPES` (request, response, background tasks,
SQLAlchemy sessions) are left out of keys automatically; SQLAlchemy ORM instances are keyed by class and
primary key.

:func:`stats_router` serves a small dashboard of a manager's counters (HTML and JSON) wherever it is mounted.
"""

from __future__ import annotations

from ...decorator.context import CONTEXT_TYPES
from .http import etag, if_none_match
from .stats_page import stats_router

__all__ = ["CONTEXT_TYPES", "etag", "if_none_match", "stats_router"]
