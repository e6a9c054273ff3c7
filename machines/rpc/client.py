"""aRPC client (trio driver): connects, handshakes, keeps a NetMach in sync, reconnects.

What each event means (clock diffs into the NetMach, call answers, payloads) is in
`core.ClientCore`, shared with the browser's endpoint; this driver owns the stream. One receive
task applies every inbound frame in order (responses included, before their caller wakes), so
pushes and response diffs can never race. While disconnected, mutations fail at once with
`RpcNotConnected`; a reconnect re-runs the handshake, which carries the full clock.
"""

from __future__ import annotations

import logging
import math
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager, suppress
from functools import partial
from typing import Any, Unpack

import trio

from .core import ClientCore, ClientOptions
from .errors import RpcConnectionLost, RpcNotConnected
from .protocol import ClientConnection, ProtocolError
from .server import DEFAULT_HANDSHAKE_TIMEOUT
from .states import CLIENT_SCHEMA, mark, mark_err, new_machine
from .transport import open_tcp, unwrap_group

log = logging.getLogger("machines.rpc")
_READ_SIZE = 65536


class Client(ClientCore):
    """Keeps `netmach` mirrored from a remote source; see `connect()` for the options."""

    addr: str  # "stream" when a stream or a stream factory stands in for the address

    def __init__(
        self,
        addr: str | None = None,
        *,
        id: str,
        stream: trio.abc.Stream | None = None,
        stream_factory: Callable[[], Awaitable[trio.abc.Stream]] | None = None,
        reconnect: bool = True,
        connect_timeout: float = 3.0,
        handshake_timeout: float | None = DEFAULT_HANDSHAKE_TIMEOUT,
        retry_delay: float = 0.05,
        retry_max_delay: float = 2.0,
        **opts: Unpack[ClientOptions],
    ) -> None:
        """The connection options are here; what to mirror and how to call: `ClientOptions`.
        `handshake_timeout`: seconds a connected server has to answer the hello, then the
        attempt fails (and is retried) like a refused connect (None: wait forever)."""
        if addr is None and stream is None and stream_factory is None:
            raise ValueError("connect needs an address, a stream or a stream factory")
        super().__init__(id, addr or "stream", **opts)
        self.reconnect = reconnect and stream is None
        self.connect_timeout = connect_timeout
        self.handshake_timeout = handshake_timeout
        self.retry_delay = retry_delay
        self.retry_max_delay = retry_max_delay
        tags = ["rpc-client", f"addr:{self.addr}"]
        self.mach = new_machine(CLIENT_SCHEMA, f"rc-{id}", tags, parent=opts.get("source"))
        self.attempts = 0  # connection attempts
        self._stream = stream
        self._stream_factory = stream_factory
        self._sending = False
        self._closing = False

    # --- driver hooks of the core --------------------------------------------------------------

    _now = staticmethod(trio.current_time)  # until run() binds the run's clock

    async def _await_call(self, seq: int, what: Any) -> Any:
        # no cancel scope per call (it would cost a tenth of a round trip): _expire_calls
        # fails calls past their deadline. The receive task reschedules this task directly
        # (no Event and parking lot per call: the round trip is what this client is for).
        call = self._start_call(seq, what, None)
        try:
            await self._flush()
            if not call.done:
                call.wake = partial(trio.lowlevel.reschedule, trio.lowlevel.current_task())

                def abort(_: Any) -> trio.lowlevel.Abort:
                    call.wake = None  # cancelled: the answer, if any, wakes nobody
                    return trio.lowlevel.Abort.SUCCEEDED

                await trio.lowlevel.wait_task_rescheduled(abort)
        finally:
            self._calls.pop(seq, None)
        if call.error is not None:  # call.outcome(), without a frame
            raise call.error
        return call.result

    async def _send(self) -> None:
        await self._flush()

    def _on_handshake(self, conn: ClientConnection) -> None:
        mark(self.mach, "add", "HandshakeDone", {"id": conn.remote_id})

    def _on_fatal(self, err: Exception) -> None:
        mark_err(self.mach, "ErrRpc", err)

    async def _flush(self) -> None:
        """Send what the protocol queued, in order, one sender at a time (see Server._flush)."""
        if self._sending:
            return
        conn, stream = self._conn, self._stream
        if conn is None or stream is None:
            raise RpcConnectionLost(f"client {self.id}: connection to {self.addr} lost")
        self._sending = True
        try:
            while data := conn.data_to_send():
                await stream.send_all(data)
        except (trio.BrokenResourceError, trio.ClosedResourceError) as err:
            raise RpcConnectionLost(
                f"client {self.id}: connection to {self.addr} lost: {err}"
            ) from None
        finally:
            self._sending = False

    # --- connection loop -----------------------------------------------------------------------

    async def _open(self) -> trio.abc.Stream:
        if self._stream is not None:
            return self._stream
        with trio.fail_after(self.connect_timeout):
            if self._stream_factory is not None:
                return await self._stream_factory()
            return await open_tcp(self.addr)

    async def _expire_calls(self) -> None:
        while True:
            await trio.sleep_until(self._expire(trio.current_time()))

    async def run(self) -> None:
        """Connect, serve the session, and reconnect with backoff until closed."""
        mark(self.mach, "add", "Start")
        self._now = trio.lowlevel.current_clock().current_time  # one frame per read, not three
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._expire_calls)
                await self._run()
                nursery.cancel_scope.cancel()
        finally:
            mark(self.mach, "remove", "Start")
            self.mach.dispose()

    async def _run(self) -> None:
        delay = self.retry_delay
        try:
            while not self._closing:
                self.attempts += 1
                mark(self.mach, "add", "Connecting")
                self._waiters.check()
                try:
                    stream = await self._open()
                except (OSError, trio.TooSlowError) as err:
                    self.last_error = f"connect failed: {err or type(err).__name__}"
                    log.info("rpc client %s: %s: %s", self.id, self.addr, self.last_error)
                    mark_err(self.mach, "ErrNetwork", ConnectionError(self.last_error))
                    mark(self.mach, "add", "Disconnected")
                else:
                    self._stream = stream
                    if await self._session(stream):
                        delay = self.retry_delay
                if self.fatal is not None or self._closing or not self.reconnect:
                    break
                self._waiters.check()
                mark(self.mach, "add", "RetryingConn")
                await trio.sleep(delay)
                delay = min(delay * 2, self.retry_max_delay)
        finally:
            self._gave_up = True
            self._waiters.check()

    async def _session(self, stream: trio.abc.Stream) -> bool:
        conn = self._open_session()
        self.complaint = ""
        reason = "closed"
        mark(self.mach, "add", "Connected")
        # a server that accepts but never answers the hello must not hold the client forever
        limit = self.handshake_timeout
        deadline = math.inf if limit is None else trio.current_time() + limit
        hello = trio.CancelScope(deadline=deadline)
        try:
            with hello:
                await self._flush()
                ended = await self._receive(conn, stream, until_handshake=limit is not None)
            if hello.cancelled_caught:
                reason = f"no handshake from {self.addr} in {limit:g} s"
                log.warning("rpc client %s: %s", self.id, reason)
                mark_err(self.mach, "ErrRpc", TimeoutError(reason))
            else:
                reason = ended or await self._receive(conn, stream, until_handshake=False) or reason
        except ProtocolError as err:
            reason = f"bad input from server: {err}"
            with trio.move_on_after(1), suppress(RpcConnectionLost):
                await self._flush()  # the error frame saying why
            log.warning("rpc client %s: %s: %s", self.id, self.addr, reason)
            mark_err(self.mach, "ErrRpc", err)
        except (trio.BrokenResourceError, trio.ClosedResourceError, RpcConnectionLost) as err:
            reason = f"connection lost: {err or type(err).__name__}"
        finally:
            self._stream = None
            self._close_session(reason, record=not self._closing)
            mark(self.mach, "add", "Disconnected")
            self._waiters.check()
            with trio.CancelScope(shield=True):
                with trio.move_on_after(1):
                    await stream.aclose()
        if self._handshaken and not self._closing:
            log.info("rpc client %s: disconnected from %s: %s", self.id, self.addr, reason)
        return self._handshaken

    async def _receive(
        self, conn: ClientConnection, stream: trio.abc.Stream, until_handshake: bool
    ) -> str | None:
        """Apply what the server sends until the session ends (why), or with `until_handshake`
        until the handshake is in (None). That return comes before any other await, so the
        hello's deadline only ever cancels a wait for the handshake: on a loaded machine the
        task may wake after the deadline with the handshake in hand, and a handshaken session
        must not then be closed as "no handshake"."""
        if not until_handshake and conn.wants_send:  # e.g. a sync the handshake's batch asked for
            await self._flush()
        while not self._closing:
            data = await stream.receive_some(_READ_SIZE)
            if not data:
                if self.complaint:
                    return f"server closed the connection: {self.complaint}"
                return "server closed the connection"
            end = self._feed(conn, data)
            if end:
                return "session ended by the server"
            if until_handshake and self._handshaken:
                return None
            if conn.wants_send:  # e.g. a sync the input asked for
                await self._flush()
        return "closed"

    async def aclose(self) -> None:
        """Say bye and close; the run loop ends."""
        self._closing = True
        mark(self.mach, "add", "Disconnecting")
        conn, stream = self._conn, self._stream
        if conn is not None and stream is not None:
            conn.bye()
            with trio.move_on_after(1) as scope:
                scope.shield = True
                try:
                    await self._flush()
                except RpcConnectionLost:
                    pass
                await stream.aclose()
        self._waiters.check()


