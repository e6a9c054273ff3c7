"""The REPL's connections: one aRPC client per address, each mirroring one remote machine.

A peer keeps reconnecting (with backoff) until it is dropped, so a machine that restarts on the
same address comes back by itself; an address nobody answers stays listed as disconnected. Each
connection attempt is bounded by the connect timeout, so a dead address never blocks the REPL.

A peer read from an ``.addr`` file whose address refuses the connection looks at the file again
within the same attempt: its owner may have moved and be about to rewrite it (a relay that
rebinds a tab's REPL tunnel, a machine restarted on a new port). Without this, a one-shot REPL
that read the file a moment too early would list a live machine as disconnected.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import trio

from machines.rpc.client import Client
from machines.rpc.netmach import NetMach
from machines.rpc.protocol import PayloadReceived
from machines.rpc.repl import ARGS_PAYLOAD, CANCEL_PAYLOAD
from machines.rpc.transport import open_tcp, open_websocket_stream

from .discovery import machine_id_of, read_addr_file

#: Seconds between looks at the ``.addr`` file of a refused address, and the most of an
#: attempt's connect timeout spent waiting for it to change (the rest is for connecting).
REREAD_INTERVAL = 0.05
REREAD_SHARE = 0.5
#: how the client reports a connection that was accepted but never answered
HANDSHAKE_TIMEOUT = "no handshake from "
#: what a machine that does not answer the handshake most likely is: its port took the
#: connection (a relay's listener, a process's backlog), the machine did not come to it
NO_ANSWER = "busy (serving other REPLs) or stuck"


class Peer:
    """One address and the client connected (or trying to connect) to it."""

    def __init__(
        self,
        addr: str,
        *,
        client_id: str,
        repl_id: str,
        connect_timeout: float = 3.0,
        call_timeout: float = 3.0,
        on_change: Callable[[Peer, bool], None] | None = None,
        source: Path | None = None,
    ) -> None:
        """Mutations carry `repl_id` as their source. `on_change(peer, connected)` is called on
        each handshake and each loss of a handshaken connection. `source`: the ``.addr`` file
        the address was read from (looked at again when the address refuses)."""
        self.addr = addr
        self.source = source
        #: the machine its ``.addr`` file names ('' for an address given on the command line)
        self.file_id = machine_id_of(source) if source is not None else ""
        self.on_change = on_change
        self.arg_names: list[str] | None = None  # from the endpoint, for completion and checks
        #: why the endpoint canceled the last mutation (its payload precedes the answer); the
        #: REPL clears it before each mutation (one at a time per peer)
        self.cancel_reason = ""
        self._nursery: trio.Nursery | None = None
        self.client = Client(
            addr,
            id=client_id,
            source=repl_id,
            stream_factory=self._open,
            connect_timeout=connect_timeout,
            handshake_timeout=connect_timeout,  # a port that never answers: listed soon
            call_timeout=call_timeout,
            retry_max_delay=2.0,
        )
        self.client.on_payload.append(self._payload)
        self._stop = trio.Event()
        self.gone = trio.Event()

    async def _connect(self, addr: str) -> Any:
        if "/" in addr:  # host:port/path: a WebSocket endpoint
            assert self._nursery is not None
            host, path = addr.split("/", 1)
            return await open_websocket_stream(self._nursery, f"ws://{host}/{path}")
        return await open_tcp(addr)

    async def _open(self) -> Any:
        """One connection attempt (the client bounds it by the connect timeout)."""
        try:
            return await self._connect(self.addr)
        except OSError:
            moved = None if self.source is None else await self._moved(self.source)
            if moved is None:
                raise
        self.addr = self.client.addr = moved
        return await self._connect(moved)

    async def _moved(self, path: Path) -> str | None:
        """The file's new address, once it holds one other than ours; None if it does not
        within a share of what is left of the attempt (then the refusal stands)."""
        left = trio.current_effective_deadline() - trio.current_time()
        with trio.move_on_after(max(0.0, min(left, self.client.connect_timeout) * REREAD_SHARE)):
            while True:
                try:
                    addr = read_addr_file(path)
                except (OSError, ValueError):  # gone or half there: its owner may rewrite it
                    addr = self.addr
                if addr != self.addr:
                    return addr
                await trio.sleep(REREAD_INTERVAL)
        return None

    def _payload(self, ev: PayloadReceived) -> None:
        if ev.name == ARGS_PAYLOAD and isinstance(ev.data, list):
            self.arg_names = [str(a) for a in ev.data]
        elif ev.name == CANCEL_PAYLOAD and isinstance(ev.data, str):
            self.cancel_reason = " ".join(ev.data.split())[:300]

    # --- what the commands read ------------------------------------------------------------------

    @property
    def netmach(self) -> NetMach:
        return self.client.netmach

    @property
    def id(self) -> str:
        """The remote machine's id (kept after a disconnect), or '' before any handshake."""
        return self.client.netmach.remote_id

    @property
    def name(self) -> str:
        """The remote machine's id; before any handshake, the one its file names, or the
        address."""
        return self.id or self.file_id or self.addr

    @property
    def connected(self) -> bool:
        return self.client.connected

    @property
    def status(self) -> str:
        """``Connected``, ``Connecting`` (first attempt, or a handshake under way) or
        ``Disconnected``."""
        if self.client.connected:
            return "Connected"
        if not self.client.last_error:
            return "Connecting"
        return "Disconnected"

    @property
    def settled(self) -> bool:
        """Connected, or the first attempt has failed."""
        return self.client.connected or bool(self.client.last_error)

    async def wait_settled(self) -> None:
        await self.client.wait_until(lambda: self.settled)

    @property
    def error(self) -> str:
        """Why the last attempt failed ('' if none did). A handshake timeout says what it most
        likely means: the port took the connection (a relay's listener, a busy process's
        backlog) while the machine behind it was busy with other REPLs, or stuck."""
        err = self.client.last_error
        if err.startswith(HANDSHAKE_TIMEOUT):
            return f"{err}: {NO_ANSWER}; retrying"
        return err

    def has(self, *states: str) -> bool:
        return bool(self.netmach.state_names) and self.netmach.has(*states)

    def time_sum(self, states: list[str] | None = None) -> int:
        return sum(self.netmach.time(states)) if self.netmach.state_names else 0

    # --- lifecycle -----------------------------------------------------------------------------

    async def run(self) -> None:
        """Connect and reconnect until `stop()`, then say bye."""
        try:
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                nursery.start_soon(self.client.run)
                if self.on_change is not None:
                    nursery.start_soon(self._report, self.on_change)
                await self._stop.wait()
                with trio.move_on_after(1):
                    await self.client.aclose()
                nursery.cancel_scope.cancel()
        finally:
            self.gone.set()

    async def _report(self, on_change: Callable[[Peer, bool], None]) -> None:
        while True:
            await self.client.wait_until(lambda: self.connected)
            on_change(self, True)
            await self.client.wait_disconnected()
            on_change(self, False)

    def stop(self) -> None:
        self._stop.set()

    @property
    def stopping(self) -> bool:
        """Dropped by the REPL (its loss is not news)."""
        return self._stop.is_set()

    async def wait_lost(self) -> str:
        """Until the connection drops or the peer is dropped; returns why."""
        async with trio.open_nursery() as nursery:
            reason = ""

            async def lost() -> None:
                nonlocal reason
                await self.client.wait_disconnected()
                reason = f"{self.name} disconnected"
                nursery.cancel_scope.cancel()

            async def gone() -> None:
                nonlocal reason
                await self.gone.wait()
                reason = f"{self.name} is gone"
                nursery.cancel_scope.cancel()

            nursery.start_soon(lost)
            nursery.start_soon(gone)
        return reason


