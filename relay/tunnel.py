"""Tunnels: pipe bytes between one WebSocket and one TCP connection, both ways.

A tunnel ends as soon as either side ends, and the other side learns it at once: when the TCP
peer leaves, the WebSocket is closed with 1000 and the listening port is already free (a
``repl-`` id's listener waits for the id's next tunnel instead: :mod:`relay.parking`); when
the WebSocket goes, the TCP connection is closed. Once both sides are connected, a worker
thread moves the bytes (:mod:`relay.pump`), one socket read at a time per direction, so memory
per tunnel stays bounded whatever the speed of either side; everything else stays on trio.
"""

from __future__ import annotations

import logging
import math
import socket
from collections import deque
from collections.abc import Callable
from pathlib import Path

import trio

from relay import fastio
from relay.addrfile import wants_addr_file, write_addr_file
from relay.config import HostPort, RelayConfig, format_hostport
from relay.connection import READ_SIZE
from relay.matchers import Matcher, TunnelRequest
from relay.parking import HeldListener
from relay.pump import Pump
from relay.wsstream import GOING_AWAY, INTERNAL_ERROR, NORMAL, POLICY_VIOLATION, WebSocketStream

log = logging.getLogger("relay")

#: TCP read size; each read becomes one WebSocket message. The same size as the WebSocket
#: side's reads, for the same reason (see ``relay.connection.READ_SIZE``).
TCP_CHUNK = READ_SIZE
#: Seconds the relay spends closing a tunnel (close frame, sockets, address file).
CLEANUP_TIMEOUT = 2.0
_TCP_ERRORS = (trio.BrokenResourceError, trio.ClosedResourceError, OSError)
#: Pump threads: one per established tunnel, as many as there are tunnels (the relay's
#: ``max_tunnels`` bounds them), never queued behind trio's default limit of 40.
_PUMP_THREADS = trio.CapacityLimiter(math.inf)
#: Connections a kept (``repl-``) listener queues while its current REPL is served or the tab
#: reconnects; the rest wait for the kernel's SYN retries.
KEPT_BACKLOG = 16


class Tunnel:
    """One live tunnel as the relay tracks it; ``stop`` ends it from outside."""

    def __init__(self, request: TunnelRequest, ws: WebSocketStream):
        self.request = request
        self.ws = ws
        self.cancel_scope = trio.CancelScope()
        #: The real TCP address a listen tunnel bound (port 0 resolved).
        self.bound_addr: str | None = None
        #: The REPL address file this tunnel wrote, if any.
        self.addr_file: Path | None = None
        #: The listener of a listen tunnel (shared by the tunnels of a ``repl-`` id).
        self.held: HeldListener | None = None
        #: A listen tunnel has its TCP peer: it no longer waits on the listener.
        self.serving = False
        #: Set once the tunnel no longer holds its listening socket: closed (the port is free
        #: again) or parked for the next tunnel of the same id.
        self.port_freed = trio.Event()
        #: Set once the tunnel is completely over.
        self.done = trio.Event()
        self.close_code = NORMAL
        self.close_reason = ""
        self._ended = False

    def __repr__(self) -> str:
        r = self.request
        return f"<Tunnel {r.kind} {r.id!r} {r.addr}>"

    def end(self, code: int, reason: str) -> None:
        """Record why the tunnel ends; the first reason wins."""
        if not self._ended:
            self._ended = True
            self.close_code, self.close_reason = code, reason

    def stop(self, code: int = GOING_AWAY, reason: str = "relay shutting down") -> None:
        self.end(code, reason)
        self.cancel_scope.cancel()


