"""Handler dispatch: bound handler groups, the handler calls of a plan (cached on the plan per
version of the bound groups), and one handler call with its timeout and error capture."""

from __future__ import annotations

import traceback
from collections import deque
from collections.abc import Callable
from inspect import iscoroutine
from sys import getrefcount
from time import perf_counter
from typing import TYPE_CHECKING, Any

from .errors import HandlerTimeoutError, _Panic
from .mutation import LogLevel, Mutation, MutationType, MutSource, Result
from .resolver import Plan
from .transition import Event, Step, StepType, Transition

if TYPE_CHECKING:
    from .waiting import Subscriptions

__all__ = ["Handlers"]

REMOVE = MutationType.REMOVE
_MISSING = object()
_OPS = int(LogLevel.OPS)
# kinds of handler steps (see Handlers._final_calls)
_CALL, _NOTIFY, _DEFAULT = 0, 1, 2
_refs = getrefcount


def _spare_refs() -> int:
    """What ``getrefcount`` says of a spare event that only its machine holds, read through a
    local as :meth:`Handlers._handle` does: 3 on CPython 3.11 (the machine's attribute, the
    local, the call's argument), 2 on CPython 3.14 (Pyodide), which passes a local as a borrowed
    reference. Measured, not assumed: a count too high would reuse an event someone kept."""

    class Holder:
        __slots__ = ("spare",)
        spare: object

    h = Holder()
    h.spare = object()
    e = h.spare
    return _refs(e)


#: see :func:`_spare_refs`
SPARE_REFS = _spare_refs()


