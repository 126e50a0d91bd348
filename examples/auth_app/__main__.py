"""``python -m examples.auth_app [--check]``: seed the demo users, print the walk-through, serve on 127.0.0.1:8000.

``--check`` serves on a free port instead, runs the walk-through itself with httpx and exits (0: it passed).
Host and port: ``--host``/``--port``, or ``AUTH_APP_HOST``/``AUTH_APP_PORT``.
"""

from __future__ import annotations

import argparse
import os
import sys

import uvicorn

from .app import create_app
from .config import load_settings
from .demo import DEMO_USERS, CheckFailedError, curl_lines, run_check, seed_demo_users
from .dependencies import services_of


def main(argv: list[str] | None = None) -> int:
    """Run the demo; the process exit status."""
    parser = argparse.ArgumentParser(prog="python -m examples.auth_app", description="The stashly auth example.")
    parser.add_argument("--check", action="store_true", help="run the walk-through against a server and exit")
    parser.add_argument("--host", default=os.environ.get("AUTH_APP_HOST", "127.0.0.1"))
    parser.add_argument("--port", type=int, default=int(os.environ.get("AUTH_APP_PORT", "8000")))
    args = parser.parse_args(argv)
    try:
        settings = load_settings()
        app = create_app(settings=settings)
    except ValueError as exc:  # stashly.ConfigError is one too
        print(f"auth_app: {exc}", file=sys.stderr)
        return 2
    services = services_of(app)
    manager = services.manager
    if seed_demo_users(services):
        # A new database reuses user ids 1 and 2: entries an earlier demo database left in Redis are not theirs.
        for namespace in services.namespaces:
            manager.flush_namespace(namespace)
    print("stashly auth example")
    print(f"  cache     {manager.settings.url}  (config.json: {settings.config_path or 'none'})")
    print(f"  database  {services.database.describe()}")
    print(f"  users     {', '.join(f'{u.email} / {u.password}' for u in DEMO_USERS)}")
    print(f"  tokens    signing key: {settings.secret_source}")
    print()
    if args.check:
        try:
            run_check(app)
        except CheckFailedError as exc:
            print(f"check FAILED: {exc}", file=sys.stderr)
            return 1
        return 0
    base_url = f"http://{args.host}:{args.port}"
    print("In another terminal:\n")
    print("\n".join(f"  {line}" for line in curl_lines(base_url)))
    print(f"\nOpenAPI docs: {base_url}/docs")
    print(f"Cache stats:  {base_url}/cache/  (open in the demo; put it behind auth in production)\n")
    uvicorn.run(app, host=args.host, port=args.port, log_level="info")
    return 0


if __name__ == "__main__":
    sys.exit(main())