@asynccontextmanager
async def connect(
    addr: str | None = None,
    *,
    id: str,
    ready_timeout: float = 10.0,
    **opts: Any,
) -> AsyncIterator[Client]:
    """Connect to an aRPC server and handshake before entering; close (bye) on exit.

    `addr` is "host:port"; or pass `stream=` (any trio stream, no reconnect) or
    `stream_factory=` (an async callable returning a fresh stream per attempt).
    `source=machine` makes mutations record that machine's id on the server (default: `id`).
    Options: `schema`, `allowed`, `skipped`, `no_schema`, `shallow`, `sync_mutations` (one
    NetMach transition per source mutation), `consumer`, `reconnect`,
    `call_timeout`, `connect_timeout`, `retry_delay`, `retry_max_delay`, `max_frame`.
    Until the first handshake the client keeps retrying for `ready_timeout` seconds.
    """
    client = Client(addr, id=id, **opts)
    with unwrap_group():
        async with trio.open_nursery() as nursery:
            nursery.start_soon(client.run)
            try:
                with trio.fail_after(ready_timeout):
                    await client.wait_connected()
            except trio.TooSlowError:
                nursery.cancel_scope.cancel()
                raise RpcNotConnected(
                    f"client {id}: no handshake with {client.addr} in {ready_timeout}s "
                    f"({client.last_error or 'no answer'})"
                ) from None
            except BaseException:
                nursery.cancel_scope.cancel()
                raise
            try:
                yield client
            finally:
                await client.aclose()
                nursery.cancel_scope.cancel()