class Handlers:
    """Handler dispatch of :class:`machines.Machine` (a mixin)."""

    if TYPE_CHECKING:  # provided by Machine
        id: str
        err: BaseException | None
        transition: Transition | None
        _log_steps: bool
        _calls_observed: bool
        log_stack_trace: bool
        handler_timeout: float
        handler_deadline: float
        err_internal: deque[BaseException]
        _groups: list[_Group]
        _groups_ver: int
        _hot: bool
        _hooks: dict[str, dict[int, Callable]]
        _log_level: int
        _subs: Subscriptions
        _spare_event: Event | None

        def is_err(self) -> bool: ...
        def add_err(
            self,
            err: BaseException,
            args: dict[str, Any] | None = None,
            *,
            source: MutSource | Event | None = None,
        ) -> Result | int: ...
        def _trace(self, hook: str, *args: Any) -> None: ...
        def _log(self, level: int, text: str) -> None: ...
        def _deadline(self, tx: Transition, err: HandlerTimeoutError) -> None: ...
        def _default_exception_state(self, tx: Transition) -> None: ...

    def handlers_bind(self, obj: Any, id: str | None = None, prefix: str = "") -> str:
        """Bind an object's handler methods; all bound groups are tried in binding order."""
        gid = id or f"{len(self._groups) + 1}"
        if any(g.id == gid for g in self._groups):
            raise ValueError(f"{self.id}: handler group {gid!r} is already bound")
        self._groups.append(_Group(gid, obj, prefix))
        self._groups_ver += 1  # plans re-resolve their handler calls
        if self.is_err() and self.err is not None:
            self.add_err(self.err)
        return gid

    def handlers_detach(self, id: str) -> None:
        for g in self._groups:
            if g.id == id:
                self._groups.remove(g)
                self._groups_ver += 1  # plans re-resolve their handler calls
                return
        raise ValueError(f"{self.id}: no handler group {id!r}")

    def handlers(self) -> list[str]:
        return [g.id for g in self._groups]

    def _negotiation_calls(self, plan: Plan, mut: Mutation) -> list[tuple]:
        """Steps as :meth:`_final_calls` makes them (``_CALL``, handler name, fn, group id,
        the state it is attributed to) in negotiation order, cached per plan and version of
        the bound handlers."""
        names = plan.negotiation
        if names is None:
            names = [(f"{s}Exit", s) for s in plan.exits]
            names += [(f"{s}Enter", s) for s in plan.enters]
            before = set(self.transition.states_before) if self.transition else set()
            if mut.type != REMOVE:
                names += [(f"{s}{s}", s) for s in plan.targets if s in before]
            names += [
                (f"{x}{y}", y)
                for x in self.transition.states_before  # type: ignore
                for y in plan.targets
                if x != y
            ]
            names.append(("AnyEnter", ""))
            plan.negotiation = names
        calls = [
            (_CALL, name, fn, group.id, state)
            for name, state in names
            for group in self._groups
            if (fn := group.lookup(name)) is not None
        ]
        plan.bound = (self._groups_ver, calls)
        return calls

    def _final_calls(self, plan: Plan) -> tuple[int, list, list]:
        """The final steps of ``plan`` for the bound handlers, cached on the plan:
        ``(version, steps, steps with args notifications)``; a step is ``(kind, handler name,
        fn, group id, state)``, in final order (``XEnd``, ``XState``, ``AnyState``). ``state``
        is the ``XState`` handler's state (what a failure undoes), else None."""
        names = [(f"{s}End", s, False) for s in plan.exits]
        names += [(f"{s}State", s, True) for s in plan.enters]
        names.append(("AnyState", "", False))
        FinalStep = tuple[int, str, Callable | None, str, str | None]
        plain: list[FinalStep] = []
        notify: list[FinalStep] = []
        for name, state, is_state in names:
            steps: list[FinalStep] = [
                (_CALL, name, fn, g.id, state if is_state else None)
                for g in self._groups
                if (fn := g.lookup(name)) is not None
            ]
            if not steps and name == "ExceptionState":
                steps = [(_DEFAULT, name, None, "", None)]
            plain += steps
            notify += steps
            if is_state:
                notify.append((_NOTIFY, name, None, "", state))
        bound = plan.finals = (self._groups_ver, plain, notify)
        return bound

    def _handle(
        self, tx: Transition, steps: list[tuple], negotiation: bool, skip: set[str] | None = None
    ) -> tuple[tuple, Any] | None:
        """Run ``steps`` (see :meth:`_final_calls`) in order until one fails: returns that step
        and what it returned (a :class:`_Panic` for an exception or an overrun; in
        ``negotiation`` also ``False``), else None. ``skip``: states whose steps are skipped.

        One loop for negotiation and final handlers, the call inlined: a call per handler was
        a sixth of a mutation with handlers. A handler's time runs from the previous clock
        read (before the first handler, or after the previous one) to its return: one read per
        call, the few instructions between two handlers counted to the second; observers
        (steps, logs, tracers) are not counted."""
        args = tx.mutation.args
        mark = perf_counter()
        for step in steps:
            kind, name, fn, group, state = step
            if fn is None:  # not a handler: an args notification or the default Exception
                if kind == _NOTIFY:
                    if self._subs.wants_args(state):
                        self._subs.notify_args(state, args)
                else:
                    self._default_exception_state(tx)
                mark = perf_counter()  # not a handler's time
                continue
            if skip and state in skip:
                continue
            observed = self._calls_observed  # tracer hooks, steps or logs
            if observed:
                self._call_observed(tx, name, group, "handler_start")
                mark = perf_counter()
            e = self._spare_event
            if e is not None and _refs(e) == SPARE_REFS:
                # nobody kept the previous handler's event (only this frame and the machine
                # hold it), so nobody can see it reused: a new Event per call cost a tenth of
                # a mutation
                e.name = name
                e.transition = tx
                e.args = args
                e.ctx = None
            else:
                e = self._spare_event = Event(name, self, tx)  # type: ignore[arg-type]
            try:
                ret = fn(e)
                if ret is not None and ret is not True and ret is not False and iscoroutine(ret):
                    ret.close()
                    raise TypeError(
                        f"handler {name} is async; handlers must be synchronous "
                        f"(start async work with machine.fork)"
                    )
            except Exception as err:
                trace = "".join(traceback.format_exception(err)) if self.log_stack_trace else ""
                if observed:
                    self._call_observed(tx, name, group, "handler_end")
                return step, _Panic(err, trace)
            end = perf_counter()
            if observed:
                self._call_observed(tx, name, group, "handler_end")
            if end - mark > self.handler_timeout:
                return step, self._overrun(tx, name, group, end - mark)
            mark = perf_counter() if observed else end
            if ret is False and negotiation:
                return step, ret
        return None

    def _overrun(self, tx: Transition, name: str, group: str, elapsed: float) -> _Panic:
        """A handler ran past :attr:`handler_timeout` (and maybe past the deadline)."""
        overrun = HandlerTimeoutError(
            f"handler timeout: {name} from {group} took {elapsed * 1000:.0f} ms "
            f"(limit {self.handler_timeout * 1000:.0f} ms)"
        )
        self.err_internal.append(overrun)
        if elapsed > self.handler_deadline:
            self._deadline(tx, overrun)
        return _Panic(overrun, "", timeout=True)

    def _call_observed(self, tx: Transition, name: str, group: str, hook: str) -> None:
        """What observers see of a handler call: its step, log line and tracer hooks."""
        if hook == "handler_start":
            if self._log_steps:
                tx.steps.append(_handler_step(name, tx))
            if self._hot and hook in self._hooks:
                self._trace(hook, tx, group, name)
            if self._log_level >= _OPS:
                self._log(LogLevel.OPS, f"[handler:{group}] {name}")
        elif hook in self._hooks:
            self._trace(hook, tx, group, name)


class _Group:
    __slots__ = ("id", "obj", "prefix", "cache")

    def __init__(self, id: str, obj: Any, prefix: str) -> None:
        self.id, self.obj, self.prefix = id, obj, prefix
        self.cache: dict[str, Callable | None] = {}

    def lookup(self, name: str) -> Callable | None:
        fn = self.cache.get(name, _MISSING)
        if fn is _MISSING:
            fn = None
            if not self.prefix or name.startswith(self.prefix):
                attr = getattr(self.obj, name[len(self.prefix) :], None)
                fn = attr if callable(attr) else None
            self.cache[name] = fn
        return fn  # type: ignore[return-value]


def _handler_step(name: str, tx: Transition) -> Step:
    """The debugging step of a handler call, its state and kind told by the name."""
    for suffix, final, enter in (
        ("Enter", False, True),
        ("Exit", False, False),
        ("State", True, True),
        ("End", True, False),
    ):
        if name.endswith(suffix) and name != suffix:
            state = name[: -len(suffix)]
            if state in tx.machine._index or state == "Any":
                return Step(StepType.HANDLER, state, is_final=final, is_enter=enter)
    for x in tx.states_before:  # XY: from X to Y, or XX: self
        if name.startswith(x) and name[len(x) :] in tx.machine._index:
            y = name[len(x) :]
            return Step(StepType.HANDLER, x, y, is_self=x == y)
    return Step(StepType.HANDLER, name)
