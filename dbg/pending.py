"""A machine's transitions as received and not read yet: kept in blocks, parsed when read.

Why: ``am dbg`` receives transitions faster than it could build an object for each (a
machine makes one in ~10 us; building a :class:`DbgMsgTx` costs several), and most are never
looked at one by one: a UI reads a screenful, a dump reads them all once. So the collector
keeps what arrived as it arrived, a block per message, and :class:`Pending` turns the oldest
blocks into :class:`DbgMsgTx` objects when they are read. Ingest then costs a few operations
per block, none per transition.

Two kinds of block:

- :class:`Rows`: one machine's part of a ``txp`` message (:class:`machines.telemetry.Lane`)
  as it came off the wire: the integer rows in one array, the distinct called-state lists and
  the extras of the few rows that have any. Read straight from the rows into objects (no
  intermediate arrays); a row costs ``cols`` machine words until then.
- :class:`Items`: anything else, one item per transition with the function that parses one
  (live ``txs`` arrays, the structs of an imported Go dump).

Every transition in a block was checked when it arrived (``dbg.collector``), so parsing one
cannot fail; if it does anyway (a bug), it costs only itself: :meth:`Pending.take` skips and
counts it.
"""

from __future__ import annotations

import gc
from collections import deque
from collections.abc import Callable
from dataclasses import fields
from datetime import datetime
from typing import Any

from machines.telemetry import TX_FIELDS
from machines.tracer import FLAG_ACCEPTED, FLAG_AUTO, FLAG_CHECK, FLAG_QUEUED
from machines.transition import tx_id

from .model import DbgMsgTx, LogEntry, Step, ns_to_time

#: :class:`DbgMsgTx`'s leading fields, in order: :meth:`Rows.take` passes them by position
#: (by keyword, the generated constructor of 27 fields took twice as long: ~2.9 against
#: ~1.45 us a transition, most of reading one)
_BY_POSITION = (
    "machine_id", "id", "clocks", "queue_tick", "mut_queue_token", "mut_queue_tick", "type",
    "called_states", "called_states_idxs", "steps", "log_entries", "pre_log_entries", "queue",
    "time", "is_auto", "accepted", "is_check", "is_queued",
)  # fmt: skip
if tuple(f.name for f in fields(DbgMsgTx))[: len(_BY_POSITION)] != _BY_POSITION:
    raise ImportError("dbg.pending: DbgMsgTx's fields moved; update _BY_POSITION and Rows.take")

__all__ = ["Items", "Pending", "Rows", "extras_into"]

_NO_EXTRAS = (None, None, None, None, None)
#: transitions read at once from which automatic garbage collection pauses (see Pending.take)
_BULK = 4096


def extras_into(tx: DbgMsgTx, logs: Any, pre: Any, args: Any, src: Any, steps: Any) -> None:
    """Set the rarely present fields of a checked transition (:data:`TX_FIELDS` 10-14)."""
    if steps:
        tx.steps = [
            Step(type=t, rel_type=rel if rel >= 0 else 0, is_final=fin, is_self=me,
                 is_enter=enter, from_state=a, to_state=b)
            for t, a, b, rel, fin, me, enter in steps
        ]  # fmt: skip
    if logs:
        tx.log_entries = [LogEntry(lv, text) for lv, text in logs]
    if pre:
        tx.pre_log_entries = [LogEntry(lv, text) for lv, text in pre]
    if args:
        tx.args = {str(k): str(v) for k, v in args.items()}
    if src is not None:
        tx.source_machine_id, tx.source_tx_id, tx.source_mach_time = src


