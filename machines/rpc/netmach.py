"""NetMach: the client-side mirror of a remote machine.

Reads (`is_active`, `tick`, `clock`, `when`...) are answered from the mirrored clock, without the
network; mutations go to the server through a link (the trio Client, or the browser's driver) and
return the server's Result. No trio or asyncio at module load, so the browser can use it too.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from itertools import compress
from typing import Any, Protocol

from ..mutation import Result
from ..schema import State
from .protocol import MUT_ADD, MUT_REMOVE, MUT_SET
from .waiting import Waiters

log = logging.getLogger("machines.rpc")
_tx_ids = itertools.count(1)


class Link(Protocol):
    """What a NetMach needs from a driver to reach the server."""

    async def mutate(
        self, mutation_type: int, states: list[str], args: Mapping[str, Any] | None, source: Any
    ) -> int: ...

    async def add_ns(
        self, states: list[str], args: Mapping[str, Any] | None, source: Any
    ) -> None: ...


@dataclass
class NetEvent:
    """Passed to final handlers bound to a NetMach (`FooState`, `FooEnd`, `AnyState`)."""

    name: str
    machine: NetMach
    transition: NetTransition
    args: dict[str, Any] = field(default_factory=dict)


@dataclass
class NetTransition:
    """A synthetic transition: one clock update from the server, applied as a whole."""

    id: str
    machine: NetMach
    time_before: list[int]
    time_after: list[int]
    states_before: list[str]
    target_states: list[str]
    full: bool = False
    accepted: bool = True
    is_auto: bool = False
    mutation: Any = None  # (mutation type, called states) of the source, per-mutation mode

    @property
    def called_states(self) -> list[str]:
        return self.target_states


def _as_list(states: str | Iterable[str]) -> list[str]:
    return [states] if isinstance(states, str) else list(states)


_odd = (1).__and__  # a tick's parity

#: a mutation's answer as a Result (a queued one answers with its queue tick instead)
_RESULTS = {int(r): r for r in Result}


class NetMach:
    """A mirror of a remote machine; see the module docstring."""

    def __init__(self, id: str, link: Link | None = None, parent_id: str | None = None) -> None:
        self.id = id
        self.parent_id = parent_id
        self.remote_id: str = ""
        self.tags: list[str] = ["rpc-netmach"]
        self._link = link
        self._names: list[str] = []
        self._index: dict[str, int] = {}
        self._time: list[int] = []
        self._queue_tick = 0
        self._machine_tick = 0
        self._wire_schema: dict[str, dict[str, Any]] | None = None
        self._active: list[str] = []
        self._waiters = Waiters()
        self._handlers: dict[str, Any] = {}
        self._group_ids = itertools.count(1)
        self._tracers: list[Any] = []
        self._listeners: list[Callable[[NetMach, list[int], list[int]], None]] = []
        self._disposed = False
        self.transitions = 0
        self.is_partial = False

    # --- updates from the driver ---------------------------------------------------------------

    def _set_remote(
        self,
        remote_id: str,
        names: list[str],
        schema: dict[str, dict[str, Any]] | None,
        partial: bool = False,
    ) -> None:
        self.remote_id = remote_id
        self.tags = ["rpc-netmach", f"src-id:{remote_id}"]
        if names != self._names:
            self._names = list(names)
            self._index = {n: i for i, n in enumerate(names)}
            self._time = [0] * len(names)
        self._wire_schema = schema
        self.is_partial = partial

    def _apply(
        self,
        time: list[int],
        queue_tick: int,
        machine_tick: int,
        full: bool,
        mutation: tuple[int | None, list[str]] | None = None,
    ) -> None:
        """Apply a clock from the server as one synthetic transition; run final handlers."""
        if self._disposed:
            return
        before_time, before_active = self._time, self._active
        self._time, self._queue_tick, self._machine_tick = list(time), queue_tick, machine_tick
        if self.is_partial and self._wire_schema:
            self._active = self._partial_active()
        else:  # the common case, in C: a state is active when its tick is odd
            self._active = list(compress(self._names, map(_odd, self._time)))
        if not full and self._time == before_time:
            self._waiters.check()
            return
        self.transitions += 1
        if not (self._tracers or self._handlers or self._listeners):
            self._waiters.check()  # nobody to hand a transition object to
            return
        tx = NetTransition(
            id=f"{self.id}-tx{next(_tx_ids)}",
            machine=self,
            time_before=list(before_time),
            time_after=list(self._time),
            states_before=list(before_active),
            target_states=list(self._active),
            full=full,
            mutation=mutation,
        )
        for tracer in list(self._tracers):
            for hook in ("transition_init", "transition_start"):
                self._call(tracer, hook, tx)
        self._run_handlers(tx, before_active)
        for tracer in list(self._tracers):
            self._call(tracer, "transition_end", tx)
        for listener in list(self._listeners):
            self._guard(listener, self, tx.time_before, tx.time_after)
        self._waiters.check()

    def _partial_active(self) -> list[str]:
        """Active states of a partial mirror: untracked states required by active ones are
        active too (their tick stays 0)."""
        schema = self._wire_schema or {}
        active = {i for i, t in enumerate(self._time) if t % 2}
        todo = [self._names[i] for i in active]
        while todo:
            for req in schema.get(todo.pop(), {}).get("require", ()):
                idx = self._index.get(req)
                if idx is not None and idx not in active:
                    active.add(idx)
                    todo.append(req)
        return [n for i, n in enumerate(self._names) if i in active]

    def _run_handlers(self, tx: NetTransition, before: list[str]) -> None:
        if not self._handlers:
            return
        was, now = set(before), set(self._active)
        for handlers in list(self._handlers.values()):
            for name in self._names:
                if name in was and name not in now:
                    self._handler(handlers, f"{name}End", tx)
            for name in self._names:
                if name in now and name not in was:
                    self._handler(handlers, f"{name}State", tx)
            self._handler(handlers, "AnyState", tx)

    def _handler(self, handlers: Any, name: str, tx: NetTransition) -> None:
        fn = getattr(handlers, name, None)
        if callable(fn):
            self._guard(fn, NetEvent(name, self, tx))

    def _call(self, obj: Any, hook: str, *args: Any) -> None:
        fn = getattr(obj, hook, None)
        if callable(fn):
            self._guard(fn, *args)

    def _guard(self, fn: Callable[..., Any], *args: Any) -> None:
        # a broken handler must not stop the clock from being applied
        try:
            fn(*args)
        except Exception as err:
            log.warning("netmach %s: handler %s failed: %s", self.id, fn, err)

    # --- local reads ---------------------------------------------------------------------------

    def _idx(self, states: str | Iterable[str]) -> list[int]:
        names, index = _as_list(states), self._index
        try:
            return [index[n] for n in names]
        except (KeyError, TypeError):
            missing = [n for n in names if n not in index]
            raise ValueError(
                f"state {', '.join(map(str, missing))} is not defined for {self.remote_id} "
                f"(via {self.id})"
            ) from None

    @property
    def state_names(self) -> list[str]:
        return list(self._names)

    @property
    def active_states(self) -> list[str]:
        return list(self._active)

    @property
    def schema(self) -> dict[str, State]:
        """The remote schema as core `State`s."""
        wire = self._wire_schema or {}
        return {n: State(**wire.get(n, {})) for n in self._names}

    @property
    def queue_tick(self) -> int:
        return self._queue_tick

    @property
    def machine_tick(self) -> int:
        return self._machine_tick

    @property
    def is_disposed(self) -> bool:
        return self._disposed

    def has(self, *states: str | Iterable[str]) -> bool:
        return all(n in self._index for s in states for n in _as_list(s))

    def index(self, state: str) -> int:
        return self._idx(state)[0]

    def is_err(self) -> bool:
        return "Exception" in self._active

    def is_active(self, *states: str | Iterable[str]) -> bool:
        names = [n for s in states for n in _as_list(s)]
        self._idx(names)
        return all(n in self._active for n in names)

    def any_active(self, *states: str | Iterable[str]) -> bool:
        names = [n for s in states for n in _as_list(s)]
        self._idx(names)
        return any(n in self._active for n in names)

    def not_active(self, *states: str | Iterable[str]) -> bool:
        names = [n for s in states for n in _as_list(s)]
        self._idx(names)
        return not any(n in self._active for n in names)

    def tick(self, state: str) -> int:
        return self._time[self._idx(state)[0]]

    def time(self, states: Iterable[str] | None = None) -> list[int]:
        if states is None:
            return list(self._time)
        return [self._time[i] for i in self._idx(states)]

    def clock(self, states: Iterable[str] | None = None) -> dict[str, int]:
        names = self._names if states is None else _as_list(states)
        return dict(zip(names, self.time(names), strict=True))

    def is_time(self, time: list[int], states: Iterable[str] | None = None) -> bool:
        return self.time(states) == list(time)

    def is_clock(self, clock: Mapping[str, int]) -> bool:
        return self.clock(list(clock)) == dict(clock)

    def switch(self, *groups: str | Iterable[str]) -> str:
        """The first of the given states that is active, or ``""``; unknown names raise."""
        names = [n for g in groups for n in _as_list(g)]
        self._idx(names)
        return next((n for n in names if n in self._active), "")

    def __str__(self) -> str:
        return "(" + " ".join(f"{n}:{self.tick(n)}" for n in self._active) + ")"

    def string(self) -> str:
        return str(self)

    def string_all(self) -> str:
        rest = " ".join(f"{n}:{self.tick(n)}" for n in self._names if n not in self._active)
        return f"{self} [{rest}]"

    def inspect(self, states: Iterable[str] | None = None) -> str:
        """Flags, relations and ticks per state, in the format of the core's `inspect`."""
        wire = self._wire_schema or {}
        out = []
        for n in self._names if states is None else _as_list(states):
            st, t = wire.get(n, {}), self.tick(n)
            out.append(f"{int(n in self._active)} {n}\n    |Tick     {t}\n")
            for label, key in (("Auto", "auto"), ("Multi", "multi")):
                if st.get(key):
                    out.append(f"    |{label:<9}true\n")
            for label, key in (("Add", "add"), ("Require", "require"), ("Remove", "remove")):
                if st.get(key):
                    out.append(f"    |{label:<9}{' '.join(st[key])}\n")
            if st.get("after"):
                out.append(f"    |{'After':<9}{' '.join(st['after'])}\n")
        return "".join(out)

    def export(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "time": list(self._time),
            "state_names": list(self._names),
            "queue_tick": self._queue_tick,
            "machine_tick": self._machine_tick,
        }

    # --- local waits ---------------------------------------------------------------------------

    async def when(self, *states: str | Iterable[str]) -> None:
        names = [n for s in states for n in _as_list(s)]
        self._idx(names)
        await self._waiters.wait(lambda: all(n in self._active for n in names))

    async def when_not(self, *states: str | Iterable[str]) -> None:
        names = [n for s in states for n in _as_list(s)]
        self._idx(names)
        await self._waiters.wait(lambda: not any(n in self._active for n in names))

    async def when_err(self) -> None:
        await self._waiters.wait(self.is_err)

    def when_time(self, states: Iterable[str], ticks: Iterable[int]) -> Any:
        """Every state's tick reaches its target."""
        idx, targets = self._idx(states), list(ticks)
        if len(idx) != len(targets):
            raise ValueError("states and ticks differ in length")
        return self._waiters.wait(
            lambda: all(self._time[i] >= t for i, t in zip(idx, targets, strict=True))
        )

    def when_ticks(self, state: str, n: int = 1) -> Any:
        """The state's tick grows by `n` from now (the target is fixed at call time)."""
        return self.when_time([state], [self.tick(state) + n])

    def when_queue(self, queue_tick: int) -> Any:
        return self._waiters.wait(lambda: self._queue_tick >= queue_tick)

    def when_query(self, fn: Callable[[dict[str, int]], bool]) -> Any:
        return self._waiters.wait(lambda: bool(fn(self.clock())))

    # --- binding -------------------------------------------------------------------------------

    def handlers_bind(self, handlers: Any, id: str | None = None) -> str:
        """Final handlers only (`FooState`, `FooEnd`, `AnyState`): they must not block. Returns
        the group's id, which `handlers_detach` takes (as on a local machine)."""
        gid = id or str(next(self._group_ids))
        if gid in self._handlers:
            raise ValueError(f"{self.id}: handler group {gid!r} is already bound")
        self._handlers[gid] = handlers
        return gid

    def handlers_detach(self, id: str) -> None:
        if self._handlers.pop(id, None) is None:
            raise ValueError(f"{self.id}: no handler group {id!r}")

    def handlers(self) -> list[str]:
        return list(self._handlers)

    def tracer_bind(self, tracer: Any) -> None:
        self._tracers.append(tracer)

    def tracer_detach(self, tracer: Any) -> None:
        self._tracers.remove(tracer)

    def on_change(self, fn: Callable[[NetMach, list[int], list[int]], None]) -> Callable[[], None]:
        """Call `fn(netmach, time_before, time_after)` after each applied clock update (as a
        local machine calls it after a transition); returns an unsubscribe function."""
        self._listeners.append(fn)
        return lambda: self._listeners.remove(fn) if fn in self._listeners else None

    def dispose(self) -> None:
        self._disposed = True
        for tracer in list(self._tracers):
            self._call(tracer, "machine_dispose", self.id)

    # --- remote mutations ----------------------------------------------------------------------

    def _link_or_raise(self) -> Link:
        """The link, if it can carry a call now: fail fast (before name checks) otherwise."""
        if self._link is None or self._disposed:
            from .errors import RpcNotConnected

            raise RpcNotConnected(f"netmach {self.id} has no connection")
        check = getattr(self._link, "check", None)
        if check is not None:
            check()
        return self._link

    async def _mutate(
        self, kind: int, states: str | Iterable[str], args: Mapping[str, Any] | None, source: Any
    ) -> Any:
        link = self._link_or_raise()
        names = [states] if isinstance(states, str) else list(states)
        index = self._index
        for name in names:
            if name not in index:
                self._idx(names)  # unknown names fail here (with why), before anything is sent
        value = await link.mutate(kind, names, args, source)
        return _RESULTS.get(value, value)  # else a queued mutation: the queue tick (>= 2)

    async def add(
        self, states: str | Iterable[str], args: Mapping[str, Any] | None = None, *, source=None
    ) -> Any:
        return await self._mutate(MUT_ADD, states, args, source)

    async def remove(
        self, states: str | Iterable[str], args: Mapping[str, Any] | None = None, *, source=None
    ) -> Any:
        return await self._mutate(MUT_REMOVE, states, args, source)

    async def set(
        self, states: str | Iterable[str], args: Mapping[str, Any] | None = None, *, source=None
    ) -> Any:
        return await self._mutate(MUT_SET, states, args, source)

    async def toggle(self, state: str, args: Mapping[str, Any] | None = None, *, source=None):
        """Decided locally: remove if active, else add."""
        if self.is_active(state):
            return await self.remove(state, args, source=source)
        return await self.add(state, args, source=source)

    async def add_ns(
        self, states: str | Iterable[str], args: Mapping[str, Any] | None = None, *, source=None
    ) -> None:
        """Add without waiting and without a clock diff (see `Client.sync`)."""
        link, names = self._link_or_raise(), _as_list(states)
        self._idx(names)
        await link.add_ns(names, args, source)

    async def add_err(self, err: BaseException, args: Mapping[str, Any] | None = None) -> Any:
        """Activate the remote `Exception` (and `ErrOnClient` when it exists) with the error."""
        states = ["Exception"] + (["ErrOnClient"] if "ErrOnClient" in self._index else [])
        payload = dict(args or {})
        payload["err"] = {"type": type(err).__name__, "message": str(err)}
        return await self.add(states, payload)
