"""The debugger's collector: receives telemetry from many machines and keeps their history.

:class:`Collector` is the store (no I/O): connections are ids, frames arrive as decoded
``(kind, message)`` pairs. :func:`serve_collector` is the trio driver: a TCP listener speaking
the frame format of :mod:`machines.telemetry`, and optionally a WebSocket listener (path
``/dbg.ws``, one or more frames per binary message) for machines running in a browser.
"""

from __future__ import annotations

import gc
import itertools
import logging
import math
import os
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from itertools import chain
from typing import TYPE_CHECKING, Any

from machines.rpc.protocol import brief, brief_error
from machines.telemetry import TX_FIELDS, FrameDecoder, TxpGroup, expand_txp
from machines.tracer import FLAG_ACCEPTED, FLAG_AUTO, FLAG_CHECK, FLAG_QUEUED
from machines.transition import tx_id

from .model import DbgMsgStruct, DbgMsgTx, MachineDump, ns_to_time, time_to_ns
from .pending import Items, Pending, Rows, extras_into

if TYPE_CHECKING:
    import trio

    from .dump import PendingMachine

__all__ = [
    "Collector",
    "MachineRecord",
    "rss_bytes",
    "serve_collector",
    "tx_from_array",
    "tx_problem",
]

log = logging.getLogger("dbg.collector")
_CLOCKS = TX_FIELDS.index("clocks")

#: Machines kept at most; a new one above that evicts one (see Collector._evict).
MAX_MACHINES = 5000
#: Transitions ingested between two memory checks (reading RSS is a system call).
#: A disconnected machine left with fewer transitions than this after a cut of the history
#: (``--max-mem``) is removed, as the reference removes clients below 300 transitions.
SMALL_HISTORY = 300
CHECK_EVERY = 16_384
#: log lines at or below this level stay when old ones go (``--log-ops-ttl``): changes and
#: external mutations; above it: ops (pipes, links, handlers), debug, trace
_KEEP_LEVEL = 2
#: about what a log line costs besides its text (its object, its string's header)
_LINE_COST = 100
#: Transitions ingested between two ``gc.freeze()`` calls (see Collector.ingest).
FREEZE_EVERY = 2048
#: Bad messages logged per connection; later ones are only counted.
LOG_BAD = 10
_N_FIELDS = len(TX_FIELDS)
_WORD_MIN, _WORD_MAX = -(1 << 63), (1 << 64) - 1
_INTS, _STRS, _LISTS = frozenset((int,)), frozenset((str,)), frozenset((list,))
_ARG_TYPES = frozenset((str, int, float, bool, type(None)))


def _word(v: Any) -> bool:
    return type(v) is int and _WORD_MIN <= v <= _WORD_MAX


def _ints(v: Any) -> bool:
    return type(v) is list and (
        not v or ({*map(type, v)} <= _INTS and _WORD_MIN <= min(v) and max(v) <= _WORD_MAX)
    )


def _strs(v: Any) -> bool:
    return type(v) is list and {*map(type, v)} <= _STRS


def _log_entries(v: Any) -> bool:
    return type(v) is list and _all_log_entries([v])


def _all_log_entries(parts: list[Any]) -> bool:
    """Whether every part is None or a list of ``[level, text]`` pairs: C loops over all the
    entries at once (at log level ops and above, most transitions carry several)."""
    lists = [p for p in parts if p is not None]
    if not _LISTS.issuperset(map(type, lists)):
        return False
    flat = list(chain.from_iterable(lists))
    if not flat:
        return True
    if not (_LISTS.issuperset(map(type, flat)) and {*map(len, flat)} == {2}):
        return False
    levels, texts = zip(*flat, strict=True)
    return (
        _INTS.issuperset(map(type, levels))
        and _WORD_MIN <= min(levels)
        and max(levels) <= _WORD_MAX
        and _STRS.issuperset(map(type, texts))
    )


def _step(st: Any) -> bool:
    return (
        type(st) is list
        and len(st) == 7
        and _word(st[0])
        and type(st[1]) is str
        and type(st[2]) is str
        and _word(st[3])
        and type(st[4]) is bool
        and type(st[5]) is bool
        and type(st[6]) is bool
    )


