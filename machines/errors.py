"""Errors as states: ``Exception`` (and ``ErrFoo`` states) carry what went wrong; a handler
that raises or overruns becomes one, instead of breaking the machine."""

from __future__ import annotations

import logging
import threading
import time
import traceback
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from .mutation import LogLevel, Mutation, MutationType, MutSource, Result
from .schema import EXCEPTION
from .transition import EXCEPTION_ARGS_KEY, Event, ExceptionArgs, Transition

__all__ = ["Errors", "HandlerTimeoutError"]

ADD = MutationType.ADD
CANCELED = Result.CANCELED

log = logging.getLogger("machines")


class Errors:
    """Error handling of :class:`machines.Machine` (a mixin)."""

    if TYPE_CHECKING:  # provided by Machine
        id: str
        err: BaseException | None
        log_stack_trace: bool
        handler_backoff: float
        _disposed: bool
        _lock: threading.Lock
        _queue: deque[Mutation]
        _appended: int
        _backoff_until: float
        _index: dict[str, int]

        def _in_backoff(self) -> bool: ...
        def _check_known(self, called: tuple[str, ...]) -> None: ...
        def _log(self, level: int, text: str) -> None: ...
        def _prepend(self, mut: Mutation) -> None: ...
        def _mutate(
            self,
            mtype: MutationType,
            states: Any,
            args: dict[str, Any] | None,
            source: MutSource | Event | None,
        ) -> Result | int: ...

    def add_err(
        self,
        err: BaseException,
        args: dict[str, Any] | None = None,
        *,
        source: MutSource | Event | None = None,
    ) -> Result | int:
        """Activate ``Exception``, keeping ``err`` (see :attr:`err`) and its traceback."""
        return self.add_err_state(EXCEPTION, err, args, source=source)

    def add_err_state(
        self,
        state: str,
        err: BaseException,
        args: dict[str, Any] | None = None,
        *,
        source: MutSource | Event | None = None,
    ) -> Result | int:
        """Activate ``state`` and ``Exception`` together (``ErrNetwork``-style states)."""
        if self._disposed or err is None or self._in_backoff():
            return CANCELED
        self.err = err
        trace = (
            "".join(traceback.format_exception(err))
            if self.log_stack_trace and err.__traceback__
            else ""
        )
        merged = dict(args or {})
        merged[EXCEPTION_ARGS_KEY] = ExceptionArgs(err, trace)
        called = (state, EXCEPTION) if state != EXCEPTION else (EXCEPTION,)
        return self._mutate(ADD, called, merged, source)

    @contextmanager
    def panic_to_err(self, args: dict[str, Any] | None = None) -> Iterator[None]:
        """Guard foreign code (``with m.panic_to_err(): ...``): an exception escaping the block
        becomes :meth:`add_err` instead of propagating (except on a disposed machine)."""
        with self.panic_to_err_state(EXCEPTION, args):
            yield

    @contextmanager
    def panic_to_err_state(self, state: str, args: dict[str, Any] | None = None) -> Iterator[None]:
        """Like :meth:`panic_to_err`, but activates ``state`` too (``ErrNetwork``-style)."""
        self._check_known((state,))
        try:
            yield
        except Exception as err:  # not BaseException: cancellation must go through
            if self._disposed:
                raise
            self.add_err_state(state, err, args)

    def _deadline(self, tx: Transition, err: HandlerTimeoutError) -> None:
        """A handler blew its deadline: drop the queue, raise ErrHandlerTimeout, back off."""
        with self._lock:
            self._queue.clear()
            self._appended = 0
        self._backoff_until = time.monotonic() + self.handler_backoff
        state = "ErrHandlerTimeout" if "ErrHandlerTimeout" in self._index else EXCEPTION
        self.err = err
        called = (state, EXCEPTION) if state != EXCEPTION else (EXCEPTION,)
        args = {
            EXCEPTION_ARGS_KEY: ExceptionArgs(
                err, "", {"targets": list(tx.targets), "called": list(tx.mutation.called)}
            )
        }
        self._prepend(Mutation(ADD, called, args, source=MutSource(self.id, tx.id)))

    def _raise_to_exception(self, tx: Transition, name: str, panic: _Panic) -> None:
        if panic.timeout or EXCEPTION in tx.mutation.called:
            return
        self.err = panic.err
        self._log(LogLevel.OPS, "[recover] handling panic...")
        details = {
            "handler": name,
            "called": list(tx.mutation.called),
            "before": list(tx.states_before),
            "type": str(tx.mutation.type),
        }
        args = {EXCEPTION_ARGS_KEY: ExceptionArgs(panic.err, panic.trace, details)}
        self._prepend(
            Mutation(ADD, (EXCEPTION,), args, source=MutSource(self.id, tx.id, sum(tx.time_before)))
        )

    def _default_exception_state(self, tx: Transition) -> None:
        data = tx.mutation.args.get(EXCEPTION_ARGS_KEY)
        if not isinstance(data, ExceptionArgs):
            return
        p = data.panic
        if p and "handler" in p:  # a handler's exception (deadline details have no handler)
            msg = (
                f"[error:{p['type']}] {' '.join(p['called'])} ({p['handler']} panic: {data.err!r})"
            )
        else:
            msg = f"[error] {data.err!r}"
        self._log(LogLevel.CHANGES, msg + (f"\n{data.trace}" if data.trace else ""))
        log.warning("%s: %s", self.id, msg)


class HandlerTimeoutError(TimeoutError):
    """A handler ran longer than the machine's ``handler_timeout``."""


class _Panic:
    __slots__ = ("err", "trace", "timeout")

    def __init__(self, err: BaseException, trace: str, timeout: bool = False) -> None:
        self.err, self.trace, self.timeout = err, trace, timeout
