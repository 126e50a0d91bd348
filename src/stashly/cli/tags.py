"""The command ``tags``: each tag's current token and its TTL, and ``--invalidate`` as ``invalidate_tags`` does.

A tag's token (under ``<prefix>::tag:<tag>``) is what its entries were stored with; an absent token means no
entry is current under that tag (never used, invalidated, or expired). ``--invalidate`` drops the tokens through
the library's own backend, so every entry filed under them becomes a miss for every process.
"""

from __future__ import annotations

from typing import Any

from ..keys import layout
from .exits import OK
from .output import duration_text
from .session import Session

__all__ = ["tags"]


def tags(session: Session) -> int:
    """Show (or with ``--invalidate``, drop) the tokens of the tags named."""
    s, names = session.settings, list(dict.fromkeys(session.args.tag))
    tag_keys = [layout.tag_key(s.prefix, name) for name in names]
    if session.args.invalidate:
        removed = sum(session.backend.delete(key) for key in tag_keys)
        document: dict[str, Any] = {"invalidated": names, "in_use": removed}
        line = f"invalidated {len(names)} tags ({removed} in use): their entries are misses everywhere"
        session.emit(document, [line])
        return OK
    with session.pipeline() as pipe:  # on Cluster, each tag key to its slot's primary
        for key in tag_keys:
            pipe.get(key)
            pipe.pttl(key)
        replies = pipe.execute()
    found = []
    lines = []
    for name, key, token, pttl in zip(names, tag_keys, replies[::2], replies[1::2], strict=True):
        text = None if token is None else token.decode("ascii", "replace")
        ttl = None if pttl < 0 else pttl / 1000
        found.append({"tag": name, "key": key, "token": text, "ttl_seconds": ttl})
        state = "no token: no entry is current under it" if text is None else f"token {text}"
        lines.append(f"{name}: {state}" + ("" if ttl is None else f" (expires in {duration_text(ttl)})"))
    session.emit({"tags": found}, lines)
    return OK