def tx_problem(arr: list[Any], n_states: int) -> str:
    """What is wrong with a transition array (in :data:`TX_FIELDS` order), "" if nothing.

    Checks every field the parse into :class:`DbgMsgTx` and the dump writer rely on, with
    integers bounded to 64 bits, so that what is accepted can always be read and saved.
    """
    (_, tid, clocks, qt, typ, called, flags, queue, mqt, mqtok, logs, pre, args, src, steps) = arr
    if not (type(tid) is str or (_word(tid) and tid >= 0)):
        return "id: want a string or an unsigned integer"
    if not _ints(clocks) or len(clocks) != n_states:
        return f"clocks: want {n_states} 64-bit integers"
    for v in (qt, typ, flags, queue, mqt, mqtok):
        if v is not None and not _word(v):
            return "queue ticks, type, flags and queue length must be 64-bit integers"
    if called is not None and not _strs(called):
        return "called_states: want a list of names"
    return extras_problem(logs, pre, args, src, steps)


def extras_problem(logs: Any, pre: Any, args: Any, src: Any, steps: Any) -> str:
    """What is wrong with the rarely set fields of a transition (:func:`tx_problem`), ""
    if nothing."""
    if (logs is not None and not _log_entries(logs)) or (pre is not None and not _log_entries(pre)):
        return "log entries: want [level, text] pairs"
    if args is not None and not (
        type(args) is dict
        and all(
            type(k) is str and type(v) in _ARG_TYPES and (type(v) is not int or _word(v))
            for k, v in args.items()
        )
    ):
        return "args: want a map of names to scalars"
    if src is not None and not (
        type(src) is list
        and len(src) == 3
        and type(src[0]) is str
        and type(src[1]) is str
        and _word(src[2])
    ):
        return "source: want [machine id, tx id, machine time]"
    if steps is not None and not (type(steps) is list and all(map(_step, steps))):
        return "steps: want [type, from, to, relation, final, self, enter] arrays"
    return ""


def _group_ok(group: TxpGroup, n_states: int) -> bool:
    """Whether every transition of a checked ``txp`` group passes :func:`tx_problem`, in a
    few C loops over its columns: its integers are 32 or 64 bits by construction, so what is
    left is the clock count, ids >= 0, the called-state lists and the extras."""
    cols, rows, extras = group.cols, group.rows, group.extras.values()
    return (
        cols - 8 == n_states
        and (not rows or min(rows[0::cols]) >= 0)
        and all(c is None or _strs(c) for c in group.called)
        and _all_log_entries([part for ex in extras for part in ex[:2]])
        and not any(
            extras_problem(None, None, *rest)
            for _, _, *rest in extras
            if rest[0] is not None or rest[1] is not None or rest[2] is not None
        )
    )


def tx_from_array(arr: list[Any], id_prefix: str, arrived: int) -> DbgMsgTx:
    """The transition of an array that :func:`tx_problem` accepted (``arrived``: its arrival
    time, ns).

    Why not ``DbgMsgTx.from_dict(tx_message(arr))``: that builds a dict and checks every field
    again, which the ingest check already did; building the objects at once is ~3x faster,
    and the UI parses what it shows while a flood streams in. Same result (a test holds it).
    """
    (mid, tid, clocks, qt, typ, called, flags, queue, mqt, mqtok, logs, pre, args, src, steps) = arr
    flags = flags or 0
    tx = DbgMsgTx(
        machine_id=mid,
        id=tx_id(id_prefix, tid) if type(tid) is int else tid,
        clocks=list(clocks),
        queue_tick=qt or 0,
        mut_queue_token=mqtok or 0,
        mut_queue_tick=mqt or 0,
        type=typ or 0,
        called_states=list(called) if called else [],
        queue=queue or 0,
        time=ns_to_time(arrived),
        is_auto=bool(flags & FLAG_AUTO),
        accepted=bool(flags & FLAG_ACCEPTED),
        is_check=bool(flags & FLAG_CHECK),
        is_queued=bool(flags & FLAG_QUEUED),
    )
    if logs or pre or args or src is not None or steps:
        extras_into(tx, logs, pre, args, src, steps)
    return tx


