"""FastAPI: HTTP semantics for ``@cached(http=True)`` endpoints — ``ETag``, ``304``, ``Cache-Control``, ``X-Cache``.

The endpoint keeps its own signature for FastAPI's dependency injection; stashly adds two hidden parameters
(the ``Request`` and the ``Response``) to the signature FastAPI reads, and takes them out again before the
endpoint is called (an endpoint that takes its own ``Request`` or ``Response`` shares it instead: FastAPI
injects one of each). Everything happens after FastAPI has resolved the dependencies, so authentication has
run before any validator is compared, and only this endpoint's own entry is compared.
"""

from __future__ import annotations

import hashlib
import inspect
import math
import typing
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import pydantic
import pydantic_core

try:
    from fastapi import Request, Response
    from fastapi.datastructures import DefaultPlaceholder
    from fastapi.encoders import jsonable_encoder
    from fastapi.exceptions import ResponseValidationError
    from fastapi.params import Depends
    from fastapi.responses import JSONResponse
    from fastapi.security.base import SecurityBase
    from fastapi.utils import is_body_allowed_for_status_code
except ImportError as _missing:  # pragma: no cover - exercised by installs without the extra
    raise ImportError("@cached(http=True) needs FastAPI: pip install 'stashly[fastapi]'") from _missing

from ...decorator.context import is_context
from ...decorator.plan import Serialized
from ...storage import codec

if TYPE_CHECKING:
    from ...decorator.plan import Binding, Plan

__all__ = ["HttpEndpoint", "etag", "fresh_for", "if_none_match"]

