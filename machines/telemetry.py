"""Telemetry for the debugger: every machine reports its schema and transitions.

Layers, like the rest of the core:

* :class:`DbgTracer` (sans-IO) turns a machine's schema and transitions into messages and puts
  them in an :class:`Outbox`, a bounded, non-blocking buffer: a slow, dead or absent debugger
  costs the machine an ``append``; when full, the oldest messages are dropped and counted, and
  the drop is reported once.
* :func:`encode_frame` / :class:`FrameDecoder`: the wire format, length-prefixed CBOR
  (:mod:`machines.framing`: 4-byte big-endian length, then ``{"t": "schema", "m": <schema>}``
  or ``{"t": "txs", "m": [<transition array>, ...]}``); schema dicts use the field names of
  :mod:`dbg.model`, transition arrays the order of :data:`TX_FIELDS` (see :func:`tx_message`).
* :class:`TcpSender`: a daemon thread that connects to the debugger, re-sends every machine's
  schema on each (re)connect (the collector ignores transitions of machines whose schema did not
  come over the same connection) and streams the outbox. Threads keep it independent of
  whichever event loop (trio, asyncio or none) the process runs. The browser has no threads;
  there :mod:`machines.telemetry_browser` drains the outbox into a WebSocket instead.

Environment (as in the reference): ``AM_DBG_ADDR`` (``1`` = ``localhost:6831``) turns it on for
every machine created afterwards; ``AM_LOG`` sets the log level shipped with each transition;
``AM_LOG_FULL`` adds mutation args; ``AM_RPC_DBG`` also reports aRPC's own machines (tagged
``rpc-server``, ``rpc-client``, ``rpc-mux``), which are hidden otherwise.
"""

from __future__ import annotations

import atexit
import logging
import os
import socket
import sys
import threading
import time
from collections import deque
from typing import TYPE_CHECKING, Any

from . import framing
from .addr import parse_hostport
from .tracer import Tracer
from .transition import ID_PREFIX, tx_id

if TYPE_CHECKING:
    from .machine import Machine
    from .mutation import Mutation
    from .transition import Transition

__all__ = [
    "DEFAULT_ADDR",
    "DbgTracer",
    "Outbox",
    "TcpSender",
    "FrameDecoder",
    "FrameError",
    "encode_frame",
    "attach",
    "auto_attach",
    "schema_message",
]

DEFAULT_ADDR = "localhost:6831"
MAX_FRAME = 16 * 1024 * 1024
RPC_TAGS = ("rpc-server", "rpc-client", "rpc-mux")

log = logging.getLogger("machines.telemetry")


class FrameError(ValueError):
    """A telemetry frame that cannot be decoded."""


def encode_frame(kind: str, message: dict[str, Any] | list[Any]) -> bytes:
    """One telemetry frame (`machines.framing`): ``{"t": kind, "m": message}``."""
    return framing.encode_frame({"t": kind, "m": message})


class FrameDecoder:
    """Sans-IO: feed bytes, get ``(kind, message)`` pairs; raises :class:`FrameError`."""

    def __init__(self, max_frame: int = MAX_FRAME) -> None:
        self._reader = framing.FrameReader(max_frame, FrameError)

    def feed(self, data: bytes) -> list[tuple[str, Any]]:
        out = []
        for doc in self._reader.feed(data):
            if not isinstance(doc, dict) or doc.get("t") not in ("schema", "txs"):
                raise FrameError("telemetry frame is not a {t: schema|txs, m: ...} map")
            if not isinstance(doc.get("m"), dict if doc["t"] == "schema" else list):
                raise FrameError(f"telemetry {doc['t']} frame has a malformed body")
            out.append((doc["t"], doc["m"]))
        return out


class Outbox:
    """Bounded FIFO of pending messages shared by the machines of a process.

    Transitions are queued as references and encoded in batches by :meth:`take`, on the
    sending side, so the machine pays one ``append`` per transition.
    """

    def __init__(self, limit: int = 10_000) -> None:
        self._items: deque[Any] = deque()
        self._limit = limit
        self.dropped = 0
        self._reported = False
        self.schemas: dict[str, bytes] = {}  # machine id -> its latest schema frame

    def put(self, item: bytes | tuple) -> None:
        """Queue a ready frame (bytes) or a transition record (see :meth:`DbgTracer`)."""
        items = self._items
        if len(items) >= self._limit:
            items.popleft()
            self.dropped += 1
            if not self._reported:
                self._reported = True
                log.warning(
                    "telemetry: the debugger is not keeping up; dropping the oldest "
                    "messages (counted in Outbox.dropped, reported once)"
                )
        items.append(item)

    def take(self) -> bytes:
        """All pending messages as frames (empty when none); transitions are batched."""
        items = self._items
        parts: list[bytes] = []
        batch: list[list[Any]] = []
        while items:
            item = items.popleft()
            if type(item) is bytes:
                if batch:
                    parts.append(encode_frame("txs", batch))
                    batch = []
                parts.append(item)
            else:
                batch.append(item)
        if batch:
            parts.append(encode_frame("txs", batch))
        return b"".join(parts)

    def __len__(self) -> int:
        return len(self._items)


