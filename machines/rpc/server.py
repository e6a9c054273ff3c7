"""aRPC server (trio driver): exposes one local machine to one client over any trio stream.

What each request means (hello, mutations with their source, sync, payloads, push batching) is
in `core.ServerCore`, shared with the browser's endpoint; the protocol work (validation, diffs,
checksums) is in `protocol.ServerConnection`. This driver moves bytes, keeps the lifecycle
machine, and paces clock pushes with a trio task: the first change after a quiet period goes
out at once, later ones are batched to at most one push per `push_interval`.
"""

from __future__ import annotations

import logging
import math
import threading
from collections.abc import Callable
from typing import Any

import trio

from .core import ServerCore, export_source
from .protocol import DEFAULT_MAX_FRAME, HelloReceived, ProtocolError
from .states import SERVER_SCHEMA, mark, mark_err, new_machine

__all__ = ["DEFAULT_HANDSHAKE_TIMEOUT", "DEFAULT_PUSH_INTERVAL", "Server", "export_source"]

log = logging.getLogger("machines.rpc")

DEFAULT_PUSH_INTERVAL = 0.25
#: Seconds a connection may take to say hello; then it is closed (it holds a slot of the mux).
DEFAULT_HANDSHAKE_TIMEOUT = 10.0
_READ_SIZE = 65536


