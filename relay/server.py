"""Run the relay inside a trio nursery; the library entry points.

```python
async with open_relay(RelayConfig(listen_addr="localhost:0", allow=("127.0.0.1:*",))) as relay:
    print(relay.url)                       # http://127.0.0.1:PORT
    relay.add_matcher("dial", r"^browser-foo-", handler)
```
or ``relay = await nursery.start(serve_relay, config)``. Leaving the block (or cancelling
``serve_relay``) closes every tunnel with 1001, removes address files, then stops HTTP.

The HTTP side is a plain trio accept loop: one task per connection (:mod:`relay.app`), each
driving the sans-I/O ``websockets`` protocol over its socket (:mod:`relay.connection`). Once a
tunnel's two sockets are connected, a worker thread pumps its bytes (:mod:`relay.pump`).
"""

from __future__ import annotations

import errno
import logging
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial

import trio

from relay.addrfile import remove_addr_file, wants_addr_file
from relay.app import handle_connection
from relay.config import HostPort, RelayConfig, format_hostport, parse_hostport
from relay.connection import LINGER_TIMEOUT
from relay.matchers import Handler, Matcher, TunnelKind, TunnelRequest, make_matcher
from relay.parking import HeldListener, Parking
from relay.security import OriginPolicy, own_origins
from relay.tunnel import CLEANUP_TIMEOUT, Tunnel, open_listener, run_dial, run_listen, run_matched
from relay.wsstream import GOING_AWAY, NORMAL, WebSocketStream

log = logging.getLogger("relay")

#: Pending connections the kernel queues for the accept loop.
_BACKLOG = 128
#: accept() errors that mean "out of resources for now": wait a little and go on.
_ACCEPT_RETRY = {errno.EMFILE, errno.ENFILE, errno.ENOMEM, errno.ENOBUFS}


