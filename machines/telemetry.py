"""Telemetry for the debugger: every machine reports its schema and transitions.

Layers, like the rest of the core:

* :class:`DbgTracer` (sans-IO) puts a machine's schema and transitions in an :class:`Outbox`, a
  bounded, non-blocking buffer. The machine packs each transition itself into its
  :class:`Lane`: one C call and an ``append`` (no ``transition_end`` hook, so the machine keeps
  its fast path). When full, the oldest transitions are dropped (a batch at a time) and
  counted; the drop is reported once.
* :func:`encode_frame` / :class:`FrameDecoder`: the wire format, length-prefixed CBOR
  (:mod:`machines.framing`: 4-byte big-endian length, then ``{"t": kind, "m": message}``).
  ``schema`` frames carry a dict with the field names of :mod:`dbg.model`; ``txs`` frames a
  list of transition arrays in the order of :data:`TX_FIELDS` (see :func:`tx_message`);
  ``txp`` frames the same transitions packed (see :class:`Lane`, :func:`check_txp`), which is
  what senders send: encoding a plain array per transition cost more than the transition itself. The
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
import operator
import socket
import struct
import sys
import threading
import time
from array import array
from bisect import bisect_left
from collections import deque
from itertools import accumulate, compress, repeat
from typing import TYPE_CHECKING, Any, Literal, NamedTuple

from . import framing
from .addr import parse_hostport
from .options import Options
from .tracer import FLAG_ACCEPTED, FLAG_AUTO, FLAG_CHECK, FLAG_QUEUED, Tracer
from .transition import ID_PREFIX, NO_RARE, tx_id

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
    "Lane",
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

    Transitions arrive as rows, packed by the machine itself into its :class:`Lane` (one C
    call per transition, see :meth:`Lane.row`); every :attr:`chunk` rows a lane is sealed
    into a ready ``txp`` frame, and a sender joins ready bytes. Nothing is kept per transition
    but 8 + width 32-bit integers (and, for the few transitions that have any, their rare
    fields), so the garbage collector has nothing to walk either.

    Thread safety: machines in any thread append rows, a sender takes. A row is appended
    without a lock (``list.append`` is atomic); sealing a lane (by its ``chunk``-th row, a ready
    frame, or :meth:`take`) runs under a lock and removes only the rows it copied, so rows
    appended by the machine meanwhile stay pending, in order. A ready frame goes after every
    row appended before it (it seals the lanes first): a schema precedes the rows it describes.
    """

    def __init__(self, limit: int = 100_000, chunk: int = 512) -> None:
        #: messages held at most (a row is 40-120 bytes: ~10 MB; a burst of a few hundred
        #: thousand transitions a second fills 10k while the sender waits for the GIL)
        self.limit = limit
        #: rows per sealed frame (at most a quarter of the limit, so drops stay fine-grained)
        self.chunk = max(1, min(chunk, limit // 4))
        self.dropped = 0
        self.schemas: dict[str, bytes] = {}  # machine id -> its latest schema frame
        self._lanes: list[Lane] = []
        self._record_lanes: dict[str, Lane] = {}  # machine id -> the lane of put() records
        self._frames: deque[tuple[bytes, int]] = deque()  # (a frame, how many messages)
        self._held = 0  # messages in _frames
        self._lock = threading.Lock()
        self._reported = False
        self._failed = False

    def lane(self, mid: str, width: int, *, args: bool = False) -> Lane:
        """A new lane for a machine ``mid`` with ``width`` states (its rows go after every
        message already queued)."""
        lane = Lane(self, mid, width, args=args)
        with self._lock:
            self._lanes.append(lane)
        return lane

    def close(self, lane: Lane) -> None:
        """Seal ``lane`` for the last time and forget it (its machine is gone or rebuilt)."""
        lane.open = False
        with self._lock:
            self._seal([lane])
            if lane in self._lanes:
                self._lanes.remove(lane)
            self._bound()

    def forget(self, mid: str) -> None:
        """Machine ``mid`` is gone: drop its schema and close the lane of its records."""
        self.schemas.pop(mid, None)
        lane = self._record_lanes.pop(mid, None)
        if lane is not None:
            self.close(lane)

    def put(self, item: bytes | tuple) -> None:
        """Queue a ready frame (bytes), or a transition record (:data:`RECORD_FIELDS`): the
        record sink of a tracer that has no lane of its own (a second debugger, tests)."""
        if isinstance(item, bytes):
            with self._lock:
                self._seal(self._lanes)  # the rows before it go before it
                self._frames.append((item, 1))
                self._held += 1
                self._bound()
            return
        lane = self._record_lanes.get(item[0])
        if lane is None or lane.width != len(item[2]):
            if lane is not None:
                self.close(lane)
            lane = self._record_lanes[item[0]] = self.lane(item[0], len(item[2]), args=True)
        lane.record(item)

    def take(self) -> bytes:
        """All pending messages as frames (empty when none); each lane's rows in one group."""
        with self._lock:
            self._seal(self._lanes)
            frames = self._frames
            self._frames = deque()
            self._held = 0
        return b"".join([f for f, _ in frames])

    def __len__(self) -> int:
        """Messages pending: ready frames and transitions."""
        return self._held + sum([len(lane.rows) for lane in self._lanes])

    def _seal(self, lanes: list[Lane]) -> None:
        """Turn the lanes' pending rows into one frame, a group per lane (the lock held): the
        debugger stamps a message's transitions with one arrival time, so transitions of
        several machines that went out together stay together."""
        groups, count = [], 0
        for lane in lanes:
            rows = lane.rows
            n = len(rows)
            if n:
                batch = rows[:n]
                del rows[:n]  # only these: the machine may have appended meanwhile
                group = self._group(lane, batch)
                if group[3]:
                    groups.append(group)
                count += n
        if groups:
            self._frames.append((encode_frame("txp", groups), count))
            self._held += count

    def _bound(self) -> None:
        """Drop the oldest frames while over the limit (the lock held); a frame's transitions
        are dropped and counted together. Room is kept for the rows that accumulate until
        the next seal, so the outbox never holds much more than its limit."""
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

    def unpackable(self, err: Exception) -> None:
        """A transition that cannot be packed: dropped, counted, reported once."""
        self.dropped += 1
        if not self._failed:
            self._failed = True
            log.warning("telemetry: dropped transitions that cannot be packed: %r", err)

    def _group(self, lane: Lane, batch: list[Any]) -> list[Any]:
        """The batch's ``txp`` group. Sealing may run on a machine's thread, so a row whose
        rare fields cannot be packed (a mutation arg whose ``str()`` raises) is dropped and
        counted, never raised into the machine (or the sender)."""
        called = [list(c) for c in lane.called]
        try:
            data = b"".join(batch)  # the usual: no rare fields
        except TypeError:
            pass
        else:
            return _with_used_blocks([lane.mid, 8 + lane.width, lane.code, data, called, {},
                                      None], lane)  # fmt: skip
        rows: list[Any] = []
        extras: dict[int, list[Any]] = {}
        heads: list[int] = []
        levels: list[int] = []
        texts: list[str] = []
        add_row = rows.append
        for item in batch:
            if type(item) is bytes:
                add_row(item)
                continue
            row, rare, args, src = item  # (row, rare, args, source)
            n = len(rows)
            lv, txt, pre, steps = rare or NO_RARE
            if args or src is not None or steps:
                try:
                    extras[n] = _extra(args, src, steps)
                except Exception as err:
                    self.unpackable(err)
                    continue
            add_row(row)
            if lv:  # taken as they are: one batch's levels and texts are packed in C
                heads += (n, len(lv), len(pre) if pre else 0)
                levels += lv
                texts += txt
                if pre:
                    levels += [e[0] for e in pre]
                    texts += [e[1] for e in pre]
            elif pre:
                heads += (n, 0, len(pre))
                levels += [e[0] for e in pre]
                texts += [e[1] for e in pre]
        logs = _pack_logs(heads, levels, texts) if heads else None
        return _with_used_blocks([lane.mid, 8 + lane.width, lane.code, b"".join(rows), called,
                                  extras, logs], lane)  # fmt: skip


class Lane:
    """One machine's transitions on their way to the debugger, as packed rows.

    A row is :data:`_ROW` then the clocks, little-endian 32-bit integers (64 once a value
    needs it, see :meth:`widen`), packed by the machine itself with one call of :attr:`pack`
    (the record tuple it replaces, with its ``put`` call and the packing of a batch, cost the
    machine about twice the whole row does). The called-state lists are indexed through
    :attr:`called`, a table sent with every group (restarted once it holds :data:`CALLED_MAX`
    lists). A transition's log lines, when they are its plan's usual ones, are a log block
    (:meth:`block`) the row names in its flags' high bits. A row with rare fields (other log
    entries, a source, args, steps) is appended as ``(row, rare, args, source)``, ``rare``
    being the transition's ``[levels, texts, pre-log entries, steps]``
    (``Transition._rare``) or None.

    A sealed batch is one ``txp`` group: ``[machine id, columns, code, rows, called lists,
    extras, logs]``, plus ``{number: [levels, text]}``, the log blocks its rows name, when
    they name any (see :func:`check_txp`).
    """

    __slots__ = (
        "outbox", "mid", "width", "args", "code", "pack", "called", "blocks", "rows", "chunk",
        "open",
    )  # fmt: skip

    def __init__(self, outbox: Outbox, mid: str, width: int, *, args: bool = False) -> None:
        self.outbox = outbox
        self.mid = mid
        self.width = width
        #: rows carry the mutation's args (full logging)
        self.args = args
        #: the rows' integers: 32 bits until a value needs more (:meth:`widen`), as most never
        #: do: 64-bit rows doubled what the sender and the debugger move per transition
        self.code = "i"
        self.pack = struct.Struct(f"<{8 + width}i").pack
        self.called: dict[tuple[str, ...], int] = {}
        #: log blocks: a plan's usual log lines, packed once as (levels, newline-joined
        #: texts); a row names its block in the high bits of its flags (see :meth:`block`)
        self.blocks: list[tuple[bytes, str]] = []
        self.rows: list[bytes | tuple] = []
        self.chunk = outbox.chunk
        self.open = True  # until the outbox closes it

    def index(self, called: tuple[str, ...]) -> int:
        """The index of a called-state list in the table, added if new (the machine's thread;
        the machine keeps it on the transition's plan, ``Plan.lane_ci``, with the table it is
        valid for: a new table after :data:`CALLED_MAX` lists makes it look again)."""
        i = self.called.get(called)
        if i is None:
            if len(self.called) >= CALLED_MAX:
                self.seal(rotate=True)
            i = self.called[called] = len(self.called)
        return i

    def block(self, rare: list[Any], prev: Any) -> tuple | Literal[False]:
        """The log block of a transition whose ``rare`` fields (``Transition._rare``) are
        log lines only, for its plan (``Plan.lane_lb``): ``(table, [levels, texts, None,
        None], flag bits)``, the bits naming the block in a row's flags; a new block unless
        ``prev``, the plan's block in this table, has these lines. False when the lines
        cannot be one (a text holds a newline) or the plan's lines vary (``prev`` has
        others): then its rows carry their lines.

        Why blocks: at log level 3 a transition's 4-6 lines are the same as the last time
        its plan ran (the mutation, its relations, handlers and states), and carrying them
        row by row (kept as lists, then taken apart per batch) cost the machine more than
        its row; a block costs a list comparison."""
        levels, texts = rare[0], rare[1]
        if prev and prev[0] is self.blocks:
            same = prev[1][0] == levels and prev[1][1] == texts  # (an empty pre-log, steps)
            return prev if same else False
        text = "\n".join(texts)
        if text.count("\n") != len(texts) - 1 or not 0 <= min(levels) <= max(levels) < 256:
            return False
        if len(self.blocks) >= BLOCKS_MAX:
            self.seal(new_blocks=True)
        blocks = self.blocks
        blocks.append((bytes(levels), text))
        return (blocks, [levels[:], texts[:], None, None], len(blocks) << FLAG_BITS)

    def seal(self, *, rotate: bool = False, new_blocks: bool = False) -> None:
        """Make the pending rows a ready frame (every :attr:`chunk` rows, by the machine);
        then start the table of called-state lists (``rotate``) or of log blocks afresh.
        One table at a time: the row being made holds an index into the other."""
        outbox = self.outbox
        with outbox._lock:
            outbox._seal([self])
            # on the machine's thread, which alone adds to the tables
            if rotate:
                self.called = {}
            if new_blocks:
                self.blocks = []
            outbox._bound()

    def record(self, rec: tuple) -> None:
        """Append a transition record (:data:`RECORD_FIELDS`) as the machine appends a row."""
        ci = self.index(rec[5])
        while True:
            try:
                row: bytes | tuple = self.pack(rec[1], rec[3], rec[4], ci, *rec[6:10], *rec[2])
                break
            except struct.error:
                self.widen()
        log, pre, args, src, steps = rec[10:15]
        if log or pre or args or src is not None or steps:
            levels = [e[0] for e in log] if log else None
            texts = [e[1] for e in log] if log else None
            row = (row, [levels, texts, pre, steps], args, src)
        rows = self.rows
        rows.append(row)
        if len(rows) >= self.chunk:
            self.seal()

    def widen(self) -> None:
        """Pack 64-bit rows from now on (a value past 32 bits); the rows so far go out as they
        are. Raises when the rows are 64-bit already: the value does not fit (a bug)."""
        if self.code == "q":
            raise struct.error("a row's value does not fit in 64 bits")
        outbox = self.outbox
        with outbox._lock:
            outbox._seal([self])
            self.code = "q"
            self.pack = struct.Struct(f"<{8 + self.width}q").pack

    def failed(self, err: Exception) -> None:
        """The machine could not pack a row (a bug, not input)."""
        self.outbox.unpackable(err)


#: distinct called-state lists a lane's table holds before it starts afresh (the table goes
#: with every group)
CALLED_MAX = 256
#: log blocks a lane's table holds before it starts afresh (a group takes the blocks its rows
#: name)
BLOCKS_MAX = 256
#: a row's flags (:data:`machines.tracer.FLAG_ACCEPTED` ...) take the low bits; the row's log
#: block (its index + 1, 0 for none) the bits from here up
FLAG_BITS = 8
_FLAGS = (1 << FLAG_BITS) - 1


# A transition travels as a positional array (smaller and much cheaper to encode than a map):
TX_FIELDS = (
    "machine_id", "id", "clocks", "queue_tick", "type", "called_states", "flags", "queue",
    "mut_queue_tick", "mut_queue_token", "log_entries", "pre_log_entries", "args", "source",
    "steps",
)  # fmt: skip
STEP_FIELDS = ("type", "from_state", "to_state", "rel_type", "is_final", "is_self", "is_enter")
#: the integer columns of a packed row, then the clocks (see :class:`Lane`)
_ROW = ("id", "queue_tick", "type", "called_states", "flags", "queue", "mut_queue_tick",
        "mut_queue_token")  # fmt: skip
#: the rarely set fields, sent beside the rows
_EXTRA = ("log_entries", "pre_log_entries", "args", "source", "steps")
_LITTLE = sys.byteorder == "little"


def _pack_logs(heads: list[int], levels: list[int], texts: list[str]) -> list[Any]:
    """A group's ``logs``: ``[heads, levels, lengths, text]``; see :func:`_with_logs`.

    C loops over the batch: the levels a byte each, and the texts joined by newlines, so that
    no lengths are needed unless a text holds a newline itself (``count`` tells, in one pass).
    Levels and texts come as two lists from the machine (``Transition._rare``): taking
    ``(level, text)`` pairs apart per batch and packing every length was ~0.3 us an entry,
    more than the rest of a logged row's way to the debugger."""
    text = "\n".join(texts)
    lengths = None
    if text.count("\n") != len(texts) - 1:  # a text holds a newline: cut by lengths instead
        text = "".join(texts)
        lengths = _int32s(list(map(len, texts)))
    try:
        packed = bytes(levels)
    except (TypeError, ValueError):  # not a LogLevel: kept in range rather than raised
        packed = bytes([min(max(int(lv), 0), 255) for lv in levels])
    return [_int32s(heads), packed, lengths, text]


def _with_used_blocks(group: list[Any], lane: Lane) -> list[Any]:
    """``group`` with, as its eighth item, the log blocks its rows name (by number, see
    :meth:`Lane.block`), if they name any."""
    blocks = lane.blocks
    if blocks:
        flags = _ints(group[3], lane.code)[4 :: 8 + lane.width]
        used = {f >> FLAG_BITS for f in set(flags)}
        used.discard(0)
        if used:
            group.append({b: list(blocks[b - 1]) for b in used})
    return group


def _int32s(values: list[int]) -> bytes:
    return struct.pack(f"<{len(values)}i", *values)


def _extra(args: Any, src: Any, steps: Any) -> list[Any]:
    """A row's :data:`_EXTRA` fields but its log entries (those travel in the group's logs)."""
    if args:
        args = {k: _short(v) for k, v in args.items() if not k.startswith("_")} or None
    return [
        None,
        None,
        args or None,
        (src.machine_id, src.tx_id, src.mach_time) if src is not None else None,
        [(int(st.type), st.from_state, st.to_state, st.rel_type, st.is_final, st.is_self,
          st.is_enter) for st in steps] if steps else None,
    ]  # fmt: skip


class TxpGroup(NamedTuple):
    """One machine's transitions of a ``txp`` message, checked by :func:`check_txp`:
    ``rows`` holds ``len(rows) // cols`` rows (see :class:`Lane`), every row's
    called-states index is in range, every ``extras`` value is an array of 5 items (what
    those hold is the reader's to check), ``logs`` the entries of the group's rows as they
    came (a row listed there has its entries there, not in ``extras``), those of log blocks
    included. A row's flags may still name its log block above :data:`FLAG_BITS`: test them
    bit by bit."""

    machine_id: str
    cols: int
    rows: array
    called: list[Any]
    extras: dict[Any, Any]
    logs: TxpLogs | None = None


def check_txp(groups: list[Any]) -> list[TxpGroup]:
    """The groups of a ``txp`` message, rows as arrays; :class:`FrameError` when malformed.
    The checks are per group and column (C loops), not per transition."""
    out = []
    for g in groups:
        if not (isinstance(g, list) and 7 <= len(g) <= 8):
            raise FrameError(
                "telemetry txp: a group is [id, columns, code, rows, called, extras, logs"
                "(, blocks)]"
            )
        mid, cols, code, data, called, extras, logs = g[:7]
        blocks = g[7] if len(g) == 8 else None
        if not (
            isinstance(mid, str)
            and type(cols) is int
            and 8 <= cols <= 100_000
            and code in ("i", "q")
            and isinstance(data, bytes)
            and isinstance(called, list)
            and isinstance(extras, dict)
            and (blocks is None or isinstance(blocks, dict))
        ):
            raise FrameError("telemetry txp: a group has fields of the wrong type")
        if len(data) % (array(code).itemsize * cols):
            raise FrameError("telemetry txp: rows are not a whole number of transitions")
        rows = _ints(data, code)
        idxs = rows[3::cols]  # the called-states column
        if idxs and not (0 <= min(idxs) and max(idxs) < len(called)):
            raise FrameError("telemetry txp: a called-states index is out of range")
        ex = extras.values()  # one C loop each
        if not ({*map(type, ex)} <= {list} and {*map(len, ex)} <= {len(_EXTRA)}):
            raise FrameError(f"telemetry txp: extras are arrays of {len(_EXTRA)} items")
        nrows = len(rows) // cols
        flags = rows[4::cols]
        packed = None
        if flags and not 0 <= min(flags) <= max(flags) <= _FLAGS:
            packed = _with_blocks(flags, blocks or {}, logs, nrows)
        elif logs is not None:
            packed = _with_logs(logs, nrows)
        if packed is not None:
            if extras and not extras.keys().isdisjoint(packed.rows):
                # a row listed in the logs has its entries there (where the sender puts them)
                listed = set(packed.rows)
                extras = {r: [None, None, *x[2:]] if r in listed else x for r, x in extras.items()}
        out.append(TxpGroup(mid, cols, rows, called, extras, packed))
    return out


def _with_blocks(flags: array, blocks: dict[Any, Any], logs: Any, nrows: int) -> TxpLogs:
    """The group's ``logs`` with the lines of the log blocks its rows name (in their flags'
    high bits, see :meth:`Lane.block`) in them: what the readers of a group take (they test
    flags bit by bit, so the block numbers can stay; rewriting the column cost more than the
    rest of the check). Once per group; per row only a C loop, unless rows with lines
    of their own (``logs``) are in the group too (rare: a merge in row order)."""
    if min(flags) < 0:
        raise FrameError("telemetry txp: a row's flags are negative")
    if not (
        {*map(type, blocks)} <= {int}
        and {*map(type, blocks.values())} <= {list}
        and all(
            len(b) == 2
            and isinstance(b[0], bytes)
            and isinstance(b[1], str)
            and len(b[0]) == b[1].count("\n") + 1
            for b in blocks.values()
        )
    ):
        raise FrameError("telemetry txp: log blocks are {number: [levels, text]}")
    named = list(map(operator.rshift, flags, repeat(FLAG_BITS)))
    if not {*named} <= {0, *blocks}:
        raise FrameError("telemetry txp: a row names a log block the group does not hold")
    at = list(compress(range(len(named)), named))
    used = list(map(blocks.__getitem__, filter(None, named)))
    lv = list(map(operator.itemgetter(0), used))
    tx = list(map(operator.itemgetter(1), used))
    if logs is None:  # the usual: every row's lines are in blocks (checked above)
        return TxpLogs(array("i", at), array("i", map(len, lv)), array("i", bytes(4 * len(at))),
                       b"".join(lv), "\n".join(tx), None)  # fmt: skip
    own = _with_logs(logs, nrows)
    if not {*own.rows}.isdisjoint(at):
        raise FrameError("telemetry txp: a row has lines of its own and a log block")
    texts, starts = own.texts(), own.starts()
    entries = {r: (own.n_log[i], own.n_pre[i], starts[i], starts[i + 1])
               for i, r in enumerate(own.rows)}  # fmt: skip
    heads: list[int] = []
    levels: list[int] = []
    lines: list[str] = []
    blocked = dict(zip(at, zip(lv, tx, strict=True), strict=True))
    for r in sorted([*at, *entries]):
        b = blocked.get(r)
        if b is not None:
            heads += (r, len(b[0]), 0)
            levels += b[0]
            lines += b[1].split("\n")
        else:
            n_log, n_pre, a, e = entries[r]
            heads += (r, n_log, n_pre)
            levels += own.levels[a:e]
            lines += texts[a:e]
    return _with_logs(_pack_logs(heads, levels, lines), nrows)


def _with_logs(logs: Any, nrows: int) -> TxpLogs:
    """A group's ``logs`` (see :class:`Lane`), checked, as they came: :class:`TxpLogs`.

    ``logs`` is ``[heads, levels, lengths, text]``: ``heads`` holds, per row that has entries
    (in increasing order), its row number and how many log and pre-log entries it has
    (int32s); ``levels`` the level of every entry, in order, a byte each; the texts, in the
    same order, are one string, joined by newlines when ``lengths`` is null, else cut by
    ``lengths`` (int32s: a text held a newline). Four values for a whole batch: as one
    ``[level, text]`` array each, the entries cost cbor2 more than everything else in the
    frame, and taking each row's entries apart on the machine's thread cost more than its
    transition. Checked in C loops over the columns, not per entry."""
    if not (
        isinstance(logs, list)
        and len(logs) == 4
        and isinstance(logs[0], bytes)
        and len(logs[0]) % 12 == 0
        and isinstance(logs[1], bytes)
        and (logs[2] is None or (isinstance(logs[2], bytes) and len(logs[2]) % 4 == 0))
        and isinstance(logs[3], str)
    ):
        raise FrameError("telemetry txp: logs are [heads, levels, lengths, text]")
    heads, levels, text = _ints(logs[0], "i"), logs[1], logs[3]
    rows, n_log, n_pre = heads[0::3], heads[1::3], heads[2::3]
    if rows and not (
        0 <= min(rows)
        and max(rows) < nrows
        and min(n_log) >= 0
        and min(n_pre) >= 0
        and all(map(operator.lt, rows, rows[1:]))
    ):
        raise FrameError("telemetry txp: a row's logs are out of range (or out of order)")
    claimed = sum(n_log) + sum(n_pre)
    if claimed != len(levels):
        raise FrameError(
            "telemetry txp: the logs have entries no row claims"
            if claimed < len(levels)
            else "telemetry txp: a row's logs are out of range"
        )
    lengths = None
    if logs[2] is None:
        if text.count("\n") != len(levels) - 1 and (levels or text):
            raise FrameError("telemetry txp: the logs' columns do not add up")
    else:
        lengths = _ints(logs[2], "i")
        if not (
            len(levels) == len(lengths)
            and (not lengths or min(lengths) >= 0)
            and sum(lengths) == len(text)
        ):
            raise FrameError("telemetry txp: the logs' columns do not add up")
    return TxpLogs(rows, n_log, n_pre, levels, text, lengths)


class TxpLogs:
    """A checked group's log entries as they came (see :func:`_with_logs`): per row that
    has any (``rows``, increasing), how many log (``n_log``) and pre-log (``n_pre``)
    entries; every entry's level (``levels``, a byte each) and text, in order.

    Why not an entry object (or a ``[level, text]`` array) each at once: at log level 3 a
    transition carries 3-5 entries, and building them (and checking them one by one) cost the
    debugger ~10x everything else it does to ingest a transition, most of which are never
    read one by one. The texts are cut apart on the first read of any (:meth:`texts`), entry
    objects built only for the transitions read (``dbg.pending.Rows.take``), and a joined
    text is smaller than its lines as strings too."""

    __slots__ = ("_lengths", "_starts", "_text", "_texts", "levels", "n_log", "n_pre", "rows")

    def __init__(
        self, rows: array, n_log: array, n_pre: array, levels: bytes, text: str,
        lengths: array | None,
    ) -> None:  # fmt: skip
        self.rows, self.n_log, self.n_pre, self.levels = rows, n_log, n_pre, levels
        self._text, self._lengths = text, lengths
        self._texts: list[str] | None = None
        self._starts: list[int] | None = None

    def texts(self) -> list[str]:
        """Every entry's text, in order (cut apart once; the joined text is then let go)."""
        texts = self._texts
        if texts is None:
            text, lengths = self._text, self._lengths
            if lengths is None:
                texts = text.split("\n") if self.levels else []
            else:
                offsets = list(accumulate(lengths, initial=0))
                texts = list(map(text.__getitem__, map(slice, offsets, offsets[1:])))
            self._texts, self._text, self._lengths = texts, "", None
        return texts

    def starts(self) -> list[int]:
        """Where each row's entries start in :attr:`levels` (and :meth:`texts`)."""
        starts = self._starts
        if starts is None:
            starts = self._starts = list(
                accumulate(map(operator.add, self.n_log, self.n_pre), initial=0)
            )
        return starts

    def find(self, row: int) -> int:
        """The index (in :attr:`rows`) of the first row at or after ``row``."""
        return bisect_left(self.rows, row)

    def span(self, i: int) -> tuple[int, int, int]:
        """Where the ``i``-th row's log entries start, its pre-log entries start and end."""
        a = self.starts()[i]
        m = a + self.n_log[i]
        return a, m, m + self.n_pre[i]

    def pairs(self) -> dict[int, list[Any]]:
        """Row -> ``[log entries, pre-log entries]`` as ``[level, text]`` arrays (None when
        none): the ``txs`` array form (:func:`expand_txp`)."""
        texts, levels, out = self.texts(), self.levels, {}
        for i, row in enumerate(self.rows):
            a, m, e = self.span(i)
            out[row] = [
                [[lv, t] for lv, t in zip(levels[a:m], texts[a:m], strict=True)] or None,
                [[lv, t] for lv, t in zip(levels[m:e], texts[m:e], strict=True)] or None,
            ]
        return out

    def drop_above(self, keep_level: int, first: int, line_cost: int) -> tuple[int, int]:
        """Drop the entries above ``keep_level`` of rows ``first`` and after; returns (lines
        dropped, about how many bytes that freed). Rare (memory pressure): a loop per entry."""
        texts, levels = self.texts(), self.levels
        h = self.find(first)
        starts = self.starts()
        lines = freed = 0
        keep_lv, keep_tx = bytearray(levels[: starts[h]]), texts[: starts[h]]
        n_log, n_pre = self.n_log, self.n_pre
        for i in range(h, len(self.rows)):
            a, m, e = self.span(i)
            for part, lo, hi in ((n_log, a, m), (n_pre, m, e)):
                kept = 0
                for k in range(lo, hi):
                    if levels[k] <= keep_level:
                        keep_lv.append(levels[k])
                        keep_tx.append(texts[k])
                        kept += 1
                    else:
                        lines, freed = lines + 1, freed + len(texts[k]) + line_cost
                part[i] = kept
        if lines:
            self.levels, self._texts, self._starts = bytes(keep_lv), keep_tx, None
        return lines, freed


def _ints(data: bytes, code: str) -> array:
    """Little-endian integers (``code``: ``i`` or ``q``) as an array."""
    ints = array(code)
    ints.frombytes(data)
    if not _LITTLE:
        ints.byteswap()
    return ints


def expand_txp(group: TxpGroup) -> list[list[Any]]:
    """A checked group's transitions as ``txs`` arrays (:data:`TX_FIELDS` order)."""
    mid, cols, rows, called, extras, logs = group
    if logs is not None and logs.rows:
        extras = dict(extras)
        for row, pair in logs.pairs().items():
            extras[row] = [*pair, *extras.get(row, _NO_EXTRA)[2:]]
    return [
        [mid, f"q{num}" if flags & FLAG_QUEUED else num, rows[i + 8 : i + cols].tolist(), qt,
         mtype, called[ci], flags & _FLAGS, qlen, mqt, token, *extras.get(n, _NO_EXTRA)]
        for n, i in enumerate(range(0, len(rows), cols))
        for num, qt, mtype, ci, flags, qlen, mqt, token in (rows[i : i + 8],)
    ]  # fmt: skip


_NO_EXTRA = (None,) * len(_EXTRA)


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

    The machine packs its transitions into the :class:`Lane` it gets from :meth:`lane_for`
    (no ``transition_end`` hook, so the machine keeps its fast path). A machine has one lane:
    a second debugger's tracer gets the machine's records through its :attr:`sink`, the
    outbox's ``put``, which packs them the same way."""

    def __new__(cls, outbox: Outbox, *, full: bool = False) -> DbgTracer:
        return super().__new__(_FullDbgTracer if full and cls is DbgTracer else cls)

    def __init__(self, outbox: Outbox, *, full: bool = False) -> None:
        self.outbox = outbox
        self.full = full
        self.sink = outbox.put
        self.sink_args = full
        self.lane: Lane | None = None  # the machine's lane, when it took this tracer's

    def lane_for(self, mach: Machine) -> Lane:
        self.lane = self.outbox.lane(mach.id, len(mach.state_names), args=self.full)
        return self.lane

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
        self.outbox.forget(mach_id)


class _FullDbgTracer(DbgTracer):
    """With full logging (``AM_LOG_FULL``) also a record per queued mutation, as the
    reference. A subclass, so that without it the machine skips the hook entirely: most
    mutations are queued and run at once, which would double the traffic for nothing."""

    def mutation_queued(self, mach: Machine, mutation: Mutation) -> None:
        # a row among the machine's transitions, in order: its id column holds the queue tick
        # (or token), which readers show as "q<tick>" (the FLAG_QUEUED rows)
        rec = (mach.id, mutation.queue_tick or mutation.token, tuple(mach.time()),
               mach.queue_tick, mutation.type, mutation.called,
               FLAG_QUEUED | (FLAG_CHECK if mutation.check else 0), mach.queue_len(),
               mutation.queue_tick, mutation.token, None, None, mutation.args, mutation.source,
               None)  # fmt: skip
        lane = self.lane
        if lane is not None and lane.open:
            lane.record(rec)
        else:  # the machine's lane is another debugger's: this one gets records
            self.outbox.put(rec)


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
        while not self._stop.is_set():
            data = outbox.take()
            if data:
                sock.sendall(data)
                self.sent_frames += 1
            # one batch per poll interval, not one per wake-up: taking again at once (as this
            # loop did) woke this thread, which needs the GIL, hundreds of times a second while
            # machines ran; a filling outbox still goes out at once, before it drops anything
            if len(outbox) < high:
                time.sleep(poll)


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
