"""Telemetry for the debugger: every machine reports its schema and transitions.

Layers, like the rest of the core:

* :class:`DbgTracer` (sans-IO) puts a machine's schema and transitions in an :class:`Outbox`, a
  bounded, non-blocking buffer. Transitions arrive as the machine's own records (the tracer is
  a :attr:`~machines.tracer.Tracer.sink`, so the machine keeps its fast path): a record costs
  the machine a tuple, an ``append`` and, while a sender is connected, its share of packing a
  batch (see :class:`Outbox`); a slow, dead or absent debugger costs no packing. When full,
  the oldest transitions are dropped (a batch at a time) and counted; the drop is reported
  once.
* :func:`encode_frame` / :class:`FrameDecoder`: the wire format, length-prefixed CBOR
  (:mod:`machines.framing`: 4-byte big-endian length, then ``{"t": kind, "m": message}``).
  ``schema`` frames carry a dict with the field names of :mod:`dbg.model`; ``txs`` frames a
  list of transition arrays in the order of :data:`TX_FIELDS` (see :func:`tx_message`);
  ``txp`` frames the same transitions packed (see :func:`pack_txs`), which is what senders
  send: encoding a plain array per transition cost more than the transition itself. The
  decoder expands ``txp`` into ``txs`` arrays, so readers see one format, or checks and
  passes them on packed (``packed=True``, the debugger's collector).
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
import socket
import struct
import sys
import threading
import time
from array import array
from collections import deque
from itertools import accumulate
from operator import itemgetter
from typing import TYPE_CHECKING, Any, NamedTuple

from . import framing
from .addr import parse_hostport
from .options import Options
from .tracer import FLAG_ACCEPTED, FLAG_AUTO, FLAG_CHECK, FLAG_QUEUED, Tracer
from .transition import ID_PREFIX, tx_id

if TYPE_CHECKING:
    from .machine import Machine
    from .mutation import Mutation

__all__ = [
    "DEFAULT_ADDR",
    "DbgTracer",
    "Outbox",
    "TcpSender",
    "FrameDecoder",
    "FrameError",
    "encode_frame",
    "pack_txs",
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
    """Sans-IO: feed bytes, get ``(kind, message)`` pairs; raises :class:`FrameError`.

    ``txp`` frames are expanded into ``txs`` arrays (one format for readers), unless
    ``packed``: then they come as ``("txp", [TxpGroup, ...])``, checked (see
    :func:`check_txp`) but still packed, for a reader that keeps them so (the debugger's
    collector: expanding every transition into an array cost more than the rest of its
    ingest)."""

    def __init__(self, max_frame: int = MAX_FRAME, *, packed: bool = False) -> None:
        self._reader = framing.FrameReader(max_frame, FrameError)
        self._packed = packed

    def feed(self, data: bytes) -> list[tuple[str, Any]]:
        out: list[tuple[str, Any]] = []
        for doc in self._reader.feed(data):
            if not isinstance(doc, dict) or doc.get("t") not in ("schema", "txs", "txp"):
                raise FrameError("telemetry frame is not a {t: schema|txs|txp, m: ...} map")
            if not isinstance(doc.get("m"), dict if doc["t"] == "schema" else list):
                raise FrameError(f"telemetry {doc['t']} frame has a malformed body")
            if doc["t"] == "txp":
                groups = check_txp(doc["m"])
                if self._packed:
                    out.append(("txp", groups))
                else:
                    out.append(("txs", [arr for g in groups for arr in expand_txp(g)]))
            else:
                out.append((doc["t"], doc["m"]))
        return out


class Outbox:
    """Bounded FIFO of pending messages shared by the machines of a process.

    Transitions arrive as the machine's records and are packed into a ``txp`` frame every
    :attr:`chunk` records, on the machine's thread, in one go: a record costs the machine a
    ``list.append``, and a batch is packed while its records are still in the CPU's cache. The
    sending thread then only joins ready bytes. Packing on the sender's thread instead cost
    twice as much in total (measured): it competed with the machines for the GIL and their
    caches while they ran, which single-threaded packing of the same records does not.

    Packing needs a reader: while no sender is connected (:attr:`live` false), batches are
    kept as records and packed by :meth:`take`, so an absent debugger costs no packing.

    Thread safety: machines in any thread put, a sender takes. A record is appended without a
    lock (``list.append`` is atomic); sealing the pending records into a frame (by the
    ``chunk``-th put, a ready frame, or :meth:`take`) runs under a lock and removes only the
    records it copied, so appends from other threads meanwhile stay pending, in order.
    """

    def __init__(self, limit: int = 10_000, chunk: int = 512) -> None:
        self.limit = limit
        #: records per packed frame (at most a quarter of the limit, so drops stay fine-grained)
        self.chunk = max(1, min(chunk, limit // 4))
        #: a sender is connected and will take soon: pack as records come (set by senders)
        self.live = False
        self.dropped = 0
        self.schemas: dict[str, bytes] = {}  # machine id -> its latest schema frame
        self._recs: list[tuple] = []  # records not packed yet
        # (a frame, or records not packed while no sender is live; how many messages)
        self._frames: deque[tuple[bytes | list[tuple], int]] = deque()
        self._held = 0  # messages in _frames
        self._lock = threading.Lock()
        self._reported = False

    def put(self, item: bytes | tuple) -> None:
        """Queue a ready frame (bytes) or a transition record (:data:`RECORD_FIELDS`)."""
        if isinstance(item, bytes):
            with self._lock:
                self._seal()  # the records before it go before it
                self._frames.append((item, 1))
                self._held += 1
                self._bound()
            return
        recs = self._recs
        recs.append(item)
        if len(recs) >= self.chunk:
            with self._lock:
                self._seal()
                self._bound()

    def _seal(self) -> None:
        """Pack the pending records into a frame (the lock held)."""
        recs = self._recs
        n = len(recs)
        if n:
            batch = recs[:n]
            del recs[:n]  # only these: other threads may have appended meanwhile
            self._frames.append((self._txp(batch) if self.live else batch, n))
            self._held += n

    def _bound(self) -> None:
        """Drop the oldest frames while over the limit (the lock held); a packed frame's
        transitions are dropped and counted together. Room is kept for the records that
        accumulate until the next seal, so the outbox never holds more than its limit."""
        frames, room = self._frames, self.limit - self.chunk + 1
        while frames and self._held > room:
            _, n = frames.popleft()
            self._held -= n
            self.dropped += n
            if not self._reported:
                self._reported = True
                log.warning(
                    "telemetry: the debugger is not keeping up; dropping the oldest "
                    "messages (counted in Outbox.dropped, reported once)"
                )

    def take(self) -> bytes:
        """All pending messages as frames (empty when none); transitions are batched."""
        with self._lock:
            self._seal()
            frames = self._frames
            self._frames = deque()
            self._held = 0
        return b"".join([f if isinstance(f, bytes) else self._txp(f) for f, _ in frames])

    def __len__(self) -> int:
        """Messages pending: ready frames and transitions."""
        return self._held + len(self._recs)

    def _txp(self, records: list[tuple]) -> bytes:
        """The records' ``txp`` frame. Packing runs on a machine's thread, so a record that
        cannot be packed (a mutation arg whose ``str()`` raises) is dropped and counted,
        never raised into the machine (or the sender)."""
        try:
            return encode_frame("txp", pack_txs(records))
        except Exception as err:
            good = []
            for rec in records:
                try:
                    pack_txs([rec])
                    good.append(rec)
                except Exception:
                    self.dropped += 1
            log.warning("telemetry: dropped transitions that cannot be packed: %r", err)
            return encode_frame("txp", pack_txs(good)) if good else b""


# A transition travels as a positional array (smaller and much cheaper to encode than a map):
TX_FIELDS = (
    "machine_id", "id", "clocks", "queue_tick", "type", "called_states", "flags", "queue",
    "mut_queue_tick", "mut_queue_token", "log_entries", "pre_log_entries", "args", "source",
    "steps",
)  # fmt: skip
STEP_FIELDS = ("type", "from_state", "to_state", "rel_type", "is_final", "is_self", "is_enter")
#: the integer columns of a packed row, then the clocks (see :func:`pack_txs`)
_ROW = ("id", "queue_tick", "type", "called_states", "flags", "queue", "mut_queue_tick",
        "mut_queue_token")  # fmt: skip
#: the rarely set fields, sent beside the rows
_EXTRA = ("log_entries", "pre_log_entries", "args", "source", "steps")
_LITTLE = sys.byteorder == "little"


def pack_txs(records: list[tuple]) -> list[Any]:
    """Transition records (:data:`machines.tracer.RECORD_FIELDS`) as a ``txp`` message.

    Per machine (and clock width), in record order: ``[machine id, columns, typecode, rows,
    called, extras, logs]``; ``rows`` is a little-endian integer array (``typecode`` ``i`` or
    ``q``) of ``columns`` values per transition: the :data:`_ROW` columns, ``called_states`` as
    an index into ``called`` (the distinct called-state lists), then the clocks; ``extras``
    maps a row number to its :data:`_EXTRA` fields, for the few rows that have any; ``logs``
    holds every row's log entries (see :func:`_with_logs`), or is null. One bytes value and a
    short table instead of ~15 CBOR items per transition: cbor2 spends ~50 ns per item and far
    more per container, here several times the machine's own cost of a transition.
    """
    groups: dict[tuple[str, int], tuple[list[int], dict, dict, list[int], list[tuple]]] = {}
    for rec in records:
        clocks = rec[2]
        key = (rec[0], len(clocks))
        g = groups.get(key)
        if g is None:
            g = groups[key] = ([], {}, {}, [], [])
        rows, called, extras, log_heads, log_entries = g
        ci = called.get(rec[5])
        if ci is None:
            ci = called[rec[5]] = len(called)
        if rec[10] or rec[11]:  # logs are in most rows once a log level is set
            log, pre = rec[10] or (), rec[11] or ()
            log_heads += (len(rows) // (8 + key[1]), len(log), len(pre))
            log_entries += log  # taken apart per batch, in C (see _pack_logs)
            log_entries += pre
        if rec[12] or rec[13] is not None or rec[14]:
            extras[len(rows) // (8 + key[1])] = _extra(rec)
        # a list and one struct.pack: an array's extend converts item by item, 3x slower
        rows += (rec[1], rec[3], rec[4], ci, rec[6], rec[7], rec[8], rec[9])
        rows += clocks
    out: list[Any] = []
    for (mid, width), (rows, called, extras, log_heads, log_entries) in groups.items():
        try:
            code, packed = "i", struct.pack(f"<{len(rows)}i", *rows)  # the usual: 32 bits
        except struct.error:
            code, packed = "q", struct.pack(f"<{len(rows)}q", *rows)
        logs = _pack_logs(log_heads, log_entries) if log_heads else None
        out.append([mid, 8 + width, code, packed, list(called), extras, logs])
    return out


def _pack_logs(heads: list[int], entries: list[tuple]) -> list[Any]:
    """A group's ``logs``: ``[heads, levels, lengths, text]``; see :func:`_with_logs`."""
    texts = list(map(itemgetter(1), entries))
    return [
        _int32s(heads),
        _int32s(list(map(itemgetter(0), entries))),
        _int32s(list(map(len, texts))),
        "".join(texts),
    ]


