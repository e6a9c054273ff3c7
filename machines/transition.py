"""Transitions and the events handed to handlers.

A transition is the record of one mutation being applied; handlers and tracers read it, the
debugger ships it. It is a plain object: the machine drives it (see :mod:`machines.machine`).
"""

from __future__ import annotations

import itertools
import os
from dataclasses import dataclass
from enum import IntFlag
from typing import TYPE_CHECKING, Any

from .mutation import Mutation, MutationType, MutSource

if TYPE_CHECKING:
    from .machine import Machine

__all__ = ["Transition", "Event", "Step", "StepType", "ExceptionArgs", "EXCEPTION_ARGS_KEY"]

EXCEPTION_ARGS_KEY = "_am__Exception"


class StepType(IntFlag):
    """Bit flags, numbered as on the reference's wire."""

    RELATION = 1
    HANDLER = 2
    ACTIVATE = 4
    DEACTIVATE = 8
    DEACTIVATE_PASSIVE = 16
    CALLED = 32
    CANCEL = 64


@dataclass(slots=True)
class Step:
    """One debugging step of a transition (recorded only with step logging on)."""

    type: StepType
    from_state: str = ""
    to_state: str = ""
    rel_type: int = -1
    is_final: bool = False
    is_self: bool = False
    is_enter: bool = False

    def __str__(self) -> str:
        if self.type == StepType.RELATION:
            from .schema import Relation

            return f"{self.from_state} {Relation(self.rel_type)} {self.to_state}"
        name = {
            StepType.HANDLER: "handler",
            StepType.ACTIVATE: "activate",
            StepType.DEACTIVATE: "deactivate",
            StepType.DEACTIVATE_PASSIVE: "deactivate-passive",
            StepType.CALLED: "called",
            StepType.CANCEL: "cancel",
        }[self.type]
        return f"{name} {self.from_state or self.to_state or 'Any'}"


@dataclass(slots=True)
class ExceptionArgs:
    """What the machine keeps about an error, under ``args["_am__Exception"]``."""

    err: BaseException
    trace: str = ""
    panic: dict[str, Any] | None = None


ID_PREFIX = os.urandom(4).hex()
"""Transition ids are this per-process random prefix and a counter: unique and cheap."""
#: the next transition number of this process (shared by the fast path's records)
next_tx_num = itertools.count(1).__next__


def tx_id(prefix: str, num: int) -> str:
    """The 16-hex-digit id of transition number ``num`` of a process."""
    return f"{prefix}{num & 0xFFFFFFFF:08x}"


#: :attr:`Transition._rare` of a transition that has none: no log levels, texts, pre-log
#: entries or steps (read-only, for unpacking)
NO_RARE: tuple[Any, Any, Any, Any] = (None, None, None, None)