_REQUEST = "stashly_request__"
_RESPONSE = "stashly_response__"
_VARY = ("Authorization", "Cookie")
_ENTRY = {"model", "body", "status", "headers"}  # what a request's entry holds, see _Route.entry


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
        self.reads_request: bool = False
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

    Worked out once per route, from the request's scope: ``@cached`` sits below the route decorator, so the
    route does not exist yet when the endpoint is decorated. A router included with ``include_router(...,
    dependencies=[...])`` serves an effective route (the original's dependencies and those of every
    inclusion): that one is read, so a guard added at inclusion is seen.
    """

    def __init__(self, route: Any, endpoint: Callable[..., Any]) -> None:
        self.route = route  # held so the id() this is remembered under is never reused
        self.headers: list[str] = []
        self.private: bool = False
        self.connection_under: list[str | None] = []  # top-level dependencies that read the raw request
        dependant = getattr(route, "dependant", None)
        if dependant is not None:
            self._walk(dependant, top=True)
        # Only a route calling this very endpoint gets a rendered Response back: a decorator between the route
        # and the endpoint expects the endpoint's value.
        self.renders: bool = getattr(route, "endpoint", None) is endpoint
        self.field: Any = getattr(route, "response_field", None)
        self.dump: dict[str, Any] = {
            "include": getattr(route, "response_model_include", None),
            "exclude": getattr(route, "response_model_exclude", None),
            "by_alias": getattr(route, "response_model_by_alias", True),
            "exclude_unset": getattr(route, "response_model_exclude_unset", False),
            "exclude_defaults": getattr(route, "response_model_exclude_defaults", False),
            "exclude_none": getattr(route, "response_model_exclude_none", False),
        }
        # An entry is only valid for this model and these options: a deploy changing either reads it as a miss.
        options = repr((sorted((name, repr(value)) for name, value in self.dump.items()), self.field is None))
        model = codec.schema_fingerprint(getattr(route, "response_model", None)).decode()
        self.model: str = model + hashlib.blake2b(options.encode(), digest_size=4).hexdigest()
        response_class = getattr(route, "response_class", JSONResponse)
        self.response_class: type[Response] = (
            response_class.value if isinstance(response_class, DefaultPlaceholder) else response_class
        )
        self.status_code: int | None = getattr(route, "status_code", None)

    def _walk(self, dependant: Any, top: bool) -> None:
        # Whatever request part reaches the endpoint (its own parameters or any dependency's) can change the body.
        for field in dependant.header_params:
            self._header(field)
        connection = dependant.websocket_param_name or dependant.http_connection_param_name
        # A body is not in the URL, the only part of the request a shared cache keys on besides Vary.
        if dependant.cookie_params or dependant.body_params or (top and connection):
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

    def entry(self, value: Any, response: Response, before: tuple[int | None, list[tuple[bytes, bytes]]]) -> Any:
        """What to store for ``value``: the body FastAPI would send (validated and serialized through the response
        model, with its include/exclude, aliases and unset/default/None options), the status and the headers
        the endpoint set on its ``Response`` parameter (``before`` is how the call found it), and the model the
        body was made for. Cookies are never stored: they belong to the one client.

        A ``Response`` (or other framework object) is returned as it is: the plan never stores it.
        """
        if is_context(value):
            return value
        if self.field is None:
            body = jsonable_encoder(value)
        else:
            validated, errors = self.field.validate(value, {}, loc=("response",))
            if errors:
                raise ResponseValidationError(errors=errors, body=value)
            body = self.field.serialize(validated, mode="json", **self.dump)
        status, headers = before
        added = [
            [name.decode("latin-1"), item.decode("latin-1")]
            for name, item in response.headers.raw
            if (name, item) not in headers and name != b"set-cookie"
        ]
        changed = response.status_code if response.status_code != status else None
        return Serialized(model=self.model, body=body, status=changed, headers=added)

    def read(self, value: object) -> object:
        """The reader of :meth:`entry`'s entries: one written for another model or other options is a miss."""
        if not isinstance(value, dict) or value.get("model") != self.model or value.keys() != _ENTRY:
            raise pydantic_core.ValidationError.from_exception_data(
                "stashly http entry", [{"type": "missing", "loc": ("model",), "input": value}]
            )
        return value

    @staticmethod
    def replay(entry: Any, response: Response) -> None:
        """Put the headers the endpoint set when the entry was made back on ``response`` (a hit, or a caller
        that joined another's computation); a header a dependency set on this request wins."""
        present = {name.lower() for name in response.headers}
        response.headers.raw.extend(
            (name.encode("latin-1"), item.encode("latin-1"))
            for name, item in entry["headers"]
            if name.lower() not in present
        )

    def render(self, entry: Any, response: Response) -> Response:
        """The response FastAPI would build for the entry: the route's class and status code (or the one the
        endpoint or a dependency set), and the headers on the ``Response`` parameter. Returned as a
        ``Response``, so FastAPI sends it as it is instead of validating a serialized body again (an alias or
        a custom serializer would not read back)."""
        status = response.status_code or entry["status"] or self.status_code
        body = entry["body"]
        rendered = self.response_class(body) if status is None else self.response_class(body, status_code=status)
        if not is_body_allowed_for_status_code(rendered.status_code):
            rendered.body = b""
        rendered.headers.raw.extend(response.headers.raw)
        return rendered


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
    renders = route is not None and route.renders
    if renders:
        _Route.replay(value, response)
    private = (
        policy.private(request, arguments)
        or (route is not None and route.private_for(arguments))
        or "set-cookie" in response.headers  # a cookie a dependency or the endpoint sets is somebody's
    )
    vary = [name.strip() for name in response.headers.get("vary", "").split(",") if name.strip()]
    vary += route.headers if route is not None else []  # a dependency's own Vary (Accept-Language) is kept
    headers = _headers(key, payload, ttl, private, vary, state)
    response.headers.update(headers)
    if if_none_match(request.headers.get("if-none-match"), headers["ETag"]):
        # A returned Response is sent as it is: the headers set on the Response parameter (a dependency's
        # Set-Cookie or Vary) are carried over by hand, as FastAPI does for a value.
        not_modified = Response(status_code=304)
        not_modified.headers.raw.extend(response.headers.raw)
        return not_modified
    return route.render(value, response) if route is not None and renders else value


def _own(plan: Plan, hints: Mapping[str, Any], kind: type) -> str | None:
    """The endpoint's own parameter FastAPI fills with the request (or the response), if it has one.

    FastAPI fills one parameter of each kind (the last it sees), so stashly adds its hidden one only when
    the endpoint has none; two would leave the endpoint's own unfilled.
    """
    for parameter in plan.signature.parameters.values():
        annotation = hints.get(parameter.name, parameter.annotation)
        if inspect.isclass(annotation) and issubclass(annotation, kind):
            return parameter.name
    return None