def _int32s(values: list[int]) -> bytes:
    return struct.pack(f"<{len(values)}i", *values)


def _extra(rec: tuple) -> list[Any]:
    args = rec[12]
    if args:
        args = {k: _short(v) for k, v in args.items() if not k.startswith("_")} or None
    src, steps = rec[13], rec[14]
    return [
        None,  # the log entries travel in the group's logs (see pack_txs)
        None,
        args or None,
        (src.machine_id, src.tx_id, src.mach_time) if src is not None else None,
        [(int(st.type), st.from_state, st.to_state, st.rel_type, st.is_final, st.is_self,
          st.is_enter) for st in steps] if steps else None,
    ]  # fmt: skip


class TxpGroup(NamedTuple):
    """One machine's transitions of a ``txp`` message, checked by :func:`check_txp`:
    ``rows`` holds ``len(rows) // cols`` rows (see :func:`pack_txs`), every row's
    called-states index is in range, every ``extras`` value is an array of 5 items (what
    those hold is the reader's to check)."""

    machine_id: str
    cols: int
    rows: array
    called: list[Any]
    extras: dict[Any, Any]


def check_txp(groups: list[Any]) -> list[TxpGroup]:
    """The groups of a ``txp`` message, rows as arrays; :class:`FrameError` when malformed.
    The checks are per group and column (C loops), not per transition."""
    out = []
    for g in groups:
        if not (isinstance(g, list) and len(g) == 7):
            raise FrameError(
                "telemetry txp: a group is [id, columns, code, rows, called, extras, logs]"
            )
        mid, cols, code, data, called, extras, logs = g
        if not (
            isinstance(mid, str)
            and type(cols) is int
            and 8 <= cols <= 100_000
            and code in ("i", "q")
            and isinstance(data, bytes)
            and isinstance(called, list)
            and isinstance(extras, dict)
        ):
            raise FrameError("telemetry txp: a group has fields of the wrong type")
        rows = array(code)
        if len(data) % (rows.itemsize * cols):
            raise FrameError("telemetry txp: rows are not a whole number of transitions")
        rows.frombytes(data)
        if not _LITTLE:
            rows.byteswap()
        idxs = rows[3::cols]  # the called-states column
        if idxs and not (0 <= min(idxs) and max(idxs) < len(called)):
            raise FrameError("telemetry txp: a called-states index is out of range")
        ex = extras.values()  # one C loop each: at log level ops most rows have extras
        if not ({*map(type, ex)} <= {list} and {*map(len, ex)} <= {len(_EXTRA)}):
            raise FrameError(f"telemetry txp: extras are arrays of {len(_EXTRA)} items")
        if logs is not None:
            extras = _with_logs(extras, logs, len(rows) // cols)
        out.append(TxpGroup(mid, cols, rows, called, extras))
    return out


def _with_logs(extras: dict[Any, Any], logs: Any, nrows: int) -> dict[Any, Any]:
    """``extras`` with the log entries of a group's ``logs`` (see :func:`pack_txs`) in place.

    ``logs`` is ``[heads, levels, lengths, text]``: ``heads`` holds, per row that has entries,
    its row number and how many log and pre-log entries it has; ``levels`` and ``lengths`` the
    level and the text's length of every entry, in order; the texts, in the same order, are one
    string (int32 arrays, little-endian). Four values for a whole batch: as one ``[level,
    text]`` array each, the entries cost cbor2 more than everything else in the frame, and
    taking each row's entries apart on the machine's thread cost more than its transition."""
    if not (
        isinstance(logs, list)
        and len(logs) == 4
        and all(isinstance(b, bytes) and len(b) % 4 == 0 for b in logs[:3])
        and isinstance(logs[3], str)
    ):
        raise FrameError("telemetry txp: logs are [heads, levels, lengths, text]")
    heads, levels, lengths = (_int32_array(b) for b in logs[:3])
    text = logs[3]
    if not (
        len(heads) % 3 == 0
        and len(levels) == len(lengths)
        and (not lengths or min(lengths) >= 0)
        and sum(lengths) == len(text)
    ):
        raise FrameError("telemetry txp: the logs' columns do not add up")
    # every entry as a [level, text] pair, in C loops (the collector's side of the batch)
    offsets = list(accumulate(lengths, initial=0))
    texts = map(text.__getitem__, map(slice, offsets, offsets[1:]))
    entries = list(map(list, zip(levels, texts, strict=True)))
    out = dict(extras)
    at = 0  # in entries
    for i in range(0, len(heads), 3):
        row, n_log, n_pre = heads[i : i + 3]
        end = at + n_log + n_pre
        if not (0 <= row < nrows and n_log >= 0 and n_pre >= 0 and end <= len(entries)):
            raise FrameError("telemetry txp: a row's logs are out of range")
        ex = out.get(row)
        if ex is None:
            ex = [None] * len(_EXTRA)
        elif not (isinstance(ex, list) and len(ex) == len(_EXTRA)):
            raise FrameError(f"telemetry txp: extras are arrays of {len(_EXTRA)} items")
        out[row] = [entries[at : at + n_log] or None, entries[at + n_log : end] or None, *ex[2:]]
        at = end
    if at != len(entries):
        raise FrameError("telemetry txp: the logs have entries no row claims")
    return out


def _int32_array(data: bytes) -> array:
    ints = array("i")
    ints.frombytes(data)
    if not _LITTLE:
        ints.byteswap()
    return ints


def expand_txp(group: TxpGroup) -> list[list[Any]]:
    """A checked group's transitions as ``txs`` arrays (:data:`TX_FIELDS` order)."""
    mid, cols, rows, called, extras = group
    none = (None,) * len(_EXTRA)
    return [
        [mid, num, rows[i + 8 : i + cols].tolist(), qt, mtype, called[ci], flags, qlen, mqt,
         token, *extras.get(n, none)]
        for n, i in enumerate(range(0, len(rows), cols))
        for num, qt, mtype, ci, flags, qlen, mqt, token in (rows[i : i + 8],)
    ]  # fmt: skip


def unpack_txs(groups: list[Any]) -> list[list[Any]]:
    """A ``txp`` message as ``txs`` transition arrays; :class:`FrameError` when malformed."""
    return [arr for g in check_txp(groups) for arr in expand_txp(g)]


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
    """Reports one machine to the debugger through an :class:`Outbox`.

    Its :attr:`sink` is the outbox's ``put``: the machine's transition records go in as they
    are (no ``transition_end`` hook, so the machine keeps its fast path)."""

    def __new__(cls, outbox: Outbox, *, full: bool = False) -> DbgTracer:
        return super().__new__(_FullDbgTracer if full and cls is DbgTracer else cls)

    def __init__(self, outbox: Outbox, *, full: bool = False) -> None:
        self.outbox = outbox
        self.full = full
        self.sink = outbox.put
        self.sink_args = full

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

    def machine_dispose(self, mach_id: str) -> None:
        self.outbox.schemas.pop(mach_id, None)


class _FullDbgTracer(DbgTracer):
    """With full logging (``AM_LOG_FULL``) also a record per queued mutation, as the
    reference. A subclass, so that without it the machine skips the hook entirely: most
    mutations are queued and run at once, which would double the traffic for nothing."""

    def mutation_queued(self, mach: Machine, mutation: Mutation) -> None:
        # its id is a string ("q<tick>"), which the packed rows cannot hold: a ready frame
        src = mutation.source
        args = {k: _short(v) for k, v in mutation.args.items() if not k.startswith("_")}
        self.outbox.put(encode_frame("txs", [[
            mach.id, f"q{mutation.queue_tick or mutation.token}", mach.time(), mach.queue_tick,
            int(mutation.type), list(mutation.called),
            FLAG_QUEUED | (FLAG_CHECK if mutation.check else 0), mach.queue_len(),
            mutation.queue_tick, mutation.token, None, None, args or None,
            [src.machine_id, src.tx_id, src.mach_time] if src is not None else None, None,
        ]]))  # fmt: skip


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
        outbox, poll, high = self.outbox, self.poll, self.outbox.limit // 4
        outbox.live = True  # the machines pack their records from now on
        try:
            while not self._stop.is_set():
                data = outbox.take()
                if data:
                    sock.sendall(data)
                    self.sent_frames += 1
                # one batch per poll interval, not one per wake-up: taking again at once (as
                # this loop did) woke this thread, which needs the GIL, hundreds of times a
                # second while machines ran; a filling outbox still goes out at once, before it
                # drops anything
                if len(outbox) < high:
                    time.sleep(poll)
        finally:
            outbox.live = False


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
        full = Options.from_env().log_full
    tracer = DbgTracer(pair[0], full=full)
    tracer.attach(mach)
    return tracer


def flush(timeout: float = 1.0) -> None:
    """Send what is pending (bounded by ``timeout``); runs at interpreter exit."""
    for _, sender in list(_process.values()):
        sender.stop(timeout)


def auto_attach(mach: Machine, opts: Options | None = None) -> DbgTracer | None:
    """Attach per the environment (``AM_DBG_ADDR``, ``AM_RPC_DBG``); None when off."""
    opts = Options.from_env() if opts is None else opts
    addr = opts.dbg_addr
    if not addr:
        return None
    if any(t in RPC_TAGS for t in mach.tags) and not opts.rpc_dbg:
        return None
    if sys.platform == "emscripten":  # the browser: no threads, no TCP; the WebSocket path
        from . import telemetry_browser

        return telemetry_browser.attach(mach, telemetry_browser.url_from_env(addr))
    return attach(mach, DEFAULT_ADDR if addr == "1" else addr)