class Peers:
    """Every peer, keyed by where it came from (an ``.addr`` file or a command-line address)."""

    def __init__(
        self,
        nursery: trio.Nursery,
        repl_id: str,
        *,
        connect_timeout: float = 3.0,
        call_timeout: float = 3.0,
        on_change: Callable[[Peer, bool], None] | None = None,
    ) -> None:
        self._nursery = nursery
        self.repl_id = repl_id
        self.connect_timeout = connect_timeout
        self.call_timeout = call_timeout
        self.on_change = on_change
        self._by_key: dict[str, Peer] = {}
        self._counter = 0
        self._hash = repl_id.removeprefix("repl-")

    def __iter__(self) -> Iterator[Peer]:
        """In listing order: connected machines by id, then the rest by name."""
        return iter(sorted(self._by_key.values(), key=lambda p: (not p.id, p.name)))

    def __len__(self) -> int:
        return len(self._by_key)

    def get(self, key: str) -> Peer | None:
        return self._by_key.get(key)

    def add(self, key: str, addr: str, source: Path | None = None) -> Peer:
        """Connect to `addr` (replacing the peer that had `key`); `source`: its ``.addr`` file."""
        self.drop(key)
        self._counter += 1
        peer = Peer(
            addr,
            client_id=f"{self._hash}-{self._counter}",
            repl_id=self.repl_id,
            connect_timeout=self.connect_timeout,
            call_timeout=self.call_timeout,
            on_change=self.on_change,
            source=source,
        )
        self._by_key[key] = peer
        self._nursery.start_soon(peer.run)
        return peer

    def drop(self, key: str) -> Peer | None:
        peer = self._by_key.pop(key, None)
        if peer is not None:
            peer.stop()
        return peer

    def keys(self) -> list[str]:
        return list(self._by_key)

    async def settle(self, timeout: float) -> None:
        """Until every peer is connected or has failed once, at most `timeout` seconds."""
        with trio.move_on_after(timeout):
            for peer in list(self._by_key.values()):
                await peer.wait_settled()
