"""Waiting on machines: one-shot waitables, state contexts and the subscription index.

Nothing here blocks or allocates a task: a waitable is a flag plus callbacks, resolved by the
machine after a transition. ``await waitable`` bridges to whichever event loop is running
(trio or asyncio, see :mod:`machines.aio`). The index is shared with network mirrors of machines
(aRPC's NetMach), which feed it the states their clock diffs changed.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Generator, Iterable, Mapping
from typing import Any, Protocol

from .aio import wait_signal

__all__ = ["Waitable", "StateCtx", "Subscriptions", "Clocked"]


def _noop() -> None:
    return None


# Completion and subscription may happen on different threads (a machine drained by a worker
# thread, awaited from the event loop's thread): one process-wide lock makes "done or queued"
# atomic, so a callback is never lost nor called twice. Uncontended, it costs ~50 ns.
_callbacks_lock = threading.Lock()


class Waitable:
    """Completes once. ``await w`` under trio or asyncio; ``w.done`` to poll."""

    __slots__ = ("_done", "_callbacks", "__weakref__")

    def __init__(self, done: bool = False) -> None:
        self._done = done
        self._callbacks: list[Callable[[], None]] | None = None

    @property
    def done(self) -> bool:
        return self._done

    def resolve(self) -> None:
        if self._done:
            return
        with _callbacks_lock:
            if self._done:
                return
            self._done = True
            callbacks, self._callbacks = self._callbacks, None
        for cb in callbacks or ():
            cb()

    def add_callback(self, cb: Callable[[], None]) -> Callable[[], None]:
        """Call ``cb`` on completion (at once if done); returns an unsubscribe function."""
        if not self._done:
            with _callbacks_lock:
                if not self._done:
                    if self._callbacks is None:
                        self._callbacks = []
                    self._callbacks.append(cb)
                    return lambda: self._unsubscribe(cb)
        cb()
        return _noop

    def _unsubscribe(self, cb: Callable[[], None]) -> None:
        with _callbacks_lock:
            if self._callbacks and cb in self._callbacks:
                self._callbacks.remove(cb)

    def __await__(self) -> Generator[Any, None, None]:
        if self._done:
            return
        yield from wait_signal(self.add_callback).__await__()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {'done' if self._done else 'pending'}>"


class StateCtx(Waitable):
    """A cancellation token bound to one state's tick: cancelled when that tick changes.

    Work started for a state (in ``FooState``) checks ``ctx.cancelled`` after each blocking step,
    or awaits it to learn the state has ended.
    """

    __slots__ = ("machine_id", "state", "tick")

    def __init__(self, machine_id: str, state: str, tick: int, cancelled: bool = False) -> None:
        super().__init__(cancelled)
        self.machine_id = machine_id
        self.state = state
        self.tick = tick

    @property
    def cancelled(self) -> bool:
        return self._done

    cancel = Waitable.resolve

    def __repr__(self) -> str:
        status = "cancelled" if self._done else "alive"
        return f"<StateCtx {self.machine_id}/{self.state}@{self.tick} {status}>"


class Clocked(Protocol):
    """What the index needs from a machine or a mirror of one."""

    def tick(self, state: str) -> int: ...


class _Sub(Waitable):
    __slots__ = ("key", "kind", "states", "ticks", "args", "fn")
    # set by Subscriptions._watch / when_query; which ones depends on ``kind``
    key: Any
    kind: str
    states: tuple[str, ...]
    ticks: tuple[int, ...]
    args: Any
    fn: Any


class Subscriptions:
    """Pending waits, indexed by state so a transition checks only the waits it can affect."""

    def __init__(self, owner: Clocked) -> None:
        self._owner = owner
        self._shared: dict[tuple, _Sub] = {}
        self._by_state: dict[str, set[_Sub]] = {}
        self._args: dict[str, set[_Sub]] = {}
        self._queries: set[_Sub] = set()
        #: how many waits are registered: a plain int, because the machine reads it on every
        #: mutation (``__bool__`` was a Python call there)
        self.pending = 0
        # subscribing and notifying may run on different threads: the index is changed and
        # scanned under this lock (waitables are resolved and user queries run outside it)
        self.lock = threading.Lock()

    def __bool__(self) -> bool:
        """Any wait registered (cheap: the machine checks it on every mutation)."""
        return self.pending > 0

    # -- subscribing ---------------------------------------------------------------------------

    def when(self, states: tuple[str, ...], ctx: Waitable | None = None) -> Waitable:
        return self._watch("when", states, (), None, ctx)

    def when_not(self, states: tuple[str, ...], ctx: Waitable | None = None) -> Waitable:
        return self._watch("not", states, (), None, ctx)

    def when_time(
        self, states: tuple[str, ...], ticks: tuple[int, ...], ctx: Waitable | None = None
    ) -> Waitable:
        return self._watch("time", states, ticks, None, ctx)

    def when_args(
        self, state: str, args: Mapping[str, Any], ctx: Waitable | None = None
    ) -> Waitable:
        return self._watch("args", (state,), (), dict(args), ctx)

    def when_query(
        self, fn: Callable[[dict[str, int]], bool], ctx: Waitable | None = None
    ) -> Waitable:
        if ctx is not None and ctx.done:
            return Waitable(True)
        sub = _Sub()
        sub.key, sub.kind, sub.fn = None, "query", fn
        with self.lock:
            self._queries.add(sub)
            self.pending += 1
        self._bind_ctx(sub, ctx)
        return sub

    def _satisfied(self, sub: _Sub) -> bool:
        tick = self._owner.tick
        if sub.kind == "when":
            return all(tick(s) % 2 for s in sub.states)
        if sub.kind == "not":
            return not any(tick(s) % 2 for s in sub.states)
        if sub.kind == "time":
            return all(tick(s) >= t for s, t in zip(sub.states, sub.ticks, strict=True))
        return False

    def _watch(
        self,
        kind: str,
        states: tuple[str, ...],
        ticks: tuple[int, ...],
        args: dict[str, Any] | None,
        ctx: Waitable | None,
    ) -> Waitable:
        if ctx is not None and ctx.done:
            return Waitable(True)
        key = (kind, states, ticks, _freeze(args), id(ctx) if ctx is not None else None)
        with self.lock:
            sub = self._shared.get(key)
            if sub is not None:
                return sub
            sub = _Sub()
            sub.key, sub.kind, sub.states, sub.ticks, sub.args, sub.fn = (
                key,
                kind,
                states,
                ticks,
                args,
                None,
            )
            # checked and registered atomically: a notify either sees this sub, or ran after
            # the ticks changed, which this check then sees
            if self._satisfied(sub):
                sub.resolve()  # new, nobody holds it yet: no callbacks to run
                return sub
            self._shared[key] = sub
            self.pending += 1
            index = self._args if kind == "args" else self._by_state
            for s in states:
                index.setdefault(s, set()).add(sub)
        self._bind_ctx(sub, ctx)
        return sub

    def _bind_ctx(self, sub: _Sub, ctx: Waitable | None) -> None:
        if ctx is not None:
            ctx.add_callback(lambda: self._finish(sub))

    # -- notifying -----------------------------------------------------------------------------

    def _finish(self, sub: _Sub) -> None:
        with self.lock:
            if sub.kind == "query":
                if sub in self._queries:
                    self._queries.remove(sub)
                    self.pending -= 1
            elif self._shared.pop(sub.key, None) is not None:
                self.pending -= 1
                index = self._args if sub.kind == "args" else self._by_state
                for s in sub.states:
                    subs = index.get(s)
                    if subs is not None:
                        subs.discard(sub)
                        if not subs:
                            del index[s]
        sub.resolve()

    def notify(self, changed: Iterable[str], clock: Callable[[], dict[str, int]]) -> None:
        """Check the waits on ``changed`` states, then the queries (given the current clock)."""
        with self.lock:
            by_state = self._by_state
            done = [sub for s in changed for sub in by_state.get(s, ()) if self._satisfied(sub)]
            queries = list(self._queries)
        for sub in done:
            self._finish(sub)
        if queries:
            now = clock()
            for sub in queries:
                if sub.fn(now):
                    self._finish(sub)

    def wants_args(self, state: str) -> bool:
        return state in self._args

    def notify_args(self, state: str, args: Mapping[str, Any]) -> None:
        """``<state>State`` was dispatched with ``args``."""
        with self.lock:
            subs = self._args.get(state)
            if not subs:
                return
            matched = [
                s for s in subs if all(k in args and args[k] == v for k, v in s.args.items())
            ]
        for sub in matched:
            self._finish(sub)

    def dispose(self) -> None:
        with self.lock:
            subs = list(self._shared.values()) + list(self._queries)
        for sub in subs:
            self._finish(sub)


def _freeze(args: Mapping[str, Any] | None) -> tuple | None:
    if args is None:
        return None
    try:
        frozen = tuple(sorted((k, v) for k, v in args.items()))
        hash(frozen)
        return frozen
    except TypeError:  # unhashable / unorderable values: never share
        return (object(),)
