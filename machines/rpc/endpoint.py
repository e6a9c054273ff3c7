"""Loop-agnostic aRPC endpoints for hosts that move the bytes themselves (the browser).

In the browser there is no trio and no socket: a WebSocket delivers messages through callbacks.
These endpoints take a `send(bytes)` callback and are fed with `receive(bytes)`; waiting works
under asyncio (Pyodide's loop) and trio alike. The trio drivers (client.py, server.py) remain
the ones for processes: they own their streams, reconnect and pace pushes with trio timers.

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
import secrets
import time
from collections.abc import Callable, Mapping
from typing import Any

from .errors import RpcConnectionLost, RpcNotConnected, RpcTimeout
from .netmach import NetMach
from .protocol import (
    DEFAULT_MAX_FRAME,
    ByeReceived,
    CallFailed,
    ClientConnection,
    ClockChanged,
    HandshakeDone,
    HelloReceived,
    MutationDone,
    MutationRequested,
    PayloadReceived,
    PeerError,
    ProtocolError,
    RemoteError,
    SchemaChanged,
    ServerConnection,
    SourceExport,
    SyncDone,
    SyncOptions,
    SyncRequested,
    VersionMismatch,
    schema_to_wire,
)
from .waiting import Waiters

log = logging.getLogger("machines.rpc")
_MUTATORS = ("add", "remove", "set")


def source_tuple(source: Any) -> tuple[str, str, int] | None:
    """A MutSource, a machine id, or a handler event (its machine and transition)."""
    if source is None:
        return None
    if isinstance(source, str):
        return (source, "", 0)
    if hasattr(source, "machine_id"):
        return (source.machine_id, source.tx_id or "", int(source.mach_time or 0))
    mach = getattr(source, "machine", None)
    if mach is not None:
        tx = getattr(source, "transition", None)
        return (mach.id, str(getattr(tx, "id", "") or ""), 0)
    raise TypeError(f"cannot use {source!r} as a mutation source")


def export_source(mach: Any) -> SourceExport:
    """Read what a hello needs from a machine of the core API."""
    return SourceExport(
        id=mach.id,
        names=list(mach.state_names),
        time=list(mach.time()),
        queue_tick=mach.queue_tick,
        machine_tick=mach.machine_tick,
        schema=schema_to_wire(mach.schema),
    )


def log_connected(source: Any, client_source_id: str | None) -> None:
    """`[rpc:connected] <id>` on the source machine: the debugger's diagrams draw the link
    between the machine a client acts for and this one from it (see dbg/model.py)."""
    log_graph = getattr(source, "log_graph", None)
    if log_graph is not None and client_source_id:
        log_graph(f"[rpc:connected] {client_source_id}")


def _default_call_later(delay: float, fn: Callable[[], None]) -> None:
    import asyncio

    try:
        asyncio.get_running_loop().call_later(delay, fn)
    except RuntimeError:  # no asyncio loop (e.g. under trio without a scheduler given)
        fn()


class ClientEndpoint:
    """The client side: a NetMach mirrored from the peer, mutations sent to it."""

    def __init__(
        self,
        id: str,
        send: Callable[[bytes], Any],
        *,
        source: Any = None,
        schema: Mapping[str, Any] | None = None,
        allowed: list[str] | None = None,
        skipped: list[str] | None = None,
        no_schema: bool = False,
        shallow: bool = False,
        sync_mutations: bool = False,
        consumer: Any = None,
        call_timeout: float = 3.0,
        max_frame: int = DEFAULT_MAX_FRAME,
    ) -> None:
        self.id = id
        self.source_id = getattr(source, "id", source) or id
        self.schema = schema
        self.options = SyncOptions(allowed, skipped, no_schema, shallow, sync_mutations)
        self.consumer = consumer
        self.call_timeout = call_timeout
        self.max_frame = max_frame
        self.netmach = NetMach(f"rnm-{id}", link=self, parent_id=getattr(source, "id", None))
        if schema is not None:
            self.netmach._set_remote("", list(schema), schema_to_wire(schema))
        self.on_payload: list[Callable[[PayloadReceived], None]] = []
        self.calls = 0
        self.last_error = ""
        self.fatal: Exception | None = None
        self.conn: ClientConnection | None = None
        self._send = send
        self._results: dict[int, list[Any]] = {}  # seq -> [done, result, error]
        self._waiters = Waiters()

    @property
    def connected(self) -> bool:
        return self.conn is not None and self.conn.handshaken

    def connection_made(self) -> None:
        """The transport is open: start the handshake."""
        self.conn = ClientConnection(
            self.id, self.source_id, self.options, self.schema, max_frame=self.max_frame
        )
        self.conn.hello()
        self.calls += 1
        self._flush()

    def connection_lost(self, reason: str = "connection closed") -> None:
        """The transport closed: every pending call fails now."""
        self.conn = None
        self.last_error = reason
        err = RpcConnectionLost(f"client {self.id}: connection lost: {reason}")
        for res in self._results.values():
            if not res[0]:
                res[0], res[2] = True, err
        self._waiters.check()

    def receive(self, data: bytes) -> bool:
        """Feed inbound bytes; False means the connection must be closed (reason logged)."""
        conn = self.conn
        if conn is None:
            return False
        try:
            events = conn.receive_data(data)
        except ProtocolError as err:
            log.warning("rpc client %s: bad input from server: %s", self.id, err)
            self.connection_lost(f"bad input from server: {err}")
            return False
        keep = True
        for ev in events:
            keep = self._dispatch(conn, ev) and keep
        if self.conn is conn:
            self._flush()
        self._waiters.check()
        return keep

    async def wait_connected(self, timeout: float | None = None) -> None:
        ok = await self._waiters.wait(lambda: self.connected or self.fatal is not None, timeout)
        if self.fatal is not None:
            raise self.fatal
        if not ok:
            raise RpcNotConnected(f"client {self.id}: no handshake in {timeout}s")

    # link API of the NetMach
    def check(self) -> None:
        if not self.connected:
            why = f" ({self.last_error})" if self.last_error else ""
            raise RpcNotConnected(f"client {self.id}: not connected{why}")

    async def _call(self, seq: int, what: str) -> Any:
        res = self._results[seq] = [False, None, None]
        self.calls += 1
        try:
            self._flush()
            if not await self._waiters.wait(lambda: res[0], self.call_timeout):
                raise RpcTimeout(f"client {self.id}: {what} got no answer in {self.call_timeout}s")
        finally:
            self._results.pop(seq, None)
        if res[2] is not None:
            raise res[2]
        return res[1]

    async def mutate(
        self, mutation_type: int, states: list[str], args: Mapping[str, Any] | None, source: Any
    ) -> int:
        self.check()
        assert self.conn is not None
        seq = self.conn.mutate(mutation_type, states, args, source_tuple(source))
        return await self._call(seq, f"mutation of {states}")

    async def add_ns(self, states: list[str], args: Mapping[str, Any] | None, source: Any) -> None:
        self.check()
        assert self.conn is not None
        self.conn.add_ns(states, args, source_tuple(source))
        self.calls += 1
        self._flush()

    async def sync(self) -> None:
        self.check()
        conn = self.conn
        assert conn is not None
        seq = conn.sync()
        if seq is None:
            await self._waiters.wait(lambda: not conn.syncing, self.call_timeout)
            return
        await self._call(seq, "sync")

    def close(self) -> None:
        """Say bye (the transport is closed by the host)."""
        if self.conn is not None:
            self.conn.bye()
            self._flush()
            self.connection_lost("closed by the client")

    def _flush(self) -> None:
        conn = self.conn
        if conn is not None:
            data = conn.data_to_send()
            if data:
                self._send(data)

    def _resolve(self, seq: int, result: Any = None, error: BaseException | None = None) -> None:
        res = self._results.get(seq)
        if res is not None:
            res[0], res[1], res[2] = True, result, error

    def _dispatch(self, conn: ClientConnection, ev: Any) -> bool:
        net = self.netmach
        if isinstance(ev, ClockChanged):
            net._apply(ev.after, ev.queue_tick, ev.machine_tick, ev.full, ev.mutation)
        elif isinstance(ev, MutationDone):
            self._resolve(ev.seq, ev.result)
        elif isinstance(ev, SyncDone):
            self._resolve(ev.seq)
        elif isinstance(ev, HandshakeDone):
            partial = self.options.allowed is not None or bool(self.options.skipped)
            net._set_remote(ev.source_id, ev.names, conn.schema, partial)
            self.last_error = ""
        elif isinstance(ev, SchemaChanged):
            net._set_remote(conn.remote_id or "", ev.names, ev.schema, net.is_partial)
        elif isinstance(ev, CallFailed):
            if ev.method == "h":
                cls = VersionMismatch if "version mismatch" in ev.message else RemoteError
                self.fatal = cls(f"server refused the handshake: {ev.message}")
                log.warning("rpc client %s: %s", self.id, self.fatal)
                return False
            self._resolve(ev.seq, error=RemoteError(ev.message))
        elif isinstance(ev, PayloadReceived):
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
        elif isinstance(ev, PeerError):
            log.warning("rpc client %s: server reports: %s", self.id, ev.message)
        elif isinstance(ev, ByeReceived):
            return False
        return True


class ServerEndpoint:
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
        self.source = source
        self.id = id or f"rs-{source.id}"
        self.push_interval = push_interval
        self.allow_id = allow_id
        self.max_frame = max_frame
        self.conn: ServerConnection | None = None
        self._send = send
        self._call_later = call_later or _default_call_later
        self._tracer: Any = None
        self._push_scheduled = False
        self._last_sent = -1e18

    @property
    def client_id(self) -> str | None:
        return self.conn.client_id if self.conn and self.conn.handshaken else None

    @property
    def pushes(self) -> int:
        return self.conn.pushes if self.conn else 0

    def connection_made(self) -> None:
        from machines import Tracer

        endpoint = self

        class _PushTracer(Tracer):
            def transition_end(self, tx: Any) -> None:
                conn = endpoint.conn
                if conn is not None and conn.options.mutations:
                    mut = getattr(tx, "mutation", None)
                    kind = int(mut.type) if mut is not None else None
                    called = mut.called if mut is not None else ()
                    conn.record(kind, called, *endpoint._clock())
                endpoint._schedule_push()

            def schema_change(self, mach: Any, old_schema: Any) -> None:
                if endpoint.conn is not None and endpoint.conn.handshaken:
                    endpoint.conn.schema_changed(export_source(endpoint.source))
                    endpoint._flush()

        self.conn = ServerConnection(self.max_frame)
        self._tracer = _PushTracer()
        self.source.tracer_bind(self._tracer)

    def connection_lost(self, reason: str = "connection closed") -> None:
        if self._tracer is not None:
            self.source.tracer_detach(self._tracer)
            self._tracer = None
        if self.conn is not None:
            log.info("rpc server %s: closed %s: %s", self.id, self.conn.client_id, reason)
        self.conn = None

    def receive(self, data: bytes) -> bool:
        """Feed inbound bytes; False means the connection must be closed (reason logged)."""
        conn = self.conn
        if conn is None:
            return False
        try:
            events = conn.receive_data(data)
        except ProtocolError as err:
            log.warning("rpc server %s: bad input: %s", self.id, err)
            self.connection_lost(f"bad input: {err}")
            return False
        keep = True
        for ev in events:
            if isinstance(ev, MutationRequested):
                self._mutate(conn, ev)
            elif isinstance(ev, HelloReceived):
                if self.allow_id is not None and ev.client_id != self.allow_id:
                    conn.reject_hello(ev.seq, f"no access: {ev.client_id} != {self.allow_id}")
                else:
                    conn.accept_hello(ev.seq, export_source(self.source))
                    self._last_sent = time.monotonic()
                    log_connected(self.source, conn.source_id)
            elif isinstance(ev, SyncRequested):
                conn.respond_sync(ev.seq, *self._clock())
            elif isinstance(ev, ByeReceived):
                keep = False
            elif isinstance(ev, PeerError):
                log.warning("rpc server %s: client reports: %s", self.id, ev.message)
        self._flush()
        if not keep:
            self.connection_lost("client said bye")
        return keep

    def send_payload(
        self, name: str, data: Any, *, destination: str | None = None, source: str = ""
    ) -> str:
        conn = self.conn
        if conn is None or not conn.handshaken:
            raise RpcNotConnected(f"server {self.id}: no client to send payload {name!r} to")
        if destination is not None and destination != conn.client_id:
            raise ValueError(f"wrong destination: {destination} != {conn.client_id}")
        token = secrets.token_hex(4)
        conn.send_payload(name, data, source or self.source.id, token)
        self._flush()
        return token

    def _clock(self) -> tuple[list[int], int, int]:
        src = self.source
        return src.time(), src.queue_tick, src.machine_tick

    def _mutate(self, conn: ServerConnection, ev: MutationRequested) -> None:
        from machines import MutSource

        src = MutSource(*ev.source) if ev.source else MutSource(conn.source_id or "")
        try:
            result = getattr(self.source, _MUTATORS[ev.mutation_type])(
                ev.states, ev.args, source=src
            )
        except Exception as err:
            if ev.seq:
                conn.respond_error(ev.seq, f"{type(err).__name__}: {err}")
            return
        if ev.seq:
            conn.respond_mutation(ev.seq, int(result), *self._clock())
            self._last_sent = time.monotonic()

    def _schedule_push(self) -> None:
        if self.push_interval is None or self._push_scheduled or self.conn is None:
            return
        self._push_scheduled = True
        delay = max(0.0, self._last_sent + self.push_interval - time.monotonic())
        self._call_later(delay, self._push)

    def _push(self) -> None:
        self._push_scheduled = False
        conn = self.conn
        if conn is not None and conn.push(*self._clock()):
            self._last_sent = time.monotonic()
            self._flush()

    def _flush(self) -> None:
        conn = self.conn
        if conn is not None:
            data = conn.data_to_send()
            if data:
                self._send(data)