class Rows:
    """Checked rows of one ``txp`` group, ``first`` of them already read or dropped."""

    __slots__ = ("arrived", "called", "cols", "extras", "first", "logs", "logs_done", "mid",
                 "rows", "stop")  # fmt: skip

    def __init__(self, group: Any, arrived: int) -> None:
        self.mid, self.cols, self.rows, self.called, self.extras, self.logs = group
        self.arrived = arrived
        self.first = 0
        self.stop = len(self.rows) // self.cols
        self.logs_done = False  # its old log lines were dropped (see Pending.drop_old_logs)

    def drop_logs(self, keep_level: int, line_cost: int) -> tuple[int, int]:
        """Drop the log lines above ``keep_level`` of the rows not read yet."""
        lines = freed = 0
        if self.logs is not None:
            lines, freed = self.logs.drop_above(keep_level, self.first, line_cost)
        extras = self.extras
        for row in [r for r in extras if r >= self.first] if extras else ():
            logs, pre, *rest = extras[row]
            n, b, logs = _keep(logs, keep_level, line_cost)
            n2, b2, pre = _keep(pre, keep_level, line_cost)
            if n or n2:
                extras[row] = (logs, pre, *rest)
                lines, freed = lines + n + n2, freed + b + b2
        return lines, freed

    def __len__(self) -> int:
        return self.stop - self.first

    def drop(self, n: int) -> None:
        self.first += n

    def last_clocks(self) -> list[int]:
        i = (self.stop - 1) * self.cols
        return self.rows[i + 8 : i + self.cols].tolist()

    def take(self, n: int, out: list[DbgMsgTx], prefix: str) -> None:
        """Append the next ``n`` transitions to ``out`` (``prefix``: of numeric ids)."""
        cols, called, extras, mid = self.cols, self.called, self.extras, self.mid
        when: datetime = ns_to_time(self.arrived)  # immutable: one object for the block
        first = self.first
        self.first = first + n
        # one C-level conversion of the block's rows, then list slices
        vals = self.rows[first * cols : (first + n) * cols].tolist()
        append = out.append
        logs, at = self.logs, -1  # at: the next row (of those taken) with log entries
        if logs is not None and logs.rows:
            # the entries of the rows taken, built at once; a row's are a slice of them
            heads, n_log, n_pre, starts = logs.rows, logs.n_log, logs.n_pre, logs.starts()
            h = logs.find(first)
            base, end = starts[h], starts[logs.find(first + n)]
            entries = list(map(LogEntry, logs.levels[base:end], logs.texts()[base:end]))
            at = heads[h] if h < len(heads) else -1
        for k in range(n):
            i = k * cols
            num, qt, mtype, ci, flags, qlen, mqt, token = vals[i : i + 8]
            tx = DbgMsgTx(  # by position, in _BY_POSITION's order
                mid, f"q{num}" if flags & FLAG_QUEUED else tx_id(prefix, num),
                vals[i + 8 : i + cols], qt, token, mqt, mtype,
                list(called[ci]) if called[ci] else [], [], [], [], [], qlen, when,
                bool(flags & FLAG_AUTO), bool(flags & FLAG_ACCEPTED), bool(flags & FLAG_CHECK),
                bool(flags & FLAG_QUEUED),
            )  # fmt: skip
            if extras:
                ex = extras.get(first + k, _NO_EXTRAS)
                if ex is not _NO_EXTRAS:
                    extras_into(tx, *ex)
            if first + k == at:  # its log entries: one object each, built as it is read
                a = starts[h] - base
                m = a + n_log[h]
                if m > a:
                    tx.log_entries = entries[a:m]
                if n_pre[h]:
                    tx.pre_log_entries = entries[m : m + n_pre[h]]
                h += 1
                at = heads[h] if h < len(heads) else -1
            append(tx)


class Items:
    """Transitions one item each, with how to parse one (given the id prefix) and to read
    its clocks."""

    __slots__ = ("arrived", "clocks", "first", "items", "logs_done", "parse")

    def __init__(
        self,
        items: list[Any],
        parse: Callable[[Any, str], DbgMsgTx],
        clocks: Callable[[Any], list[int]],
        arrived: int = 0,
    ) -> None:
        self.items, self.parse, self.clocks = items, parse, clocks
        #: when live transition arrays (TX_FIELDS order) arrived; 0: other items (imported)
        self.arrived = arrived
        self.first = 0
        self.logs_done = False

    def drop_logs(self, keep_level: int, line_cost: int) -> tuple[int, int]:
        """Drop the log lines above ``keep_level`` of live arrays not read yet."""
        lines = freed = 0
        if not self.arrived:
            return 0, 0
        for arr in self.items[self.first :]:
            for i in (_LOGS, _PRE):
                n, b, arr[i] = _keep(arr[i], keep_level, line_cost)
                lines, freed = lines + n, freed + b
        return lines, freed

    def __len__(self) -> int:
        return len(self.items) - self.first

    def drop(self, n: int) -> None:
        self.first += n

    def last_clocks(self) -> list[int]:
        return self.clocks(self.items[-1])

    def take(self, n: int, out: list[DbgMsgTx], prefix: str) -> None:
        first = self.first
        self.first = first + n
        parse, append = self.parse, out.append
        for item in self.items[first : first + n]:
            append(parse(item, prefix))