async def _read_ahead(
    tunnel: Tunnel,
    pending: deque[bytes],
    limit: int,
    reading: trio.CancelScope,
    nursery: trio.Nursery,
) -> None:
    """Before a listen tunnel has its TCP peer: keep reading the WebSocket (to notice the
    browser leaving) but hold at most ``limit`` bytes, then stop reading: backpressure, not
    buffering. The peer's arrival cancels ``reading``; a cancelled read loses no byte (what
    was read stays buffered in the WebSocket)."""
    ws = tunnel.ws
    held = 0
    with reading:
        try:
            while data := await ws.receive_some():
                pending.append(data)
                held += len(data)
                if held >= limit:
                    await trio.sleep_forever()
            tunnel.end(
                NORMAL, f"websocket closed by peer: {ws.peer_close_code} {ws.peer_close_reason}"
            )
        except trio.BrokenResourceError:
            if ws.close_code is not None:  # the WebSocket closed itself (1003, 1009, 1002)
                tunnel.end(ws.close_code, ws.close_reason)
            else:
                tunnel.end(NORMAL, "websocket broken")
        nursery.cancel_scope.cancel()


async def _refuse(tunnel: Tunnel, reason: str) -> None:
    """Accept, then close with 1011: a browser only sees close codes of accepted sockets."""
    request = tunnel.request
    log.info("tunnel %s %r to %s: %s", request.kind, request.id, request.addr, reason)
    tunnel.end(INTERNAL_ERROR, reason)
    await tunnel.ws.accept()


async def run_dial(tunnel: Tunnel, config: RelayConfig) -> None:
    """``/dial/``: connect to the target, then pipe."""
    target = tunnel.request.target
    try:
        with trio.fail_after(config.dial_timeout):
            tcp = await trio.open_tcp_stream(target.host, target.port)
    except (OSError, trio.TooSlowError) as err:
        await _refuse(tunnel, f"dial failed: {err or 'timeout'}")
        return
    async with tcp:
        await tunnel.ws.accept()
        await _pump(tunnel, tcp, config.idle_timeout)


async def _pump(tunnel: Tunnel, tcp: trio.SocketStream, idle_timeout: float | None) -> None:
    """Pipe both ways in a worker thread (:mod:`relay.pump`): no scheduler round per chunk.

    Cancelling (``Tunnel.stop``, the relay closing) wakes the thread, which returns at once;
    the thread is always waited for, so the sockets are never closed under it.
    """
    ws = tunnel.ws
    pump = ws.make_pump(tcp.socket.fileno(), TCP_CHUNK)
    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_wake_when_cancelled, pump)
            if idle_timeout is not None:
                nursery.start_soon(_end_if_idle, tunnel, pump, idle_timeout)
            result = await trio.to_thread.run_sync(pump.run, limiter=_PUMP_THREADS)
            nursery.cancel_scope.cancel()
    finally:
        pump.close()
    ended = await ws.settle_pump(result)
    if ended is not None:
        tunnel.end(*ended)


async def _end_if_idle(tunnel: Tunnel, pump: Pump, timeout: float) -> None:
    """A tunnel that carries no byte in its first ``timeout`` seconds only holds a slot."""
    await trio.sleep(timeout)
    if not pump.moved:
        tunnel.end(POLICY_VIOLATION, f"idle: no data in {timeout:g} s")
        pump.wake()


async def _wake_when_cancelled(pump: Pump) -> None:
    try:
        await trio.sleep_forever()
    finally:
        pump.wake()