# A transition travels as a positional array (smaller and much cheaper to encode than a map):
TX_FIELDS = (
    "machine_id", "id", "clocks", "queue_tick", "type", "called_states", "flags", "queue",
    "mut_queue_tick", "mut_queue_token", "log_entries", "pre_log_entries", "args", "source",
    "steps",
)  # fmt: skip
STEP_FIELDS = ("type", "from_state", "to_state", "rel_type", "is_final", "is_self", "is_enter")
FLAG_ACCEPTED, FLAG_AUTO, FLAG_CHECK, FLAG_QUEUED = 1, 2, 4, 8


def tx_message(arr: list[Any], id_prefix: str = "") -> dict[str, Any]:
    """The :mod:`dbg.model` dict form of a transition array; ``ValueError`` when malformed.

    A numeric id is expanded with ``id_prefix`` (the schema message's ``tx_id_prefix``)."""
    if not isinstance(arr, list) or len(arr) != len(TX_FIELDS):
        raise ValueError(f"telemetry: a transition is an array of {len(TX_FIELDS)} items")
    msg = {k: v for k, v in zip(TX_FIELDS, arr, strict=True) if v is not None}
    if isinstance(msg.get("id"), int):
        msg["id"] = tx_id(id_prefix, msg["id"])
    flags = msg.pop("flags", 0)
    if not isinstance(flags, int):
        raise ValueError("telemetry: transition flags must be an integer")
    msg["accepted"] = bool(flags & FLAG_ACCEPTED)
    msg["is_auto"] = bool(flags & FLAG_AUTO)
    msg["is_check"] = bool(flags & FLAG_CHECK)
    msg["is_queued"] = bool(flags & FLAG_QUEUED)
    source = msg.pop("source", None)
    if source is not None:
        if not (isinstance(source, list) and len(source) == 3):
            raise ValueError("telemetry: source must be [machine id, tx id, machine time]")
        msg["source_machine_id"], msg["source_tx_id"], msg["source_mach_time"] = source
    for key in ("log_entries", "pre_log_entries"):
        entries = msg.get(key)
        if entries is not None:
            if not isinstance(entries, list) or not all(
                isinstance(e, list) and len(e) == 2 for e in entries
            ):
                raise ValueError(f"telemetry: {key} must be [level, text] pairs")
            msg[key] = [{"level": lv, "text": t} for lv, t in entries]
    steps = msg.get("steps")
    if steps is not None:
        if not isinstance(steps, list) or not all(
            isinstance(st, list) and len(st) == len(STEP_FIELDS) for st in steps
        ):
            raise ValueError(f"telemetry: steps must be arrays of {len(STEP_FIELDS)} items")
        msg["steps"] = [
            {k: v for k, v in zip(STEP_FIELDS, st, strict=True) if k != "rel_type" or v >= 0}
            for st in steps
        ]
    return msg


def schema_message(mach: Machine) -> dict[str, Any]:
    msg: dict[str, Any] = {
        "id": mach.id,
        "states_index": mach.state_names,
        "states": {n: _state_dict(s) for n, s in mach.schema.items()},
        "tx_id_prefix": ID_PREFIX,
    }
    if mach.parent_id:
        msg["parent"] = mach.parent_id
    if mach.tags:
        msg["tags"] = list(mach.tags)
    return msg


def _state_dict(state: Any) -> dict[str, Any]:
    return {k: v for k, v in state.to_dict().items() if v}


class DbgTracer(Tracer):
    """Reports one machine to the debugger through an :class:`Outbox`."""

    def __new__(cls, outbox: Outbox, *, full: bool = False) -> DbgTracer:
        return super().__new__(_FullDbgTracer if full and cls is DbgTracer else cls)

    def __init__(self, outbox: Outbox, *, full: bool = False) -> None:
        self.outbox = outbox
        self.full = full
        self._sched: set[str] = set()

    def attach(self, mach: Machine) -> None:
        mach.tracer_bind(self)
        self._send_schema(mach)

    def _send_schema(self, mach: Machine) -> None:
        frame = encode_frame("schema", schema_message(mach))
        self.outbox.schemas[mach.id] = frame
        self.outbox.put(frame)

    def schema_change(self, mach: Machine, old_schema: dict[str, Any]) -> None:
        self._send_schema(mach)

    def verify_states(self, mach: Machine) -> None:
        self._send_schema(mach)

    def transition_end(self, tx: Transition) -> None:
        # a flat tuple in TX_FIELDS order: the only per-transition work the machine pays
        mut, mach, src = tx.mutation, tx.machine, tx.mutation.source
        args = None
        if self.full and mut.args:
            args = {k: _short(v) for k, v in mut.args.items() if not k.startswith("_")}
        flags = tx.accepted | (mut.auto << 1) | (mut.check << 2)
        self.outbox.put((
            mach.id, tx.num, tx.time_after, mach.queue_tick, int(mut.type), mut.called, flags,
            tx.queue_len, mut.queue_tick, mut.token, tx.log_entries or None,
            tx.pre_log_entries or None, args,
            (src.machine_id, src.tx_id, src.mach_time) if src is not None else None,
            [(int(st.type), st.from_state, st.to_state, st.rel_type, st.is_final, st.is_self,
              st.is_enter) for st in tx.steps] if tx.steps else None,
        ))  # fmt: skip

    def machine_dispose(self, mach_id: str) -> None:
        self.outbox.schemas.pop(mach_id, None)


