"""What each aRPC event means, written once for every driver (no trio, no asyncio, no I/O).

`protocol` turns bytes into events; the cores here act on them: the client core mirrors clocks
into its NetMach, finishes pending calls, hands payloads to callbacks and the consumer machine;
the server core answers hellos, runs requested mutations on the source with their source, and
batches clock pushes. Two kinds of drivers move the bytes, as with h11: the trio `Client` /
`Server` (own a stream, reconnect, pace pushes with trio timers, keep lifecycle machines) and
the callback endpoints the browser feeds from its WebSocket (endpoint.py). A driver supplies
the clock (`_now`), the sending, and how a waiting caller is woken.
"""

from __future__ import annotations

import logging
import math
import secrets
import threading
import weakref
from collections.abc import Callable, Mapping
from typing import Any, TypedDict, Unpack

from ..mutation import MutSource
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
    input_error,
    schema_to_wire,
)
from .waiting import Waiters

log = logging.getLogger("machines.rpc")
_MUTATORS = ("add", "remove", "set")
#: push_interval 0: a client's next push waits this many times as long as its last one took
#: to write (measured with 100 clients on one loop: 1 gave ~25 pushes per client per 1,000
#: source mutations and ~1,200 mutations/s of CPU, 4 gave ~8 and ~6,000/s)
_PACE = 4


def source_tuple(source: Any) -> tuple[str, str, int] | None:
    """A MutSource, a machine id, or a handler event (its machine and transition)."""
    if source is None:
        return None
    if isinstance(source, str):
        return (source, "", 0)
    to_source = getattr(source, "source", None)
    if callable(to_source):  # a handler event: its machine, transition and time
        source = to_source()
    if hasattr(source, "machine_id") and hasattr(source, "tx_id"):
        return (source.machine_id, source.tx_id or "", int(source.mach_time or 0))
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


def _told(conn: Any, err: Exception) -> ProtocolError:
    """`err`, raised while acting on the peer's events, as the ProtocolError that ends the link,
    with the error frame that tells the peer why queued for the driver's last flush. Without it
    the peer saw only a close ("server closed the connection") and a call in flight failed with
    no reason; errors in the frames themselves are told by the protocol already."""
    perr = input_error(err)
    conn.complain(str(perr))
    return perr


# --- client ----------------------------------------------------------------------------------


class PendingCall:
    """A call in flight: its outcome, its deadline, and how to wake whoever awaits it."""

    __slots__ = ("done", "result", "error", "deadline", "what", "wake")

    def __init__(self, deadline: float, what: Any, wake: Callable[[], Any] | None) -> None:
        self.done = False
        self.result: Any = None
        self.error: BaseException | None = None
        self.deadline = deadline
        self.what = what
        self.wake = wake

    def finish(self, result: Any = None, error: BaseException | None = None) -> None:
        if self.done:  # e.g. an answer after the timeout
            return
        self.done, self.result, self.error = True, result, error
        if self.wake is not None:
            self.wake()

    def outcome(self) -> Any:
        if self.error is not None:
            raise self.error
        return self.result


class ClientOptions(TypedDict, total=False):
    """Options of every client: the trio `Client` (and `connect`) and the `ClientEndpoint`."""

    source: Any  # the machine (or its id) the client acts for: the source of its mutations
    schema: Mapping[str, Any] | None  # the remote schema if known: names before the handshake
    allowed: list[str] | None  # mirror only these states (None: all)
    skipped: list[str] | None  # and not these
    no_schema: bool  # no relations, only the tracked states (default False)
    shallow: bool  # 0/1 clocks instead of ticks (default False)
    sync_mutations: bool  # one NetMach transition per source mutation (default False)
    consumer: Any  # a machine that gets `ServerPayload` with each payload
    call_timeout: float  # seconds until a call fails with RpcTimeout (default 3)
    max_frame: int  # the largest frame accepted or sent, in bytes (default 1 MiB)


