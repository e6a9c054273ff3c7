"""``eval``: running a function serialised with a machine's transitions."""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from .mutation import Mutation, MutationType, Result

if TYPE_CHECKING:
    from .mutation import MutSource
    from .transition import Event

__all__ = ["Evaluation"]

EVAL = MutationType.EVAL


class Evaluation:
    """:meth:`eval` of :class:`machines.Machine` (a mixin)."""

    if TYPE_CHECKING:  # provided by Machine
        _disposed: bool
        _in_eval: bool
        _processing: bool
        _processor: int
        _lock: threading.Lock
        _queue: deque[Mutation]
        err_internal: deque[BaseException]

        def _claim(self) -> bool: ...
        def _drain(self, mut: Mutation | None = None) -> Result: ...
        def add_err(
            self,
            err: BaseException,
            args: dict[str, Any] | None = None,
            *,
            source: MutSource | Event | None = None,
        ) -> Result | int: ...

    def eval(self, fn: Callable[[], Any], source: str = "", timeout: float = 1.0) -> bool:
        """Run ``fn`` serialised with transitions. False when refused (nested in a handler or
        an eval), timed out, or the machine is disposed."""
        if self._disposed:
            return False
        if self._in_eval:
            return False
        if self._processing and self._processor == threading.get_ident():
            self.add_err(RuntimeError(f"eval nested in handler or eval: {source}"))
            return False
        done = threading.Event()
        mut = Mutation(EVAL, (), {"fn": fn, "done": done})
        with self._lock:
            busy = not self._claim()
            if busy:
                # queued under the lock: the draining thread checks the queue under it too,
                # so it cannot finish its drain without seeing this eval
                self._queue.appendleft(mut)
        if not busy:
            try:
                self._run_eval(fn)
            finally:
                with self._lock:
                    self._processing = False
            if self._queue:
                self._mutate_resume()
            return True
        if done.wait(timeout):
            return True
        mut.args["timed_out"] = True  # not started yet: the drain skips it
        self.err_internal.append(TimeoutError(f"eval timeout: {source}"))
        return False

    def _run_eval(self, fn: Callable[[], Any]) -> None:
        self._in_eval = True
        try:
            fn()
        finally:
            self._in_eval = False

    def _mutate_resume(self) -> None:
        with self._lock:
            if not self._claim():
                return
        self._drain()
