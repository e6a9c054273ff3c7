"""The only place that touches an event loop: waiting and cancelling under trio or asyncio.

The core stays importable without either (Pyodide has asyncio but no trio; servers run trio), so
the loop library is detected at the moment a coroutine actually awaits, from the running task.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

T = TypeVar("T")

__all__ = ["current_library", "wait_signal", "run_cancellable"]


def current_library() -> str:
    """``"trio"`` or ``"asyncio"``: the library running the current task."""
    trio = sys.modules.get("trio")
    if trio is not None:
        try:
            trio.lowlevel.current_task()
            return "trio"
        except RuntimeError:
            pass
    import asyncio

    try:
        asyncio.get_running_loop()
    except RuntimeError:
        raise RuntimeError(
            "machines: awaiting needs a running trio or asyncio event loop"
        ) from None
    return "asyncio"


async def wait_signal(
    subscribe: Callable[[Callable[[], None]], Callable[[], None]], timeout: float | None = None
) -> bool:
    """Sleep until the callback given to ``subscribe`` is called (True), or ``timeout`` seconds
    pass (False). The one bridge from a callback to an awaiting task, under trio or asyncio.

    ``subscribe(cb)`` registers ``cb`` and returns a function that unregisters it (called when
    the waiter is cancelled, so a cancelled waiter leaves nothing behind). The callback may be
    called from another thread.
    """
    owner = threading.get_ident()
    if current_library() == "trio":
        import trio

        event = trio.Event()
        token = trio.lowlevel.current_trio_token()

        def wake() -> None:
            if threading.get_ident() == owner:
                event.set()
            else:
                token.run_sync_soon(event.set)

        unsubscribe = subscribe(wake)
        try:
            if timeout is None:  # the common case: no cancel scope to set up
                await event.wait()
            else:
                with trio.move_on_after(timeout):
                    await event.wait()
        finally:
            unsubscribe()
        return event.is_set()

    import asyncio

    loop = asyncio.get_running_loop()
    fut: asyncio.Future[None] = loop.create_future()

    def resolve() -> None:
        if not fut.done():
            fut.set_result(None)

    def wake_async() -> None:
        if threading.get_ident() == owner:
            resolve()
        else:
            loop.call_soon_threadsafe(resolve)

    unsubscribe = subscribe(wake_async)
    try:
        await asyncio.wait_for(fut, timeout)
    except TimeoutError:
        return False
    finally:
        unsubscribe()
    return True


async def run_cancellable(
    fn: Callable[..., Awaitable[T]],
    args: tuple[Any, ...],
    on_cancel: Callable[[Callable[[], None]], Callable[[], None]],
) -> T | None:
    """Run ``fn(*args)``, cancelled when ``on_cancel``'s callback fires (then ``None``)."""
    if current_library() == "trio":
        import trio

        with trio.CancelScope() as scope:
            unsubscribe = on_cancel(scope.cancel)
            try:
                return await fn(*args)
            finally:
                unsubscribe()
        return None

    import asyncio

    task = asyncio.ensure_future(fn(*args))
    unsubscribe = on_cancel(lambda: None if task.cancel() else None)
    try:
        return await task
    except asyncio.CancelledError:
        if task.cancelled() and not _current_cancelling():
            return None
        raise
    finally:
        unsubscribe()


def _current_cancelling() -> bool:
    import asyncio

    task = asyncio.current_task()
    return bool(task is not None and task.cancelling())


def spawn(fn: Callable[..., Awaitable[Any]], args: tuple[Any, ...], nursery: Any | None) -> None:
    """Start ``fn(*args)`` in the background: in ``nursery`` (trio) or on the running loop."""
    if nursery is not None:
        nursery.start_soon(fn, *args)
        return
    if current_library() == "trio":
        raise RuntimeError(
            "machines: forking under trio needs a nursery: pass nursery=... or set machine.nursery"
        )
    import asyncio

    task = asyncio.ensure_future(fn(*args))
    _background.add(task)
    task.add_done_callback(_background.discard)


_background: set[Any] = set()
