"""Run the relay inside a trio nursery; the library entry points.

```python
async with open_relay(RelayConfig(listen_addr="localhost:0", allow=("127.0.0.1:*",))) as relay:
    print(relay.url)                       # http://127.0.0.1:PORT
    relay.add_matcher("dial", r"^browser-foo-", handler)
```
or ``relay = await nursery.start(serve_relay, config)``. Leaving the block (or cancelling
``serve_relay``) closes every tunnel with 1001, removes address files, then stops HTTP.
"""

from __future__ import annotations

import logging
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import trio
from hypercorn.config import Config as HyperConfig
from hypercorn.trio import serve

from relay.addrfile import remove_addr_file
from relay.app import RelayApp
from relay.config import HostPort, RelayConfig, parse_hostport
from relay.matchers import Handler, Matcher, TunnelKind, TunnelRequest, make_matcher
from relay.security import OriginPolicy, own_origins
from relay.tunnel import CLEANUP_TIMEOUT, Tunnel, run_dial, run_listen, run_matched
from relay.wsstream import NORMAL, WebSocketStream

log = logging.getLogger("relay")

#: Messages hypercorn may queue per WebSocket before it stops reading the socket.
_APP_QUEUE = 4


class Relay:
    """A running relay: its address, its tunnels, and the matcher registry."""

    def __init__(self, config: RelayConfig) -> None:
        self.config = config
        #: ``host:port`` actually bound (port 0 resolved), set once serving.
        self.addr = ""
        self.origin_policy = OriginPolicy(config.allow_origins, frozenset(), False)
        self._matchers: list[Matcher] = []
        self._tunnels: set[Tunnel] = set()
        self._listening: dict[HostPort, Tunnel] = {}
        self._listen_lock = trio.Lock()
        self._closing = False
        self._http_stop = trio.Event()
        self._http_done = trio.Event()

    @property
    def url(self) -> str:
        """``http://host:port/`` of the page and the tunnels."""
        return f"http://{self.addr}/"

    @property
    def tunnels(self) -> list[Tunnel]:
        """Tunnels open right now."""
        return list(self._tunnels)

    # Matchers

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

    async def run_tunnel(
        self,
        ws: WebSocketStream,
        request: TunnelRequest,
        subprotocol: str | None,
        matcher: Matcher | None,
    ) -> None:
        """Serve one accepted-for-checking WebSocket as a tunnel until it ends."""
        tunnel = Tunnel(request, ws, subprotocol)
        self._tunnels.add(tunnel)
        log.info("tunnel %s %r to %s opened", request.kind, request.id, request.addr)
        try:
            with tunnel.cancel_scope:
                if matcher is not None:
                    await run_matched(tunnel, matcher)
                elif request.kind == "dial":
                    await run_dial(tunnel, self.config)
                else:
                    await self._claim_listen(tunnel)
                    await run_listen(tunnel, self.config)
        finally:
            self._tunnels.discard(tunnel)
            if self._listening.get(request.target) is tunnel:
                del self._listening[request.target]
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

    async def _claim_listen(self, tunnel: Tunnel) -> None:
        """A new listen tunnel for a fixed address replaces the old one (the browser
        reconnected); wait until the old one has freed the port."""
        target = tunnel.request.target
        if target.port == 0:
            return
        async with self._listen_lock:
            old = self._listening.get(target)
            if old is not None:
                old.stop(NORMAL, "replaced by a new tunnel for the same address")
                with trio.move_on_after(CLEANUP_TIMEOUT):
                    await old.port_freed.wait()
            self._listening[target] = tunnel

    # Life cycle

    async def aclose(self) -> None:
        """Close every tunnel (1001, address files removed), then stop serving HTTP."""
        if self._closing:
            await self._http_done.wait()
            return
        self._closing = True
        with trio.CancelScope(shield=True):
            tunnels = list(self._tunnels)
            for tunnel in tunnels:
                tunnel.stop()
            with trio.move_on_after(CLEANUP_TIMEOUT + 1):
                for tunnel in tunnels:
                    await tunnel.done.wait()
            # A tunnel can be stuck writing to a browser that stopped reading (the server
            # shields socket writes); its address file must go all the same.
            for tunnel in tunnels:
                if tunnel.addr_file is not None and tunnel.bound_addr is not None:
                    remove_addr_file(tunnel.addr_file, tunnel.bound_addr)
            self._http_stop.set()
            with trio.move_on_after(CLEANUP_TIMEOUT + 1):
                await self._http_done.wait()


@asynccontextmanager
async def open_relay(config: RelayConfig | None = None) -> AsyncIterator[Relay]:
    """Serve the relay for the duration of the ``async with`` block.

    Leaving closes every tunnel with 1001 and removes address files within a few seconds; the
    block then still waits for connections whose browser stopped reading (the HTTP server
    shields its socket writes), which end when that browser reads or goes away.
    """
    relay = Relay(config or RelayConfig())
    async with trio.open_nursery() as nursery:
        binds = await nursery.start(_run_hypercorn, relay)
        _set_bound(relay, binds[0])
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


async def _run_hypercorn(relay: Relay, *, task_status: trio.TaskStatus[list[str]]) -> None:
    config = relay.config
    hyper = HyperConfig()
    hyper.bind = [config.listen_addr]
    hyper.websocket_max_message_size = config.max_message
    hyper.max_app_queue_size = _APP_QUEUE
    hyper.graceful_timeout = 1.0
    hyper.accesslog = None
    hyper.errorlog = logging.getLogger("relay.http")
    try:
        await serve(
            RelayApp(relay), hyper, shutdown_trigger=relay._http_stop.wait, task_status=task_status
        )
    finally:
        relay._http_done.set()


def _set_bound(relay: Relay, bind: str) -> None:
    """Record the bound address and derive the relay's own origins from it."""
    relay.addr = bind.split("://", 1)[1]
    bound = parse_hostport(relay.addr)
    asked = parse_hostport(relay.config.listen_addr)
    wildcard = asked.host in ("", "0.0.0.0", "::")
    relay.origin_policy = OriginPolicy(
        relay.config.allow_origins, own_origins([asked.host, bound.host], bound.port), wildcard
    )
