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

import pydantic

try:
    from fastapi import Request, Response
    from fastapi.params import Depends
    from fastapi.security.base import SecurityBase
except ImportError as exc:  # pragma: no cover - exercised by installs without the extra
    raise ImportError("@cached(http=True) needs FastAPI: pip install 'stashly[fastapi]'") from exc

from .. import codec
from ..context import is_context
from ..errors import ConfigError
from ..sentinels import MISSING
from ..singleflight import AsyncSingleFlight, SingleFlight
from ..stampede import Filled

if TYPE_CHECKING:
    from ..plan import Binding, Plan

__all__ = ["etag", "http_endpoint", "if_none_match"]

_REQUEST = "stashly_request__"
_RESPONSE = "stashly_response__"
_VARY = ("Authorization", "Cookie")


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


class _Route:
    """What the route serving this endpoint tells: its response model, and the request parts its answer reads.

    Worked out once per route, from the request's ``scope["route"]``: ``@cached`` sits below the route
    decorator, so the route does not exist yet when the endpoint is decorated.
    """

    def __init__(self, route: Any, endpoint: Callable[..., Any], where: str) -> None:
        self.route = route  # held so the id() this is remembered under is never reused
        self.headers: list[str] = []
        self.private = False
        self.connection_under: list[str | None] = []  # top-level dependencies that read the raw request
        dependant = getattr(route, "dependant", None)
        if dependant is not None:
            self._walk(dependant, top=True)
        field = getattr(route, "response_field", None)
        self.field = field if getattr(route, "endpoint", None) is endpoint else None
        self.reader: codec.Reader | None = None
        if self.field is not None:
            for option in ("response_model_include", "response_model_exclude"):
                if getattr(route, option, None) is not None:
                    raise ConfigError(
                        f"@cached(http=True) {where}: {option} is not supported (a cached entry must hold exactly "
                        "what the client receives, and be read back through the response model): declare a "
                        "response_model that holds only the fields to send"
                    )
            self.exclude_unset = bool(getattr(route, "response_model_exclude_unset", False))
            self.reader = codec.reader_for(route.response_model)

    def _walk(self, dependant: Any, top: bool) -> None:
        # Whatever request part reaches the endpoint (its own parameters or any dependency's) can change the body.
        for field in dependant.header_params:
            self._header(field)
        connection = dependant.websocket_param_name or dependant.http_connection_param_name
        if dependant.cookie_params or (top and connection):
            self.private = True
        call = dependant.call
        if isinstance(call, SecurityBase) or isinstance(getattr(call, "__wrapped__", None), SecurityBase):
            self.private = True
        for sub in dependant.dependencies:
            if top and self._reads_connection(sub):
                self.connection_under.append(sub.name)
            self._walk(sub, top=False)

    @classmethod
    def _reads_connection(cls, dependant: Any) -> bool:
        """Whether ``dependant`` or what it depends on takes the raw ``Request``/``WebSocket``/connection."""
        own = (dependant.request_param_name, dependant.websocket_param_name, dependant.http_connection_param_name)
        return any(name is not None for name in own) or any(cls._reads_connection(d) for d in dependant.dependencies)

    def private_for(self, arguments: Mapping[str, Any]) -> bool:
        """Private when a dependency reading the raw request feeds anything but a value the key leaves out.

        ``db: Session = Depends(get_db)`` where ``get_db`` finds the database through ``request.app`` stays
        public: the session is not in the key either. A guard in ``dependencies=[...]`` feeds no parameter,
        but may decide who gets the body: private.
        """
        return self.private or any(
            name is None or name not in arguments or not is_context(arguments[name]) for name in self.connection_under
        )

    def _header(self, field: Any) -> None:
        annotation = getattr(field.field_info, "annotation", None)
        if inspect.isclass(annotation) and issubclass(annotation, pydantic.BaseModel):
            self.private = True  # a model of headers: which ones it reads depends on its config
            return
        name: str = field.alias
        if name == field.name and getattr(field.field_info, "convert_underscores", True):
            name = name.replace("_", "-")
        choices = getattr(field.field_info.validation_alias, "choices", None)
        self.headers += [name, *(c for c in choices or () if isinstance(c, str))]

    def content(self, value: Any) -> Any:
        """``value`` validated and serialized through the response model: what FastAPI would send, as JSON."""
        assert self.field is not None
        validated, errors = self.field.validate(value, {}, loc=("response",))
        if errors:
            from fastapi.exceptions import ResponseValidationError

            raise ResponseValidationError(errors=errors, body=value)
        return self.field.serialize(validated, mode="json", by_alias=True, exclude_unset=self.exclude_unset)


def _hints(plan: Plan) -> dict[str, Any]:
    try:
        return typing.get_type_hints(plan.fn, localns=plan.localns, include_extras=True)
    except Exception:  # unresolvable annotations: fall back to the raw ones, FastAPI will complain itself
        return {}


