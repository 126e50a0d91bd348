"""``@cached(http=True)``: checks the options and builds the endpoint for the function's mode."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ...decorator.plan import Plan
from ...errors import ConfigError
from . import endpoint_async, endpoint_sync

__all__ = ["http_endpoint"]


def http_endpoint(plan: Plan, is_async: bool) -> Callable[..., Any]:
    """The wrapper for ``@cached(http=True)``: the cached call, then validators and cache headers.

    Under a route with a response model (``response_model=`` or a return annotation FastAPI uses as one),
    the entry holds the result validated and serialized through that model, as the client receives it:
    fields the model filters out (a password hash on an ORM row) are never stored, and a hit sends the
    stored body without validating it again.
    """
    if plan.refresh_ahead is not None:
        raise ConfigError(
            f"@cached {plan.name}: refresh_ahead does not combine with http=True (a background recomputation "
            "would run the endpoint after its request, and the dependencies it was given, are gone): cache a "
            "function the endpoint calls with refresh_ahead instead"
        )
    return endpoint_async.endpoint(plan) if is_async else endpoint_sync.endpoint(plan)
