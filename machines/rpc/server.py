"""aRPC server (trio driver): exposes one local machine to one client over any trio stream.

The protocol work (validation, diffs, checksums) is in `protocol.ServerConnection`; this module
moves bytes, runs mutations on the source machine and paces clock pushes: the first change after a
quiet period goes out at once, later ones are batched to at most one push per `push_interval`.
"""

from __future__ import annotations

import logging
import math
import secrets
import threading
from collections.abc import Callable
from typing import Any

import trio

from .endpoint import export_source, log_connected
from .errors import RpcNotConnected
from .protocol import (
    DEFAULT_MAX_FRAME,
    ByeReceived,
    HelloReceived,
    MutationRequested,
    PeerError,
    ProtocolError,
    ServerConnection,
    SyncRequested,
)
from .states import SERVER_SCHEMA, mark, mark_err, new_machine

log = logging.getLogger("machines.rpc")

DEFAULT_PUSH_INTERVAL = 0.25
_MUTATORS = ("add", "remove", "set")
_READ_SIZE = 65536


def _make_tracer(server: Server) -> Any:
    """A core Tracer that wakes the pusher; built lazily so the import order does not matter."""
    from machines import Tracer

    class _PushTracer(Tracer):
        def transition_end(self, tx: Any) -> None:
            server._source_changed(tx)

        def schema_change(self, mach: Any, old_schema: Any) -> None:
            server._schema_changed()

    return _PushTracer()


