"""What the relay does with one HTTP request: static files, or a tunnel over WebSocket.

Every refusal happens here, before a socket is opened, and answers the upgrade with a plain
HTTP status and a one-line reason: 400 bad path or handshake, 401 token, 403 origin or target,
404 unknown path, 429 too many tunnels from one client, 503 too many tunnels.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import trio
from websockets.datastructures import MultipleValuesError
from websockets.exceptions import InvalidHeader
from websockets.headers import parse_subprotocol
from websockets.http11 import Request

from relay.addrfile import check_id, wants_addr_file
from relay.connection import Connection, is_upgrade, serve_one
from relay.matchers import BadPath, parse_tunnel_path
from relay.security import check_token
from relay.static import serve_static
from relay.wsstream import WebSocketStream

if TYPE_CHECKING:
    from relay.server import Relay

log = logging.getLogger("relay")


async def handle_connection(relay: Relay, stream: trio.SocketStream) -> None:
    """Serve one client connection: read its request, answer it, close it."""

    async def route(conn: Connection, request: Request, path: str) -> None:
        if is_upgrade(request):
            await _websocket(relay, conn, request, path)
        else:
            config = relay.config
            await serve_static(
                config.static_dir, conn, request, path, config.documents, config.static_only
            )

    await serve_one(Connection(stream, relay.config.max_message), route, log)


def _single(request: Request, name: str) -> str | None:
    """One header's value; a repeated header is a bad request (ValueError)."""
    try:
        return request.headers.get(name)
    except MultipleValuesError:
        raise ValueError(f"more than one {name} header") from None


async def _websocket(relay: Relay, conn: Connection, request: Request, path: str) -> None:
    config = relay.config
    try:
        tunnel_request = parse_tunnel_path(path)
    except BadPath as err:
        await conn.reject(400, f"bad tunnel path: {err}")
        return
    if tunnel_request is None:
        await conn.reject(404, "not found: tunnels are /listen/<id>/<host:port> and /dial/...")
        return
    try:
        origin = _single(request, "Origin")
        host = _single(request, "Host")
        values = request.headers.get_all("Sec-WebSocket-Protocol")
        offered = [proto for value in values for proto in parse_subprotocol(value)]
    except (ValueError, InvalidHeader) as err:
        await conn.reject(400, f"bad WebSocket handshake: {err}")
        return
    reason = relay.origin_policy.check(origin, host)
    if reason is not None:
        await conn.reject(403, reason)
        return
    reason = check_token(config.token, offered)
    if reason is not None:
        await conn.reject(401, reason)
        return
    matcher = relay.find_matcher(tunnel_request)
    if matcher is None and not config.target_allowed(tunnel_request.target):
        await conn.reject(403, f"target {tunnel_request.addr} is not on the allow-list")
        return
    if (
        tunnel_request.kind == "listen"
        and config.repl_addr_dir
        and wants_addr_file(tunnel_request.id)
    ):
        try:
            check_id(tunnel_request.id)
        except ValueError as err:
            await conn.reject(400, f"bad tunnel path: {err}")
            return
    reason = relay.capacity_problem()
    if reason is not None:
        await conn.reject(503, reason)
        return
    peer = conn.peer_host
    reason = relay.peer_problem(peer)
    if reason is not None:
        await conn.reject(429, reason)
        return
    # The rest of the handshake (key, version, method), checked now, answered by the tunnel.
    ws = await WebSocketStream.upgrade(conn, request)
    if ws is not None:
        await relay.run_tunnel(ws, tunnel_request, matcher, peer)