class ClientCore:
    """The client role: a NetMach mirrored from the peer, calls matched to their answers.

    Drivers implement `_now()`, `_await_call(seq, what)` and `_send()`, open a session with
    `_open_session()`, feed bytes to `_feed()` and end with `_close_session()`.
    """

    def __init__(self, id: str, addr: str | None = None, **opts: Unpack[ClientOptions]) -> None:
        """`addr` names the peer in messages (None where the host owns the transport)."""
        unknown = opts.keys() - ClientOptions.__optional_keys__
        if unknown:
            raise TypeError(f"unknown client option(s): {', '.join(sorted(unknown))}")
        source, schema = opts.get("source"), opts.get("schema")
        self.id = id
        self.addr = addr
        self.source_id = getattr(source, "id", source) or id
        self.schema = schema
        self.options = SyncOptions(
            opts.get("allowed"),
            opts.get("skipped"),
            opts.get("no_schema", False),
            opts.get("shallow", False),
            opts.get("sync_mutations", False),
        )
        self.consumer = opts.get("consumer")
        self.call_timeout = opts.get("call_timeout", 3.0)
        self.max_frame = opts.get("max_frame", DEFAULT_MAX_FRAME)
        self.netmach = NetMach(f"rnm-{id}", link=self, parent_id=getattr(source, "id", None))
        if schema is not None:  # names known before the first handshake
            self.netmach._set_remote("", list(schema), schema_to_wire(schema))
        self.on_payload: list[Callable[[PayloadReceived], None]] = []
        self.connects = 0  # successful handshakes
        self.calls = 0  # calls sent
        self.last_error = ""
        self.fatal: Exception | None = None
        self.complaint = ""  # the server's last error frame without a call (seq 0)
        self._conn: ClientConnection | None = None
        self._handshaken = False  # this session's handshake
        self._gave_up = False
        self._calls: dict[int, PendingCall] = {}
        self._waiters = Waiters()  # connection events: handshake, sync, loss

    # --- driver hooks --------------------------------------------------------------------------

    def _now(self) -> float:
        raise NotImplementedError

    async def _await_call(self, seq: int, what: Any) -> Any:
        """Send, then wait for call `seq`'s answer; `what` names it for `_timeout`."""
        raise NotImplementedError

    async def _send(self) -> None:
        """Send what the protocol queued."""
        raise NotImplementedError

    def _on_handshake(self, conn: ClientConnection) -> None:
        """The session is handshaken (after the whole batch that did it is applied)."""

    def _on_fatal(self, err: Exception) -> None:
        """The server refused the handshake: no point in reconnecting."""

    # --- state ---------------------------------------------------------------------------------

    @property
    def connected(self) -> bool:
        return self._conn is not None and self._conn.handshaken

    @property
    def conn(self) -> ClientConnection | None:
        return self._conn

    def _where(self) -> str:
        return f" to {self.addr}" if self.addr else ""

    async def wait_connected(self, timeout: float | None = None) -> None:
        """Until handshaken; raises the fatal error if the server refused us."""
        await self._waiters.wait(
            lambda: self.connected or self.fatal is not None or self._gave_up, timeout
        )
        if self.fatal is not None:
            raise self.fatal
        if self.connected:
            return
        if self._gave_up:
            raise RpcNotConnected(f"client {self.id}: gave up on {self.addr}: {self.last_error}")
        raise RpcNotConnected(f"client {self.id}: no handshake in {timeout}s")

    async def wait_disconnected(self) -> None:
        await self.wait_until(lambda: not self.connected)

    async def wait_until(self, predicate: Callable[[], bool]) -> None:
        """Until `predicate()` holds, re-checked on every connection event (attempts, etc.)."""
        await self._waiters.wait(predicate)

    # --- remote calls (the NetMach's link) -----------------------------------------------------

    def _live(self) -> ClientConnection:
        """The connection, if a call can go out now; else raises RpcNotConnected."""
        conn = self._conn
        if conn is None or not conn.handshaken:
            why = f" ({self.last_error})" if self.last_error else ""
            raise RpcNotConnected(f"client {self.id}: not connected{self._where()}{why}")
        return conn

    #: Raise RpcNotConnected unless a call can go out now (the NetMach asks first; the same
    #: function, not a wrapper: it runs on every call)
    check = _live

    async def mutate(
        self, mutation_type: int, states: list[str], args: Mapping[str, Any] | None, source: Any
    ) -> int:
        conn = self._conn
        if conn is None or not conn.handshaken:
            conn = self._live()  # raises why
        seq = conn.mutate(
            mutation_type, states, args, None if source is None else source_tuple(source)
        )
        return await self._await_call(seq, states)  # described only if it times out

    async def add_ns(self, states: list[str], args: Mapping[str, Any] | None, source: Any) -> None:
        self._live().add_ns(states, args, source_tuple(source))
        self.calls += 1
        await self._send()

    async def sync(self) -> None:
        """Fetch the full clock now (after no-sync adds, or to double-check)."""
        conn = self._live()
        seq = conn.sync()
        if seq is None:  # one is in flight already: wait for the clock it brings
            done = await self._waiters.wait(
                lambda: not conn.syncing or self._conn is not conn, self.call_timeout
            )
            if not done:
                raise self._timeout("sync")
            return
        await self._await_call(seq, "sync")

    def _start_call(self, seq: int, what: Any, wake: Callable[[], Any] | None) -> PendingCall:
        call = PendingCall(self._now() + self.call_timeout, what, wake)
        self._calls[seq] = call
        self.calls += 1
        return call

    def _timeout(self, what: Any) -> RpcTimeout:
        """`what`: the call's name, or a mutation's states (formatted only here: a round trip
        that formats them costs a few percent more)."""
        if not isinstance(what, str):
            what = f"mutation of {what}"
        return RpcTimeout(f"client {self.id}: {what} got no answer in {self.call_timeout}s")

    def _expire(self, now: float) -> float:
        """Fail calls unanswered at their deadline; returns when to look again."""
        wake = now + self.call_timeout  # new calls always expire later
        for call in list(self._calls.values()):
            if call.done:
                continue
            if call.deadline <= now:
                call.finish(error=self._timeout(call.what))
            else:
                wake = min(wake, call.deadline)
        return wake

    def _resolve(self, seq: int, result: Any = None, error: BaseException | None = None) -> None:
        call = self._calls.get(seq)
        if call is not None:  # else it timed out already
            call.finish(result, error)

    # --- session -------------------------------------------------------------------------------

    def _open_session(self) -> ClientConnection:
        """A fresh protocol connection with its hello queued."""
        conn = self._conn = ClientConnection(
            self.id, self.source_id, self.options, self.schema, max_frame=self.max_frame
        )
        self._handshaken = False
        conn.hello()
        self.calls += 1
        return conn

    def _close_session(self, reason: str, record: bool = True) -> None:
        """The connection is gone: every pending call fails now (waiters: the driver's turn)."""
        self._conn = None
        if record:
            self.last_error = reason
        lost = RpcConnectionLost(f"client {self.id}: connection{self._where()} lost: {reason}")
        for call in list(self._calls.values()):
            call.finish(error=lost)

    def _feed(self, conn: ClientConnection, data: bytes | bytearray) -> bool:
        """Apply inbound bytes in order; True ends the session. Raises only ProtocolError for
        anything the input causes (see ServerCore._feed)."""
        end = False
        try:
            for ev in conn.receive_data(data):
                kind = type(ev)  # a round trip's two events first, without a call each
                if kind is ClockChanged:
                    self.netmach._apply(
                        ev.after, ev.queue_tick, ev.machine_tick, ev.full, ev.mutation
                    )
                elif kind is MutationDone:
                    self._resolve(ev.seq, ev.result)
                else:
                    end = self._dispatch(conn, ev) or end
        except ProtocolError:
            raise
        except Exception as err:  # acting on the peer's events failed: its input, one line
            raise _told(conn, err) from None
        if conn.handshaken and not self._handshaken:
            self._handshaken = True
            self.connects += 1
            self.last_error = ""
            self._on_handshake(conn)
            self._waiters.check()
        return end

    def _dispatch(self, conn: ClientConnection, ev: Any) -> bool:
        """Apply one protocol event other than a clock change or a mutation's answer (`_feed`
        applies those itself); True ends the session."""
        net = self.netmach
        if isinstance(ev, SyncDone):
            self._resolve(ev.seq)
            self._waiters.check()
        elif isinstance(ev, HandshakeDone):
            partial = self.options.allowed is not None or bool(self.options.skipped)
            net._set_remote(ev.source_id, ev.names, conn.schema, partial)
        elif isinstance(ev, SchemaChanged):
            net._set_remote(conn.remote_id or "", ev.names, ev.schema, net.is_partial)
        elif isinstance(ev, CallFailed):
            if ev.method == "h":
                cls = VersionMismatch if "version mismatch" in ev.message else RemoteError
                self.fatal = cls(f"{self.addr or 'server'} refused the handshake: {ev.message}")
                self.last_error = str(self.fatal)
                self._on_fatal(self.fatal)
                log.warning("rpc client %s: %s", self.id, self.fatal)
                return True
            msg = f"{self.addr}: {ev.message}" if self.addr else ev.message
            self._resolve(ev.seq, error=RemoteError(msg))
            if ev.method == "y":
                self._waiters.check()
        elif isinstance(ev, PayloadReceived):
            self._payload(ev)
        elif isinstance(ev, PeerError):
            self.complaint = ev.message  # e.g. "server full": the reason of the coming close
            log.warning("rpc client %s: server reports: %s", self.id, ev.message)
        elif isinstance(ev, ByeReceived):
            return True
        return False

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