class Server:
    """Serves `source` to one client per `serve(stream)` call (use a Mux for many clients)."""

    def __init__(
        self,
        source: Any,
        *,
        id: str | None = None,
        push_interval: float | None = DEFAULT_PUSH_INTERVAL,
        allow_id: str | None = None,
        max_frame: int = DEFAULT_MAX_FRAME,
        parent: Any = None,
    ) -> None:
        """`push_interval`: seconds between batched pushes; 0 = every change, None = no pushes.
        `parent`: the machine owning this server's own machine (`self.mach`), e.g. a mux's."""
        self.source = source
        self.id = id or f"rs-{source.id}"
        self.mach = new_machine(SERVER_SCHEMA, self.id, ["rpc-server"], parent=parent)
        self.push_interval = push_interval
        self.allow_id = allow_id
        self.max_frame = max_frame
        self.conn: ServerConnection | None = None
        self.peer = ""
        self.calls = 0  # requests served
        self.handshake_done = trio.Event()
        self.closed = trio.Event()
        self.close_reason = ""
        self._stream: trio.abc.Stream | None = None
        self._sending = False
        self._dirty = trio.Event()
        self._outbox = trio.Event()
        self._last_sent = -math.inf
        self._cancel: trio.CancelScope | None = None
        self.on_handshake: list[Callable[[], None]] = []

    @property
    def client_id(self) -> str | None:
        return self.conn.client_id if self.conn and self.conn.handshaken else None

    @property
    def pushes(self) -> int:
        return self.conn.pushes if self.conn else 0

    # --- API -----------------------------------------------------------------------------------

    def send_payload(
        self, name: str, data: Any, *, destination: str | None = None, source: str = ""
    ) -> str:
        """Queue a payload for the client (callable from sync handlers); returns its token."""
        conn = self.conn
        if conn is None or not conn.handshaken or self.closed.is_set():
            raise RpcNotConnected(f"server {self.id}: no client to send payload {name!r} to")
        if destination is not None and destination != conn.client_id:
            raise ValueError(f"wrong destination: {destination} != {conn.client_id}")
        token = secrets.token_hex(4)
        conn.send_payload(name, data, source or self.source.id, token)
        self._outbox.set()
        return token

    def close(self) -> None:
        """Drop the connection (the client sees it close)."""
        if self._cancel is not None:
            self._cancel.cancel()

    async def serve(self, stream: trio.abc.Stream, peer: str = "") -> None:
        """Serve one connection until it ends; never raises for the peer's misbehaviour."""
        if self.conn is not None:
            raise RuntimeError(f"server {self.id} serves one connection; use a Mux for more")
        self.conn = ServerConnection(self.max_frame)
        self.peer = peer
        self._stream = stream
        self._thread = threading.get_ident()
        self._token = trio.lowlevel.current_trio_token()
        tracer = _make_tracer(self)
        self.source.tracer_bind(tracer)
        mark(self.mach, "add", ["Start", "ClientConnected"])
        try:
            with trio.CancelScope() as self._cancel:
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(self._writer)
                    if self.push_interval is not None:
                        nursery.start_soon(self._pusher)
                    self.close_reason = await self._receive_loop()
                    nursery.cancel_scope.cancel()
            if self._cancel.cancelled_caught and not self.close_reason:
                self.close_reason = "closed by the server"
        finally:
            self.source.tracer_detach(tracer)
            if self.close_reason.startswith("bad input"):
                mark_err(self.mach, "ErrRpc", ValueError(self.close_reason))
            mark(self.mach, "remove", "ClientConnected")
            self.mach.dispose()
            self.closed.set()
            with trio.CancelScope(shield=True):
                with trio.move_on_after(1):
                    await stream.aclose()
        level = logging.WARNING if self.close_reason.startswith("bad input") else logging.INFO
        log.log(level, "rpc server %s: closed %s: %s", self.id, self._who(), self.close_reason)

    def _who(self) -> str:
        cid = self.conn.client_id if self.conn else None
        return f"{cid or 'client'}@{self.peer}" if self.peer else (cid or "client")

    # --- internals -----------------------------------------------------------------------------

    async def _receive_loop(self) -> str:
        assert self.conn is not None and self._stream is not None
        conn = self.conn
        while True:
            try:
                data = await self._stream.receive_some(_READ_SIZE)
            except (trio.BrokenResourceError, trio.ClosedResourceError) as err:
                return f"connection lost ({err or type(err).__name__})"
            if not data:
                if conn.pending_bytes:
                    return f"bad input: connection closed mid-frame ({conn.pending_bytes} bytes)"
                return "client disconnected"
            try:
                events = conn.receive_data(data)
            except ProtocolError as err:
                return f"bad input: {err}"
            bye = False
            for ev in events:
                self.calls += 1
                if isinstance(ev, MutationRequested):
                    self._mutate(ev)
                elif isinstance(ev, HelloReceived):
                    self._hello(ev)
                elif isinstance(ev, SyncRequested):
                    conn.respond_sync(ev.seq, *self._clock())
                elif isinstance(ev, ByeReceived):
                    bye = True
                elif isinstance(ev, PeerError):
                    log.warning("rpc server %s: %s reports: %s", self.id, self._who(), ev.message)
            try:
                await self._flush()
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                return "connection lost while sending"
            if bye:
                return "client said bye"

    def _clock(self) -> tuple[list[int], int, int]:
        src = self.source
        return src.time(), src.queue_tick, src.machine_tick

    def _hello(self, ev: HelloReceived) -> None:
        assert self.conn is not None
        mark(self.mach, "add", "Handshaking")
        if self.allow_id is not None and ev.client_id != self.allow_id:
            msg = f"no access: {ev.client_id} != {self.allow_id}"
            self.conn.reject_hello(ev.seq, msg)
            mark_err(self.mach, "ErrRpc", PermissionError(msg))
            return
        self.conn.accept_hello(ev.seq, export_source(self.source))
        self._last_sent = trio.current_time()
        log_connected(self.source, self.conn.source_id)
        # the debugger draws the rpc edge from this (client machine id in the args)
        mark(self.mach, "add", "HandshakeDone", {"id": f"rc-{ev.client_id}"})
        self.handshake_done.set()
        for fn in list(self.on_handshake):
            fn()
        log.debug("rpc server %s: handshake with %s", self.id, self._who())

    def _mutate(self, ev: MutationRequested) -> None:
        from machines import MutSource

        assert self.conn is not None
        conn = self.conn
        if ev.source is not None:
            src = MutSource(*ev.source)
        else:
            src = MutSource(machine_id=conn.source_id or "")
        try:
            result = getattr(self.source, _MUTATORS[ev.mutation_type])(
                ev.states, ev.args, source=src
            )
        except Exception as err:  # e.g. a disposed source; the client gets the reason
            if ev.seq:
                conn.respond_error(ev.seq, f"{type(err).__name__}: {err}")
            return
        if ev.seq:
            conn.respond_mutation(ev.seq, int(result), *self._clock())
            self._last_sent = trio.current_time()

    async def _flush(self) -> None:
        """Send what the protocol queued, in order, one sender at a time.

        A task that finds a send in progress returns at once: the active sender loops until the
        outbox is empty. (A lock would cost a scheduling round per frame, the p50 latency.)
        """
        if self._sending:
            return
        assert self.conn is not None and self._stream is not None
        self._sending = True
        try:
            while data := self.conn.data_to_send():
                await self._stream.send_all(data)
        finally:
            self._sending = False

    async def _writer(self) -> None:
        """Sends frames queued outside the receive loop (payloads, schema changes)."""
        while True:
            await self._outbox.wait()
            self._outbox = trio.Event()
            try:
                await self._flush()
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                self.close()
                return

    async def _pusher(self) -> None:
        """Leading-edge push, then at most one push per interval with the accumulated change."""
        assert self.conn is not None and self.push_interval is not None
        while True:
            await self._dirty.wait()
            self._dirty = trio.Event()
            await trio.sleep_until(self._last_sent + self.push_interval)
            if self.conn.push(*self._clock()):
                self._last_sent = trio.current_time()
                try:
                    await self._flush()
                except (trio.BrokenResourceError, trio.ClosedResourceError):
                    self.close()
                    return

    def _source_changed(self, tx: Any = None) -> None:
        if threading.get_ident() != self._thread:
            # the source was mutated from another thread: hand over to trio's
            self._token.run_sync_soon(self._source_changed, tx)
            return
        conn = self.conn
        if conn is not None and conn.options.mutations:
            mut = getattr(tx, "mutation", None)
            kind = int(mut.type) if mut is not None else None
            conn.record(kind, mut.called if mut is not None else (), *self._clock())
        self._dirty.set()

    def push_now(self) -> None:
        """Push pending changes now, whatever the interval (e.g. before changing it)."""
        self._last_sent = -math.inf
        self._dirty.set()

    def _schema_changed(self) -> None:
        if threading.get_ident() != self._thread:
            self._token.run_sync_soon(self._schema_changed)
        elif self.conn is not None and self.conn.handshaken:
            self.conn.schema_changed(export_source(self.source))
            self._outbox.set()
