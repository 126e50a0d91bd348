"""The call of an ``@cached(http=True)`` endpoint: the cached call, then validators and cache headers.

Written for asyncio in ``endpoint_async.py``; ``endpoint_sync.py`` is generated from it by
``scripts/unasync.py`` (``make unasync``). The fill is the decorator's own (:func:`stashly.decorator.flow_async.fill`),
with the entry the route renders (:class:`~.http.HttpEndpoint`) stored instead of the plain result.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from ...decorator import flow_async as flow  # unasync: from ...decorator import flow_sync as flow
from ...decorator.plan import Plan
from ...decorator.singleflight import AsyncSingleFlight
from ...decorator.stampede import Filled
from ...sentinels import MISSING
from .http import HttpEndpoint, fresh_for

__all__ = ["endpoint"]


def endpoint(plan: Plan) -> Callable[..., Any]:
    """The endpoint FastAPI calls: a hit answers from the entry, a miss computes once per key and stores."""
    fn = plan.fn
    flight: AsyncSingleFlight[Filled] = AsyncSingleFlight()

    @functools.wraps(fn)
    async def cached_endpoint(*args: Any, **kwargs: Any) -> Any:
        request, response, route = http.context(kwargs)
        binding = plan.binding()
        tagged = plan.tagged_key(binding, args, kwargs)
        key = tagged.key
        reader = http.reader_for(binding, route)
        looked = await flow.tagged_lookup(plan, binding, tagged, reader, True)
        if looked is None:  # tags unprovable or uncommitted: answered without the cache
            return http.bypass(response, await fn(*args, **kwargs))
        found, tags = looked
        if found.value is not MISSING:
            ttl = None if found.ttl is None else found.ttl - binding.grace
            return http.respond(request, response, kwargs, route, key, (found.value, found.raw, ttl, "HIT"))

        store = http.storing(route, response)

        async def call() -> Any:
            return store(await fn(*args, **kwargs))

        value, stored, state = await flow.resolve(plan, binding, key, found, call, flight, reader, tags)
        fresh = 0.0 if state == "STALE" else fresh_for(binding)
        return http.respond(request, response, kwargs, route, key, (value, stored, fresh, state))

    http = HttpEndpoint(plan, cached_endpoint)
    cached_endpoint.__signature__ = http.signature(plan)  # type: ignore[attr-defined]
    return cached_endpoint
