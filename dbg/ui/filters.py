"""The transition filters of the toolbar (C.5 #12): which transitions navigation skips.

Why a module: the session, the timelines' counts, the log and the CLI flags share one
definition of each filter; a filter is a bit of :class:`dbg.ui.history.TxInfo.kinds`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = [
    "FILTERS",
    "Filters",
    "K_AUTO",
    "K_CANCELED",
    "K_CHECK",
    "K_EMPTY",
    "K_HEALTH",
    "K_QUEUED",
]

# what a transition is (bits of TxInfo.kinds); a filter hides transitions having its bit
K_CANCELED = 1
K_QUEUED = 2
K_AUTO = 4
K_EMPTY = 8
K_HEALTH = 16
K_CHECK = 32

#: toolbar order: name -> (bit or 0 for machine filters, help text)
FILTERS: dict[str, tuple[int, str]] = {
    "canceled": (K_CANCELED, "hide canceled transitions"),
    "queued": (K_QUEUED, "hide queued-mutation records"),
    "auto": (K_AUTO, "hide auto transitions"),
    "empty": (K_EMPTY, "hide transitions that changed no clock"),
    "health": (K_HEALTH, "hide Healthcheck/Heartbeat-only transitions"),
    "checks": (K_CHECK, "hide Can* dry runs"),
    "disconn": (0, "hide disconnected machines"),
    "rpc": (0, "hide aRPC and relay machines"),
    # with a group selected in the schema tree (dbg.ui.groups): only transitions calling
    # its states; without one it hides nothing
    "group": (0, "only transitions calling states of the selected group"),
}

#: machine tags the ``rpc`` filter hides
RPC_TAGS = frozenset(("rpc-server", "rpc-client", "rpc-mux", "relay"))


@dataclass
class Filters:
    """Which filters are on. Defaults as the reference: health and checks hidden, the group
    filter on (it acts once a group is selected)."""

    on: set[str] = field(default_factory=lambda: {"health", "checks", "group"})

    def toggle(self, name: str) -> bool:
        if name not in FILTERS:
            raise ValueError(f"unknown filter {name!r}; known: {', '.join(FILTERS)}")
        self.on ^= {name}
        return name in self.on

    @property
    def mask(self) -> int:
        """The kinds bits that hide a transition."""
        m = 0
        for name in self.on:
            m |= FILTERS[name][0]
        return m

    def hides_machine(self, connected: bool, tags: list[str]) -> bool:
        if "disconn" in self.on and not connected:
            return True
        return "rpc" in self.on and any(t in RPC_TAGS for t in tags)
