"""Waiting on a mirrored clock under trio or asyncio (the browser runs asyncio, servers trio).

The NetMach keeps its own waiters because its clock changes arrive from the network, not from
transitions of a local machine. Nothing here imports trio or asyncio at module load.
"""

from __future__ import annotations

import math
from collections.abc import Callable

from machines.aio import current_library


class Waiters:
    """Predicates checked after every clock change; each releases one awaiting task."""

    def __init__(self) -> None:
        self._items: list[tuple[Callable[[], bool], Callable[[], None]]] = []

    def __len__(self) -> int:
        return len(self._items)

    async def wait(self, predicate: Callable[[], bool], timeout: float | None = None) -> bool:
        """Until `predicate()` holds (True), or `timeout` seconds pass (False)."""
        if predicate():
            return True
        if current_library() == "trio":
            import trio

            event = trio.Event()
            item = (predicate, event.set)
            self._items.append(item)
            try:
                with trio.move_on_after(math.inf if timeout is None else timeout):
                    await event.wait()
            finally:
                self._discard(item)
            return event.is_set()
        import asyncio

        fut = asyncio.get_running_loop().create_future()

        def wake() -> None:
            if not fut.done():
                fut.set_result(None)

        item = (predicate, wake)
        self._items.append(item)
        try:
            await asyncio.wait_for(fut, timeout)
        except TimeoutError:
            return False
        finally:
            self._discard(item)
        return True

    def _discard(self, item: tuple) -> None:
        try:
            self._items.remove(item)
        except ValueError:
            pass

    def check(self) -> None:
        """Release every waiter whose predicate now holds."""
        for item in list(self._items):
            if item[0]():
                self._discard(item)
                item[1]()
