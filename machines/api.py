"""The machine API shared by a local :class:`~machines.Machine` and a remote mirror
(:class:`~machines.rpc.netmach.NetMach`).

Users hand either one to the same code (the REPL, the example, pipes), so both answer the same
calls the same way: reads from the local clock, waits that are awaited under trio or asyncio,
unknown state names raising ``ValueError`` that names them, ``on_change`` returning its
unsubscribe function, handler groups detached by the id ``handlers_bind`` returned.

The one difference is when a mutation's answer is known: a local machine returns its
:class:`~machines.Result` at once, a mirror has to ask its server, so it returns an awaitable.
:func:`settle` takes either.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Mapping
from inspect import isawaitable
from typing import TYPE_CHECKING, Any, Protocol, TypeVar, runtime_checkable

from .mutation import MutSource, Result
from .schema import State
from .transition import Event

#: a mutation's answer: ``Result`` (or a queue tick) now, or an awaitable of it
MutationAnswer = Result | int | Awaitable[Result | int]
#: what ``on_change`` calls: ``fn(machine, time_before, time_after)``
ChangeListener = Callable[[Any, list[int], list[int]], None]

T = TypeVar("T")


@runtime_checkable
class MachineApi(Protocol):
    """What a local machine and a network mirror of one both offer."""

    id: str

    # -- reading (from the local clock; never the network) ------------------------------------
    @property
    def state_names(self) -> list[str]: ...
    @property
    def active_states(self) -> list[str]: ...
    @property
    def schema(self) -> Mapping[str, State]: ...
    @property
    def is_disposed(self) -> bool: ...

    def has(self, *states: str | Iterable[str]) -> bool: ...
    def index(self, state: str) -> int: ...
    def is_active(self, *states: str | Iterable[str]) -> bool: ...
    def any_active(self, *states: str | Iterable[str]) -> bool: ...
    def not_active(self, *states: str | Iterable[str]) -> bool: ...
    def is_err(self) -> bool: ...
    def tick(self, state: str) -> int: ...
    def time(self, states: Iterable[str] | None = None) -> list[int]: ...
    def clock(self, states: Iterable[str] | None = None) -> dict[str, int]: ...
    def is_clock(self, clock: Mapping[str, int]) -> bool: ...
    def switch(self, *states: str) -> str: ...
    def string(self) -> str: ...
    def string_all(self) -> str: ...
    def inspect(self, states: Iterable[str] | None = None) -> str: ...
    def export(self) -> dict[str, Any]: ...

    # -- waiting (await the result under trio or asyncio) -------------------------------------
    def when(self, *states: str | Iterable[str]) -> Awaitable[Any]: ...
    def when_not(self, *states: str | Iterable[str]) -> Awaitable[Any]: ...
    def when_err(self) -> Awaitable[Any]: ...
    def when_ticks(self, state: str, n: int) -> Awaitable[Any]: ...
    def when_query(self, fn: Callable[[dict[str, int]], bool]) -> Awaitable[Any]: ...

    # -- mutating (see settle()) --------------------------------------------------------------
    def add(
        self,
        states: str | Iterable[str],
        args: dict[str, Any] | None = None,
        *,
        source: MutSource | Event | None = None,
    ) -> MutationAnswer: ...
    def remove(
        self,
        states: str | Iterable[str],
        args: dict[str, Any] | None = None,
        *,
        source: MutSource | Event | None = None,
    ) -> MutationAnswer: ...
    def set(
        self,
        states: str | Iterable[str],
        args: dict[str, Any] | None = None,
        *,
        source: MutSource | Event | None = None,
    ) -> MutationAnswer: ...

    # -- observing ----------------------------------------------------------------------------
    def on_change(self, fn: ChangeListener) -> Callable[[], None]: ...
    def handlers_bind(self, handlers: Any, id: str | None = None) -> str: ...
    def handlers_detach(self, id: str) -> None: ...
    def dispose(self) -> None: ...


async def settle(answer: T | Awaitable[T]) -> T:
    """A mutation's answer, awaited if it came from a mirror (``await settle(m.add("A"))``)."""
    if isawaitable(answer):
        return await answer
    return answer


if TYPE_CHECKING:  # the type checker proves both implementations conform
    from .machine import Machine
    from .rpc.netmach import NetMach

    def _conforms(local: Machine, net: NetMach) -> tuple[MachineApi, MachineApi]:
        return local, net
