"""The relay's ASGI application: static files over HTTP, tunnels over WebSocket.

Every refusal happens here, before a socket is opened, and answers the upgrade with a plain
HTTP status and a one-line reason: 400 bad path, 401 token, 403 origin or target, 404 unknown
path, 503 too many tunnels.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from relay.addrfile import check_id, wants_addr_file
from relay.matchers import BadPath, parse_tunnel_path
from relay.security import check_token, pick_subprotocol
from relay.static import serve_static
from relay.wsstream import WebSocketStream

if TYPE_CHECKING:
    from relay.server import Relay


class RelayApp:
    """ASGI 3 application bound to one :class:`relay.server.Relay`."""

    def __init__(self, relay: Relay) -> None:
        self.relay = relay

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        kind = scope["type"]
        if kind == "http":
            await serve_static(self.relay.config.static_dir, scope, send)
        elif kind == "websocket":
            await self._websocket(scope, receive, send)
        elif kind == "lifespan":
            await _lifespan(receive, send)

    async def _websocket(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        ws = WebSocketStream(scope, receive, send)
        if not await ws.wait_connect():
            return
        relay = self.relay
        config = relay.config
        try:
            request = parse_tunnel_path(scope["path"])
        except BadPath as err:
            await ws.deny(400, f"bad tunnel path: {err}")
            return
        if request is None:
            await ws.deny(404, "not found: tunnels are /listen/<id>/<host:port> and /dial/...")
            return
        headers = {k.lower(): v.decode("latin-1") for k, v in scope["headers"]}
        reason = relay.origin_policy.check(headers.get(b"origin"), headers.get(b"host"))
        if reason is not None:
            await ws.deny(403, reason)
            return
        offered = list(scope.get("subprotocols") or [])
        reason = check_token(config.token, offered)
        if reason is not None:
            await ws.deny(401, reason)
            return
        matcher = relay.find_matcher(request)
        if matcher is None and not config.target_allowed(request.target):
            await ws.deny(403, f"target {request.addr} is not on the allow-list")
            return
        if request.kind == "listen" and config.repl_addr_dir and wants_addr_file(request.id):
            try:
                check_id(request.id)
            except ValueError as err:
                await ws.deny(400, f"bad tunnel path: {err}")
                return
        reason = relay.capacity_problem()
        if reason is not None:
            await ws.deny(503, reason)
            return
        await relay.run_tunnel(ws, request, pick_subprotocol(offered), matcher)


async def _lifespan(receive: Any, send: Any) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return