class Relay:
    """A running relay: its address, its tunnels, and the matcher registry."""

    def __init__(self, config: RelayConfig) -> None:
        self.config = config
        #: ``host:port`` actually bound (port 0 resolved), set once serving.
        self.addr = ""
        self.origin_policy = OriginPolicy(config.allow_origins, frozenset(), False)
        self._matchers: list[Matcher] = []
        self._tunnels: set[Tunnel] = set()
        self._per_peer: dict[str, int] = {}  # client address -> tunnels it holds
        #: Listen tunnels by fixed target, and ``repl-`` ones by id: a newer one replaces them.
        self._listening: dict[HostPort | str, Tunnel] = {}
        self._parking = Parking(config.repl_grace, config.max_tunnels)
        self._listen_lock = trio.Lock()
        self._closing = False
        self._http_stop = trio.Event()
        self._http_done = trio.Event()
        self._connections = 0
        self._connections_changed = trio.Event()

    @property
    def url(self) -> str:
        """``http://host:port/`` of the page and the tunnels."""
        return f"http://{self.addr}/"

    @property
    def tunnels(self) -> list[Tunnel]:
        """Tunnels open right now."""
        return list(self._tunnels)

    @property
    def parked(self) -> list[str]:
        """Ids of ``repl-`` listen tunnels whose listener waits for the id's next tunnel."""
        return list(self._parking)

    # Matchers

    async def wait_idle(self, at_most: int = 0) -> None:
        """Return once at most ``at_most`` tunnels are open: waits on the tunnels' ``done``
        events (set when a tunnel has ended), no polling."""
        while len(self._tunnels) > at_most:
            await next(iter(self._tunnels)).done.wait()

    def add_matcher(
        self, kind: TunnelKind, pattern: str | re.Pattern[str], handler: Handler
    ) -> Matcher:
        """Route ``kind`` tunnels whose id matches ``pattern`` to ``handler`` (first added wins).

        The handler gets a :class:`relay.wsstream.WebSocketStream` and the request; no socket
        is opened, so the target allow-list does not apply (Origin and token checks do).
        """
        matcher = make_matcher(kind, pattern, handler)
        self._matchers.append(matcher)
        return matcher

    def remove_matcher(self, matcher: Matcher) -> None:
        self._matchers.remove(matcher)

    def find_matcher(self, request: TunnelRequest) -> Matcher | None:
        return next((m for m in self._matchers if m.matches(request)), None)

    # Tunnels

    def capacity_problem(self) -> str | None:
        if self._closing:
            return "relay shutting down"
        if len(self._tunnels) >= self.config.max_tunnels:
            return f"too many tunnels (at most {self.config.max_tunnels})"
        return None

    def peer_problem(self, peer: str) -> str | None:
        """Why ``peer`` (a client address) may not open one more tunnel, if so."""
        limit = self.config.max_tunnels_per_peer
        if limit is not None and self._per_peer.get(peer, 0) >= limit:
            return f"too many tunnels from {peer} (at most {limit} per client)"
        return None

    async def run_tunnel(
        self,
        ws: WebSocketStream,
        request: TunnelRequest,
        matcher: Matcher | None,
        peer: str = "",
    ) -> None:
        """Serve one checked (not yet accepted) WebSocket as a tunnel until it ends;
        ``peer`` is the client's address (its share of ``max_tunnels_per_peer``)."""
        tunnel = Tunnel(request, ws)
        self._tunnels.add(tunnel)
        self._per_peer[peer] = self._per_peer.get(peer, 0) + 1
        log.info("tunnel %s %r to %s opened", request.kind, request.id, request.addr)
        try:
            with tunnel.cancel_scope:
                if matcher is not None:
                    await run_matched(tunnel, matcher)
                elif request.kind == "dial":
                    await run_dial(tunnel, self.config)
                else:
                    held = await self._claim_listen(tunnel)
                    park = None
                    if self._keeps_listener(request):
                        park = partial(self._park, tunnel)
                    await run_listen(tunnel, self.config, held, park)
        except trio.Cancelled:
            # Not our own scope: the relay itself is being cancelled.
            tunnel.end(GOING_AWAY, "relay shutting down")
            raise
        finally:
            self._tunnels.discard(tunnel)
            peer_tunnels = self._per_peer.pop(peer, 1) - 1
            if peer_tunnels:
                self._per_peer[peer] = peer_tunnels
            for key in (request.target, request.id):
                if self._listening.get(key) is tunnel:
                    del self._listening[key]
            tunnel.port_freed.set()
            with trio.CancelScope(shield=True), trio.move_on_after(CLEANUP_TIMEOUT):
                await ws.close(tunnel.close_code, tunnel.close_reason)
            tunnel.done.set()
            log.info(
                "tunnel %s %r to %s closed: %d %s",
                request.kind,
                request.id,
                request.addr,
                tunnel.close_code,
                tunnel.close_reason,
            )

    def _keeps_listener(self, request: TunnelRequest) -> bool:
        """Does this listen tunnel's listener outlive it (:mod:`relay.parking`)?"""
        return self.config.repl_grace > 0 and wants_addr_file(request.id)

    def _listen_keys(self, request: TunnelRequest) -> list[HostPort | str]:
        keys: list[HostPort | str] = []
        if request.target.port != 0:
            keys.append(request.target)
        if self._keeps_listener(request):
            keys.append(request.id)
        return keys

    async def _claim_listen(self, tunnel: Tunnel) -> HeldListener | None:
        """A new listen tunnel for a fixed address, or for a ``repl-`` id, replaces the old
        one (the browser reconnected): wait until the old one has let go of its listener.
        Returns the listener to use: the one the id's earlier tunnel left parked, or the one
        of the id's tunnels that serve a peer now.

        A ``repl-`` id's tunnel that serves a peer (a REPL) is not replaced: the new tunnel
        shares its listener and takes the next peer, so a tab serves one REPL per tunnel it
        opens, at once (the tab opens one more whenever a REPL comes in)."""
        request = tunnel.request
        keys = self._listen_keys(request)
        if not keys:
            return None
        keeps = self._keeps_listener(request)
        async with self._listen_lock:
            for key in keys:
                old = self._listening.get(key)
                if old is None or (keeps and old.serving and old.request.id == request.id):
                    continue
                what = "address" if isinstance(key, HostPort) else "id"
                old.stop(NORMAL, f"replaced by a new tunnel for the same {what}")
                with trio.move_on_after(CLEANUP_TIMEOUT):
                    await old.port_freed.wait()
            for key in keys:
                self._listening[key] = tunnel
            held = None
            if keeps:
                held = self._serving_listener(request) or self._parking.take(
                    request.id, request.target
                )
            if held is None and request.target.port != 0:
                self._parking.drop_target(request.target)  # another id's, on our port
            return held

    def _serving_listener(self, request: TunnelRequest) -> HeldListener | None:
        """The listener of a tunnel of ``request``'s id and target that serves a peer."""
        for other in self._tunnels:
            held = other.held
            if (
                other.serving
                and other.request.id == request.id
                and held is not None
                and held.users
                and held.target == request.target
            ):
                return held
        return None

    def _park(self, tunnel: Tunnel, held: HeldListener) -> bool:
        """Keep a ``repl-`` tunnel's listener for the id's next tunnel, unless a newer tunnel
        already owns the id with a listener of its own (it bound one when this tunnel was
        slow to let go)."""
        owner = self._listening.get(tunnel.request.id)
        if self._closing or (owner is not None and owner.held is not held):
            return False
        return self._parking.park(tunnel.request.id, held)

    # Life cycle

    async def aclose(self) -> None:
        """Close every tunnel (1001, address files removed), then stop serving HTTP."""
        if self._closing:
            await self._http_done.wait()
            return
        self._closing = True
        self._parking.close()
        with trio.CancelScope(shield=True):
            tunnels = list(self._tunnels)
            for tunnel in tunnels:
                tunnel.stop()
            with trio.move_on_after(CLEANUP_TIMEOUT + 1):
                for tunnel in tunnels:
                    await tunnel.done.wait()
            # Address files go even if a tunnel did not finish in time.
            for tunnel in tunnels:
                if tunnel.addr_file is not None and tunnel.bound_addr is not None:
                    remove_addr_file(tunnel.addr_file, tunnel.bound_addr)
            self._http_stop.set()
            with trio.move_on_after(CLEANUP_TIMEOUT + 1):
                await self._http_done.wait()


