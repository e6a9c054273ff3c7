"""Telemetry for the debugger: every machine reports its schema and transitions.

Layers, like the rest of the core:

* :class:`DbgTracer` (sans-IO) turns a machine's schema and transitions into messages and puts
  them in an :class:`Outbox`, a bounded, non-blocking buffer: a slow, dead or absent debugger
  costs the machine an ``append``; when full, the oldest messages are dropped and counted, and
  the drop is reported once.
* :func:`encode_frame` / :class:`FrameDecoder`: the wire format, length-prefixed CBOR
  (4-byte big-endian length, then ``{"t": "schema" | "tx", "m": <message dict>}``); the
  message dicts use the field names of :mod:`dbg.model`.
* :class:`TcpSender`: a daemon thread that connects to the debugger, re-sends every machine's
  schema on each (re)connect (the collector ignores transitions of machines whose schema did not
  come over the same connection) and streams the outbox. Threads keep it independent of
  whichever event loop (trio, asyncio or none) the process runs. The browser has no threads;
  there a WebSocket driver drains :meth:`Outbox.take` instead.

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
import struct
import threading
import time
from collections import deque
from typing import TYPE_CHECKING, Any

import cbor2

from .tracer import Tracer

if TYPE_CHECKING:
    from .machine import Machine
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
_HEADER = struct.Struct(">I")

log = logging.getLogger("machines.telemetry")


class FrameError(ValueError):
    """A telemetry frame that cannot be decoded."""


def encode_frame(kind: str, message: dict[str, Any]) -> bytes:
    body = cbor2.dumps({"t": kind, "m": message})
    return _HEADER.pack(len(body)) + body


class FrameDecoder:
    """Sans-IO: feed bytes, get ``(kind, message)`` pairs; raises :class:`FrameError`."""

    def __init__(self, max_frame: int = MAX_FRAME) -> None:
        self._buf = bytearray()
        self._max = max_frame

    def feed(self, data: bytes) -> list[tuple[str, dict[str, Any]]]:
        self._buf += data
        out = []
        buf = self._buf
        while len(buf) >= 4:
            (size,) = _HEADER.unpack_from(buf)
            if size > self._max:
                raise FrameError(f"telemetry frame of {size} bytes exceeds {self._max}")
            if len(buf) < 4 + size:
                break
            body = bytes(buf[4 : 4 + size])
            del buf[: 4 + size]
            try:
                doc = cbor2.loads(body)
            except Exception as err:
                raise FrameError(f"telemetry frame is not CBOR: {err}") from None
            if not isinstance(doc, dict) or doc.get("t") not in ("schema", "tx"):
                raise FrameError("telemetry frame is not a {t: schema|tx, m: ...} map")
            if not isinstance(doc.get("m"), dict):
                raise FrameError(f"telemetry {doc['t']} frame has no message map")
            out.append((doc["t"], doc["m"]))
        return out


class Outbox:
    """Bounded FIFO of encoded frames shared by the machines of a process."""

    def __init__(self, limit: int = 10_000) -> None:
        self._frames: deque[bytes] = deque()
        self._limit = limit
        self.dropped = 0
        self._reported = False
        self.schemas: dict[str, bytes] = {}  # machine id -> its latest schema frame

    def put(self, frame: bytes) -> None:
        frames = self._frames
        if len(frames) >= self._limit:
            frames.popleft()
            self.dropped += 1
            if not self._reported:
                self._reported = True
                log.warning(
                    "telemetry: the debugger is not keeping up; dropping the oldest "
                    "messages (counted in Outbox.dropped, reported once)"
                )
        frames.append(frame)

    def take(self) -> bytes:
        """All pending frames as one byte string (empty when none)."""
        frames = self._frames
        parts = []
        while frames:
            parts.append(frames.popleft())
        return b"".join(parts)

    def __len__(self) -> int:
        return len(self._frames)


def schema_message(mach: Machine) -> dict[str, Any]:
    msg: dict[str, Any] = {
        "id": mach.id,
        "states_index": mach.state_names,
        "states": {n: _state_dict(s) for n, s in mach.schema.items()},
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
        mut = tx.mutation
        mach = tx.machine
        index = mach._index
        msg: dict[str, Any] = {
            "machine_id": mach.id,
            "id": tx.id,
            "clocks": tx.time_after,
            "queue_tick": mach.queue_tick,
            "type": int(mut.type),
            "called_states_idxs": [index[s] for s in mut.called],
            "accepted": tx.accepted,
            "queue": tx.queue_len,
        }
        if mut.queue_tick:
            msg["mut_queue_tick"] = mut.queue_tick
        if mut.token:
            msg["mut_queue_token"] = mut.token
        if mut.auto:
            msg["is_auto"] = True
        if mut.check:
            msg["is_check"] = True
        if tx.log_entries:
            msg["log_entries"] = [{"level": int(lv), "text": t} for lv, t in tx.log_entries]
        if tx.pre_log_entries:
            msg["pre_log_entries"] = [{"level": int(lv), "text": t} for lv, t in tx.pre_log_entries]
        if mut.source is not None:
            msg["source"] = {
                "machine_id": mut.source.machine_id,
                "tx_id": mut.source.tx_id,
                "mach_time": mut.source.mach_time,
            }
        if self.full and mut.args:
            msg["args"] = {k: _short(v) for k, v in mut.args.items() if not k.startswith("_")}
        self.outbox.put(encode_frame("tx", msg))

    def machine_dispose(self, mach_id: str) -> None:
        self.outbox.schemas.pop(mach_id, None)


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
    host, _, port = addr.rpartition(":")
    if not host or not port.isdigit():
        raise ValueError(f"telemetry: bad debugger address {addr!r} (want HOST:PORT)")
    return host.strip("[]"), int(port)


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
    return attach(mach, DEFAULT_ADDR if addr == "1" else addr)
