"""Tracers: synchronous observers of a machine (the debugger's and aRPC's hook points).

Subclass :class:`Tracer` and override what you need; every hook is a no-op by default. Hooks run
inside the machine's transition, so they must be quick and must not mutate the machine.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .machine import Machine
    from .mutation import Mutation
    from .transition import Transition

__all__ = ["Tracer", "HOOKS"]

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


class Tracer:
    inheritable = False

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