class _FullDbgTracer(DbgTracer):
    """With full logging (``AM_LOG_FULL``) also a record per queued mutation, as the
    reference. A subclass, so that without it the machine skips the hook entirely: most
    mutations are queued and run at once, which would double the traffic for nothing."""

    def mutation_queued(self, mach: Machine, mutation: Mutation) -> None:
        src = mutation.source
        self.outbox.put((
            mach.id, f"q{mutation.queue_tick or mutation.token}", mach.time(), mach.queue_tick,
            int(mutation.type), mutation.called, FLAG_QUEUED | (mutation.check << 2),
            mach.queue_len(), mutation.queue_tick, mutation.token, None, None,
            {k: _short(v) for k, v in mutation.args.items() if not k.startswith("_")} or None,
            (src.machine_id, src.tx_id, src.mach_time) if src is not None else None, None,
        ))  # fmt: skip


def _short(value: Any) -> str:
    text = str(value)
    return text if len(text) <= 200 else text[:197] + "..."


class TcpSender:
    """Streams an :class:`Outbox` to a collector over TCP, reconnecting with backoff."""

    def __init__(self, outbox: Outbox, addr: str, *, poll: float = 0.01) -> None:
        self.outbox = outbox
        self.host, self.port = _split_addr(addr)
        self.addr = addr
        self.poll = poll
        self.sent_frames = 0
        self.connected = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"am-dbg->{addr}", daemon=True)
        self._warned = False

    def start(self) -> TcpSender:
        self._thread.start()
        return self

    def stop(self, flush_timeout: float = 2.0) -> None:
        """Stop after flushing what is pending (best effort, bounded)."""
        deadline = time.monotonic() + flush_timeout
        while (len(self.outbox) or not self.connected.is_set()) and time.monotonic() < deadline:
            time.sleep(self.poll)
        self._stop.set()
        self._thread.join(flush_timeout)

    def _run(self) -> None:
        backoff = 0.1
        while not self._stop.is_set():
            try:
                with socket.create_connection((self.host, self.port), timeout=5) as sock:
                    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                    sock.settimeout(None)
                    backoff = 0.1
                    self._stream(sock)
            except OSError as err:
                self.connected.clear()
                if not self._warned:
                    self._warned = True
                    log.warning(
                        "telemetry: debugger at %s unreachable (%s); retrying, "
                        "messages are buffered (bounded)",
                        self.addr,
                        err,
                    )
            self._stop.wait(backoff)
            backoff = min(backoff * 2, 5.0)

    def _stream(self, sock: socket.socket) -> None:
        # schemas first: the collector binds each machine to the connection its schema came on
        sock.sendall(b"".join(list(self.outbox.schemas.values())))
        self.connected.set()
        while not self._stop.is_set():
            data = self.outbox.take()
            if data:
                sock.sendall(data)
                self.sent_frames += 1
            else:
                time.sleep(self.poll)


def _split_addr(addr: str) -> tuple[str, int]:
    try:
        hp = parse_hostport(addr)
    except ValueError as err:
        raise ValueError(f"telemetry: bad debugger address (AM_DBG_ADDR): {err}") from None
    return hp.host, hp.port


_process_lock = threading.Lock()
_process: dict[str, tuple[Outbox, TcpSender]] = {}


def attach(mach: Machine, addr: str = DEFAULT_ADDR, *, full: bool | None = None) -> DbgTracer:
    """Report ``mach`` to the debugger at ``addr`` (one connection per process and address)."""
    with _process_lock:
        pair = _process.get(addr)
        if pair is None:
            outbox = Outbox()
            pair = _process[addr] = (outbox, TcpSender(outbox, addr).start())
            if len(_process) == 1:
                atexit.register(flush)
    if full is None:
        full = bool(os.environ.get("AM_LOG_FULL"))
    tracer = DbgTracer(pair[0], full=full)
    tracer.attach(mach)
    return tracer


def flush(timeout: float = 1.0) -> None:
    """Send what is pending (bounded by ``timeout``); runs at interpreter exit."""
    for _, sender in list(_process.values()):
        sender.stop(timeout)


def auto_attach(mach: Machine) -> DbgTracer | None:
    """Attach per the environment (``AM_DBG_ADDR``, ``AM_RPC_DBG``); None when off."""
    addr = os.environ.get("AM_DBG_ADDR", "")
    if not addr:
        return None
    if any(t in RPC_TAGS for t in mach.tags) and not os.environ.get("AM_RPC_DBG"):
        return None
    if sys.platform == "emscripten":  # the browser: no threads, no TCP; the WebSocket path
        from . import telemetry_browser

        return telemetry_browser.attach(mach, telemetry_browser.url_from_env(addr))
    return attach(mach, DEFAULT_ADDR if addr == "1" else addr)
