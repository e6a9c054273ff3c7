"""Mux: many clients on one port, a fresh Server per connection (a Server takes one client)."""

from __future__ import annotations

import itertools
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import trio

from .errors import RpcNotConnected
from .protocol import ERROR, brief_error, encode_frame
from .server import Server
from .states import MUX_SCHEMA, mark, new_machine
from .transport import parse_addr, unwrap_group

log = logging.getLogger("machines.rpc")


#: Connections a mux serves at once; see Mux.handle_stream for what happens above it.
DEFAULT_MAX_CONNS = 1000


class Mux:
    """Accepts connections and serves each with its own Server bound to the same source."""

    def __init__(
        self,
        source: Any,
        *,
        name: str | None = None,
        factory: Callable[[Mux, str], Server] | None = None,
        max_conns: int = DEFAULT_MAX_CONNS,
        **server_opts: Any,
    ) -> None:
        """`factory(mux, server_id)` builds a custom Server, else `Server(source, **opts)`.
        `max_conns`: connections served at once (see `handle_stream`)."""
        if max_conns < 1:
            raise ValueError("max_conns must be at least 1")
        self.source = source
        self.name = name or (source.id if source is not None else "rpc")
        self.id = f"rm-{self.name}"
        self.addr = ""
        self.servers: list[Server] = []
        self.max_conns = max_conns
        self.accepted = 0
        self.refused = 0  # connections turned away: every slot held by a handshaken client
        self.evicted = 0  # connections closed to make room: they had not said hello yet
        self._waiting: dict[Server, None] = {}  # no handshake yet, oldest first
        self._evicting: set[Server] = set()  # told to go, not gone yet
        self._factory = factory
        self._server_opts = server_opts
        self._counter = itertools.count(1)
        self._changed = trio.Event()
        self.mach = new_machine(MUX_SCHEMA, self.id, ["rpc-mux"], parent=source)

    def new_server(self) -> Server:
        sid = f"{self.name}-{next(self._counter)}"
        if self._factory is not None:
            return self._factory(self, sid)
        return Server(self.source, id=f"rs-{sid}", parent=self.mach, **self._server_opts)

    async def handle_stream(self, stream: trio.abc.Stream, peer: str = "") -> None:
        """Serve one already-connected stream (TCP, WebSocket, in-memory) until it ends.

        With `max_conns` connections open, the oldest one that has not said hello yet is
        closed to make room (idle sockets cannot lock clients out); if every one is
        handshaken, the new connection gets an error frame "server full" and is closed.
        """
        self.accepted += 1
        if len(self.servers) - len(self._evicting) >= self.max_conns:
            if not self._waiting:
                await self._refuse(stream, peer)
                return
            victim = next(iter(self._waiting))
            self._waiting.pop(victim)
            self._evicting.add(victim)
            self.evicted += 1
            victim.refuse(f"evicted: the server is full ({self.max_conns} connections)")
        mark(self.mach, "add", ["ClientConnected", "HasClients"], {"addr": peer})
        try:
            server = self.new_server()
        except Exception as err:
            log.warning("rpc mux %s: server factory failed: %s", self.id, brief_error(err))
            await stream.aclose()
            return
        self.servers.append(server)
        self._waiting[server] = None
        server.on_handshake.append(lambda: self._waiting.pop(server, None))
        server.on_handshake.append(self._notify)
        self._notify()
        try:
            await server.serve(stream, peer or _peer_of(stream))
        except Exception as err:  # a bug hit by one connection must not end the listener
            why = brief_error(err)
            log.warning("rpc mux %s: connection %s failed: %s", self.id, server.id, why)
        finally:
            self._waiting.pop(server, None)
            self._evicting.discard(server)
            self.servers.remove(server)
            if not self.servers:
                mark(self.mach, "remove", "HasClients")
            self._notify()

    async def _refuse(self, stream: trio.abc.Stream, peer: str) -> None:
        self.refused += 1
        reason = f"server full: {self.max_conns} connections"
        if self.refused & (self.refused - 1) == 0:  # 1st, 2nd, 4th...: a flood logs little
            log.warning(
                "rpc mux %s: refused %s (%d so far): %s",
                self.id,
                peer or _peer_of(stream),
                self.refused,
                reason,
            )
        with trio.move_on_after(1):
            try:
                await stream.send_all(encode_frame([ERROR, 0, reason]))
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                pass
        with trio.CancelScope(shield=True), trio.move_on_after(1):
            await stream.aclose()

    def _notify(self) -> None:
        self._changed.set()
        self._changed = trio.Event()

    async def wait_clients(self, count: int) -> None:
        """Until `count` clients are connected and handshaken."""
        while True:
            changed = self._changed
            if sum(s.handshake_done.is_set() for s in self.servers) >= count:
                return
            await changed.wait()

    async def wait_idle(self) -> None:
        """Until no connection is left (every client said bye or went away)."""
        while True:
            changed = self._changed
            if not self.servers:
                return
            await changed.wait()

    def server_for(self, client_id: str) -> Server:
        for srv in self.servers:
            if srv.client_id == client_id:
                return srv
        raise RpcNotConnected(f"mux {self.id}: no client {client_id!r}")

    def send_payload(self, client_id: str, name: str, data: Any, *, source: str = "") -> str:
        return self.server_for(client_id).send_payload(name, data, source=source)


def _peer_of(stream: Any) -> str:
    sock = getattr(stream, "socket", None)
    try:
        host, port = sock.getpeername()[:2]  # type: ignore[union-attr]  # None: caught below
    except Exception:
        return ""
    return f"{host}:{port}"


@asynccontextmanager
async def serve(source: Any, addr: str = "127.0.0.1:0", **opts: Any) -> AsyncIterator[Mux]:
    """Listen on `addr` ("host:port", port 0 picks one) and serve `source` to every client.

    `opts` go to Mux/Server: `push_interval`, `allow_id`, `max_frame`, `handshake_timeout`
    (seconds, default 10), `max_conns` (default 1000), `name`, `factory`.
    Leaving the block closes the listener and every connection.
    """
    host, port = parse_addr(addr)
    mux = Mux(source, **opts)
    listeners = await trio.open_tcp_listeners(port, host=host)
    if port == 0 and len(listeners) > 1:
        # "localhost:0" may bind IPv4 and IPv6 on different random ports: keep one, so that
        # mux.addr names every listener
        for extra in listeners[1:]:
            await extra.aclose()
        listeners = listeners[:1]
    bound = listeners[0].socket.getsockname()
    mux.addr = f"{host}:{bound[1]}"
    mark(mux.mach, "add", "Start")
    try:
        with unwrap_group():
            async with trio.open_nursery() as nursery:
                await nursery.start(trio.serve_listeners, mux.handle_stream, listeners)
                log.info("rpc mux %s: listening on %s", mux.id, mux.addr)
                mark(mux.mach, "add", "Ready", {"addr": mux.addr})
                try:
                    yield mux
                finally:
                    nursery.cancel_scope.cancel()
    finally:
        mux.mach.dispose()
