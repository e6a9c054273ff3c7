"""The ``when_*`` family: waitables over a machine's states, clocks and queue, and tasks bound
to a state (:meth:`Waits.fork`). The waiting itself lives in :mod:`machines.waiting`."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any

from . import aio
from .mutation import Result
from .schema import EXCEPTION, flat_names, names_of
from .waiting import StateCtx, Subscriptions, Waitable

if TYPE_CHECKING:
    from .mutation import MutSource
    from .transition import Event

__all__ = ["Waits"]


class Waits:
    """Waiting on a :class:`machines.Machine` (a mixin)."""

    if TYPE_CHECKING:  # provided by Machine
        id: str
        queue_tick: int
        nursery: Any
        _disposed: bool
        _processing: bool
        _subs: Subscriptions
        _queue_waits: list[tuple[int, Waitable]]
        _queue_end_waits: list[Waitable]
        _disposed_wait: Waitable
        _state_ctxs: dict[str, StateCtx]

        def _check_known(self, called: tuple[str, ...]) -> None: ...
        def tick(self, state: str) -> int: ...
        def is_active(self, *states: str | Iterable[str]) -> bool: ...
        def add_err(
            self,
            err: BaseException,
            args: dict[str, Any] | None = None,
            *,
            source: MutSource | Event | None = None,
        ) -> Result | int: ...

    def when(self, *states: str | Iterable[str], ctx: Waitable | None = None) -> Waitable:
        """Completes when all ``states`` are active (at once if they are)."""
        called = names_of(flat_names(states))
        self._check_known(called)
        if self._disposed:
            return Waitable(True)
        return self._subs.when(called, ctx)

    def when_not(self, *states: str | Iterable[str], ctx: Waitable | None = None) -> Waitable:
        """Completes when none of ``states`` is active."""
        called = names_of(flat_names(states))
        self._check_known(called)
        if self._disposed:
            return Waitable(True)
        return self._subs.when_not(called, ctx)

    def when_err(self, ctx: Waitable | None = None) -> Waitable:
        return self.when(EXCEPTION, ctx=ctx)

    def when_time(
        self, states: str | Iterable[str], ticks: Iterable[int], ctx: Waitable | None = None
    ) -> Waitable:
        """Completes when every state's tick reached its target tick."""
        called, ticks = names_of(states), tuple(ticks)
        self._check_known(called)
        if self._disposed:
            return Waitable(True)
        if not called or len(called) != len(ticks):
            self.add_err(ValueError(f"when_time: {len(called)} states but {len(ticks)} ticks"))
            return Waitable(True)
        return self._subs.when_time(called, ticks, ctx)

    def when_ticks(self, state: str, n: int, ctx: Waitable | None = None) -> Waitable:
        """Completes after ``state`` ticks ``n`` more times."""
        return self.when_time(state, (self.tick(state) + n,), ctx)

    def when_next_active(self, state: str, ctx: Waitable | None = None) -> Waitable:
        return self.when_ticks(state, 2 if self.is_active(state) else 1, ctx)

    def when_args(
        self, state: str, args: Mapping[str, Any], ctx: Waitable | None = None
    ) -> Waitable:
        """Completes when ``<state>State`` runs with args containing ``args`` (``==``)."""
        self._check_known((state,))
        if self._disposed:
            return Waitable(True)
        return self._subs.when_args(state, args, ctx)

    def when_query(
        self, fn: Callable[[dict[str, int]], bool], ctx: Waitable | None = None
    ) -> Waitable:
        """Completes when ``fn(clock)`` is true after a transition."""
        if self._disposed:
            return Waitable(True)
        return self._subs.when_query(fn, ctx)

    def when_queue(self, tick: int) -> Waitable:
        """Completes once the queue tick ``tick`` (a mutation's queued result) has run."""
        w = Waitable(self._disposed or self.queue_tick >= tick)
        if not w.done:
            self._queue_waits.append((tick, w))
        return w

    def when_queue_ends(self) -> Waitable:
        """Completes when the current queue drain finishes (at once when idle)."""
        w = Waitable(self._disposed or not self._processing)
        if not w.done:
            self._queue_end_waits.append(w)
        return w

    def when_disposed(self) -> Waitable:
        return self._disposed_wait

    def _check_queue_waits(self) -> None:
        qt = self.queue_tick
        ready = [w for t, w in self._queue_waits if qt >= t]
        if ready:
            self._queue_waits = [(t, w) for t, w in self._queue_waits if qt < t]
            for w in ready:
                w.resolve()

    def new_state_ctx(self, state: str) -> StateCtx:
        """A token cancelled at ``state``'s next tick change (or disposal)."""
        self._check_known((state,))
        if self._disposed:
            return StateCtx(self.id, state, 0, cancelled=True)
        tick = self.tick(state)
        ctx = self._state_ctxs.get(state)
        if ctx is None or ctx.tick != tick:
            ctx = StateCtx(self.id, state, tick)
            self._state_ctxs[state] = ctx
        return ctx

    async def run_in_state(self, state: str, fn: Callable[..., Awaitable[Any]], *args: Any) -> Any:
        """Await ``fn(*args)``, cancelled as soon as ``state`` ticks; ``None`` if cancelled."""
        ctx = self.new_state_ctx(state)
        if ctx.cancelled:
            return None
        return await aio.run_cancellable(fn, args, ctx.add_callback)

    def fork(
        self, state: str, fn: Callable[..., Awaitable[Any]], *args: Any, nursery: Any = None
    ) -> bool:
        """Start ``fn(*args)`` in the background, bound to ``state``'s current tick.

        The task is cancelled when ``state`` ends; an exception it raises becomes
        ``Exception`` on this machine. Under trio it runs in ``nursery`` or
        :attr:`nursery`; under asyncio on the running loop. False if the state already ended.
        """
        ctx = self.new_state_ctx(state)
        if ctx.cancelled or not self.is_active(state):
            return False

        async def bound() -> None:
            try:
                await aio.run_cancellable(fn, args, ctx.add_callback)
            except Exception as err:
                self.add_err(err)

        aio.spawn(bound, (), nursery or self.nursery)
        return True