def rss_bytes() -> int:
    """The process's resident memory now (Linux), else its peak (other systems)."""
    try:
        with open("/proc/self/statm", "rb") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        import resource

        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return peak if sys.platform == "darwin" else peak * 1024


@dataclass
class MachineRecord:
    """One machine as the debugger knows it.

    Transitions arrive faster than they can be parsed into :class:`DbgMsgTx` objects, so they
    are kept as received (:class:`dbg.pending.Pending`: packed rows, live arrays, or an
    imported dump's structs) and parsed on first read of :attr:`txs` (or :meth:`read`). One
    that fails to parse is counted in :attr:`bad` and logged once.
    """

    schema: DbgMsgStruct
    conn_id: str
    connected: bool = True
    #: when its telemetry connection ended (wall-clock ns; 0 while connected or never live):
    #: a producer killed or a tab closed says nothing else, and the log reader ends the pipes
    #: to and from it from then on, as if its peers had logged ``[pipe:gc]``
    gone_ns: int = 0
    bad: int = 0
    #: the oldest transitions dropped to stay under ``--max-mem`` (the history starts after
    #: them: a UI shows "N older transitions dropped"; ids and clocks stay the producer's)
    dropped: int = 0
    #: an imported history (``--import-data``): read whole, see :meth:`read`
    imported: bool = False
    _txs: list[DbgMsgTx] = field(default_factory=list)
    #: transitions (counted from the first ever received) whose old log lines were dropped
    _logs_done: int = 0
    _pending: Pending = field(default_factory=Pending)

    def add_rows(self, group: TxpGroup, arrived: int) -> None:
        """Keep a ``txp`` group whose every transition passed the ingest checks."""
        self._pending.add(Rows(group, arrived))

    def add_arrays(self, arrays: list[list[Any]], arrived: int) -> None:
        """Keep transition arrays that :func:`tx_problem` accepted."""

        def parse(arr: list[Any], prefix: str) -> DbgMsgTx:
            return tx_from_array(arr, prefix, arrived)

        self._pending.add(Items(arrays, parse, _raw_clocks, arrived))

    def _bad(self, err: Exception) -> None:
        if not self.bad:
            log.warning(
                "dbg: %s: skipped a malformed transition: %s", self.schema.id, brief_error(err)
            )
        self.bad += 1

    @property
    def txs(self) -> list[DbgMsgTx]:
        pending = self._pending
        if pending.n:
            pending.take(pending.n, self._txs, self.schema.tx_id_prefix, self._bad)
        return self._txs

    @txs.setter
    def txs(self, txs: list[DbgMsgTx]) -> None:
        self._txs = txs
        self._pending.clear()
        self._logs_done = self.dropped

    def __len__(self) -> int:
        return len(self._txs) + self._pending.n

    @property
    def n_states(self) -> int:
        return len(self.schema.states_index)

    def drop_oldest(self, n: int) -> int:
        """Forget the ``n`` oldest transitions (parsed ones are older than pending ones)."""
        n = min(n, len(self))
        parsed = min(n, len(self._txs))
        del self._txs[:parsed]
        self._pending.drop(n - parsed)
        self.dropped += n
        return n

    def read(self, limit: int) -> list[DbgMsgTx]:
        """The history after parsing at most ``limit`` more pending transitions (the rest
        stay pending, in order): a UI reads a flood a slice at a time instead of stalling.
        Call it where :meth:`Collector.ingest` cannot run at the same time. An imported
        history is read whole (its size is bounded by the dump; a UI in tail mode wants its
        end at once)."""
        if self.imported:
            return self.txs
        self._pending.take(limit, self._txs, self.schema.tx_id_prefix, self._bad)
        return self._txs

    def drop_old_logs(self, before_ns: int) -> tuple[int, int]:
        """See :meth:`Collector.drop_old_logs`; each transition is looked at once (a mark
        moves past the ones done)."""
        lines = freed = 0
        txs = self._txs
        k = max(0, self._logs_done - self.dropped)
        while k < len(txs):
            tx = txs[k]
            if tx.time is not None and time_to_ns(tx.time) >= before_ns:
                break  # and so are the ones after it
            for key in ("log_entries", "pre_log_entries"):
                entries = getattr(tx, key)
                if entries and any(e.level > _KEEP_LEVEL for e in entries):
                    for e in entries:
                        if e.level > _KEEP_LEVEL:
                            lines, freed = lines + 1, freed + len(e.text) + _LINE_COST
                    setattr(tx, key, [e for e in entries if e.level <= _KEEP_LEVEL])
            k += 1
        self._logs_done = self.dropped + k
        if k == len(txs):  # every parsed one is old: so may pending ones be
            n, b = self._pending.drop_old_logs(before_ns, _KEEP_LEVEL, _LINE_COST)
            lines, freed = lines + n, freed + b
        return lines, freed

    def dump(self) -> MachineDump:
        """This machine for a dump: its schema, a copy of its history, when it went."""
        return MachineDump(self.schema, list(self.txs), gone_ns=self.gone_ns)

    def latest_clocks(self) -> list[int]:
        """Clocks after the newest transition without parsing the pending ones ([] when
        none): summaries such as the UI's machine list stay cheap while data streams in."""
        if self._pending.n:
            clocks = self._pending.last_clocks()
            return clocks if isinstance(clocks, list) else []
        return self._txs[-1].clocks if self._txs else []