# --- server ----------------------------------------------------------------------------------


def _make_tracer(hub: SourceHub) -> Any:
    """A core Tracer that tells a source's servers of its changes; built lazily so the import
    order does not matter. It takes the transition records (`Tracer.sink`), not a hook: a hook
    would take the source off its fast path and cost every mutation ~2.5x the instructions."""
    from machines import Tracer

    class _PushTracer(Tracer):
        sink = staticmethod(hub.changed)

        def schema_change(self, mach: Any, old_schema: Any) -> None:
            for server in list(hub.servers):
                server._schema_changed()

    return _PushTracer()


class Snapshot:
    """One clock of a source, read once per change and shared by every connection pushed to
    it; compared by identity (a new one per change)."""

    __slots__ = ("time", "q", "m")

    def __init__(self, time: list[int], q: int, m: int) -> None:
        self.time, self.q, self.m = time, q, m


class SourceHub:
    """The servers of one source (a mux's clients): one tracer on the source for all of them,
    one clock read per change, and one encoding per (client's clock, new clock) pair, so a
    change costs the source one call and a push round N sends of the same bytes.

    A change wakes only the servers whose pusher waits for one (`idle`), each once; servers
    that want every transition (per-mutation mode, drivers without idle waits) are told of
    each. Runs on the drivers' thread: a change on another thread hops there first."""

    def __init__(self, source: Any) -> None:
        self.source = source
        self.servers: list[ServerCore] = []
        self.frames: dict[tuple[Snapshot, Snapshot], bytes] = {}  # for the current snapshot
        self._each: list[ServerCore] = []  # told of every transition
        self._idle: set[ServerCore] = set()  # pushers waiting for the next change
        self._snap: Snapshot | None = None
        self._tracer: Any = None
        #: the server whose client's mutation runs now: its answer carries the change
        self.answering: ServerCore | None = None

    def join(self, server: ServerCore) -> None:
        self.servers.append(server)
        if not server._idle_waits:
            self._each.append(server)
        if self._tracer is None:
            self._tracer = _make_tracer(self)
            self.source.tracer_bind(self._tracer)

    def leave(self, server: ServerCore) -> None:
        self._idle.discard(server)
        for group in (self.servers, self._each):
            if server in group:
                group.remove(server)
        if not self.servers and self._tracer is not None:
            self.source.tracer_detach(self._tracer)
            self._tracer = None
            if _hubs.get(self.source) is self:
                del _hubs[self.source]

    def tell_each(self, server: ServerCore) -> None:
        """`server` wants every transition (per-mutation mode records each)."""
        if server not in self._each:
            self._each.append(server)

    def idle(self, server: ServerCore) -> None:
        """`server`'s pusher waits: wake it (`_wake_pusher`) at the next change."""
        self._idle.add(server)

    def invalidate(self) -> None:
        """Read the clock afresh at the next push (it may have changed without a transition)."""
        self._snap = None

    def pending(self, conn: ServerConnection) -> bool:
        """Whether the source changed since `conn`'s last push."""
        snap = self._snap
        return snap is None or conn.pushed_at is not snap

    def snapshot(self) -> Snapshot:
        snap = self._snap
        if snap is None:
            src = self.source
            snap = self._snap = Snapshot(src.time(), src.queue_tick, src.machine_tick)
            self.frames.clear()  # frames to older clocks are never asked for again
        return snap

    def changed(self, rec: tuple | None = None) -> None:
        """The source made a transition (`rec`: its record, machines.tracer.RECORD_FIELDS)."""
        first = self.servers[0] if self.servers else None
        if first is not None and first._hop is not None and threading.get_ident() != first._thread:
            first._hop(self.changed, rec)  # the source was mutated from another thread
            return
        self._snap = None
        for server in list(self._each):
            server._source_changed(rec)
        idle = self._idle
        if idle:
            answering = self.answering
            if answering in idle:  # its answer carries the change: it stays idle
                if len(idle) == 1:  # a round trip with one client: nobody else to wake
                    return
                idle.discard(answering)
                self._idle = {answering}
            else:
                self._idle = set()
            for server in idle:
                server._wake_pusher()