class Server(ServerCore):
    """Serves `source` to one client per `serve(stream)` call (use a Mux for many clients)."""

    def __init__(
        self,
        source: Any,
        *,
        id: str | None = None,
        push_interval: float | None = DEFAULT_PUSH_INTERVAL,
        allow_id: str | None = None,
        max_frame: int = DEFAULT_MAX_FRAME,
        handshake_timeout: float | None = DEFAULT_HANDSHAKE_TIMEOUT,
        parent: Any = None,
    ) -> None:
        """`push_interval`: seconds between batched pushes; 0 = every change, None = no pushes.
        `handshake_timeout`: seconds until a connection without a hello is closed (None: never).
        `parent`: the machine owning this server's own machine (`self.mach`), e.g. a mux's."""
        super().__init__(
            source, id=id, push_interval=push_interval, allow_id=allow_id, max_frame=max_frame
        )
        self._parent = parent
        self._mach: Any = None
        self.handshake_timeout = handshake_timeout
        self.handshake_done = trio.Event()
        self._farewell = False  # an error frame says why we close: flush it first
        self.closed = trio.Event()
        self.close_reason = ""
        self._stream: trio.abc.Stream | None = None
        self._sending = False
        self._dirty = trio.Event()
        self._wake_pusher = self._dirty.set  # bound to the current event: no frame per change
        self._outbox = trio.Event()
        self._cancel: trio.CancelScope | None = None
        self._nursery: trio.Nursery | None = None
        self.on_handshake: list[Callable[[], None]] = []

    @property
    def mach(self) -> Any:
        """This connection's lifecycle machine, made at its first frame: a connection that
        never says anything costs no machine (thousands of idle sockets stay cheap)."""
        if self._mach is None:
            self._mach = new_machine(SERVER_SCHEMA, self.id, ["rpc-server"], parent=self._parent)
            mark(self._mach, "add", ["Start", "ClientConnected"])
        return self._mach

    # --- API -----------------------------------------------------------------------------------

    def close(self) -> None:
        """Drop the connection (the client sees it close)."""
        if self._cancel is not None:
            self._cancel.cancel()

    def refuse(self, reason: str) -> None:
        """Close the connection with an error frame that tells the client why."""
        if self.closed.is_set():
            return
        if not self.close_reason:
            self.close_reason = reason
        if self.conn is not None:
            self.conn.respond_error(0, reason)
            self._farewell = True
        self.close()

    def push_now(self) -> None:
        """Push pending changes now, whatever the interval (e.g. before changing it)."""
        self._last_sent = self._written = -math.inf
        if self._hub is not None:
            self._hub.invalidate()
        self._dirty.set()

    async def serve(self, stream: trio.abc.Stream, peer: str = "") -> None:
        """Serve one connection until it ends; never raises for the peer's misbehaviour."""
        if self.conn is not None:
            raise RuntimeError(f"server {self.id} serves one connection; use a Mux for more")
        self.peer = peer
        self._stream = stream
        self._thread = threading.get_ident()
        self._hop = trio.lowlevel.current_trio_token().run_sync_soon
        self._now = trio.lowlevel.current_clock().current_time  # one frame per read, not three
        self._attach()
        try:
            with trio.CancelScope() as self._cancel:
                async with trio.open_nursery() as nursery:
                    self._nursery = nursery  # the writer and pusher start at the handshake
                    if self.handshake_timeout is not None:
                        nursery.start_soon(self._handshake_deadline, self.handshake_timeout)
                    self.close_reason = await self._receive_loop()
                    nursery.cancel_scope.cancel()
            if self._cancel.cancelled_caught and not self.close_reason:
                self.close_reason = "closed by the server"
        finally:
            self._detach()
            self._nursery = None
            if self._mach is not None:
                if self.close_reason.startswith("bad input"):
                    mark_err(self._mach, "ErrRpc", ValueError(self.close_reason))
                mark(self._mach, "remove", "ClientConnected")
                self._mach.dispose()
            self.closed.set()
            with trio.CancelScope(shield=True):
                with trio.move_on_after(1):
                    if self._farewell:
                        await self._flush()
                    await stream.aclose()
        level = logging.WARNING if self.close_reason.startswith("bad input") else logging.INFO
        log.log(level, "rpc server %s: closed %s: %s", self.id, self._who(), self.close_reason)

    # --- driver hooks of the core --------------------------------------------------------------

    _now = staticmethod(trio.current_time)  # until serve() binds the run's clock
    #: the current `_dirty` event's `set`, bound per wait (see `_wait_for_change`)
    _wake_pusher: Callable[[], None]

    def _accepting(self) -> bool:
        return not self.closed.is_set()

    def _wake_writer(self) -> None:
        self._outbox.set()

    def _on_hello(self, ev: HelloReceived) -> None:
        mark(self.mach, "add", "Handshaking")

    def _on_refused(self, message: str) -> None:
        mark_err(self.mach, "ErrRpc", PermissionError(message))

    def _on_handshake(self, ev: HelloReceived) -> None:
        # the debugger draws the rpc edge from this (client machine id in the args)
        mark(self.mach, "add", "HandshakeDone", {"id": f"rc-{ev.client_id}"})
        self.handshake_done.set()
        if self._nursery is not None:
            self._nursery.start_soon(self._writer)
            if self.push_interval is not None:
                # registered idle now, not when the task first runs: a change made in this
                # scheduling turn (after the hello's clock was read) must wake the pusher
                self._wait_for_change()
                self._nursery.start_soon(self._pusher)
        for fn in list(self.on_handshake):
            fn()
        log.debug("rpc server %s: handshake with %s", self.id, self._who())

    # --- tasks ---------------------------------------------------------------------------------

    async def _handshake_deadline(self, timeout: float) -> None:
        with trio.move_on_after(timeout):
            await self.handshake_done.wait()
            return
        # A loaded process may wake the reader (the hello came in time) and this timer in the
        # same turn: let the reader run first, so such a hello keeps its session.
        await trio.lowlevel.checkpoint()
        if not self.handshake_done.is_set():
            self.refuse(f"no handshake in {timeout:g} s")

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
                bye = self._feed(conn, data)
            except ProtocolError as err:
                with trio.move_on_after(1):  # the error frame saying why, if the peer reads
                    await self._flush()
                return f"bad input: {err}"
            if not await self._flush():
                return "connection lost while sending"
            if bye:
                return "client said bye"

    async def _flush(self) -> bool:
        """Send what the protocol queued, in order, one sender at a time; False if the
        connection broke.

        A task that finds a send in progress returns at once: the active sender loops until the
        outbox is empty. (A lock would cost a scheduling round per frame, the p50 latency.)
        """
        if self._sending:
            return True
        assert self.conn is not None and self._stream is not None
        self._sending = True
        try:
            while data := self.conn.data_to_send():
                await self._stream.send_all(data)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            return False
        finally:
            self._sending = False
        return True

    async def _writer(self) -> None:
        """Sends frames queued outside the receive loop (payloads, schema changes)."""
        while True:
            await self._outbox.wait()
            self._outbox = trio.Event()
            if not await self._flush():
                self.close()
                return

    _idle_waits = True  # the pusher registers with the hub while it waits for a change

    def _wait_for_change(self) -> None:
        """A fresh `_dirty` event, registered with the hub: the next change sets it."""
        assert self._hub is not None
        self._dirty = trio.Event()
        self._wake_pusher = self._dirty.set
        self._hub.idle(self)

    async def _pusher(self) -> None:
        """Leading-edge push, then at most one push per interval with the accumulated change
        (see `_push_due`). Waits without a timer while nothing changes: the source's hub wakes
        it once at the next change. Registered idle (`_wait_for_change`) at the handshake and
        after every push that left the client with the current clock, with no checkpoint in
        between, so no change falls between a push and the wait."""
        hub, conn = self._hub, self.conn
        assert hub is not None and conn is not None
        while True:
            await self._dirty.wait()
            due = self._push_due()
            if due > trio.current_time():
                await trio.sleep_until(due)
            start = trio.current_time()
            pushed = self._push()
            if pushed:
                if not await self._flush():
                    self.close()
                    return
                self._written = trio.current_time()
                self._busy = self._written - start
            if not pushed or not hub.pending(conn):  # else push what changed meanwhile
                self._wait_for_change()
