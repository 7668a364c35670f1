"""A TCP proxy the tests control, to cut the network between a runner and its database.

`TcpProxy(host, port)` listens on 127.0.0.1 (a free port, `proxy.port`) and forwards every
connection to host:port. `cut(refuse_for)` drops every open connection at once and, for
`refuse_for` seconds, closes new ones as soon as they are accepted (the client sees the
server hang up); `refuse()` / `allow()` do the same without a time limit. It runs its own
event loop in a daemon thread, so sync and async tests use it alike.
"""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Optional

CHUNK = 65536


class TcpProxy:
    """Forwards 127.0.0.1:`port` to `target_host`:`target_port` until cut."""

    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self.port = 0
        self.cuts = 0
        self.refused = 0
        """Connections closed on arrival while refusing."""
        self._refuse_until = 0.0
        self._writers: set[asyncio.StreamWriter] = set()
        self._loop: Optional[asyncio.AbstractEventLoop] = None
        self._server: Optional[asyncio.base_events.Server] = None
        self._thread: Optional[threading.Thread] = None

    # ------------------------------------------------------------------ control (any thread)
    def start(self) -> None:
        """Listen (blocking until the port is known)."""
        ready = threading.Event()

        def main() -> None:
            self._loop = asyncio.new_event_loop()
            self._server = self._loop.run_until_complete(
                asyncio.start_server(self._accept, "127.0.0.1", 0)
            )
            self.port = self._server.sockets[0].getsockname()[1]
            ready.set()
            self._loop.run_forever()
            self._loop.close()

        self._thread = threading.Thread(target=main, name="tcp-proxy", daemon=True)
        self._thread.start()
        ready.wait()

    def stop(self) -> None:
        """Drop every connection and stop listening."""
        if self._loop is None:
            return
        asyncio.run_coroutine_threadsafe(self._shutdown(), self._loop).result()
        self._loop.call_soon_threadsafe(self._loop.stop)
        if self._thread is not None:
            self._thread.join()
        self._loop = None

    def cut(self, refuse_for: float = 0.0) -> None:
        """Drop every open connection; refuse new ones for `refuse_for` seconds."""
        self._refuse_until = time.monotonic() + refuse_for
        self.cuts += 1
        self._run(self._drop_all())

    def refuse(self) -> None:
        """Drop every open connection and refuse new ones until `allow()`."""
        self._refuse_until = float("inf")
        self.cuts += 1
        self._run(self._drop_all())

    def allow(self) -> None:
        self._refuse_until = 0.0

    def _run(self, coro: object) -> None:
        assert self._loop is not None, "the proxy is not started"
        asyncio.run_coroutine_threadsafe(coro, self._loop).result()  # type: ignore[arg-type]

    # ------------------------------------------------------------------ the proxy's loop
    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if time.monotonic() < self._refuse_until:
            self.refused += 1
            writer.transport.abort()
            return
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.target)
        except OSError:
            writer.transport.abort()
            return
        self._writers |= {writer, up_writer}
        try:
            await asyncio.gather(self._pipe(reader, up_writer), self._pipe(up_reader, writer))
        finally:
            for w in (writer, up_writer):
                self._writers.discard(w)
                w.transport.abort()

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(CHUNK):
                writer.write(data)
                await writer.drain()
        except (OSError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.transport.abort()

    async def _drop_all(self) -> None:
        for writer in list(self._writers):
            writer.transport.abort()
        self._writers.clear()

    async def _shutdown(self) -> None:
        await self._drop_all()
        if self._server is not None:
            self._server.close()
