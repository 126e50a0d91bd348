"""The server's cost of a guarded store (a MISS's fill), by value size, next to a plain ``SET`` of the same bytes.

    python bench/guarded_store.py [--fills N]

On a private redis-server, stores N values of 300 B to 1 MB through stashly's fill (up to ``STAGE_ABOVE`` bytes
inside the script that checks the guard and the generation; above, ``SET`` under a staging key that the script
``RENAME``s onto the entry), then ``SET``s the same bytes plainly, and prints what ``INFO commandstats`` says a fill
cost inside Redis. Issue 15's target: that cost flat in the value's size (the value kept out of the script).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.server import PrivateRedis
from stashly import CacheManager
from stashly.backends.redis.commands import STAGE_ABOVE
from stashly.storage import codec

SIZES = {"300 B": 300, "2 KB": 2_000, "100 KB": 100_000, "1 MB": 1_000_000}
FLAT = 2.0  # the dearest size's cost over the cheapest's, at most


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--fills", type=int, default=2000, help="stores per size (default 2000)")
    args = parser.parse_args()
    costs: dict[str, float] = {}
    with PrivateRedis() as server, CacheManager(url=server.url, namespace="guarded") as manager:
        backend, admin = manager.engine.backend, server.admin
        guard = manager.guard(None)
        for label, size in SIZES.items():
            fills = max(20, args.fills if size < 10_000 else args.fills // 20)
            keys = [manager.key(f"{label}:{n}") for n in range(fills)]
            payloads = [codec.encode("x" * size, key) for key in keys]
            tokens = [backend.read(key, guard)[1] for key in keys]
            admin.config_resetstat()
            for key, payload, token in zip(keys, payloads, tokens, strict=True):
                assert backend.fill(key, payload, 60.0, guard, token), "the fill did not store"
            usec = _usec(admin.info("commandstats"))
            staged = len(payloads[0]) > STAGE_ABOVE
            # A script's time includes the commands it runs; a staged fill's SET of the value is a command apart.
            costs[label] = (usec["evalsha"] + (usec.get("set", 0.0) if staged else 0.0)) / fills
            admin.config_resetstat()
            for key, payload in zip(keys, payloads, strict=True):
                admin.set(key, payload, px=60_000)
            plain = _usec(admin.info("commandstats"))["set"] / fills
            how = "the value SET beside the script, RENAMEd by it" if staged else "the value inside the script"
            print(
                f"guarded store {label}: {costs[label]:.1f} µs per fill inside Redis ({how}); a plain SET of the "
                f"same bytes {plain:.1f} µs; {fills} fills"
            )
    growth = max(costs.values()) / min(costs.values())
    verdict = "met" if growth <= FLAT else "MISSED"
    print(
        f"guarded store: from 300 B to 1 MB its cost inside Redis varies {growth:.2f}x "
        f"(target <= {FLAT:.2f}x: flat in the value's size) — {verdict}"
    )
    return 0


def _usec(stats: dict[str, dict[str, float]]) -> dict[str, float]:
    """Total ``usec`` by command (``cmdstat_evalsha`` -> ``evalsha``)."""
    return {name.removeprefix("cmdstat_"): float(row["usec"]) for name, row in stats.items()}


if __name__ == "__main__":
    raise SystemExit(main())
