"""Loop-agnostic aRPC endpoints for hosts that move the bytes themselves (the browser).

In the browser there is no trio and no socket: a WebSocket delivers messages through callbacks.
These endpoints take a `send(bytes)` callback and are fed with `receive(bytes)`; waiting works
under asyncio (Pyodide's loop) and trio alike. What the events mean lives in `core` and is
shared with the trio drivers (client.py, server.py), which own their streams, reconnect and pace
pushes with trio timers.

    client = ClientEndpoint("browser-foo", ws_send, source=bar_machine)
    client.connection_made()              # on open: sends the hello
    client.receive(data)                  # on every binary message
    client.connection_lost("closed")      # on close: pending calls fail at once
    await client.wait_connected(); await client.netmach.add("Msg", {"msg": "hi"})

    server = ServerEndpoint(bar_machine, ws_send, push_interval=0.001)
    server.connection_made(); server.receive(data); server.connection_lost("closed")
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any, Unpack

from .core import ClientCore, ClientOptions, ServerCore, export_source, log_connected, source_tuple
from .protocol import DEFAULT_MAX_FRAME, ProtocolError

__all__ = [
    "ClientEndpoint",
    "ServerEndpoint",
    "export_source",
    "log_connected",
    "source_tuple",
]

log = logging.getLogger("machines.rpc")


def _default_call_later(delay: float, fn: Callable[[], None]) -> None:
    import asyncio

    try:
        asyncio.get_running_loop().call_later(delay, fn)
    except RuntimeError:  # no asyncio loop (e.g. under trio without a scheduler given)
        fn()


def _send_queued(conn: Any, send: Callable[[bytes], Any]) -> None:
    """Hand what the protocol queued to the host's send callback."""
    if conn is not None:
        data = conn.data_to_send()
        if data:
            send(data)


class ClientEndpoint(ClientCore):
    """The client side: a NetMach mirrored from the peer, mutations sent to it."""

    def __init__(
        self, id: str, send: Callable[[bytes], Any], **opts: Unpack[ClientOptions]
    ) -> None:
        """`send(bytes)` hands outbound bytes to the transport; options: `ClientOptions`."""
        super().__init__(id, **opts)
        self._send_bytes = send

    def connection_made(self) -> None:
        """The transport is open: start the handshake."""
        self._open_session()
        self._flush()

    def connection_lost(self, reason: str = "connection closed") -> None:
        """The transport closed: every pending call fails now."""
        self._close_session(reason)
        self._waiters.check()

    def receive(self, data: bytes) -> bool:
        """Feed inbound bytes; False means the connection must be closed (reason logged)."""
        conn = self._conn
        if conn is None:
            return False
        try:
            end = self._feed(conn, data)
        except ProtocolError as err:
            log.warning("rpc client %s: bad input from server: %s", self.id, err)
            self._flush()  # the error frame saying why
            self.connection_lost(f"bad input from server: {err}")
            return False
        if self._conn is conn:
            self._flush()
        self._waiters.check()
        return not end

    def close(self) -> None:
        """Say bye (the transport is closed by the host)."""
        if self._conn is not None:
            self._conn.bye()
            self._flush()
            self.connection_lost("closed by the client")

    # driver hooks of the core
    _now = staticmethod(time.monotonic)  # no Python frame on the per-call path

    async def _await_call(self, seq: int, what: Any) -> Any:
        call = self._start_call(seq, what, None)  # woken by the check after each receive
        try:
            self._flush()
            if not await self._waiters.wait(lambda: call.done, self.call_timeout):
                raise self._timeout(what)
        finally:
            self._calls.pop(seq, None)
        return call.outcome()

    async def _send(self) -> None:
        self._flush()

    def _flush(self) -> None:
        _send_queued(self._conn, self._send_bytes)


class ServerEndpoint(ServerCore):
    """The server side: exposes `source` to the one peer on this transport."""

    def __init__(
        self,
        source: Any,
        send: Callable[[bytes], Any],
        *,
        id: str | None = None,
        push_interval: float | None = 0.25,
        allow_id: str | None = None,
        max_frame: int = DEFAULT_MAX_FRAME,
        call_later: Callable[[float, Callable[[], None]], Any] | None = None,
    ) -> None:
        """`call_later(delay, fn)` schedules pushes (default: the running asyncio loop's)."""
        super().__init__(
            source, id=id, push_interval=push_interval, allow_id=allow_id, max_frame=max_frame
        )
        self._send_bytes = send
        self._call_later = call_later or _default_call_later
        self._push_scheduled = False

    def connection_made(self) -> None:
        self._attach()

    def connection_lost(self, reason: str = "connection closed") -> None:
        self._detach()
        if self.conn is not None:
            log.info("rpc server %s: closed %s: %s", self.id, self.conn.client_id, reason)
        self.conn = None

    def receive(self, data: bytes) -> bool:
        """Feed inbound bytes; False means the connection must be closed (reason logged)."""
        conn = self.conn
        if conn is None:
            return False
        try:
            bye = self._feed(conn, data)
        except ProtocolError as err:
            log.warning("rpc server %s: bad input: %s", self.id, err)
            self._flush()  # the error frame saying why
            self.connection_lost(f"bad input: {err}")
            return False
        self._flush()
        if bye:
            self.connection_lost("client said bye")
        return not bye

    # driver hooks of the core
    _now = staticmethod(time.monotonic)  # no Python frame on the per-call path

    def _wake_writer(self) -> None:
        self._flush()

    def _wake_pusher(self) -> None:
        if self.push_interval is None or self._push_scheduled or self.conn is None:
            return
        self._push_scheduled = True
        self._call_later(max(0.0, self._push_due() - self._now()), self._push_later)

    def _push_later(self) -> None:
        self._push_scheduled = False
        if self._push():
            self._flush()

    def _flush(self) -> None:
        _send_queued(self.conn, self._send_bytes)
