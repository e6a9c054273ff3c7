"""The machine: active states, clocks, the mutation queue and the transition lifecycle.

Sans-IO: nothing here waits on a socket or an event loop. Mutations run synchronously through
one FIFO queue per machine; a mutation made while the queue is being processed (from a handler,
or from another thread) is queued and returns its queue tick. Waiting (``await m.when(...)``)
and state-bound tasks are bridged to trio or asyncio by :mod:`machines.aio` on demand.
"""

from __future__ import annotations

import logging
import os
import struct
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from itertools import islice
from threading import get_ident
from typing import Any

from .errors import Errors, HandlerTimeoutError, _Panic
from .evaluation import Evaluation
from .formatting import Formatting
from .handlers import SPARE_REFS, Handlers, _Group, _refs
from .logs import Logging, _default_logger, _silent
from .mutation import LogLevel, Mutation, MutationType, MutSource, Result
from .options import Options
from .resolver import Plan, Resolver
from .schema import (
    EXCEPTION,
    Relation,
    Schema,
    State,
    flat_names,
    names_of,
    sanitize,
    validate,
)
from .snapshot import Snapshots
from .tracer import FLAG_AUTO, FLAG_CHECK, HOOKS, HOT_HOOKS, Tracer, env_attach, overridden
from .transition import (
    NO_RARE,
    Event,
    Step,
    StepType,
    Transition,
    next_tx_num,
)
from .waiting import StateCtx, Subscriptions, Waitable
from .when import Waits

__all__ = ["Machine", "HandlerTimeoutError"]

ADD, REMOVE, SET, EVAL = MutationType.ADD, MutationType.REMOVE, MutationType.SET, MutationType.EVAL
EXECUTED, CANCELED = Result.EXECUTED, Result.CANCELED
_PLAN_CACHE_MAX = 32768
_OPS, _CHANGES, _EVERYTHING = int(LogLevel.OPS), int(LogLevel.CHANGES), int(LogLevel.EVERYTHING)

log = logging.getLogger("machines")


