"""Waiting on a mirrored clock under trio or asyncio (the browser runs asyncio, servers trio).

The NetMach keeps its own waiters because its clock changes arrive from the network, not from
transitions of a local machine; the awaiting itself is `machines.aio.wait_signal`, the one bridge
to trio and asyncio. Nothing here imports trio or asyncio at module load.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

from machines.aio import wait_signal


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

        def subscribe(wake: Callable[[], None]) -> Callable[[], None]:
            item = (predicate, wake)
            self._items.append(item)
            return partial(self._discard, item)

        return await wait_signal(subscribe, timeout)

    def _discard(self, item: tuple) -> None:
        try:
            self._items.remove(item)
        except ValueError:
            pass

    def check(self) -> None:
        """Release every waiter whose predicate now holds."""
        if not self._items:  # the common case: checked after every clock change
            return
        for item in list(self._items):
            if item[0]():
                self._discard(item)
                item[1]()
