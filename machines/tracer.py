"""Tracers: synchronous observers of a machine (the debugger's and aRPC's hook points).

Subclass :class:`Tracer` and override what you need; every hook is a no-op by default. Hooks run
inside the machine's transition, so they must be quick and must not mutate the machine.

A tracer that only needs a log of finished transitions sets :attr:`Tracer.sink` instead of
overriding ``transition_end``: the machine then hands it one compact record per transition
(:data:`RECORD_FIELDS`), from its unobserved fast path too, so such a tracer costs a call and
not the full transition path (aRPC's server pushes clocks this way). The debugger's tracer goes
one step further with :attr:`Tracer.lane_for`: the machine packs each transition into the lane
itself, one C call, with no record to build and unpack again.

This module also owns how telemetry attaches itself (:func:`env_attach`), so the machine never
imports the telemetry (nor opens a socket) unless the environment asks for it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .machine import Machine
    from .mutation import Mutation
    from .options import Options
    from .transition import Transition

__all__ = ["Tracer", "HOOKS", "HOT_HOOKS", "RECORD_FIELDS", "env_attach"]

HOOKS = (
    "machine_init",
    "new_submachine",
    "mutation_queued",
    "transition_init",
    "transition_start",
    "handler_start",
    "handler_end",
    "transition_finals",
    "transition_end",
    "queue_end",
    "schema_change",
    "verify_states",
    "machine_dispose",
)
#: hooks that run on every mutation: a machine with any of them cannot take its fast path
#: (every hook but the lifecycle ones)
HOT_HOOKS = frozenset(HOOKS) - {
    "machine_init",
    "new_submachine",
    "schema_change",
    "verify_states",
    "machine_dispose",
}

#: a transition record handed to :attr:`Tracer.sink`: a flat tuple of what the machine already
#: has at hand (raw objects: the mutation type, the called names' tuple, the source, ``Step``
#: objects); turning it into anything else is the sink owner's job, off the machine's path
RECORD_FIELDS = (
    "machine_id", "num", "clocks", "queue_tick", "type", "called_states", "flags", "queue",
    "mut_queue_tick", "mut_queue_token", "log_entries", "pre_log_entries", "args", "source",
    "steps",
)  # fmt: skip
#: bits of the record's ``flags``
FLAG_ACCEPTED, FLAG_AUTO, FLAG_CHECK, FLAG_QUEUED = 1, 2, 4, 8


class Tracer:
    inheritable = False
    #: called with one record (:data:`RECORD_FIELDS`) per finished transition; must be cheap
    sink: Callable[[tuple], None] | None = None
    #: records carry the mutation's args (else None in their place)
    sink_args = False
    #: a machine's :class:`~machines.telemetry.Lane` (the debugger's tracer): the machine
    #: packs each transition into it itself, cheaper than a record for a sink. A machine
    #: takes one lane, from the first such tracer; the others get records through ``sink``
    lane_for: Callable[[Machine], Any] | None = None

    @property
    def tracer_id(self) -> str:
        return f"{type(self).__name__}-{id(self):x}"

    def machine_init(self, mach: Machine) -> None: ...
    def new_submachine(self, parent: Machine, mach: Machine) -> None: ...
    def mutation_queued(self, mach: Machine, mutation: Mutation) -> None: ...
    def transition_init(self, tx: Transition) -> None: ...
    def transition_start(self, tx: Transition) -> None: ...
    def handler_start(self, tx: Transition, group: str, name: str) -> None: ...
    def handler_end(self, tx: Transition, group: str, name: str) -> None: ...
    def transition_finals(self, tx: Transition) -> None: ...
    def transition_end(self, tx: Transition) -> None: ...
    def queue_end(self, mach: Machine) -> None: ...
    def schema_change(self, mach: Machine, old_schema: dict[str, Any]) -> None: ...
    def verify_states(self, mach: Machine) -> None: ...
    def machine_dispose(self, mach_id: str) -> None: ...


def overridden(tracer: Tracer, hook: str) -> bool:
    """Whether ``tracer`` implements ``hook`` (so the machine can skip no-op calls)."""
    return getattr(type(tracer), hook, None) is not getattr(Tracer, hook)


def env_attach(mach: Machine, opts: Options) -> Tracer | None:
    """Attach the debugger's telemetry when ``AM_DBG_ADDR`` asks for it (None otherwise).

    The telemetry is imported only then: a machine alone neither imports it nor connects."""
    if not opts.dbg_addr:
        return None
    from .telemetry import auto_attach

    return auto_attach(mach, opts)