def _signature_with_context(plan: Plan, hints: Mapping[str, Any]) -> inspect.Signature:
    # Resolved annotations: FastAPI would evaluate strings in the module globals only, missing local names.
    params = [p.replace(annotation=hints.get(p.name, p.annotation)) for p in plan.signature.parameters.values()]
    extra = [
        inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, annotation=kind)
        for name, kind in ((_REQUEST, Request), (_RESPONSE, Response))
        if _own(plan, hints, kind) is None
    ]
    at = next((i for i, p in enumerate(params) if p.kind is p.VAR_KEYWORD), len(params))
    return_annotation = hints.get("return", plan.signature.return_annotation)
    return plan.signature.replace(parameters=[*params[:at], *extra, *params[at:]], return_annotation=return_annotation)


def _direct(reader: codec.Reader) -> codec.Reader:
    """The reader for a call outside a request: an entry a request stored (a serialized body) is a miss."""

    def read(value: object) -> object:
        if isinstance(value, dict) and value.keys() == _ENTRY and isinstance(value["model"], str):
            raise pydantic_core.ValidationError.from_exception_data(
                "stashly http entry", [{"type": "missing", "loc": ("value",), "input": value}]
            )
        return reader(value)

    return read


class HttpEndpoint:
    """What ``@cached(http=True)`` adds around one endpoint's cached call, for both modes: the request and
    response FastAPI injected, the route serving it, the reader and the stored form of its entries, and the
    response with validators and cache headers. The call itself is ``endpoint_async.py`` (and its generated
    sync twin).
    """

    def __init__(self, plan: Plan, endpoint: Callable[..., Any]) -> None:
        self.hints: dict[str, Any] = _hints(plan)
        self.policy: _Policy = _Policy(plan, self.hints)
        self._endpoint = endpoint
        self._routes: dict[int, _Route] = {}
        self._own_request, self._own_response = _own(plan, self.hints, Request), _own(plan, self.hints, Response)

    def context(self, kwargs: dict[str, Any]) -> tuple[Request | None, Response | None, _Route | None]:
        """The injected request and response (taken out of ``kwargs`` when stashly added them) and the route."""
        own_request, own_response = self._own_request, self._own_response
        request = kwargs.get(own_request) if own_request else kwargs.pop(_REQUEST, None)
        response = kwargs.get(own_response) if own_response else kwargs.pop(_RESPONSE, None)
        if not isinstance(request, Request) or not isinstance(response, Response):  # called directly
            return None, None, None
        scope = request.scope.get("fastapi")
        route = scope.get("effective_route_context") if isinstance(scope, dict) else None
        route = route or request.scope.get("route")
        if route is None:
            return request, response, None
        found = self._routes.get(id(route))
        if found is None:
            found = self._routes[id(route)] = _Route(route, self._endpoint)
        return request, response, found

    @staticmethod
    def reader_for(binding: Binding, route: _Route | None) -> codec.Reader:
        if route is None:
            return _direct(binding.reader)
        return route.read if route.renders else binding.reader

    @staticmethod
    def storing(route: _Route | None, response: Response | None) -> Callable[[Any], Any]:
        """What the fill stores for a result: the entry the route renders, or the result itself."""
        if route is None or response is None or not route.renders:
            return lambda result: result
        before = (response.status_code, list(response.headers.raw))  # what the dependencies set
        return lambda result: route.entry(result, response, before)

    @staticmethod
    def bypass(response: Response | None, value: Any) -> Any:
        """``value``, answered without the cache (its tags could not be proved current, or this request's open
        transaction wrote one of them): ``X-Cache: BYPASS``, and ``no-store``, as it may be uncommitted data."""
        if response is not None:
            response.headers["X-Cache"] = "BYPASS"
            response.headers["Cache-Control"] = "no-store"
        return value

    def respond(
        self,
        request: Request | None,
        response: Response | None,
        arguments: Mapping[str, Any],
        route: _Route | None,
        key: str,
        outcome: tuple[Any, bytes | None, float | None, str],
    ) -> Any:
        """The endpoint's answer for a hit or a miss, with validators and cache headers (see :func:`_respond`)."""
        return _respond(request, response, arguments, self.policy, route, key, outcome)

    def signature(self, plan: Plan) -> inspect.Signature:
        """The signature FastAPI reads: the endpoint's, plus the hidden request and response parameters."""
        return _signature_with_context(plan, self.hints)


def fresh_for(binding: Binding) -> float | None:
    """What a miss may advertise: the stored entry lives up to ``ttl_jitter`` less than the TTL, never more."""
    expiry = binding.expiry
    return None if expiry is None else expiry * (1.0 - binding.manager.settings.ttl_jitter)
