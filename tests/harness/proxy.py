"""A TCP proxy on loopback that delays every chunk it forwards: a slow network in front of a real Redis.

It can also hold Redis's answers (``hold``/``release``): a test then knows a request is in flight, answered by
Redis but not yet by the proxy, for as long as it needs, instead of guessing it with a sleep.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable


class SlowProxy:
    """Forwards 127.0.0.1:<port> to ``target_port``, sleeping ``delay`` seconds before each forwarded chunk."""

    def __init__(self, target_port: int, delay: float = 0.005) -> None:
        self.target_port = target_port
        self.delay = delay
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.port = 0  # the port the listening socket got, known once entered
        self.server: asyncio.base_events.Server | None = None
        self._answers: asyncio.Event | None = None  # set: answers flow; cleared by hold()

    @property
    def url(self) -> str:
        assert self.port, "enter the proxy first"
        return f"redis://127.0.0.1:{self.port}/0"

    def hold(self) -> None:
        """From now on, keep what Redis sends back until :meth:`release` (requests still go through)."""
        self._change(asyncio.Event.clear)

    def release(self) -> None:
        """Forward what was held, and everything after it."""
        self._change(asyncio.Event.set)

    def _change(self, change: Callable[[asyncio.Event], None]) -> None:
        """Apply ``change`` to the answers' gate in the proxy's loop, and wait until it is done."""

        async def apply() -> None:
            assert self._answers is not None
            change(self._answers)

        asyncio.run_coroutine_threadsafe(apply(), self.loop).result(5)

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, held: bool) -> None:
        try:
            while data := await reader.read(65536):
                await asyncio.sleep(self.delay)
                if held and self._answers is not None:
                    await self._answers.wait()
                writer.write(data)
                await writer.drain()
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            writer.close()

    async def _handle(self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        server_reader, server_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        await asyncio.gather(
            self._pipe(client_reader, server_writer, held=False), self._pipe(server_reader, client_writer, held=True)
        )

    def __enter__(self) -> SlowProxy:
        self.thread.start()

        async def start() -> asyncio.base_events.Server:
            self._answers = asyncio.Event()
            self._answers.set()
            # Port 0: the kernel picks a free port and we keep the socket (no probe-then-bind race with others).
            return await asyncio.start_server(self._handle, "127.0.0.1", 0)

        self.server = asyncio.run_coroutine_threadsafe(start(), self.loop).result(5)
        self.port = int(self.server.sockets[0].getsockname()[1])
        return self

    def __exit__(self, *exc_info: object) -> None:
        async def shutdown() -> None:
            assert self.server is not None
            assert self._answers is not None
            self._answers.set()
            self.server.close()
            for task in asyncio.all_tasks():
                if task is not asyncio.current_task():
                    task.cancel()

        asyncio.run_coroutine_threadsafe(shutdown(), self.loop).result(5)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)
        self.loop.close()
