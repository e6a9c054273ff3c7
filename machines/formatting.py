"""How a machine reads as text: active states with their ticks, and every state in detail."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

from .schema import Schema, names_of

__all__ = ["Formatting"]


class Formatting:
    """The text forms of :class:`machines.Machine` (a mixin)."""

    if TYPE_CHECKING:  # provided by Machine
        id: str
        _disposed: bool
        _names: list[str]
        _ticks: list[int]
        _schema: Schema

        def tick(self, state: str) -> int: ...

    def __str__(self) -> str:
        return self.string()

    def string(self) -> str:
        """``(A:1 B:3)``: active states with their ticks."""
        if self._disposed:
            return ""
        parts = [f"{n}:{t}" for n, t in zip(self._names, self._ticks, strict=True) if t & 1]
        return f"({' '.join(parts)})"

    def string_all(self) -> str:
        """``(A:1) [B:2 C:0]``: active, then inactive states."""
        if self._disposed:
            return ""
        pairs = list(zip(self._names, self._ticks, strict=True))
        inactive = " ".join(f"{n}:{t}" for n, t in pairs if not t & 1)
        return f"{self.string()} [{inactive}]"

    def inspect(self, states: Iterable[str] | None = None) -> str:
        if self._disposed:
            return ""
        out = []
        for n in self._names if states is None else names_of(states):
            st, t = self._schema[n], self.tick(n)
            out.append(f"{t & 1} {n}\n    |Tick     {t}\n")
            for label, on in (("Auto", st.auto), ("Multi", st.multi)):
                if on:
                    out.append(f"    |{label:<9}true\n")
            for label, lst in (
                ("Add", st.add),
                ("Require", st.require),
                ("Remove", st.remove),
                ("After", st.after),
            ):
                if lst:
                    out.append(f"    |{label:<9}{' '.join(lst)}\n")
        return "".join(out)

    def __repr__(self) -> str:
        return f"<Machine {self.id} {self.string()}>"