class Machine(Handlers, Errors, Logging, Formatting, Waits, Evaluation, Snapshots):
    """A state machine where many states can be active at once.

    ``schema`` maps state names to :class:`State`; ``handlers`` is any object with handler
    methods (``FooEnter``, ``FooState``, ...). See the README for a tour.
    """

    def __init__(
        self,
        schema: Mapping[str, State],
        *,
        id: str | None = None,
        handlers: Any = None,
        parent: Machine | None = None,
        parent_id: str = "",
        tags: Iterable[str] = (),
        tracers: Iterable[Tracer] = (),
        names: Iterable[str] | None = None,
        log_level: int | None = None,
        logger: Callable[[int, str], None] | None = None,
        handler_timeout: float | None = None,
        handler_deadline: float = 10.0,
        handler_backoff: float = 3.0,
        queue_limit: int = 1000,
        log_stack_trace: bool = True,
        nursery: Any = None,
    ) -> None:
        self.id: str = id or os.urandom(8).hex()
        self.parent_id: str = parent.id if parent is not None else parent_id
        self.tags: list[str] = list(dict.fromkeys(tags))
        opts = Options.from_env()
        self.handler_timeout = (
            handler_timeout if handler_timeout is not None else (600.0 if opts.debug else 0.1)
        )
        self.handler_deadline = handler_deadline
        self.handler_backoff = handler_backoff
        self.queue_limit = queue_limit
        #: keep (and log) stack traces of errors and handler exceptions
        self.log_stack_trace = log_stack_trace
        #: trio nursery used by :meth:`fork` (asyncio needs none)
        self.nursery = nursery
        self._log_level = opts.log_level if log_level is None else log_level
        self._logger = logger or _default_logger(self.id)
        self._log_steps = opts.log_steps

        self._install(schema, list(names) if names is not None else None)
        self._ticks = [0] * len(self._names)
        self._active: tuple[str, ...] = ()
        self._active_set: frozenset[str] = frozenset()

        self._queue: deque[Mutation] = deque()
        self._lock = threading.Lock()
        self._processing = False
        self._processor = 0
        self._appended = 0
        self.queue_tick = 1
        self.machine_tick = 0
        self._token = 0
        self.transition: Transition | None = None
        self._in_eval = False
        self._spare_event: Event | None = None  # the last handler's event, reused (see _handle)

        self._groups: list[_Group] = []
        self._groups_ver = 0
        self._tracers: dict[int, Tracer] = {}  # id(tracer) -> tracer, in bind order
        self._hooks: dict[str, dict[int, Callable]] = {}  # hook -> {id(tracer): method}
        self._hot = False  # a tracer hook runs on every mutation (no fast path)
        self._calls_observed = False
        self._observers_changed()
        self._sinks: dict[int, Callable[[tuple], None]] = {}  # id(tracer) -> its sink
        self._sink: Callable[[tuple], None] | None = None  # the sinks as one
        self._sink_args = False
        self._lane: Any = None  # the debugger's Lane: transitions packed into it (see Tracer)
        self._lane_owner: Tracer | None = None
        self._subs = Subscriptions(self)
        self._queue_waits: list[tuple[int, Waitable]] = []
        self._queue_end_waits: list[Waitable] = []
        self._state_ctxs: dict[str, StateCtx] = {}
        self._disposed = False
        self._dispose_pending = False
        self._disposed_wait = Waitable()
        self._on_dispose: list[Callable[[str], None]] = []
        self._on_change: list[Callable[[Machine, list[int], list[int]], None]] = []
        self._backoff_until = 0.0
        self._pre_log: list[tuple[int, str]] = []
        self.err: BaseException | None = None
        self.err_internal: deque[BaseException] = deque(maxlen=10)

        for t in tracers:
            self.tracer_bind(t)
            t.machine_init(self)
        if parent is not None:
            for t in list(parent._tracers.values()):
                t.new_submachine(parent, self)
                if t.inheritable:
                    self.tracer_bind(t)
        if handlers is not None:
            self.handlers_bind(handlers)
        if opts.dbg_addr:
            if env_attach(self, opts) is not None and logger is None:
                # AM_LOG then feeds the debugger; print too only when asked (AM_LOG_PRINT)
                if not opts.log_print:
                    self._logger = _silent

    # -- schema and index --------------------------------------------------------------------

    def _install(self, schema: Mapping[str, State], names: list[str] | None) -> None:
        sch = sanitize(schema)
        validate(sch)
        order = list(sch)
        if names is not None:
            order = self._checked_order(sch, names)
        self._schema: Schema = sch
        self._names: list[str] = order
        self._index: dict[str, int] = {n: i for i, n in enumerate(order)}
        self._resolver = Resolver(sch, order)
        self._plans: dict[tuple, Plan] = {}
        self._auto_states = [n for n in order if sch[n].auto]
        self._multi = frozenset(n for n in order if sch[n].multi)
        self._exc_idx = self._index[EXCEPTION]

    @staticmethod
    def _checked_order(schema: Mapping[str, State], names: Iterable[str]) -> list[str]:
        order = list(dict.fromkeys(names))
        unknown = [n for n in order if n not in schema]
        if unknown:
            raise ValueError(f"state {', '.join(unknown)} not defined in schema")
        missing = [n for n in schema if n not in order]
        if missing:
            raise ValueError(
                f"trying to verify less states than registered; missing: {', '.join(missing)}"
            )
        return order

    @property
    def schema(self) -> Schema:
        """The sanitised schema (a copy; states are immutable)."""
        return dict(self._schema)

    @property
    def state_names(self) -> list[str]:
        """All state names in index order (the order of :meth:`time`)."""
        return list(self._names)

    def has(self, *states: str | Iterable[str]) -> bool:
        """All given states are defined (False once disposed)."""
        return not self._disposed and all(s in self._index for s in flat_names(states))

    def index(self, state: str) -> int:
        """Position of ``state`` in the index (-1 once disposed); unknown names raise."""
        if self._disposed:
            return -1
        self._check_known((state,))
        return self._index[state]

    def verify_states(self, names: Iterable[str]) -> None:
        """Set the index order; ``names`` must list every state exactly (ValueError otherwise)."""
        if self._disposed:
            return
        order = self._checked_order(self._schema, names)
        clock = self.clock()
        self._names = order
        self._index = {n: i for i, n in enumerate(order)}
        self._ticks = [clock[n] for n in order]
        self._exc_idx = self._index[EXCEPTION]
        self._resolver = Resolver(self._schema, order)
        self._plans.clear()
        for t in list(self._tracers.values()):
            t.verify_states(self)

    def set_schema(self, schema: Mapping[str, State], names: Iterable[str] | None = None) -> None:
        """Replace the schema. Every current state must stay (clocks are kept); new states
        start at tick 0. Refused during a transition."""
        if self.transition is not None:
            raise RuntimeError(f"{self.id}: cannot change the schema during a transition")
        missing = [n for n in self._names if n not in schema and n != EXCEPTION]
        if missing:
            raise ValueError(f"set_schema: the new schema drops state(s) {', '.join(missing)}")
        old, clock = self._schema, self.clock()
        names = (
            list(names)
            if names is not None
            else (self._names + [n for n in schema if n not in self._index])
        )
        self._install(schema, names)
        self._ticks = [clock.get(n, 0) for n in self._names]
        for t in list(self._tracers.values()):
            t.schema_change(self, old)
        self._lane_update(self._lane_owner)

    def relations_of(self, state: str) -> list[Relation]:
        """Relation kinds ``state`` has towards any state."""
        st = self._state(state)
        return [r for r, targets in st.relations().items() if targets]

    def relations_between(self, source: str, target: str) -> list[Relation]:
        """Relation kinds from ``source`` to ``target``."""
        st = self._state(source)
        self._state(target)
        return [r for r, targets in st.relations().items() if target in targets]

    def _state(self, name: str) -> State:
        try:
            return self._schema[name]
        except KeyError:
            raise ValueError(f"state {name} not defined in schema for {self.id}") from None

    def _check_known(self, called: tuple[str, ...]) -> None:
        index = self._index
        for s in called:
            if s not in index:
                unknown = [n for n in called if n not in index]
                raise ValueError(
                    f"missing states: {', '.join(unknown)} not defined in schema for {self.id}"
                )

    # -- reading state -----------------------------------------------------------------------

    @property
    def active_states(self) -> list[str]:
        """Active state names, in index order."""
        if self._disposed:
            return []
        ticks = self._ticks
        return [n for i, n in enumerate(self._names) if ticks[i] & 1]

    def is_active(self, *states: str | Iterable[str]) -> bool:
        """All given states are active; unknown names raise ``ValueError``."""
        if self._disposed:
            return False
        active = self._active_set
        for s in flat_names(states):
            if s not in active:
                # only a negative answer pays for the name check (unknown names are never
                # active); one known name, the common call, costs one lookup
                if len(states) > 1 or s not in self._index or not isinstance(states[0], str):
                    self._check_known(tuple(flat_names(states)))
                return False
        return True

    def any_active(self, *states: str | Iterable[str]) -> bool:
        """At least one of the given states is active; unknown names raise ``ValueError``."""
        if self._disposed:
            return False
        active, index, hit = self._active_set, self._index, False
        for s in flat_names(states):
            if s in active:
                hit = True
            elif s not in index:
                self._check_known(tuple(flat_names(states)))
        return hit

    def not_active(self, *states: str | Iterable[str]) -> bool:
        """None of the given states is active."""
        called = tuple(flat_names(states))
        self._check_known(called)
        return not any(s in self._active_set for s in called)

    def is_err(self) -> bool:
        return self.is_active(EXCEPTION)

    def tick(self, state: str) -> int:
        """The state's clock (odd: active); unknown names raise ``ValueError``."""
        if self._disposed:
            return 0
        i = self._index.get(state)
        if i is None:
            self._check_known((state,))
        return self._ticks[i]  # type: ignore[index]  # _check_known raised for None

    def time(self, states: str | Iterable[str] | None = None) -> list[int]:
        """Ticks in index order (or in the order of ``states``)."""
        if self._disposed:
            return []
        if states is None:
            return list(self._ticks)
        return [self.tick(s) for s in names_of(states)]

    def clock(self, states: str | Iterable[str] | None = None) -> dict[str, int]:
        """``{state: tick}``."""
        if self._disposed:
            return {}
        names = self._names if states is None else names_of(states)
        return {n: self.tick(n) for n in names}

    def is_clock(self, clock: Mapping[str, int]) -> bool:
        return not self._disposed and all(self.tick(s) == t for s, t in clock.items())

    def is_time(self, time_: list[int], states: Iterable[str] | None = None) -> bool:
        names = self._names if states is None else names_of(states)
        return not self._disposed and all(
            self.tick(n) == t for n, t in zip(names, time_, strict=False)
        )

    def switch(self, *states: str) -> str:
        """The first of ``states`` that is active, or ``""``; unknown names raise."""
        self._check_known(states)
        return next((s for s in states if s in self._active_set), "")

    # -- mutations ---------------------------------------------------------------------------

    def add(
        self,
        states: str | Iterable[str],
        args: dict[str, Any] | None = None,
        *,
        source: MutSource | Event | None = None,
    ) -> Result | int:
        """Activate ``states`` (and what their relations imply), keeping other active states."""
        return self._mutate(ADD, states, args, source)

    def remove(
        self,
        states: str | Iterable[str],
        args: dict[str, Any] | None = None,
        *,
        source: MutSource | Event | None = None,
    ) -> Result | int:
        """Deactivate ``states``."""
        return self._mutate(REMOVE, states, args, source)

    def set(
        self,
        states: str | Iterable[str],
        args: dict[str, Any] | None = None,
        *,
        source: MutSource | Event | None = None,
    ) -> Result | int:
        """Make exactly ``states`` (plus relations) active."""
        return self._mutate(SET, states, args, source)

    def toggle(
        self,
        states: str | Iterable[str],
        args: dict[str, Any] | None = None,
        *,
        source: MutSource | Event | None = None,
    ) -> Result | int:
        """Remove ``states`` if all are active, else add them."""
        if self.is_active(states):
            return self._mutate(REMOVE, states, args, source)
        return self._mutate(ADD, states, args, source)

    def can_add(self, states: str | Iterable[str], args: dict[str, Any] | None = None) -> Result:
        """Would :meth:`add` be accepted now (relations and negotiation handlers)?"""
        return self._check(ADD, states, args)

    def can_remove(self, states: str | Iterable[str], args: dict[str, Any] | None = None) -> Result:
        return self._check(REMOVE, states, args)

    def _check(self, mtype: MutationType, states: Any, args: Any) -> Result:
        if self._disposed or self._in_backoff():
            return CANCELED
        called = names_of(states)
        self._check_known(called)
        mut = Mutation(mtype, called, args, check=True)
        with self._lock:
            if not self._claim():
                return Result.QUEUED
            self._queue.appendleft(mut)
        return self._drain()

    def _claim(self) -> bool:
        """Become the thread that drains the queue; False if one already is (hold the lock)."""
        if self._processing:
            return False
        self._processing = True
        self._processor = threading.get_ident()
        return True

    def _in_backoff(self) -> bool:
        return bool(self._backoff_until) and time.monotonic() < self._backoff_until

    def _mutate(
        self,
        mtype: MutationType,
        states: Any,
        args: dict[str, Any] | None,
        source: MutSource | Event | None,
    ) -> Result | int:
        if self._disposed or (self._backoff_until and self._in_backoff()):
            return CANCELED
        if type(states) is str and states in self._index:
            called: tuple[str, ...] = (states,)
        else:
            called = names_of(states)
            self._check_known(called)
        if source is not None and isinstance(source, Event):
            source = source.source()
        queue = self._queue
        if len(queue) >= self.queue_limit and not (
            mtype == ADD and EXCEPTION in called and not self._ticks[self._exc_idx] & 1
        ):
            self._log(
                LogLevel.OPS,
                f"[queue:limit] {self.queue_limit} reached, canceled [{mtype}] {' '.join(called)}",
            )
            return CANCELED
        if not (
            self._groups
            or self._hot
            or self._log_level
            or self._auto_states
            or self._state_ctxs
            or self._on_change
            or self._queue_waits
            or self._queue_end_waits
            or self._subs.pending
        ):
            # nothing observes this machine: a known plan is applied without a Transition
            plan = self._plans.get((mtype, called, self._active, False, False))
            if plan is not None and plan.accepted and EXCEPTION not in plan.target_set:
                # the waits' lock too: a wait registered from another thread meanwhile either
                # sees the new ticks or sends this mutation down the path that notifies it
                # (acquire and release, as everywhere on the hot path: on CPython 3.11 a
                # ``with`` block costs twice as much, ~2k instructions)
                lock, subs_lock = self._lock, self._subs.lock
                lock.acquire()
                subs_lock.acquire()
                try:
                    if not self._processing and not queue and not self._subs.pending:
                        # the tick update, as in _run
                        live = self._ticks
                        for i, delta in plan.bumps or self._bumps(plan):
                            live[i] += delta
                        self._active = plan.active
                        self._active_set = plan.target_set
                        self.queue_tick = qt = self.queue_tick + 1
                        if self._lane is not None or self._sink is not None:
                            # as _execute() records this (accepted, direct) transition
                            num = next_tx_num()
                            lane = self._lane
                            if lane is not None:
                                lc = plan.lane_ci
                                if lc is not None and lc[0] is lane.called:
                                    ci = lc[1]
                                else:
                                    ci = lane.index(called)
                                    plan.lane_ci = (lane.called, ci)
                                rows = lane.rows
                                try:
                                    while True:
                                        try:
                                            row = lane.pack(num, qt, mtype, ci, 1, 0, qt, 0,
                                                            *self._ticks)  # fmt: skip
                                            break
                                        except struct.error:  # past 32 bits: 64 from now on
                                            lane.widen()
                                except Exception as err:  # a bug, not input: not the machine's
                                    lane.failed(err)
                                else:
                                    if source is not None or (args and lane.args):
                                        row = (row, None, args if lane.args else None, source)
                                    rows.append(row)
                                    if len(rows) >= lane.chunk:
                                        lane.seal()
                            if self._sink is not None:
                                # a tuple of atoms, which the garbage collector stops tracking
                                a = args if self._sink_args else None
                                ticks = tuple(self._ticks)
                                self._sink((self.id, num, ticks, qt, mtype, called, 1, 0, qt, 0,
                                            None, None, a, source, None))  # fmt: skip
                        return EXECUTED
                finally:
                    subs_lock.release()
                    lock.release()
        # a class call with a keyword argument builds a kwargs dict (CPython 3.11): skip it
        mut = (
            Mutation(mtype, called, args)
            if source is None
            else Mutation(mtype, called, args, source=source)
        )
        lock = self._lock
        lock.acquire()
        try:
            if self._processing:  # as _claim(), inlined: this runs on every mutation
                return self._postpone(mut)
            self._processing = True
            self._processor = get_ident()
            direct = not queue and "mutation_queued" not in self._hooks
            if direct:
                # the queue is empty and nobody watches it: run at once, as if queued and popped
                self.queue_tick = mut.queue_tick = self.queue_tick + 1
            else:
                self._appended += 1
                mut.queue_tick = self.queue_tick + self._appended
                queue.append(mut)
        finally:
            lock.release()
        if direct:
            return self._drain(mut)
        if "mutation_queued" in self._hooks:
            self._trace("mutation_queued", self, mut)
        return self._drain()

    def _postpone(self, mut: Mutation) -> Result | int:
        """Queue ``mut`` behind the running transition (called with the lock held)."""
        queue, called = self._queue, mut.called
        if mut.type == REMOVE and not queue and not any(s in self._active_set for s in called):
            return EXECUTED
        if not mut.args and not any(s in self._multi for s in called):
            cset = set(called)
            for q in queue:
                if q.type == mut.type and not q.check and not q.args and set(q.called) == cset:
                    self._log(
                        LogLevel.OPS,
                        f"[queue:skipped] Duplicate detected for [{mut.type}] {' '.join(called)}",
                    )
                    return EXECUTED
        self._appended += 1
        mut.queue_tick = self.queue_tick + self._appended
        queue.append(mut)
        self._log(LogLevel.OPS, f"[queue:{mut.type}] {' '.join(called)}")
        if "mutation_queued" in self._hooks:
            self._trace("mutation_queued", self, mut)
        return mut.queue_tick

    def _prepend(self, mut: Mutation) -> None:
        self._token += 1
        mut.token = self._token
        self._queue.appendleft(mut)
        if "mutation_queued" in self._hooks:
            self._trace("mutation_queued", self, mut)

    # -- the queue ---------------------------------------------------------------------------

    def _drain(self, mut: Mutation | None = None) -> Result:
        """Run ``mut`` (already counted in the queue tick), then the queue until it is empty."""
        first: Result | None = None
        queue, lock = self._queue, self._lock
        try:
            if mut is not None:
                first = self._execute(mut)
            while True:
                lock.acquire()
                try:
                    if not queue or self._disposed:
                        self._processing = False
                        break
                    mut = queue.popleft()
                    if mut.queue_tick:
                        self._appended -= 1
                        self.queue_tick += 1
                finally:
                    lock.release()
                res = self._execute(mut)
                if first is None:
                    first = res
        except BaseException:
            with self._lock:
                self._processing = False
            raise
        if self._queue_end_waits or self._hot or self._dispose_pending:
            self._queue_ended()
        return CANCELED if first is None else first

    def _queue_ended(self) -> None:
        if self._queue_end_waits:
            waits, self._queue_end_waits = self._queue_end_waits, []
            for w in waits:
                w.resolve()
        if "queue_end" in self._hooks:
            self._trace("queue_end", self)
        if self._dispose_pending and not self._processing:
            self._dispose_pending = False
            self.dispose()

    def _execute(self, mut: Mutation) -> Result:
        """One transition: resolve (or reuse) the plan, negotiate, apply, run the final
        handlers, then tell observers; returns the mutation's result."""
        if mut.type == EVAL:
            fn, done = mut.args["fn"], mut.args["done"]
            if not mut.args.get("timed_out"):
                self._run_eval(fn)
            done.set()
            return EXECUTED
        before = self._active
        plan = self._plans.get((mut.type, mut.called, before, mut.auto, mut.check))
        if plan is None:
            plan = self._resolve(mut, before)
        tx = Transition(self, mut, plan, before, self._ticks[:])
        if self._log_steps:
            tx.steps = list(plan.steps)
        if self._pre_log:
            tx.pre_log_entries, self._pre_log = self._pre_log, []
        self.transition = tx
        if self._log_level >= _OPS:
            self._log_mutation(tx)
            for lvl, text in plan.logs:
                self._log(lvl, text)
        hot = self._hot
        if hot:
            hooks = self._hooks
            if "transition_init" in hooks:
                self._trace("transition_init", tx)
            if "transition_start" in hooks:
                self._trace("transition_start", tx)
        try:
            # negotiate, apply and finalise (inline: a call per transition is ~0.9k
            # instructions); only the rare paths are methods
            result = CANCELED
            accepted = plan.accepted
            groups = self._groups
            if accepted and (groups or self._log_level >= _EVERYTHING):
                bound = plan.bound
                calls = (
                    bound[1]
                    if bound is not None and bound[0] == self._groups_ver
                    else self._negotiation_calls(plan, mut)
                )
                failed = self._handle(tx, calls, True) if calls else None
                if failed is not None:
                    renegotiated = self._refused(tx, mut, calls, failed)
                    accepted = renegotiated is not None
                    if renegotiated is not None:
                        plan = renegotiated
            elif not accepted and self._on_change:
                self._changed(tx)  # refused by relations (_cancel tells of a handler's refusal)
            if accepted and mut.check:
                tx.accepted = True
                result = EXECUTED
            elif accepted:
                tx.accepted = True
                # the tick update, as in _mutate's fast path (written out in both: a call was
                # ~2 % of a mutation; tests/test_perf_core.py checks the two paths agree)
                live = self._ticks
                for i, delta in plan.bumps or self._bumps(plan):
                    live[i] += delta
                self._active = plan.active
                self._active_set = plan.target_set
                tx.time_after = live[:]
                if self._log_steps or self._log_level >= _CHANGES or self._state_ctxs or self._hot:
                    self._applied(tx, plan, mut)
                failed = None
                if groups or EXCEPTION in plan.target_set or self._subs.pending:
                    # XEnd, XState, AnyState
                    finals = plan.finals
                    if finals is None or finals[0] != self._groups_ver:
                        finals = self._final_calls(plan)
                    steps = finals[2] if self._subs.pending else finals[1]
                    if steps:
                        failed = self._handle(tx, steps, False)
                if failed is not None:
                    step, ret = failed
                    self._recover_finals(tx, plan, step[4], step[1], ret)
                else:
                    if self._on_change:
                        self._changed(tx)
                    auto = mut.auto
                    if (
                        not auto
                        and self._auto_states
                        and tx.time_before != self._ticks
                        and not tx.is_health
                        and not self._disposed
                    ):
                        self._auto_pass()
                    if mut.type == REMOVE:
                        disjoint = self._active_set.isdisjoint(mut.called)
                        result = EXECUTED if disjoint else CANCELED
                    elif auto:
                        grew = sum(t & 1 for t in self._ticks) > sum(t & 1 for t in tx.time_before)
                        result = EXECUTED if grew else CANCELED
                    else:
                        result = EXECUTED
        finally:
            tx.completed = True
            tx.queue_len = len(self._queue)
            self.transition = None
            e = self._spare_event
            if e is not None:
                # the next transition's handlers reuse it (see Handlers._handle); meanwhile it
                # lets go of this transition and its args, or is dropped if someone kept it
                if _refs(e) == SPARE_REFS:
                    e.transition = e.args = None  # type: ignore[assignment]
                else:
                    self._spare_event = None
            if not tx.time_after:
                tx.time_after = self._ticks[:]
        if hot and "transition_end" in self._hooks:
            self._trace("transition_end", tx)
        lane = self._lane
        if lane is not None:
            # the transition as the debugger's row (see telemetry.Lane), packed here rather
            # than in a method: one C call, where a record, a method call and packing a batch
            # of records cost twice the machine's whole share of telemetry
            lc = plan.lane_ci  # the called states' index, cached on the plan (Plan.lane_ci)
            if lc is not None and lc[0] is lane.called:
                ci = lc[1]
            else:
                ci = lane.index(mut.called)
                plan.lane_ci = (lane.called, ci)
            flags: int = tx.accepted
            if mut.auto or mut.check:  # rare: two tests where the general form took fourteen
                flags |= (FLAG_AUTO if mut.auto else 0) | (FLAG_CHECK if mut.check else 0)
            rare = tx._rare
            if rare is not None:
                # only log lines, those of the last time this plan ran: they go as its log
                # block (Plan.lane_lb, Lane.block), named in the row's flags
                lb = plan.lane_lb
                if lb and lb[1] == rare and lb[0] is lane.blocks:
                    flags |= lb[2]
                    rare = None
                elif lb is not False and rare[0] and not rare[2] and not rare[3]:
                    lb = plan.lane_lb = lane.block(rare, lb)
                    if lb:
                        flags |= lb[2]
                        rare = None
            rows = lane.rows
            try:
                while True:
                    try:
                        row = lane.pack(tx.num, self.queue_tick, mut.type, ci, flags,
                                        tx.queue_len, mut.queue_tick, mut.token,
                                        *tx.time_after)  # fmt: skip
                        break
                    except struct.error:  # a value past 32 bits: 64 from now on (once)
                        lane.widen()
            except Exception as err:  # a bug, not input: never the machine's
                lane.failed(err)
            else:
                if rare is not None or mut.source is not None or (lane.args and mut.args):
                    row = (row, rare, mut.args if lane.args else None, mut.source)
                rows.append(row)
                if len(rows) >= lane.chunk:
                    lane.seal()
        if self._sink is not None:
            # the transition's record (RECORD_FIELDS), built here rather than in a method: a
            # Python call per transition was a fifth of what telemetry costs the machine
            flags = tx.accepted | (FLAG_AUTO if mut.auto else 0) | (FLAG_CHECK if mut.check else 0)
            args = mut.args if self._sink_args else None
            levels, texts, pre_log, steps = tx._rare or NO_RARE
            log_entries = list(zip(levels, texts, strict=True)) if levels else None
            self._sink((self.id, tx.num, tuple(tx.time_after), self.queue_tick, mut.type,
                        mut.called, flags, tx.queue_len, mut.queue_tick, mut.token,
                        log_entries, pre_log or None, args, mut.source,
                        steps or None))  # fmt: skip
        if self._subs.pending and tx.accepted and not mut.check:
            changed = [
                n
                for n, a, b in zip(self._names, tx.time_before, self._ticks, strict=True)
                if a != b
            ]
            self._subs.notify(changed, self.clock)
        if self._queue_waits:
            self._check_queue_waits()
        return result

    def _resolve(self, mut: Mutation, before: tuple[str, ...]) -> Plan:
        """Resolve and cache the plan of ``mut`` from ``before`` (the cache keeps the newest)."""
        if len(self._plans) >= _PLAN_CACHE_MAX:
            for k in list(islice(self._plans, _PLAN_CACHE_MAX // 4)):  # oldest first
                del self._plans[k]
        plan = self._resolver.resolve(mut.type, mut.called, before, auto=mut.auto, check=mut.check)
        self._plans[(mut.type, mut.called, before, mut.auto, mut.check)] = plan
        return plan

    def _refused(
        self, tx: Transition, mut: Mutation, calls: list[tuple], first: tuple[tuple, Any]
    ) -> Plan | None:
        """A negotiation handler refused (or failed): the transition is cancelled (None), or for
        a partial auto mutation the refused auto states drop out and the rest go on (their
        plan)."""
        refused: set[str] = set()
        rest = calls
        failed: tuple[tuple, Any] | None = first
        while failed is not None:
            step, ret = failed
            name, state = step[1], step[4]
            if not (mut.auto and state in mut.called and ret is False):
                self._cancel(tx, name, ret)
                return None
            refused.add(state)
            self._log(LogLevel.DECISIONS, f"[cancel:auto] {state} by {name}")
            if len(refused) == len(mut.called):
                self._cancel(tx, name)
                return None
            rest = rest[rest.index(step) + 1 :]
            failed = self._handle(tx, rest, True, refused) if rest else None
        survivors = tuple(s for s in mut.called if s not in refused)
        plan = self._resolver.resolve(ADD, survivors, tx.states_before, auto=True)
        tx.plan = plan
        return plan

    def _bumps(self, plan: Plan) -> tuple[tuple[int, int], ...]:
        """``plan``'s tick changes as (index, delta): +1 per exit and per first entry, +2 to
        re-enter an active Multi state. Cached on the plan: a plan is keyed by the active states
        it starts from, and the plan cache is dropped when the index changes."""
        index, active = self._index, self._active_set
        plan.bumps = tuple(
            [(index[s], 1) for s in plan.exits]
            + [(index[s], 2 if s in active else 1) for s in plan.enters]
        )
        return plan.bumps

    def _applied(self, tx: Transition, plan: Plan, mut: Mutation) -> None:
        """What observers see of the tick changes just applied (steps, logs, state contexts
        cancelled, the ``transition_finals`` hook)."""
        if self._log_steps:
            tx.steps += [Step(StepType.ACTIVATE, e) for e in plan.enters]
            tx.steps += [Step(StepType.DEACTIVATE, e) for e in plan.exits]
        if self._log_level >= _CHANGES and (plan.enters or plan.exits):
            tag = "auto_" if mut.auto else "state"
            diff = [f"+{s}" for s in plan.enters] + [f"-{s}" for s in plan.exits]
            self._log(LogLevel.CHANGES, f"[{tag}] {' '.join(diff)}")
        if self._state_ctxs:
            for s in (*plan.exits, *plan.enters):
                ctx = self._state_ctxs.pop(s, None)
                if ctx is not None:
                    ctx.cancel()
        if "transition_finals" in self._hooks:
            self._trace("transition_finals", tx)

    def _recover_finals(
        self, tx: Transition, plan: Plan, failed: str | None, name: str, panic: _Panic
    ) -> None:
        """A final handler failed: states entered from the failing one on are removed again."""
        if failed is not None:
            enters = plan.enters
            undo = enters[enters.index(failed) :]
            ticks, index = self._ticks, self._index
            for s in undo:
                ticks[index[s]] += 1
            self._active = tuple(s for s in self._active if s not in undo)
            self._active_set = frozenset(self._active)
            tx.time_after = ticks[:]
            self._log(
                LogLevel.CHANGES, f"[recover] partial final states as ({' '.join(self._active)})"
            )
        tx.accepted = False
        tx.cancelled_by = name
        self._log(LogLevel.OPS, f"[cancel] ({' '.join(tx.targets)}) by recover")
        self._raise_to_exception(tx, name, panic)

    def _cancel(self, tx: Transition, name: str, ret: Any = False) -> Result:
        tx.accepted = False
        tx.cancelled_by = name
        if self._log_steps:
            tx.steps.append(Step(StepType.CANCEL, name))
        if isinstance(ret, _Panic):
            if ret.timeout:
                self._log(LogLevel.OPS, f"[cancel] ({' '.join(tx.targets)}) by timeout")
            else:
                self._log(LogLevel.OPS, f"[cancel] ({' '.join(tx.targets)}) by recover")
                self._raise_to_exception(tx, name, ret)
        elif self._log_level >= LogLevel.OPS:
            tag = "cancel:self" if name[: len(name) // 2] * 2 == name else "cancel"
            self._log(LogLevel.OPS, f"[{tag}] ({' '.join(tx.targets)}) by {name}")
        if self._on_change:
            self._changed(tx)
        return CANCELED

    def _auto_pass(self) -> None:
        active = self._active_set
        blocked: set[str] = set()
        for s in self._active:
            blocked.update(self._schema[s].remove)
        auto = tuple(s for s in self._auto_states if s not in active and s not in blocked)
        if auto:
            self._log(LogLevel.OPS, f"[auto] {' '.join(auto)}")
            self._prepend(Mutation(ADD, auto, {}, auto=True))

    def _changed(self, tx: Transition) -> None:
        for fn in self._on_change:
            fn(self, tx.time_before, self._ticks[:])

    # -- handlers, tracers -----------------------------------------------------------------

    def tracer_bind(self, tracer: Tracer) -> None:
        if not isinstance(tracer, Tracer):
            raise TypeError(f"{self.id}: tracers must subclass machines.Tracer, got {tracer!r}")
        # O(1) in the number of tracers (a server binds one per client): only the hooks this
        # tracer implements, so the hot path skips the rest with one lookup
        key = id(tracer)
        if key in self._tracers:
            return
        self._tracers[key] = tracer
        for hook in HOOKS:
            if overridden(tracer, hook):
                self._hooks.setdefault(hook, {})[key] = getattr(tracer, hook)
        if tracer.sink is not None:
            self._sinks[key] = tracer.sink
        self._tracers_changed()

    def tracer_detach(self, tracer: Tracer) -> None:
        key = id(tracer)
        if self._tracers.pop(key, None) is None:
            return
        for hook in HOOKS:
            fns = self._hooks.get(hook)
            if fns is not None and fns.pop(key, None) is not None and not fns:
                del self._hooks[hook]
        self._sinks.pop(key, None)
        self._tracers_changed()

    @property
    def tracers(self) -> list[Tracer]:
        return list(self._tracers.values())

    def _tracers_changed(self) -> None:
        """Recompute what the hot path reads (independent of the number of tracers)."""
        self._hot = not HOT_HOOKS.isdisjoint(self._hooks)
        self._observers_changed()
        owner = next((t for t in self._tracers.values() if t.lane_for is not None), None)
        self._lane_update(owner)
        keys = [k for k in self._sinks if self._tracers[k] is not owner]
        sinks = [self._sinks[k] for k in keys]
        self._sink = sinks[0] if len(sinks) == 1 else _fan_out(sinks) if sinks else None
        self._sink_args = any(self._tracers[k].sink_args for k in keys)

    def _lane_update(self, owner: Tracer | None) -> None:
        """Keep the lane of ``owner`` for this machine's states (a new one when the owner or
        the number of states changed; the old one is sealed and closed)."""
        lane = self._lane
        if lane is not None and (owner is not self._lane_owner or lane.width != len(self._names)):
            self._lane = None
            lane.outbox.close(lane)
            lane = None
        if lane is None and owner is not None and owner.lane_for is not None:
            lane = owner.lane_for(self)
        self._lane, self._lane_owner = lane, owner

    @property
    def log_steps(self) -> bool:
        """Record :attr:`Transition.steps` (debugging; ``AM_LOG_FULL`` or ``AM_LOG_STEPS``)."""
        return self._log_steps

    @log_steps.setter
    def log_steps(self, on: bool) -> None:
        self._log_steps = on
        self._observers_changed()

    def _observers_changed(self) -> None:
        """Whether anyone sees handler calls (tracer hooks, steps, logs): one flag read per
        handler call instead of three (a tenth of a handler call's cost)."""
        self._calls_observed = self._hot or self._log_steps or self._log_level >= _OPS

    def _trace(self, hook: str, *args: Any) -> None:
        # a snapshot: a hook may bind or detach tracers
        for fn in tuple(self._hooks.get(hook, {}).values()):
            try:
                fn(*args)
            except Exception as err:  # a broken observer must not break the machine
                self.err_internal.append(err)
                log.warning("%s: tracer %s failed: %r", self.id, hook, err)

    def on_change(self, fn: Callable[[Machine, list[int], list[int]], None]) -> Callable[[], None]:
        """Call ``fn(machine, time_before, time_after)`` after every transition; returns the
        function that unsubscribes it (as a NetMach's ``on_change`` does)."""
        self._on_change.append(fn)

        def unsubscribe() -> None:
            if fn in self._on_change:
                self._on_change.remove(fn)

        return unsubscribe

    # -- queue introspection -----------------------------------------------------------------

    @property
    def queue(self) -> list[Mutation]:
        return [] if self._disposed else list(self._queue)

    def queue_len(self) -> int:
        return len(self._queue)

    def is_queued(
        self,
        mtype: MutationType,
        states: str | Iterable[str],
        *,
        without_args_only: bool = False,
        strict: bool = False,
    ) -> int:
        """Index of the first queued mutation of ``mtype`` calling (at least) ``states``;
        -1 if none."""
        wanted = set(names_of(states))
        for i, m in enumerate(self._queue):
            if m.type != mtype or m.check or (without_args_only and m.args):
                continue
            called = set(m.called)
            if wanted <= called and (not strict or len(called) == len(wanted)):
                return i
        return -1

    def will_be(self, states: str | Iterable[str]) -> bool:
        return self.is_queued(ADD, states) >= 0

    def will_be_removed(self, states: str | Iterable[str]) -> bool:
        return self.is_queued(REMOVE, states) >= 0

    # -- disposal ----------------------------------------------------------------------------

    @property
    def is_disposed(self) -> bool:
        return self._disposed

    def on_dispose(self, fn: Callable[[str], None]) -> None:
        self._on_dispose.append(fn)

    def dispose(self) -> None:
        """Stop the machine: removes ``Start`` (if defined), then after the queue drains marks
        it disposed, cancels contexts and completes every wait. Safe from handlers, repeatable."""
        if self._disposed:
            return
        if self._processing:
            self._dispose_pending = True
            return
        if "Start" in self._index and self.is_active("Start"):
            self.remove("Start")
        self.dispose_force()

    def dispose_force(self) -> None:
        """Dispose now, without waiting for the queue."""
        if self._disposed:
            return
        self._disposed = True
        self._queue.clear()
        if "machine_dispose" in self._hooks:
            self._trace("machine_dispose", self.id)
        self._lane_update(None)
        for ctx in list(self._state_ctxs.values()):
            ctx.cancel()
        self._state_ctxs.clear()
        self._subs.dispose()
        for _, w in self._queue_waits:
            w.resolve()
        for w in self._queue_end_waits:
            w.resolve()
        self._queue_waits, self._queue_end_waits = [], []
        for fn in self._on_dispose:
            try:
                fn(self.id)
            except Exception as err:
                log.warning("%s: on_dispose callback failed: %r", self.id, err)
        self._disposed_wait.resolve()


def _fan_out(sinks: list[Callable[[tuple], None]]) -> Callable[[tuple], None]:
    def sink(rec: tuple) -> None:
        for s in sinks:
            s(rec)

    return sink