async def open_listener(target: HostPort, backlog: int = 1) -> trio.SocketListener:
    """One listening socket on the target (IPv4 first for names like ``localhost``).

    One socket, not one per resolved address: with port 0 each would get a different port,
    and a tunnel has exactly one address to publish.
    """
    infos = await trio.socket.getaddrinfo(
        target.host, target.port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
    )
    if not infos:
        raise OSError(f"cannot resolve {target.host!r}")
    infos.sort(key=lambda info: info[0] != socket.AF_INET)
    family, type_, proto, _, sockaddr = infos[0]
    sock = trio.socket.socket(family, type_, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        await sock.bind(sockaddr)
        sock.listen(backlog)
    except BaseException:
        sock.close()
        raise
    return trio.SocketListener(sock)


async def run_listen(
    tunnel: Tunnel,
    config: RelayConfig,
    held: HeldListener | None = None,
    park: Callable[[HeldListener], bool] | None = None,
) -> None:
    """``/listen/``: listen on the target (or reuse ``held``, a listener kept from an earlier
    tunnel of the same id) for one TCP peer, then pipe.

    With ``park``, the listener stays bound while the peer is served (later peers queue, or
    are accepted by another tunnel of the id sharing ``held``) and is offered to ``park``
    when its last tunnel ends; it is closed if ``park`` refuses it.
    """
    request = tunnel.request
    if held is None:
        try:
            listener = await open_listener(request.target, KEPT_BACKLOG if park else 1)
        except OSError as err:
            tunnel.port_freed.set()
            await _refuse(tunnel, f"listen failed: {err}")
            return
        bound = listener.socket.getsockname()
        held = HeldListener(listener, request.target, format_hostport(bound[0], bound[1]))
    tunnel.bound_addr = held.addr
    tunnel.held = held
    held.users += 1
    try:
        if config.repl_addr_dir is not None and wants_addr_file(request.id):
            # Rewritten even when kept: the same address, atomically, so a file removed by
            # hand comes back; a REPL reading it sees the old content or the same new one.
            held.addr_file = write_addr_file(config.repl_addr_dir, request.id, held.addr)
            tunnel.addr_file = held.addr_file
        log.info("tunnel listen %r on %s", request.id, held.addr)
        await tunnel.ws.accept()
        await _listen_and_pipe(tunnel, held.listener, config.max_message, keep=park is not None)
    finally:
        held.users -= 1
        if not held.users and (park is None or not park(held)):
            held.close()
        tunnel.port_freed.set()


async def _listen_and_pipe(
    tunnel: Tunnel, listener: trio.SocketListener, limit: int, keep: bool
) -> None:
    ws = tunnel.ws
    pending: deque[bytes] = deque()
    reading = trio.CancelScope()
    async with trio.open_nursery() as nursery:
        stopped = trio.Event()

        async def read_ahead() -> None:
            try:
                await _read_ahead(tunnel, pending, limit, reading, nursery)
            finally:
                stopped.set()

        nursery.start_soon(read_ahead)
        # One TCP peer per tunnel: once it is in, the port is closed, so a second client is
        # refused at once instead of waiting forever; the browser opens a new tunnel for the
        # next. A kept listener stays open: the next client waits for the next tunnel.
        try:
            stream = await listener.accept()
        finally:
            if not keep:
                await listener.aclose()
                tunnel.port_freed.set()
        tunnel.serving = True
        async with stream:
            reading.cancel()
            await stopped.wait()
            pending.extend(ws.take_buffered())
            fd = stream.socket.fileno()
            try:
                for chunk in pending:
                    await fastio.send_all(fd, chunk)
            except _TCP_ERRORS as err:
                tunnel.end(NORMAL, f"tcp peer gone: {err}")
            else:
                if ws.closed:  # the browser left while the peer came: what it sent is out
                    reason = f"{ws.peer_close_code} {ws.peer_close_reason}"
                    tunnel.end(NORMAL, f"websocket closed by peer: {reason}")
                else:
                    await _pump(tunnel, stream, None)  # bytes may come any time: a REPL
        nursery.cancel_scope.cancel()


async def run_matched(tunnel: Tunnel, matcher: Matcher) -> None:
    """Hand the WebSocket to an in-process handler (no socket is opened)."""
    await tunnel.ws.accept()
    try:
        await matcher.handler(tunnel.ws, tunnel.request)
        tunnel.end(NORMAL, "handler done")
    except Exception as err:  # the handler's bug must not take the relay down
        ws = tunnel.ws
        if isinstance(err, trio.BrokenResourceError) and ws.close_code is not None:
            # The WebSocket closed itself (1003, 1009, 1002); that code stands.
            log.info("tunnel handler for %r: %s", tunnel.request.id, err)
            tunnel.end(ws.close_code, ws.close_reason)
            return
        log.warning("relay: tunnel handler for %r failed: %r", tunnel.request.id, err)
        tunnel.end(INTERNAL_ERROR, f"handler failed: {err!r}")
