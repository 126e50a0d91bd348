"""Run an app with uvicorn in a background thread on a free loopback port (for ``--check`` and the tests)."""

from __future__ import annotations

import socket
import threading
import time
from types import TracebackType

import uvicorn
from fastapi import FastAPI

__all__ = ["BackgroundServer"]


class BackgroundServer:
    """A real uvicorn server in a thread; a context manager that returns once the server accepts connections.

    >>> with BackgroundServer(create_app()) as server:
    ...     httpx.get(f"{server.url}/cache/stats")
    """

    def __init__(self, app: FastAPI, host: str = "127.0.0.1", port: int = 0) -> None:
        # Bind here, before the thread starts: port 0 gets a free port with no window for another process.
        # proto=IPPROTO_TCP, not the default 0: asyncio sets TCP_NODELAY only on sockets that say so, and
        # without it Nagle's algorithm meets delayed ACKs: ~40 ms per request on a kept-alive connection.
        self._socket = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        self._socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._socket.bind((host, port))
        self.host, self.port = self._socket.getsockname()[:2]
        config = uvicorn.Config(app, loop="asyncio", ws="none", log_level="warning", lifespan="on")
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, kwargs={"sockets": [self._socket]}, daemon=True)

    @property
    def url(self) -> str:
        """The server's base URL."""
        return f"http://{self.host}:{self.port}"

    def start(self, timeout: float = 10.0) -> BackgroundServer:
        """Start serving; raises ``RuntimeError`` if the server is not up within ``timeout`` seconds."""
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"uvicorn did not start on {self.url}")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        """Ask the server to finish (open requests complete, the lifespan shuts down) and wait for the thread."""
        self._server.should_exit = True
        if self._thread.is_alive():
            self._thread.join(15)
        self._socket.close()

    def __enter__(self) -> BackgroundServer:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
