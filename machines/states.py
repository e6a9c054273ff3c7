"""Reusable state sets (mixins), as in the reference's ``pkg/states``.

Build a machine's schema on them with :func:`machines.merge`, e.g.
``merge(BASIC, CONNECTED, {"Foo": State(require=["Ready"])})``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .schema import State, merge

__all__ = [
    "BASIC",
    "CONNECTED",
    "CONN_POOL",
    "DISPOSED",
    "DisposedHandlers",
    "basic_schema",
]

_CONNECTED_GROUP = ("Connecting", "Connected", "Disconnecting", "Disconnected")

BASIC: dict[str, State] = {
    "Exception": State(multi=True),
    "ErrNetwork": State(multi=True, add=["Exception"], require=["Exception"]),
    "ErrHandlerTimeout": State(multi=True, add=["Exception"], require=["Exception"]),
    "Start": State(),
    "Ready": State(require=["Start"]),
    "Healthcheck": State(multi=True),
    "Heartbeat": State(),
}
"""Errors, Start/Ready and health: the base of nearly every machine."""

CONNECTED: dict[str, State] = {
    "ErrConnecting": State(require=["Exception"]),
    "Connecting": State(require=["Start"], remove=_CONNECTED_GROUP),
    "Connected": State(require=["Start"], remove=_CONNECTED_GROUP),
    "Disconnecting": State(remove=_CONNECTED_GROUP),
    "Disconnected": State(auto=True, remove=_CONNECTED_GROUP),
}
"""A connection's lifecycle: the four states exclude each other (needs ``Start``)."""

CONN_POOL: dict[str, State] = {
    "ErrConnecting": State(require=["Exception"]),
    "Disconnected": State(remove=["Connecting", "ConnectedFully", "Disconnecting"]),
    "Connecting": State(require=["Start"], remove=["Disconnecting"]),
    "Connected": State(require=["Start"], remove=["Disconnected"]),
    "ConnectedFully": State(require=["Connected"], remove=["Disconnected"]),
    "Disconnecting": State(remove=["ConnectedFully", "Connected", "Connecting"]),
}
"""A pool of connections: partially and fully connected (needs ``Start``)."""

DISPOSED: dict[str, State] = {
    "RegisterDisposal": State(multi=True),
    "Disposing": State(remove=["Start", "Exception"]),
    "Disposed": State(remove=["Start", "Exception", "Disposing"]),
}
"""State-based shutdown (needs ``Start``); bind :class:`DisposedHandlers` with it."""

DISPOSAL_ARG = "DisposedArgHandler"


def basic_schema(*schemas: dict[str, State]) -> dict[str, State]:
    """``BASIC`` merged with ``schemas`` (later wins)."""
    return merge(BASIC, *schemas)


class DisposedHandlers:
    """Handlers for :data:`DISPOSED`: run registered disposal callbacks, then dispose."""

    def __init__(self) -> None:
        self.disposers: list[Callable[[str], Any]] = []

    def RegisterDisposalEnter(self, e: Any) -> bool:
        ok = callable(e.args.get(DISPOSAL_ARG))
        if not ok and not e.is_check:
            e.machine.add_err(ValueError(f"RegisterDisposal needs a callable in {DISPOSAL_ARG}"))
        return ok

    def RegisterDisposalState(self, e: Any) -> None:
        self.disposers.append(e.args[DISPOSAL_ARG])

    def DisposingState(self, e: Any) -> None:
        mach = e.machine
        for fn in self.disposers:
            try:
                fn(mach.id)
            except Exception as err:
                mach.add_err(err)
        mach.add("Disposed", source=e)

    def DisposedState(self, e: Any) -> None:
        e.machine.dispose()
