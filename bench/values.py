"""What the contestants cache: a user profile (~300 B of JSON) and a profile with its posts (~10 KB; 100 KB and
1 MB for the large in-process HITs), as dicts or as Pydantic models, with the cheap "computation" every
contestant's MISS runs."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any, Literal

import orjson
from pydantic import BaseModel

__all__ = ["Post", "Shape", "Size", "UserFeed", "UserRead", "compute", "encoded_size", "make", "return_type"]

Size = Literal["300B", "10KB", "100KB", "1MB"]
Shape = Literal["dict", "model"]


class UserRead(BaseModel):
    id: int
    email: str
    name: str
    is_active: bool
    roles: list[str]
    created_at: datetime
    locale: str
    timezone: str
    avatar_url: str
    bio: str


class Post(BaseModel):
    id: int
    title: str
    body: str
    tags: list[str]
    created_at: datetime


class UserFeed(UserRead):
    posts: list[Post]


_PROFILE: dict[str, Any] = {
    "id": 0,
    "email": "ada.lovelace@example.com",
    "name": "Ada Lovelace",
    "is_active": True,
    "roles": ["admin", "editor"],
    "created_at": "2024-05-01T12:34:56Z",
    "locale": "en-GB",
    "timezone": "Europe/London",
    "avatar_url": "https://cdn.example.com/avatars/0.png",
    "bio": "Mathematician; writes about engines and poetical science.",
}


def _feed(target: int) -> dict[str, Any]:
    feed: dict[str, Any] = {**_PROFILE, "posts": []}
    while len(orjson.dumps(feed)) < target:
        i = len(feed["posts"])
        feed["posts"].append(
            {
                "id": i,
                "title": f"Notes on the analytical engine, part {i}",
                "body": "The engine weaves algebraic patterns just as the Jacquard loom weaves flowers and leaves.",
                "tags": ["engines", "notes"],
                "created_at": "2024-05-01T12:34:56Z",
            }
        )
    return feed


_DICTS: dict[Size, dict[str, Any]] = {
    "300B": _PROFILE,
    "10KB": _feed(10 * 1024),
    "100KB": _feed(100 * 1024),
    "1MB": _feed(1000 * 1000),  # under max_value_bytes (1 MiB) with the envelope
}
_MODELS: dict[Size, type[BaseModel]] = {"300B": UserRead, "10KB": UserFeed, "100KB": UserFeed, "1MB": UserFeed}
_MODEL_TEMPLATES: dict[Size, BaseModel] = {size: _MODELS[size].model_validate(_DICTS[size]) for size in _DICTS}


def make(size: Size, shape: Shape, n: int) -> Any:
    """The value for argument ``n``: the template with ``id = n`` (a shallow copy, so it costs next to nothing)."""
    if shape == "model":
        return _MODEL_TEMPLATES[size].model_copy(update={"id": n})
    return {**_DICTS[size], "id": n}


def compute(size: Size, shape: Shape) -> Callable[[int], Any]:
    """The function every contestant caches: ``n -> make(size, shape, n)``."""

    def computation(n: int) -> Any:
        return make(size, shape, n)

    return computation


def return_type(size: Size, shape: Shape) -> Any:
    """The return annotation a typed application would write: ``dict[str, Any]`` or the model."""
    return _MODELS[size] if shape == "model" else dict[str, Any]


def encoded_size(size: Size) -> int:
    """Bytes of the value's JSON (orjson), without any library's envelope."""
    return len(orjson.dumps(_DICTS[size]))
