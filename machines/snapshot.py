"""Export and import: a machine's clocks as plain data, and back (no handlers run)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from .mutation import Result
from .schema import Schema

__all__ = ["Snapshots"]


class Snapshots:
    """:meth:`export` and :meth:`import_data` of :class:`machines.Machine` (a mixin)."""

    if TYPE_CHECKING:  # provided by Machine
        id: str
        queue_tick: int
        machine_tick: int
        _names: list[str]
        _ticks: list[int]
        _schema: Schema
        _index: dict[str, int]
        _active: tuple[str, ...]
        _active_set: frozenset[str]

        def verify_states(self, names: Iterable[str]) -> None: ...
        def add(self, states: str | Iterable[str]) -> Result | int: ...

    def export(self) -> dict[str, Any]:
        """Plain-data snapshot of the clocks (for :meth:`import_data`)."""
        return {
            "id": self.id,
            "state_names": list(self._names),
            "time": list(self._ticks),
            "queue_tick": self.queue_tick,
            "machine_tick": self.machine_tick,
            "schema": {n: s.to_dict() for n, s in self._schema.items()},
        }

    def import_data(self, data: Mapping[str, Any]) -> None:
        """Restore clocks exported from a machine with the same id and states.

        No handlers run; active states follow from odd ticks; ``MachineRestored`` is added
        when defined.
        """
        if data.get("id") != self.id:
            raise ValueError(f"import: id {data.get('id')!r} does not match {self.id!r}")
        names, ticks = list(data["state_names"]), list(data["time"])
        if len(names) != len(self._names) or len(ticks) != len(names):
            raise ValueError(
                f"import: {len(names)} states in the data, {len(self._names)} in {self.id}"
            )
        self.verify_states(names)
        self._ticks = [int(t) for t in ticks]
        self._active = tuple(n for n, t in zip(self._names, self._ticks, strict=True) if t & 1)
        self._active_set = frozenset(self._active)
        self.queue_tick = int(data.get("queue_tick", self.queue_tick))
        self.machine_tick = int(data.get("machine_tick", 0)) + 1
        if "MachineRestored" in self._index:
            self.add("MachineRestored")