def _raw_clocks(arr: list[Any]) -> list[int]:
    return arr[_CLOCKS]


def _no_prefix(parse: Callable[[Any], DbgMsgTx]) -> Callable[[Any, str], DbgMsgTx]:
    """The parse of an imported transition, whose id is a string already."""
    return lambda raw, _prefix: parse(raw)


class Collector:
    """History of every machine that reported, keyed by machine id.

    Every transition is checked when it arrives (:func:`tx_problem`): a malformed one is
    counted in :attr:`rejected` and never stored, so reading or saving the history cannot
    fail because of one record. With ``max_mem`` (bytes of process memory, RSS) the oldest
    history is dropped first, see :meth:`check_memory`.
    """

    def __init__(
        self,
        *,
        max_mem: int | None = None,
        max_machines: int = MAX_MACHINES,
        clean_on_connect: bool = False,
        on_clean: Callable[[list[MachineDump]], None] | None = None,
        freeze_history: bool = False,
        log_ttl: float | None = None,
    ) -> None:
        self.machines: dict[str, MachineRecord] = {}
        #: ``gc.freeze()`` the process every FREEZE_EVERY transitions (see :meth:`ingest`): for
        #: a process that is only a debugger (``am dbg``). Off in a library's default, since
        #: freezing is process-wide and would keep another program's dead cycles forever.
        self.freeze_history = freeze_history
        #: when a machine connects and every known machine is disconnected, drop them first
        #: (a restarted program replaces its previous run, as the reference's default does);
        #: ``on_clean`` gets their history before it is dropped (headless saves it)
        self.clean_on_connect = clean_on_connect
        self.on_clean = on_clean
        self.cleaned = 0  # machines dropped by clean-on-connect
        self.ignored = 0  # transitions dropped: unknown machine or foreign connection
        self.rejected = 0  # transitions dropped: malformed (see tx_problem)
        self.total_txs = 0
        self.buffered = 0  # transitions since the last rotate()
        self.max_mem = max_mem
        self.max_machines = max_machines
        self.trimmed = 0  # transitions dropped by check_memory, all machines
        self.evicted = 0  # machines dropped above max_machines
        self.removed = 0  # machines dropped by check_memory (SMALL_HISTORY)
        #: seconds after which log lines above level 2 (the ops, debug and trace lines) may
        #: go when over ``max_mem``: the first thing given up (``--log-ops-ttl``)
        self.log_ttl = log_ttl
        self.logs_dropped = 0  # log lines dropped by that, all machines
        self._budget: int | None = None  # transitions kept at most, once max_mem was hit
        self._rss_at_cut = 0  # the process's memory after the last cut (0: none yet)
        self._since_check = 0
        self._since_freeze = 0
        self._conn_ids = itertools.count(1)
        self._listeners: list[Callable[[], None]] = []
        #: sees every producer's bytes as received (``data(conn_id, bytes, kinds)``) and
        #: its end (``closed(conn_id)``): ``--fwd-data`` (:class:`dbg.forward.Forwarder`)
        self.tap: Any = None

    def subscribe(self, fn: Callable[[], None]) -> Callable[[], None]:
        """Call ``fn()`` after every change (ingest, disconnect); returns an unsubscribe."""
        self._listeners.append(fn)
        return lambda: self._listeners.remove(fn)

    def _changed(self) -> None:
        for fn in list(self._listeners):
            fn()

    def connect(self) -> str:
        return f"conn-{next(self._conn_ids)}"

    def disconnect(self, conn_id: str, *, gone: bool = True) -> None:
        """Mark the machines of ``conn_id`` disconnected (their history stays) and, when the
        producer ended the connection (``gone``), gone now. A connection that ends because
        the debugger stops says nothing about the machines: they stay not gone, so the
        dump written on exit keeps their pipes."""
        now = time.time_ns() if gone else 0
        for rec in self.machines.values():
            if rec.conn_id == conn_id and rec.connected:
                rec.connected, rec.gone_ns = False, now
        if self.tap is not None:
            self.tap.closed(conn_id)
        self._changed()

    def ingest(self, conn_id: str, kind: str, message: Any) -> None:
        """Apply one message; raises ``ValueError`` (one line) for a malformed one, after
        keeping every valid transition of its batch. Kinds: ``schema`` (a dict), ``txs``
        (transition arrays), ``txp`` (the checked groups of
        :class:`machines.telemetry.FrameDecoder` with ``packed``)."""
        if kind == "schema":
            try:
                schema = DbgMsgStruct.from_dict(message)
            except Exception as err:  # e.g. unhashable or huge values where names go
                raise ValueError(f"bad schema: {brief_error(err)}") from None
            self._schema(conn_id, schema)
            return
        now = time.time_ns()
        if kind == "txp":
            accepted, bad, problem = self._groups(conn_id, message, now)
        elif kind == "txs":
            if not isinstance(message, list):
                raise ValueError("a txs message is a list of transitions")
            accepted, bad, problem = self._arrays(conn_id, message, now)
        else:
            raise ValueError(f"unknown telemetry message kind {brief(kind)}")
        self.total_txs += accepted
        self.buffered += accepted
        self.rejected += bad
        if self.max_mem:
            self._since_check += accepted
            if self._since_check >= CHECK_EVERY:
                self.check_memory()
        self._since_freeze += accepted
        if self.freeze_history and self._since_freeze >= FREEZE_EVERY:
            # The history is millions of long-lived, acyclic objects: every full collection
            # of the cycle collector walked all of them (up to ~0.3 s per 100k transitions,
            # holding the interpreter lock, so a UI froze too). Frozen objects are skipped by
            # the collector and still freed by reference counting when dropped (rotation,
            # --max-mem); only reference cycles that were alive at a freeze and die later
            # stay in memory. The young generations are collected first (cheap), so recent
            # garbage cycles are freed rather than frozen.
            self._since_freeze = 0
            gc.collect(1)
            gc.freeze()
        self._changed()
        if bad:
            raise ValueError(f"{bad} malformed transition(s) rejected, e.g.: {problem}")

    def _groups(self, conn_id: str, groups: list[TxpGroup], now: int) -> tuple[int, int, str]:
        """Keep the valid transitions of ``txp`` groups: (accepted, rejected, a problem).

        A group whose every transition is valid (:func:`_group_ok`, the usual case) is kept
        packed as it came; any other is checked and kept transition by transition."""
        accepted = bad = 0
        problem = ""
        machines = self.machines
        for g in groups:
            rec = machines.get(g.machine_id)
            if rec is None or rec.conn_id != conn_id:
                self.ignored += len(g.rows) // g.cols
            elif _group_ok(g, rec.n_states):
                rec.add_rows(g, now)
                accepted += len(g.rows) // g.cols
            else:
                ok, no, why = self._arrays(conn_id, expand_txp(g), now)
                accepted, bad, problem = accepted + ok, bad + no, problem or why
        return accepted, bad, problem

    def _arrays(self, conn_id: str, arrays: list[Any], now: int) -> tuple[int, int, str]:
        """Keep the valid transition arrays: (accepted, rejected, a problem)."""
        accepted = bad = 0
        problem = ""
        machines = self.machines
        kept: dict[str, list[list[Any]]] = {}
        for arr in arrays:
            if type(arr) is not list or len(arr) != _N_FIELDS or type(arr[0]) is not str:
                problem = problem or f"not an array of {_N_FIELDS} items with a machine id"
                bad += 1  # one bad transition must not cost the rest of its batch
                continue
            rec = machines.get(arr[0])
            if rec is None or rec.conn_id != conn_id:
                self.ignored += 1
                continue
            why = tx_problem(arr, rec.n_states)
            if why:
                problem = problem or why
                bad += 1
                continue
            kept.setdefault(arr[0], []).append(arr)
            accepted += 1
        for mid, arrs in kept.items():
            machines[mid].add_arrays(arrs, now)
        return accepted, bad, problem

    def _schema(self, conn_id: str, schema: DbgMsgStruct) -> None:
        rec = self.machines.get(schema.id)
        if self.clean_on_connect and (rec is None or rec.conn_id != conn_id):
            self._clean()
            rec = self.machines.get(schema.id)
        if rec is None:
            if len(self.machines) >= self.max_machines:
                self._evict()
            self.machines[schema.id] = MachineRecord(schema, conn_id)
            self._changed()
            return
        if rec.imported:  # an imported machine reconnects: new transitions are live ones
            rec.txs = rec.txs
            rec.imported = False
        if rec.schema.states_index != schema.states_index:
            # a different machine under the same id: keep what it had, restart its clocks
            rec.txs = [tx for tx in rec.txs if len(tx.clocks) == len(schema.states_index)]
        rec.schema, rec.conn_id, rec.connected, rec.gone_ns = schema, conn_id, True, 0
        self._changed()

    def _clean(self) -> None:
        """Clean-on-connect: a new connection while every known machine is disconnected
        (imported ones included) starts a fresh list."""
        machines = self.machines
        if not machines or any(r.connected for r in machines.values()):
            return
        gone = list(machines.values())
        if self.on_clean is not None:
            self.on_clean([r.dump() for r in gone])
        machines.clear()
        self.cleaned += len(gone)
        log.info("dbg: a new connection, all machines disconnected: dropped %d", len(gone))

    def _evict(self) -> None:
        """Make room for a new machine: drop a disconnected one if any, else the one with
        the least history (the reference evicts the most recently active one: its GAP)."""
        victims = [r for r in self.machines.values() if not r.connected] or list(
            self.machines.values()
        )
        victim = min(victims, key=len)
        del self.machines[victim.schema.id]
        self.evicted += 1
        log.warning(
            "dbg: over %d machines: dropped %s (%d transitions)",
            self.max_machines,
            brief(victim.schema.id),
            len(victim),
        )

    def check_memory(self) -> int:
        """With ``max_mem``: when the process is over it, first drop the log lines above
        level 2 older than ``log_ttl`` (:meth:`drop_old_logs`), then, unless that freed
        enough, every machine's oldest half; returns how many transitions were dropped
        (counted in ``MachineRecord.dropped`` and :attr:`trimmed`). After a cut, the
        disconnected machines left with fewer than :data:`SMALL_HISTORY` transitions go
        (counted in :attr:`removed`).

        Freed memory is reused by Python but rarely returned to the system, so RSS cannot say
        whether a cut was enough. The log lines' own size says what dropping them freed; the
        first cut of the history sets a budget (the transitions kept then); later the budget
        is held by count, and the history halved again only if RSS still grows.
        """
        self._since_check = 0
        if not self.max_mem:
            return 0
        rss = rss_bytes()
        kept = sum(len(r) for r in self.machines.values())
        over = rss > self.max_mem and rss > self._rss_at_cut
        if over and self.log_ttl is not None:
            lines, freed = self.drop_old_logs(time.time_ns() - int(self.log_ttl * 1e9))
            if lines:
                log.warning(
                    "dbg: memory %d MB, --max-mem %d MB: dropped %d log lines above level 2 "
                    "older than %.0f s (about %d MB)",
                    rss >> 20,
                    self.max_mem >> 20,
                    lines,
                    self.log_ttl,
                    freed >> 20,
                )
                self._changed()
            if freed >= rss - self.max_mem:  # enough: the history stays until RSS grows on
                self._rss_at_cut = rss + self.max_mem // 20
                return 0
        if over:
            self._budget = kept // 2
            self._rss_at_cut = rss + self.max_mem // 20  # noise of the allocator
        elif self._budget is None or kept <= self._budget:
            return 0
        dropped = 0
        for rec in self.machines.values():
            dropped += rec.drop_oldest((len(rec) + 1) // 2)
        self.trimmed += dropped
        self._remove_small()
        if dropped:
            # the first cut of a budget is news; keeping to it afterwards is routine
            log.log(
                logging.WARNING if over else logging.DEBUG,
                "dbg: memory %d MB, --max-mem %d MB: dropped the oldest %d transitions "
                "(keeping at most %d)",
                rss >> 20,
                self.max_mem >> 20,
                dropped,
                self._budget,
            )
            self._changed()
        return dropped

    def _remove_small(self) -> None:
        """After a cut of the history: remove the disconnected machines left with fewer than
        :data:`SMALL_HISTORY` transitions (imported ones included), as the reference does.

        Why disconnected only (the reference removes connected ones too): a removed machine
        is unknown, so every later transition of a live one would be ignored until its
        producer reconnects; it would vanish for good while still reporting, and a live
        machine with so short a history costs little memory anyway."""
        small = [
            mid
            for mid, rec in self.machines.items()
            if not rec.connected and len(rec) < SMALL_HISTORY
        ]
        for mid in small:
            del self.machines[mid]
        if small:
            self.removed += len(small)
            log.warning(
                "dbg: --max-mem: removed %d disconnected machine(s) left with fewer than %d "
                "transitions, e.g. %s",
                len(small),
                SMALL_HISTORY,
                brief(small[0]),
            )
            self._changed()

    def drop_old_logs(self, before_ns: int) -> tuple[int, int]:
        """Drop the log lines above level 2 of every transition received (or, imported,
        made) before ``before_ns``; returns (lines dropped, about how many bytes that freed).
        Lines at levels 0-2 (changes, external mutations) stay: the log reader and the
        diagrams read pipes and links from ops lines, so those go first only under memory
        pressure, and only the old ones."""
        lines = freed = 0
        for rec in self.machines.values():
            n, b = rec.drop_old_logs(before_ns)
            lines, freed = lines + n, freed + b
        self.logs_dropped += lines
        return lines, freed

    async def wait_until(self, predicate: Callable[[Collector], bool]) -> None:
        """Sleep (under trio) until ``predicate(self)`` holds after some change."""
        import trio  # here: a UI reading a dump never needs trio (it costs ~0.15 s to import)

        if predicate(self):
            return
        event = trio.Event()

        def check() -> None:
            if predicate(self):
                event.set()

        unsubscribe = self.subscribe(check)
        try:
            await event.wait()
        finally:
            unsubscribe()

    def dumps(self) -> list[MachineDump]:
        """Every machine with its history, ready for :func:`dbg.dump.write_dump`."""
        return [rec.dump() for rec in self.machines.values()]

    def rotate(self) -> list[MachineDump]:
        """Every machine's schema with the transitions since the last rotation, which are
        then dropped from memory (schemas stay, so each rotated dump loads on its own)."""
        out = []
        for rec in self.machines.values():
            out.append(MachineDump(rec.schema, rec.txs, gone_ns=rec.gone_ns))
            rec.txs = []
        self.buffered = 0
        return out

    def load(self, dumps: Sequence[MachineDump | PendingMachine]) -> None:
        """Add imported machines (``--import-data``), marked disconnected; the transitions of
        a :class:`dbg.dump.PendingMachine` are converted when first read."""
        for d in dumps:
            rec = MachineRecord(d.schema, "import", connected=False, imported=True)
            if isinstance(d, MachineDump):
                rec.txs = list(d.txs)
                rec.gone_ns = d.gone_ns
            else:
                rec._pending.add(Items(list(d.raw), _no_prefix(d.parse), d.clocks))
            self.machines[d.schema.id] = rec


class _Session:
    """One producer's connection: its id, its frame decoder, and how much it got wrong."""

    def __init__(self, collector: Collector, peer: str) -> None:
        self.conn_id = collector.connect()
        self.decoder = FrameDecoder(packed=True)
        self.peer = peer
        self.bad = 0


def _feed(collector: Collector, session: _Session, data: bytes) -> bool:
    """Decode and ingest; False (and one log line) when the stream is unusable."""
    try:
        frames = session.decoder.feed(data)
    except Exception as err:  # FrameError by contract; anything else is as bad
        log.warning("dbg: closing %s (%s): %s", session.conn_id, session.peer, brief_error(err))
        return False
    if collector.tap is not None:
        collector.tap.data(session.conn_id, data, [kind for kind, _ in frames])
    for kind, msg in frames:
        try:
            collector.ingest(session.conn_id, kind, msg)
        except Exception as err:  # ValueError by contract; anything else is a check we missed
            session.bad += 1
            if session.bad <= LOG_BAD:
                more = "; later ones only counted" if session.bad == LOG_BAD else ""
                log.warning(
                    "dbg: %s (%s) sent a bad %s message, skipped: %s%s",
                    session.conn_id,
                    session.peer,
                    kind,
                    brief_error(err, 200),
                    more,
                )
    return True


async def watch_memory(collector: Collector, task_status: Any = None) -> None:
    """Check ``--max-mem`` every second, besides every :data:`CHECK_EVERY` transitions: old
    log lines age past ``--log-ops-ttl`` while nothing arrives too."""
    import trio

    (task_status or trio.TASK_STATUS_IGNORED).started()
    while True:
        await trio.sleep(1)
        collector.check_memory()


def end_session(collector: Collector, conn_id: str) -> None:
    """A producer's connection ended (call it from the connection task's ``finally``): its
    machines are gone, unless the end is the debugger's own (its task cancelled, it stops)."""
    import trio

    stopping = trio.current_effective_deadline() == -math.inf
    collector.disconnect(conn_id, gone=not stopping)


async def _tcp_client(collector: Collector, stream: trio.SocketStream) -> None:
    import trio

    try:
        peer = "{}:{}".format(*stream.socket.getpeername()[:2])
    except OSError:
        peer = "?"
    session = _Session(collector, peer)
    try:
        async with stream:
            while data := await stream.receive_some(65536):
                if not _feed(collector, session, data):
                    return
    except trio.BrokenResourceError:
        pass
    finally:
        end_session(collector, session.conn_id)


async def _ws_client(collector: Collector, request: Any) -> None:
    import trio_websocket

    if request.path != "/dbg.ws":
        await request.reject(404, body=b"telemetry lives at /dbg.ws\n")
        return
    ws = await request.accept()
    session = _Session(collector, "ws")
    try:
        while True:
            data = await ws.get_message()
            if isinstance(data, str):
                log.warning(
                    "dbg: closing %s: text message on /dbg.ws (want binary)", session.conn_id
                )
                await ws.aclose(1003, "binary frames only")
                return
            if not _feed(collector, session, data):
                await ws.aclose(1007, "bad telemetry frame")
                return
    except trio_websocket.ConnectionClosed:
        pass
    finally:
        end_session(collector, session.conn_id)


async def serve_collector(
    collector: Collector,
    host: str,
    port: int,
    *,
    ws_port: int | None = None,
    task_status: trio.TaskStatus[tuple[int, int | None]] | None = None,
) -> None:
    """Serve telemetry on TCP ``host:port`` (and WebSocket ``ws_port``, if given) until
    cancelled. ``task_status`` gets the bound ``(port, ws_port)``."""
    import trio

    if task_status is None:
        task_status = trio.TASK_STATUS_IGNORED
    async with trio.open_nursery() as nursery:
        listeners = await trio.open_tcp_listeners(port, host=host)
        bound = listeners[0].socket.getsockname()[1]
        nursery.start_soon(trio.serve_listeners, lambda s: _tcp_client(collector, s), listeners)
        bound_ws = None
        if ws_port is not None:
            import trio_websocket

            server = await nursery.start(
                trio_websocket.serve_websocket,
                lambda req: _ws_client(collector, req),
                host,
                ws_port,
                None,
            )
            bound_ws = server.port
        task_status.started((bound, bound_ws))