Block = Rows | Items
_LOGS, _PRE = TX_FIELDS.index("log_entries"), TX_FIELDS.index("pre_log_entries")


def _keep(logs: Any, keep_level: int, line_cost: int) -> tuple[int, int, Any]:
    """(lines dropped, bytes about, the ``[level, text]`` pairs kept) of checked log lines."""
    if not logs:
        return 0, 0, logs
    keep = [e for e in logs if e[0] <= keep_level]
    if len(keep) == len(logs):
        return 0, 0, logs
    freed = sum(len(e[1]) + line_cost for e in logs if e[0] > keep_level)
    return len(logs) - len(keep), freed, keep


class Pending:
    """The blocks of one machine not read yet, oldest first, and how many transitions they
    hold."""

    __slots__ = ("blocks", "n")

    def __init__(self) -> None:
        self.blocks: deque[Block] = deque()
        self.n = 0

    def __len__(self) -> int:
        return self.n

    def add(self, block: Block) -> None:
        if len(block):
            self.blocks.append(block)
            self.n += len(block)

    def clear(self) -> None:
        self.blocks, self.n = deque(), 0

    def last_clocks(self) -> list[int]:
        return self.blocks[-1].last_clocks() if self.blocks else []

    def drop_old_logs(self, before_ns: int, keep_level: int, line_cost: int) -> tuple[int, int]:
        """Drop the log lines above ``keep_level`` of the blocks that arrived before
        ``before_ns`` (each block once: the newer ones are left for a later call)."""
        lines = freed = 0
        for b in self.blocks:
            if b.arrived >= before_ns:
                break  # blocks arrive in order
            if b.logs_done or not b.arrived:
                continue
            n, f = b.drop_logs(keep_level, line_cost)
            b.logs_done = True
            lines, freed = lines + n, freed + f
        return lines, freed

    def drop(self, n: int) -> None:
        """Forget the ``n`` oldest transitions."""
        n = min(n, self.n)
        self.n -= n
        blocks = self.blocks
        while n:
            b = blocks[0]
            k = min(n, len(b))
            b.drop(k)
            n -= k
            if not len(b):
                blocks.popleft()

    def take(
        self, limit: int, out: list[DbgMsgTx], prefix: str, on_bad: Callable[[Exception], None]
    ) -> None:
        """Parse the ``limit`` oldest transitions into ``out`` (``prefix``: the machine's, of
        numeric ids; a block does not hold it, the schema may change before it is read); one
        that fails is passed to ``on_bad`` and skipped."""
        limit = min(limit, self.n)
        if limit >= _BULK and gc.isenabled():
            # A bulk read allocates ~10 long-lived containers per transition, and the
            # allocations themselves trigger the cycle collector's passes over all of them:
            # those cost more than the building (at log level ops, 22 -> 9 us a transition
            # without them). Nothing built here can be cyclic garbage, so automatic
            # collection pauses for the read (the next allocation after it may collect).
            gc.disable()
            try:
                self.take(limit, out, prefix, on_bad)
            finally:
                gc.enable()
            return
        self.n -= limit
        blocks = self.blocks
        while limit:
            b = blocks[0]
            k = min(limit, len(b))
            limit -= k
            start, size = b.first, len(out)
            try:
                b.take(k, out, prefix)
            except Exception:  # checked at ingest; a miss must cost only itself
                del out[size:]
                b.first = start
                for _ in range(k):  # a block moves past a transition before parsing it
                    try:
                        b.take(1, out, prefix)
                    except Exception as err:
                        on_bad(err)
            if not len(b):
                blocks.popleft()
