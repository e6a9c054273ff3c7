"""Listeners of ``repl-`` listen tunnels, kept bound between two WebSockets of the same id.

Why: a tab exposes its machine to REPLs over ``/listen/repl-<id>/<host:0>``, and a listen
tunnel carries one TCP peer: when that REPL leaves, the tunnel (and its WebSocket) ends and
the tab opens a new one. If the listener closed with the tunnel, every REPL would get a new
port: two REPLs run back to back would find no address file, or a stale one (connection
refused), during the tab's reconnect. So the listener of a ``repl-`` id outlives its tunnel:
it is *parked* here for ``RelayConfig.repl_grace`` seconds and handed to the next tunnel that
asks for the same id and target. The address (and its file) stays valid for the tab's whole
life; a REPL that connects while the tab reconnects waits in the listen backlog and is
accepted by the next tunnel. When no tunnel comes back in time (the tab closed), the listener
closes (queued connections are reset) and the address file goes.

Why not keep one WebSocket and serve TCP peers one after another on it: the tunnel is a plain
byte pipe, so the tab could only learn that a new REPL replaced the old one through framing
of the relay's own inside the stream, which the tab, the reference relay and every other
listen tunnel would have to speak. The WebSocket closing *is* the in-band reset that both
relays already give; parking keeps it and only fixes the address.

Parked listeners hold no tunnel slot; at most ``limit`` of them are kept (the oldest goes
first), so opening and dropping tunnels cannot pile up listening sockets.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import trio

from relay.addrfile import remove_addr_file
from relay.config import HostPort

log = logging.getLogger("relay")


@dataclass(eq=False)
class HeldListener:
    """A listen tunnel's TCP listener, the address it bound and the file that publishes it."""

    listener: trio.SocketListener
    #: The target as requested (port 0 unresolved): a later tunnel must ask for the same.
    target: HostPort
    #: The address actually bound (``host:port``).
    addr: str
    addr_file: Path | None = None
    #: Tunnels using it now: the one waiting for the next peer, and those serving a peer
    #: (a ``repl-`` id's tunnels share it, see ``Relay._claim_listen``); the last to end
    #: parks or closes it.
    users: int = 0

    def close(self) -> None:
        """Close the socket (connections still queued get a reset) and remove the file if it
        still holds this address. Synchronous: safe in cancelled and shielded code alike."""
        self.listener.socket.close()
        if self.addr_file is not None:
            remove_addr_file(self.addr_file, self.addr)


@dataclass(eq=False)
class _Spot:
    held: HeldListener
    deadline: float


class Parking:
    """Parked listeners by tunnel id; :meth:`run` closes the ones nobody came back for."""

    def __init__(self, grace: float, limit: int) -> None:
        self.grace = grace
        self.limit = limit
        self._spots: dict[str, _Spot] = {}
        self._changed = trio.Event()
        self._closed = False

    def __iter__(self) -> Iterator[str]:
        return iter(list(self._spots))

    def __len__(self) -> int:
        return len(self._spots)

    def park(self, tunnel_id: str, held: HeldListener) -> bool:
        """Keep ``held`` for the next tunnel of ``tunnel_id``; False (caller closes it) once
        the relay is closing."""
        if self._closed or self.grace <= 0:
            return False
        self._drop(tunnel_id)
        while len(self._spots) >= self.limit:
            oldest = min(self._spots, key=lambda i: self._spots[i].deadline)
            self._drop(oldest, "too many parked listeners")
        self._spots[tunnel_id] = _Spot(held, trio.current_time() + self.grace)
        self._changed.set()
        log.info("tunnel listen %r: %s kept for %g s", tunnel_id, held.addr, self.grace)
        return True

    def take(self, tunnel_id: str, target: HostPort) -> HeldListener | None:
        """The listener parked for ``tunnel_id`` if it was bound for ``target``; a parked one
        for another target is closed (the new tunnel binds its own)."""
        spot = self._spots.pop(tunnel_id, None)
        if spot is None:
            return None
        if spot.held.target != target:
            spot.held.close()
            return None
        return spot.held

    def drop_target(self, target: HostPort) -> None:
        """Close parked listeners bound for ``target`` (a fixed port a new tunnel wants)."""
        for tunnel_id, spot in list(self._spots.items()):
            if spot.held.target == target:
                self._drop(tunnel_id, "replaced by a new tunnel for the same address")

    def close(self) -> None:
        """Close every parked listener and park no more (the relay is closing)."""
        self._closed = True
        for tunnel_id in list(self._spots):
            self._drop(tunnel_id, "relay shutting down")

    def _drop(self, tunnel_id: str, why: str = "") -> None:
        spot = self._spots.pop(tunnel_id, None)
        if spot is not None:
            spot.held.close()
            if why:
                log.info("tunnel listen %r: %s closed: %s", tunnel_id, spot.held.addr, why)

    async def run(self) -> None:
        """Close each listener whose grace period passed; until cancelled."""
        while True:
            now = trio.current_time()
            for tunnel_id, spot in list(self._spots.items()):
                if spot.deadline <= now:
                    self._drop(tunnel_id, f"no tunnel came back in {self.grace:g} s")
            deadline = min((s.deadline for s in self._spots.values()), default=math.inf)
            self._changed = trio.Event()
            with trio.move_on_at(deadline):
                await self._changed.wait()