@asynccontextmanager
async def open_relay(config: RelayConfig | None = None) -> AsyncIterator[Relay]:
    """Serve the relay for the duration of the ``async with`` block.

    Leaving closes every tunnel with 1001, removes address files and frees the port within a
    few seconds, even when a browser stopped reading: every write can be interrupted.
    """
    relay = Relay(config or RelayConfig())
    async with trio.open_nursery() as nursery:
        listener = await open_listener(parse_hostport(relay.config.listen_addr), _BACKLOG)
        _set_bound(relay, listener)
        nursery.start_soon(relay._parking.run)
        await nursery.start(_serve_http, relay, listener)
        try:
            yield relay
        finally:
            await relay.aclose()
            nursery.cancel_scope.cancel()


async def serve_relay(
    config: RelayConfig | None = None,
    *,
    task_status: trio.TaskStatus[Relay] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve until cancelled; ``await nursery.start(serve_relay, config)`` gives the Relay."""
    async with open_relay(config) as relay:
        task_status.started(relay)
        await trio.sleep_forever()


async def _serve_http(
    relay: Relay, listener: trio.SocketListener, *, task_status: trio.TaskStatus[None]
) -> None:
    """Accept connections until the relay stops; then let open ones finish (bounded)."""
    try:
        async with trio.open_nursery() as connections:
            with trio.CancelScope() as accepting:
                task_status.started()
                connections.start_soon(_until_stop, relay, accepting)
                await _accept_loop(relay, listener, connections)
            with trio.CancelScope(shield=True):
                await listener.aclose()  # the port is free from here on
                with trio.move_on_after(LINGER_TIMEOUT + 1):
                    while relay._connections:
                        relay._connections_changed = trio.Event()
                        await relay._connections_changed.wait()
            connections.cancel_scope.cancel()
    finally:
        with trio.CancelScope(shield=True):
            await listener.aclose()
        relay._http_done.set()


async def _until_stop(relay: Relay, accepting: trio.CancelScope) -> None:
    await relay._http_stop.wait()
    accepting.cancel()


async def _accept_loop(
    relay: Relay, listener: trio.SocketListener, connections: trio.Nursery
) -> None:
    while True:
        try:
            stream = await listener.accept()
        except OSError as err:
            if err.errno not in _ACCEPT_RETRY:
                raise
            log.warning("relay cannot accept a connection now: %s", err)
            await trio.sleep(0.1)
            continue
        connections.start_soon(_connection, relay, stream)


async def _connection(relay: Relay, stream: trio.SocketStream) -> None:
    relay._connections += 1
    try:
        await handle_connection(relay, stream)
    finally:
        relay._connections -= 1
        relay._connections_changed.set()


def _set_bound(relay: Relay, listener: trio.SocketListener) -> None:
    """Record the bound address and derive the relay's own origins from it."""
    host, port = listener.socket.getsockname()[:2]
    relay.addr = format_hostport(host, port)
    bound = parse_hostport(relay.addr)
    asked = parse_hostport(relay.config.listen_addr)
    wildcard = asked.host in ("", "0.0.0.0", "::")
    relay.origin_policy = OriginPolicy(
        relay.config.allow_origins, own_origins([asked.host, bound.host], bound.port), wildcard
    )
