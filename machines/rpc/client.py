"""aRPC client (trio driver): connects, handshakes, keeps a NetMach in sync, reconnects.

The protocol work is in `protocol.ClientConnection`. One receive task applies every inbound frame
in order (responses included, before their caller wakes), so pushes and response diffs can never
race. While disconnected, mutations fail at once with `RpcNotConnected`; a reconnect re-runs the
handshake, which carries the full clock.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from typing import Any

import trio

from .endpoint import source_tuple
from .errors import RpcConnectionLost, RpcNotConnected, RpcTimeout
from .netmach import NetMach
from .protocol import (
    DEFAULT_MAX_FRAME,
    ByeReceived,
    CallFailed,
    ClientConnection,
    ClockChanged,
    HandshakeDone,
    MutationDone,
    PayloadReceived,
    PeerError,
    ProtocolError,
    RemoteError,
    SchemaChanged,
    SyncDone,
    SyncOptions,
    VersionMismatch,
    schema_to_wire,
)
from .states import CLIENT_SCHEMA, mark, mark_err, new_machine
from .transport import open_tcp, unwrap_group

log = logging.getLogger("machines.rpc")
_READ_SIZE = 65536


class _Call:
    __slots__ = ("done", "result", "error", "deadline", "what")

    def __init__(self, deadline: float, what: str) -> None:
        self.done = trio.Event()
        self.result: Any = None
        self.error: BaseException | None = None
        self.deadline = deadline
        self.what = what


class Client:
    """Keeps `netmach` mirrored from a remote source; see `connect()` for the options."""

    def __init__(
        self,
        addr: str | None = None,
        *,
        id: str,
        source: Any = None,
        schema: Mapping[str, Any] | None = None,
        allowed: list[str] | None = None,
        skipped: list[str] | None = None,
        no_schema: bool = False,
        shallow: bool = False,
        sync_mutations: bool = False,
        consumer: Any = None,
        stream: trio.abc.Stream | None = None,
        stream_factory: Callable[[], Awaitable[trio.abc.Stream]] | None = None,
        reconnect: bool = True,
        call_timeout: float = 3.0,
        connect_timeout: float = 3.0,
        retry_delay: float = 0.05,
        retry_max_delay: float = 2.0,
        max_frame: int = DEFAULT_MAX_FRAME,
    ) -> None:
        if addr is None and stream is None and stream_factory is None:
            raise ValueError("connect needs an address, a stream or a stream factory")
        self.id = id
        self.addr = addr or "stream"
        self.source_id = getattr(source, "id", source) or id
        self.schema = schema
        self.options = SyncOptions(allowed, skipped, no_schema, shallow, sync_mutations)
        self.consumer = consumer
        self.reconnect = reconnect and stream is None
        self.call_timeout = call_timeout
        self.connect_timeout = connect_timeout
        self.retry_delay = retry_delay
        self.retry_max_delay = retry_max_delay
        self.max_frame = max_frame
        self.mach = new_machine(
            CLIENT_SCHEMA, f"rc-{id}", ["rpc-client", f"addr:{self.addr}"], parent=source
        )
        self.netmach = NetMach(f"rnm-{id}", link=self, parent_id=getattr(source, "id", None))
        if schema is not None:  # names known before the first handshake
            self.netmach._set_remote("", list(schema), schema_to_wire(schema))
        self.on_payload: list[Callable[[PayloadReceived], None]] = []
        self.attempts = 0  # connection attempts
        self.connects = 0  # successful handshakes
        self.calls = 0  # calls sent
        self.last_error = ""
        self.fatal: Exception | None = None
        self._stream = stream
        self._stream_factory = stream_factory
        self._conn: ClientConnection | None = None
        self._calls: dict[int, _Call] = {}
        self._sending = False
        self._changed = trio.Event()
        self._closing = False
        self._done = trio.Event()

    # --- state ---------------------------------------------------------------------------------

    @property
    def connected(self) -> bool:
        return self._conn is not None and self._conn.handshaken

    @property
    def conn(self) -> ClientConnection | None:
        return self._conn

    def _notify(self) -> None:
        self._changed.set()
        self._changed = trio.Event()

    async def wait_connected(self) -> None:
        """Until handshaken; raises the fatal error if the server refused us."""
        while True:
            changed = self._changed
            if self.fatal is not None:
                raise self.fatal
            if self.connected:
                return
            if self._done.is_set():
                raise RpcNotConnected(
                    f"client {self.id}: gave up on {self.addr}: {self.last_error}"
                )
            await changed.wait()

    async def wait_disconnected(self) -> None:
        await self.wait_until(lambda: not self.connected)

    async def wait_until(self, predicate: Callable[[], bool]) -> None:
        """Until `predicate()` holds, re-checked on every connection event (attempts, etc.)."""
        while True:
            changed = self._changed
            if predicate():
                return
            await changed.wait()

    # --- remote calls (the NetMach's link) -----------------------------------------------------

    def check(self) -> None:
        """Raise RpcNotConnected unless a call can go out now (the NetMach asks first)."""
        self._live()

    def _live(self) -> ClientConnection:
        conn = self._conn
        if conn is None or not conn.handshaken:
            why = f" ({self.last_error})" if self.last_error else ""
            raise RpcNotConnected(f"client {self.id}: not connected to {self.addr}{why}")
        return conn

    async def _await_call(self, seq: int, what: str) -> Any:
        # no cancel scope per call (it would cost a tenth of a round trip): _expire_calls
        # fails calls past their deadline
        call = _Call(trio.current_time() + self.call_timeout, what)
        self._calls[seq] = call
        self.calls += 1
        try:
            await self._flush()
            await call.done.wait()
        finally:
            self._calls.pop(seq, None)
        if call.error is not None:
            raise call.error
        return call.result

    async def mutate(
        self, mutation_type: int, states: list[str], args: Mapping[str, Any] | None, source: Any
    ) -> int:
        conn = self._live()
        seq = conn.mutate(mutation_type, states, args, source_tuple(source))
        return await self._await_call(seq, f"mutation of {states}")

    async def add_ns(self, states: list[str], args: Mapping[str, Any] | None, source: Any) -> None:
        self._live().add_ns(states, args, source_tuple(source))
        self.calls += 1
        await self._flush()

    async def sync(self) -> None:
        """Fetch the full clock now (after no-sync adds, or to double-check)."""
        conn = self._live()
        seq = conn.sync()
        if seq is None:  # one is in flight already: wait for the clock it brings
            with trio.fail_after(self.call_timeout):
                while conn.syncing and self._conn is conn:
                    await self._changed.wait()
            return
        await self._await_call(seq, "sync")

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
        """Fail calls still unanswered at their deadline (new calls always expire later)."""
        while True:
            now = trio.current_time()
            wake = now + self.call_timeout
            for call in list(self._calls.values()):
                if call.done.is_set():
                    continue
                if call.deadline <= now:
                    call.error = RpcTimeout(
                        f"client {self.id}: {call.what} got no answer in {self.call_timeout}s"
                    )
                    call.done.set()
                else:
                    wake = min(wake, call.deadline)
            await trio.sleep_until(wake)

    async def run(self) -> None:
        """Connect, serve the session, and reconnect with backoff until closed."""
        mark(self.mach, "add", "Start")
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
                self._notify()
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
                self._notify()
                mark(self.mach, "add", "RetryingConn")
                await trio.sleep(delay)
                delay = min(delay * 2, self.retry_max_delay)
        finally:
            self._done.set()
            self._notify()

    async def _session(self, stream: trio.abc.Stream) -> bool:
        conn = ClientConnection(
            self.id, self.source_id, self.options, self.schema, max_frame=self.max_frame
        )
        self._conn = conn
        handshaken = False
        reason = "closed"
        mark(self.mach, "add", "Connected")
        try:
            conn.hello()
            self.calls += 1
            await self._flush()
            while not self._closing:
                data = await stream.receive_some(_READ_SIZE)
                if not data:
                    reason = "server closed the connection"
                    break
                events = conn.receive_data(data)
                end = False
                for ev in events:
                    end = self._dispatch(conn, ev) or end
                if conn.handshaken and not handshaken:
                    handshaken = True
                    self.connects += 1
                    self.last_error = ""
                    mark(self.mach, "add", "HandshakeDone", {"id": conn.remote_id})
                    self._notify()
                await self._flush()
                if end:
                    reason = "session ended by the server"
                    break
        except ProtocolError as err:
            reason = f"bad input from server: {err}"
            log.warning("rpc client %s: %s: %s", self.id, self.addr, reason)
            mark_err(self.mach, "ErrRpc", err)
        except (trio.BrokenResourceError, trio.ClosedResourceError, RpcConnectionLost) as err:
            reason = f"connection lost: {err or type(err).__name__}"
        finally:
            self._conn = None
            self._stream = None
            mark(self.mach, "add", "Disconnected")
            if not self._closing:
                self.last_error = reason
            lost = RpcConnectionLost(f"client {self.id}: connection to {self.addr} lost: {reason}")
            for call in self._calls.values():
                if not call.done.is_set():
                    call.error = lost
                    call.done.set()
            self._notify()
            with trio.CancelScope(shield=True):
                with trio.move_on_after(1):
                    await stream.aclose()
        if handshaken and not self._closing:
            log.info("rpc client %s: disconnected from %s: %s", self.id, self.addr, reason)
        return handshaken

    def _dispatch(self, conn: ClientConnection, ev: Any) -> bool:
        """Apply one protocol event; True ends the session."""
        net = self.netmach
        if isinstance(ev, ClockChanged):
            net._apply(ev.after, ev.queue_tick, ev.machine_tick, ev.full, ev.mutation)
        elif isinstance(ev, MutationDone):
            self._resolve(ev.seq, ev.result)
        elif isinstance(ev, SyncDone):
            self._resolve(ev.seq, None)
            self._notify()
        elif isinstance(ev, HandshakeDone):
            partial = self.options.allowed is not None or bool(self.options.skipped)
            net._set_remote(ev.source_id, ev.names, conn.schema, partial)
        elif isinstance(ev, SchemaChanged):
            net._set_remote(conn.remote_id or "", ev.names, ev.schema, net.is_partial)
        elif isinstance(ev, CallFailed):
            if ev.method == "h":
                cls = VersionMismatch if "version mismatch" in ev.message else RemoteError
                self.fatal = cls(f"{self.addr} refused the handshake: {ev.message}")
                self.last_error = str(self.fatal)
                mark_err(self.mach, "ErrRpc", self.fatal)
                log.warning("rpc client %s: %s", self.id, self.fatal)
                return True
            call = self._calls.get(ev.seq)
            if call is not None:
                call.error = RemoteError(f"{self.addr}: {ev.message}")
                call.done.set()
            if ev.method == "y":
                self._notify()
        elif isinstance(ev, PayloadReceived):
            self._payload(ev)
        elif isinstance(ev, PeerError):
            log.warning("rpc client %s: server reports: %s", self.id, ev.message)
        elif isinstance(ev, ByeReceived):
            return True
        return False

    def _resolve(self, seq: int, result: Any) -> None:
        call = self._calls.get(seq)
        if call is not None:  # else it timed out already
            call.result = result
            call.done.set()

    def _payload(self, ev: PayloadReceived) -> None:
        for fn in list(self.on_payload):
            try:
                fn(ev)
            except Exception as err:
                log.warning("rpc client %s: payload callback failed: %s", self.id, err)
        if self.consumer is not None:
            try:
                self.consumer.add("ServerPayload", {"payload": ev})
            except Exception as err:
                log.warning("rpc client %s: consumer refused payload: %s", self.id, err)

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
        self._notify()


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
