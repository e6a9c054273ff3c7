"""Mutations, their results and their sources: the values that travel through the queue."""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum
from typing import Any

__all__ = ["Result", "MutationType", "MutSource", "Mutation", "LogLevel"]


class Result(IntEnum):
    """Outcome of a mutation call.

    A mutation called while the queue is busy returns its *queue tick* (an ``int >= 2``, the
    value of ``machine.queue_tick`` while it will run); compare with ``result >= Result.QUEUED``
    or use :meth:`is_queued`.
    """

    EXECUTED = 0
    CANCELED = 1
    QUEUED = 2

    @staticmethod
    def is_queued(result: int) -> bool:
        return result >= 2

    def __str__(self) -> str:
        return self.name.lower()


class MutationType(IntEnum):
    """Numbered as on the reference's wire (telemetry, dumps)."""

    ADD = 0
    REMOVE = 1
    SET = 2
    EVAL = 3

    def __str__(self) -> str:
        return self.name.lower()


class LogLevel(IntEnum):
    NOTHING = 0
    EXTERNAL = 1
    CHANGES = 2
    OPS = 3
    DECISIONS = 4
    EVERYTHING = 5


@dataclass(frozen=True, slots=True)
class MutSource:
    """Who caused a mutation: a machine, and optionally its transition and time.

    Local calls carry no source; aRPC and pipes fill it so causality survives machine borders.
    """

    machine_id: str
    tx_id: str = ""
    mach_time: int = 0


class Mutation:
    """One queued request to change the active states."""

    __slots__ = ("type", "called", "args", "auto", "check", "source", "queue_tick", "token")

    def __init__(
        self,
        type: MutationType,
        called: tuple[str, ...],
        args: dict[str, Any] | None,
        *,
        auto: bool = False,
        check: bool = False,
        source: MutSource | None = None,
        queue_tick: int = 0,
    ) -> None:
        self.type = type
        self.called = called
        self.args = args if args is not None else {}
        self.auto = auto
        self.check = check
        self.source = source
        self.queue_tick = queue_tick
        self.token = 0

    def __repr__(self) -> str:
        flags = "".join(f":{f}" for f, on in (("auto", self.auto), ("check", self.check)) if on)
        return f"[{self.type}{flags}] {' '.join(self.called)}"
