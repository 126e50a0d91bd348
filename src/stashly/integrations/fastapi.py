"""FastAPI: HTTP semantics for ``@cached(http=True)`` endpoints — ``ETag``, ``304``, ``Cache-Control``, ``X-Cache``.

The endpoint keeps its own signature for FastAPI's dependency injection; stashly adds two hidden parameters
(the ``Request`` and the ``Response``) to the signature FastAPI reads, and takes them out again before the
endpoint is called. Everything happens after FastAPI has resolved the dependencies, so authentication has
run before any validator is compared, and only this endpoint's own entry is compared.
"""

from __future__ import annotations

import functools
import hashlib
import inspect
import math
import typing
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

try:
    from fastapi import Request, Response
    from fastapi.params import Depends
except ImportError as exc:  # pragma: no cover - exercised by installs without the extra
    raise ImportError("@cached(http=True) needs FastAPI: pip install 'stashly[fastapi]'") from exc

from ..context import is_context
from ..sentinels import MISSING
from ..singleflight import AsyncSingleFlight, SingleFlight
from ..stampede import Filled

if TYPE_CHECKING:
    from ..plan import Binding, Plan

__all__ = ["etag", "http_endpoint", "if_none_match"]

_REQUEST = "stashly_request__"
_RESPONSE = "stashly_response__"
_VARY = "Authorization, Cookie"


def etag(key: str, payload: bytes) -> str:
    """A strong validator: a digest of the entry's key and stored bytes, the same in every worker and restart."""
    digest = hashlib.blake2b(payload, digest_size=16, key=hashlib.blake2b(key.encode(), digest_size=32).digest())
    return f'"{digest.hexdigest()}"'


def if_none_match(header: str | None, tag: str) -> bool:
    """Whether an ``If-None-Match`` header matches ``tag`` (weak comparison, as RFC 9110 asks for this header)."""
    if not header:
        return False
    if header.strip() == "*":
        return True
    return any(candidate.strip().removeprefix("W/") == tag for candidate in header.split(","))


class _Policy:
    """Which responses may be shared: decided from the endpoint's parameters once, and the request each call."""

    def __init__(self, plan: Plan, hints: Mapping[str, Any]) -> None:
        self.dependencies: list[str] = []
        self.reads_request = False
        for parameter in plan.signature.parameters.values():
            annotation = hints.get(parameter.name, parameter.annotation)
            if isinstance(parameter.default, Depends) or any(
                isinstance(extra, Depends) for extra in getattr(annotation, "__metadata__", ())
            ):
                self.dependencies.append(parameter.name)
            elif inspect.isclass(annotation) and issubclass(annotation, Request):
                self.reads_request = True

    def private(self, request: Request, arguments: Mapping[str, Any]) -> bool:
        """Private unless provably the same for everybody: no user-derived dependency, no credentials sent.

        A route can also be guarded by ``dependencies=[...]`` on the router, invisible from here, so a request
        carrying ``Authorization`` or a cookie is always answered privately.
        """
        if self.reads_request or "authorization" in request.headers or "cookie" in request.headers:
            return True
        return any(name in arguments and not is_context(arguments[name]) for name in self.dependencies)


def _hints(plan: Plan) -> dict[str, Any]:
    try:
        return typing.get_type_hints(plan.fn, localns=plan.localns, include_extras=True)
    except Exception:  # unresolvable annotations: fall back to the raw ones, FastAPI will complain itself
        return {}


def _headers(key: str, payload: bytes, ttl: float | None, private: bool, outcome: str) -> dict[str, str]:
    scope = "private" if private else "public"
    freshness = "no-cache" if ttl is None else f"max-age={max(0, math.floor(ttl))}"
    headers = {"ETag": etag(key, payload), "Cache-Control": f"{scope}, {freshness}", "X-Cache": outcome}
    if private:
        headers["Vary"] = _VARY
    return headers


def _respond(
    request: Request | None,
    response: Response | None,
    arguments: Mapping[str, Any],
    policy: _Policy,
    key: str,
    outcome: tuple[Any, bytes | None, float | None, str],
) -> Any:
    value, payload, ttl, state = outcome
    if request is None or response is None or payload is None:  # called directly, or a Response result
        return value
    headers = _headers(key, payload, ttl, policy.private(request, arguments), state)
    if if_none_match(request.headers.get("if-none-match"), headers["ETag"]):
        return Response(status_code=304, headers=headers)
    response.headers.update(headers)
    return value


def _signature_with_context(plan: Plan, hints: Mapping[str, Any]) -> inspect.Signature:
    # Resolved annotations: FastAPI would evaluate strings in the module globals only, missing local names.
    params = [p.replace(annotation=hints.get(p.name, p.annotation)) for p in plan.signature.parameters.values()]
    extra = [
        inspect.Parameter(_REQUEST, inspect.Parameter.KEYWORD_ONLY, annotation=Request),
        inspect.Parameter(_RESPONSE, inspect.Parameter.KEYWORD_ONLY, annotation=Response),
    ]
    at = next((i for i, p in enumerate(params) if p.kind is p.VAR_KEYWORD), len(params))
    return_annotation = hints.get("return", plan.signature.return_annotation)
    return plan.signature.replace(parameters=[*params[:at], *extra, *params[at:]], return_annotation=return_annotation)


def http_endpoint(plan: Plan, is_async: bool) -> Callable[..., Any]:
    """The wrapper for ``@cached(http=True)``: the cached call, then validators and cache headers."""
    fn = plan.fn
    hints = _hints(plan)
    policy = _Policy(plan, hints)
    if is_async:
        async_flight: AsyncSingleFlight[Filled] = AsyncSingleFlight()

        @functools.wraps(fn)
        async def async_endpoint(*args: Any, **kwargs: Any) -> Any:
            request, response = kwargs.pop(_REQUEST, None), kwargs.pop(_RESPONSE, None)
            binding = plan.binding()
            key = plan.key(binding, args, kwargs)
            manager = binding.manager
            found = await manager._alookup(key, binding.guard, binding.reader, binding.strict, binding.site, True)
            if found.value is not MISSING:
                return _respond(request, response, kwargs, policy, key, (found.value, found.raw, found.ttl, "HIT"))

            async def fill() -> Filled:
                return await plan.afill(binding, key, found, lambda: fn(*args, **kwargs))

            value, stored = await async_flight.run((key, found.token), fill)
            return _respond(request, response, kwargs, policy, key, (value, stored, binding.expiry, "MISS"))

        endpoint: Callable[..., Any] = async_endpoint
    else:
        flight: SingleFlight[Filled] = SingleFlight()

        @functools.wraps(fn)
        def sync_endpoint(*args: Any, **kwargs: Any) -> Any:
            request, response = kwargs.pop(_REQUEST, None), kwargs.pop(_RESPONSE, None)
            binding: Binding = plan.binding()
            key = plan.key(binding, args, kwargs)
            manager = binding.manager
            found = manager._lookup_sync(key, binding.guard, binding.reader, binding.strict, binding.site, True)
            if found.value is not MISSING:
                return _respond(request, response, kwargs, policy, key, (found.value, found.raw, found.ttl, "HIT"))

            def fill() -> Filled:
                return plan.fill(binding, key, found, lambda: fn(*args, **kwargs))

            value, stored = flight.run((key, found.token), fill)
            return _respond(request, response, kwargs, policy, key, (value, stored, binding.expiry, "MISS"))

        endpoint = sync_endpoint
    endpoint.__signature__ = _signature_with_context(plan, hints)  # type: ignore[attr-defined]
    return endpoint