class Transition:
    """One mutation being applied: who called what, what was resolved, what happened."""

    __slots__ = (
        "num",
        "machine",
        "mutation",
        "plan",
        "time_before",
        "time_after",
        "states_before",
        "accepted",
        "completed",
        "_rare",
        "queue_len",
        "cancelled_by",
    )

    def __init__(
        self,
        machine: Machine,
        mutation: Mutation,
        plan: Any = None,
        states_before: tuple[str, ...] = (),
        time_before: list[int] | None = None,
    ) -> None:
        self.num = next_tx_num()
        self.machine = machine
        self.mutation = mutation
        self.plan: Any = plan
        self.time_before: list[int] = time_before if time_before is not None else []
        self.time_after: list[int] = []
        self.states_before: tuple[str, ...] = states_before
        self.accepted = False
        self.completed = False
        # [log entries, pre-log entries, steps], each list created on first use: most
        # transitions log nothing and record no steps (three lists per transition were a
        # measurable share of a mutation, and of the GC's work), and one slot tells the
        # debugger's row at once that there is nothing more to send
        self._rare: list[Any] | None = None
        self.queue_len = 0
        self.cancelled_by = ""

    # log entries, pre-log entries and steps live in one slot, ``_rare``: ``[levels, texts,
    # pre-log entries, steps]``, each list created on first use. The log's levels and texts are
    # two lists (Machine._log appends to them directly): the debugger's rows take them as they
    # are, where pairs had to be taken apart again per batch, and most transitions log nothing
    # (the debugger's row tests one value for all four)

    def _rare_slots(self) -> list[Any]:
        rare = self._rare
        if rare is None:
            rare = self._rare = [None, None, None, None]
        return rare

    @property
    def log_entries(self) -> list[tuple[int, str]]:
        """``(level, text)`` logged during the transition (a copy: the machine logs through
        :meth:`Machine.log`)."""
        rare = self._rare
        if rare is None or rare[0] is None:
            return []
        return list(zip(rare[0], rare[1], strict=True))

    @log_entries.setter
    def log_entries(self, value: list[tuple[int, str]]) -> None:
        rare = self._rare_slots()
        rare[0] = [lv for lv, _ in value]
        rare[1] = [text for _, text in value]

    @property
    def pre_log_entries(self) -> list[tuple[int, str]]:
        """``(level, text)`` logged between the previous transition and this one."""
        rare = self._rare_slots()
        if rare[2] is None:
            rare[2] = []
        return rare[2]

    @pre_log_entries.setter
    def pre_log_entries(self, value: list[tuple[int, str]]) -> None:
        self._rare_slots()[2] = value

    @property
    def steps(self) -> list[Step]:
        """Debugging steps (recorded with :attr:`Machine.log_steps`)."""
        rare = self._rare_slots()
        if rare[3] is None:
            rare[3] = []
        return rare[3]

    @steps.setter
    def steps(self, value: list[Step]) -> None:
        self._rare_slots()[3] = value

    @property
    def targets(self) -> list[str]:
        """The states the transition leads to (its plan's)."""
        return self.plan.targets if self.plan is not None else []

    @property
    def id(self) -> str:
        """16 hex digits: :data:`ID_PREFIX` and :attr:`num` (formatted only when asked for)."""
        return tx_id(ID_PREFIX, self.num)

    # views named as in the reference
    @property
    def type(self) -> MutationType:
        return self.mutation.type

    @property
    def args(self) -> dict[str, Any]:
        return self.mutation.args

    @property
    def is_auto(self) -> bool:
        return self.mutation.auto

    @property
    def is_check(self) -> bool:
        return self.mutation.check

    @property
    def is_health(self) -> bool:
        m = self.mutation
        return m.type == MutationType.ADD and m.called in (("Healthcheck",), ("Heartbeat",))

    @property
    def called_states(self) -> list[str]:
        return list(self.mutation.called)

    @property
    def target_states(self) -> list[str]:
        return list(self.targets)

    @property
    def enters(self) -> list[str]:
        return list(self.plan.enters) if self.plan else []

    @property
    def exits(self) -> list[str]:
        return list(self.plan.exits) if self.plan else []

    @property
    def source(self) -> MutSource | None:
        return self.mutation.source

    def clock_before(self) -> dict[str, int]:
        return dict(zip(self.machine.state_names, self.time_before, strict=False))

    def clock_after(self) -> dict[str, int]:
        return dict(zip(self.machine.state_names, self.time_after, strict=False))

    def time_diff(self) -> tuple[list[str], list[str]]:
        """(activated incl. Multi re-activations, deactivated) state names."""
        added: list[str] = []
        removed: list[str] = []
        for name, b, a in zip(
            self.machine.state_names, self.time_before, self.time_after, strict=False
        ):
            if a != b:
                (added if a % 2 else removed).append(name)
        return added, removed

    def __str__(self) -> str:
        head = f"tx#{self.id}\n{self.mutation!r}"
        return "\n".join([head, *(f"- {s}" for s in self.steps)])

    __repr__ = __str__


class Event:
    """What a handler receives: the handler's name, the args and the machine's context."""

    __slots__ = ("name", "machine", "transition", "args", "ctx")

    def __init__(
        self, name: str, machine: Machine, transition: Transition | None, ctx: Any = None
    ) -> None:
        self.name = name
        self.machine = machine
        self.transition = transition
        self.args: dict[str, Any] = transition.mutation.args if transition else {}
        self.ctx = ctx

    @property
    def machine_id(self) -> str:
        return self.machine.id

    @property
    def transition_id(self) -> str:
        return self.transition.id if self.transition else ""

    @property
    def mutation(self) -> Mutation | None:
        return self.transition.mutation if self.transition else None

    @property
    def is_check(self) -> bool:
        return bool(self.transition and self.transition.mutation.check)

    def is_valid(self) -> bool:
        """True while this event's transition is the machine's current one and still accepted."""
        tx = self.transition
        if tx is None or tx.completed or self.machine.transition is not tx:
            return False
        if self.ctx is not None and getattr(self.ctx, "done", False):
            return False
        return not tx.cancelled_by

    def source(self) -> MutSource:
        """A mutation source pointing at this event (for mutations it causes elsewhere)."""
        tx = self.transition
        return MutSource(self.machine.id, tx.id if tx else "", sum(tx.time_before) if tx else 0)

    def swap_args(self, args: dict[str, Any]) -> Event:
        e = Event(self.name, self.machine, self.transition, self.ctx)
        e.args = args
        return e

    def __repr__(self) -> str:
        return f"<Event {self.name} of {self.machine.id}>"