def _headers(
    key: str, payload: bytes, ttl: float | None, private: bool, vary: list[str], outcome: str
) -> dict[str, str]:
    scope = "private" if private else "public"
    freshness = "no-cache" if ttl is None else f"max-age={max(0, math.floor(ttl))}"
    headers = {"ETag": etag(key, payload), "Cache-Control": f"{scope}, {freshness}", "X-Cache": outcome}
    names: dict[str, str] = {}
    for name in [*_VARY, *vary] if private else vary:
        names.setdefault(name.lower(), name)
    if names:
        headers["Vary"] = ", ".join(names.values())
    return headers


def _respond(
    request: Request | None,
    response: Response | None,
    arguments: Mapping[str, Any],
    policy: _Policy,
    route: _Route | None,
    key: str,
    outcome: tuple[Any, bytes | None, float | None, str],
) -> Any:
    value, payload, ttl, state = outcome
    if request is None or response is None or payload is None:  # called directly, or a Response result
        return value
    private = policy.private(request, arguments) or (route is not None and route.private_for(arguments))
    vary = [name.strip() for name in response.headers.get("vary", "").split(",") if name.strip()]
    vary += route.headers if route is not None else []  # a dependency's own Vary (Accept-Language) is kept
    headers = _headers(key, payload, ttl, private, vary, state)
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


def _fresh_for(binding: Binding) -> float | None:
    """What a miss may advertise: the stored entry lives up to ``ttl_jitter`` less than the TTL, never more."""
    expiry = binding.expiry
    return None if expiry is None else expiry * (1.0 - binding.manager.settings.ttl_jitter)


def http_endpoint(plan: Plan, is_async: bool) -> Callable[..., Any]:
    """The wrapper for ``@cached(http=True)``: the cached call, then validators and cache headers.

    Under a route with a response model (``response_model=`` or a return annotation FastAPI uses as one),
    the entry holds the result validated and serialized through that model, as the client receives it:
    fields the model filters out (a password hash on an ORM row) are never stored.
    """
    fn = plan.fn
    hints = _hints(plan)
    policy = _Policy(plan, hints)
    routes: dict[int, _Route] = {}

    def route_of(request: Request | None) -> _Route | None:
        route = request.scope.get("route") if request is not None else None
        if route is None:
            return None
        found = routes.get(id(route))
        if found is None:
            found = routes[id(route)] = _Route(route, endpoint, plan.name)
        return found

    def through(route: _Route | None, call: Callable[[], Any]) -> Callable[[], Any]:
        if route is None or route.field is None:
            return call
        return lambda: _serialized(route, call())

    if is_async:
        async_flight: AsyncSingleFlight[Filled] = AsyncSingleFlight()

        @functools.wraps(fn)
        async def async_endpoint(*args: Any, **kwargs: Any) -> Any:
            request, response = kwargs.pop(_REQUEST, None), kwargs.pop(_RESPONSE, None)
            route = route_of(request)
            binding = plan.binding()
            reader = binding.reader if route is None or route.reader is None else route.reader
            key = plan.key(binding, args, kwargs)
            manager = binding.manager
            found = await manager._alookup(key, binding.guard, reader, binding.strict, binding.site, True)
            if found.value is not MISSING:
                return _respond(
                    request, response, kwargs, policy, route, key, (found.value, found.raw, found.ttl, "HIT")
                )

            async def call() -> Any:
                result = await fn(*args, **kwargs)
                return result if route is None or route.field is None else _serialized(route, result)

            async def fill() -> Filled:
                return await plan.afill(binding, key, found, call)

            value, stored = await async_flight.run((key, found.token), fill)
            value = _read_back(route, value)
            return _respond(request, response, kwargs, policy, route, key, (value, stored, _fresh_for(binding), "MISS"))

        endpoint: Callable[..., Any] = async_endpoint
    else:
        flight: SingleFlight[Filled] = SingleFlight()

        @functools.wraps(fn)
        def sync_endpoint(*args: Any, **kwargs: Any) -> Any:
            request, response = kwargs.pop(_REQUEST, None), kwargs.pop(_RESPONSE, None)
            route = route_of(request)
            binding: Binding = plan.binding()
            reader = binding.reader if route is None or route.reader is None else route.reader
            key = plan.key(binding, args, kwargs)
            manager = binding.manager
            found = manager._lookup_sync(key, binding.guard, reader, binding.strict, binding.site, True)
            if found.value is not MISSING:
                return _respond(
                    request, response, kwargs, policy, route, key, (found.value, found.raw, found.ttl, "HIT")
                )

            def fill() -> Filled:
                return plan.fill(binding, key, found, through(route, lambda: fn(*args, **kwargs)))

            value, stored = flight.run((key, found.token), fill)
            value = _read_back(route, value)
            return _respond(request, response, kwargs, policy, route, key, (value, stored, _fresh_for(binding), "MISS"))

        endpoint = sync_endpoint
    endpoint.__signature__ = _signature_with_context(plan, hints)  # type: ignore[attr-defined]
    return endpoint


def _serialized(route: _Route, result: Any) -> Any:
    # A Response (or other framework object) is sent as it is, and never stored: leave it to the plan.
    return result if is_context(result) else route.content(result)


def _read_back(route: _Route | None, value: Any) -> Any:
    """The miss returns what a hit will: the stored JSON read through the response model."""
    if route is None or route.reader is None or is_context(value):
        return value
    return route.reader(value)