_hubs: weakref.WeakKeyDictionary[Any, SourceHub] = weakref.WeakKeyDictionary()


def hub_of(source: Any) -> SourceHub:
    """The hub every server of `source` joins (one per source while any server is attached)."""
    hub = _hubs.get(source)
    if hub is None:
        hub = _hubs[source] = SourceHub(source)
    return hub


class ServerCore:
    """The server role: exposes `source` to the one peer of a connection.

    Drivers implement `_now()`, `_wake_writer()` (frames were queued outside the receive path)
    and `_wake_pusher()` (the source changed: push within `push_interval`, from `_push_due()`),
    open with `_attach()`, feed bytes to `_feed()` and end with `_detach()`. A driver whose
    source may be mutated from other threads sets `_thread` (its own) and `_hop(fn, *args)`
    (runs fn on it).
    """

    def __init__(
        self,
        source: Any,
        *,
        id: str | None = None,
        push_interval: float | None = 0.25,
        allow_id: str | None = None,
        max_frame: int = DEFAULT_MAX_FRAME,
    ) -> None:
        self.source = source
        self.id = id or f"rs-{source.id}"
        self.push_interval = push_interval
        self.allow_id = allow_id
        self.max_frame = max_frame
        self.conn: ServerConnection | None = None
        self.peer = ""
        self.calls = 0  # requests served
        self._last_sent = -math.inf
        # push_interval 0: when the last push was written and how long that took (drivers set
        # them; see _push_due)
        self._written = -math.inf
        self._busy = 0.0
        self._hub: SourceHub | None = None
        self._thread: int | None = None
        self._hop: Callable[..., Any] | None = None
        self._own_source: MutSource | None = None  # the hello's source, for its mutations

    # --- driver hooks --------------------------------------------------------------------------

    def _now(self) -> float:
        raise NotImplementedError

    def _wake_writer(self) -> None:
        raise NotImplementedError

    def _wake_pusher(self) -> None:
        """Called on every source change (a driver may bind an attribute instead: no frame)."""
        raise NotImplementedError

    def _accepting(self) -> bool:
        """Whether frames queued now would still go out."""
        return self.conn is not None

    def _on_hello(self, ev: HelloReceived) -> None:
        """A hello arrived (accepted or not)."""

    def _on_refused(self, message: str) -> None:
        """The hello was refused (`allow_id`)."""

    def _on_handshake(self, ev: HelloReceived) -> None:
        """The hello was accepted: the session is handshaken."""

    # --- state ---------------------------------------------------------------------------------

    @property
    def client_id(self) -> str | None:
        return self.conn.client_id if self.conn and self.conn.handshaken else None

    @property
    def pushes(self) -> int:
        return self.conn.pushes if self.conn else 0

    def _who(self) -> str:
        cid = self.conn.client_id if self.conn else None
        return f"{cid or 'client'}@{self.peer}" if self.peer else (cid or "client")

    def _clock(self) -> tuple[list[int], int, int]:
        src = self.source
        return src.time(), src.queue_tick, src.machine_tick

    # --- API -----------------------------------------------------------------------------------

    def send_payload(
        self, name: str, data: Any, *, destination: str | None = None, source: str = ""
    ) -> str:
        """Queue a payload for the client (callable from sync handlers); returns its token."""
        conn = self.conn
        if conn is None or not conn.handshaken or not self._accepting():
            raise RpcNotConnected(f"server {self.id}: no client to send payload {name!r} to")
        if destination is not None and destination != conn.client_id:
            raise ValueError(f"wrong destination: {destination} != {conn.client_id}")
        token = secrets.token_hex(4)
        conn.send_payload(name, data, source or self.source.id, token)
        self._wake_writer()
        return token

    # --- session -------------------------------------------------------------------------------

    #: the driver's pusher registers with `SourceHub.idle` while it waits for a change (else
    #: the hub tells this server of every transition)
    _idle_waits = False

    def _attach(self) -> ServerConnection:
        """A fresh protocol connection; it joins its source's hub (which reports changes) at
        the handshake, so a connection that never says hello costs the source nothing."""
        self.conn = ServerConnection(self.max_frame)
        self._own_source = None
        return self.conn

    def _detach(self) -> None:
        if self._hub is not None:
            self._hub.leave(self)
            self._hub = None

    def _feed(self, conn: ServerConnection, data: bytes | bytearray) -> bool:
        """Act on inbound bytes; True when the client said bye.

        Raises only ProtocolError for anything the input causes (whatever acting on its
        events raises), so that a driver catching it ends this connection alone."""
        bye = False
        try:
            for ev in conn.receive_data(data):
                self.calls += 1
                if type(ev) is MutationRequested:
                    self._mutate(conn, ev)
                elif isinstance(ev, HelloReceived):
                    self._hello(conn, ev)
                elif isinstance(ev, SyncRequested):
                    conn.respond_sync(ev.seq, *self._clock())
                elif isinstance(ev, ByeReceived):
                    bye = True
                elif isinstance(ev, PeerError):
                    log.warning("rpc server %s: %s reports: %s", self.id, self._who(), ev.message)
        except ProtocolError:
            raise
        except Exception as err:
            raise _told(conn, err) from None
        return bye

    def _hello(self, conn: ServerConnection, ev: HelloReceived) -> None:
        self._on_hello(ev)
        if self.allow_id is not None and ev.client_id != self.allow_id:
            msg = f"no access: {ev.client_id} != {self.allow_id}"
            conn.reject_hello(ev.seq, msg)
            self._on_refused(msg)
            return
        if self._hub is None:  # joined before the clock is read: no change falls between
            self._hub = hub_of(self.source)
            self._hub.join(self)
        conn.accept_hello(ev.seq, export_source(self.source))
        self._own_source = MutSource(machine_id=conn.source_id or "")
        if conn.options.mutations and self._hub is not None:
            self._hub.tell_each(self)
        self._last_sent = self._now()
        log_connected(self.source, conn.source_id)
        self._on_handshake(ev)

    def _mutate(self, conn: ServerConnection, ev: MutationRequested) -> None:
        src = self._own_source if ev.source is None else MutSource(*ev.source)
        states = ev.states
        hub = self._hub
        if hub is not None and ev.seq:
            hub.answering = self  # the change goes out in the answer: no push, no pusher wake
        try:
            result = getattr(self.source, _MUTATORS[ev.mutation_type])(
                states[0] if len(states) == 1 else states, ev.args, source=src
            )
        except Exception as err:  # e.g. a disposed source; the client gets the reason
            if ev.seq:
                conn.respond_error(ev.seq, f"{type(err).__name__}: {err}")
            return
        finally:
            if hub is not None:
                hub.answering = None
        if ev.seq:
            if hub is not None:
                snap = hub.snapshot()
                conn.respond_mutation(ev.seq, int(result), snap.time, snap.q, snap.m)
                conn.pushed_at = snap
            else:
                conn.respond_mutation(ev.seq, int(result), *self._clock())
            self._last_sent = self._now()

    # --- pushes --------------------------------------------------------------------------------

    def _source_changed(self, rec: tuple | None = None) -> None:
        """`rec`: the transition's record (its mutation type and called states at 4 and 5)."""
        if self._hop is not None and threading.get_ident() != self._thread:
            # the source was mutated from another thread: hand over to the driver's
            self._hop(self._source_changed, rec)
            return
        conn = self.conn
        if conn is not None and conn.options.mutations:
            kind, called = (int(rec[4]), rec[5]) if rec is not None else (None, ())
            conn.record(kind, called, *self._clock())
        self._wake_pusher()

    def _schema_changed(self) -> None:
        if self._hop is not None and threading.get_ident() != self._thread:
            self._hop(self._schema_changed)
        elif self.conn is not None and self.conn.handshaken:
            self.conn.schema_changed(export_source(self.source))
            self._wake_writer()

    def _push_due(self) -> float:
        """When the next push may go: the first change after a quiet period goes at once,
        later ones are batched to at most one push per `push_interval`. Changes made while a
        push was being written, and for `_PACE` times as long after, are coalesced into the
        next push too (with `push_interval` 0 that is all the batching): under load a client's
        pushes space out with the time they take to write (which grows with the number of
        clients), so the loop stays mostly free for the source; final clocks are still exact."""
        paced = self._written + _PACE * self._busy
        if self.push_interval:
            return max(self._last_sent + self.push_interval, paced)
        return paced

    def _push(self) -> bool:
        """Queue a push of whatever changed; True if one was queued."""
        conn, hub = self.conn, self._hub
        if conn is None or hub is None:
            return False
        if conn.push_shared(hub.snapshot(), hub.frames):
            self._last_sent = self._now()
            return True
        return False
