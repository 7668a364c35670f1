"""A `sqlite3` connection owned by one daemon thread, driven from an event loop.

`await thread.run(fn, *args)` runs `fn(connection, *args)` in the thread, jobs one at a time
in submission order, and returns its result (or raises its exception) on the caller's loop.
The thread is a daemon so that an application whose loop ends without closing the store can
still exit (everything the store reported written is committed already).
"""

from __future__ import annotations

import asyncio
import queue
import sqlite3
import threading
from typing import Any, Callable, Optional, TypeVar

T = TypeVar("T")

_Job = tuple[Optional["asyncio.Future[Any]"], Optional[Callable[..., Any]], tuple[Any, ...]]
"""(future, fn, args); no `fn` asks the thread to close the connection and end."""


class SQLiteThread:
    """One connection, opened and used only in its own thread."""

    def __init__(self, connect: Callable[[], sqlite3.Connection], name: str) -> None:
        self._jobs: queue.SimpleQueue[_Job] = queue.SimpleQueue()
        self._stopping = False
        self._thread = threading.Thread(
            target=_serve, args=(self._jobs, connect), name=name, daemon=True
        )
        self._thread.start()

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        """`fn(connection, *args)` run in the thread; its result once it has returned."""
        if self._stopping:
            raise RuntimeError("the SQLite connection is closed")
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        self._jobs.put((future, fn, args))
        return await future

    async def close(self) -> None:
        """Finish the queued jobs, close the connection and end the thread."""
        if self._stopping:
            return
        self._stopping = True
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._jobs.put((future, None, ()))
        await future

    def stop(self, timeout: float) -> None:
        """Without an event loop: end the thread after the queued jobs (waiting at most
        `timeout` seconds); the connection is closed with it."""
        self._stopping = True
        self._jobs.put((None, None, ()))
        self._thread.join(timeout)


def _serve(jobs: "queue.SimpleQueue[_Job]", connect: Callable[[], sqlite3.Connection]) -> None:
    connection: Optional[sqlite3.Connection] = None
    while True:
        future, fn, args = jobs.get()
        if fn is None:
            break
        try:
            if connection is None:
                connection = connect()
            result = fn(connection, *args)
        except BaseException as exc:
            _settle(future, _set_exception, exc)
        else:
            _settle(future, _set_result, result)
    try:
        if connection is not None:
            connection.close()
    finally:
        _settle(future, _set_result, None)


def _settle(
    future: Optional["asyncio.Future[Any]"], setter: Callable[..., None], value: Any
) -> None:
    if future is None:
        return
    try:
        future.get_loop().call_soon_threadsafe(setter, future, value)
    except RuntimeError:  # the loop is closed: nobody is waiting any more
        pass


def _set_result(future: "asyncio.Future[Any]", value: Any) -> None:
    if not future.done():
        future.set_result(value)


def _set_exception(future: "asyncio.Future[Any]", exc: BaseException) -> None:
    if not future.done():
        future.set_exception(exc)
