"""The debugger's state without the screen: selected machine, cursor, step, filters, modes.

Why apart from the widgets: every key and click is a method here (moving the cursor, jumping
across machines, toggling a filter, exporting), so navigation is tested without a terminal and
the Textual app only maps input to these calls and paints the result.

Positions are absolute (``MachineHistory.offset`` + index) so that trimming the oldest
history (the collector's ``--max-mem``) does not move the cursor to another transition; -1 is
"before the first transition". Steps belong to the *next* transition, as in the reference:
``step`` of them are applied on top of the current one.
"""

from __future__ import annotations

import bisect
import re
import time
from collections.abc import Iterator
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path

from dbg.collector import Collector
from dbg.dump import single_frame as frame_of
from dbg.dump import write_dump
from dbg.model import MachineDump

from .address import AddrError, AddrHistory, MachAddr
from .filters import Filters
from .groups import ALL, group_states
from .history import MachineHistory, TxInfo

__all__ = ["FAST_JUMP", "MachineRow", "Session"]

FAST_JUMP = 50
#: transitions read from the collector at a time (a frame reads a flood a slice at a time)
READ_CHUNK = 200
#: a machine with an error within this many transitions before the cursor is "recent error"
RECENT_ERRORS = 100


@dataclass(slots=True)
class MachineRow:
    """One line of the machine list, at the cursor's time."""

    id: str
    depth: int
    connected: bool
    txs: int  # transitions up to the cursor's time
    more: bool  # ...and later ones exist
    start: bool
    ready: bool
    error_now: bool
    error_recent: bool


def _human_key(s: str) -> list:
    return [int(p) if p.isdigit() else p for p in re.split(r"(\d+)", s)]


class Session:
    """What the debugger shows, driven by a :class:`dbg.collector.Collector` (the store)."""

    def __init__(
        self,
        collector: Collector,
        *,
        filters: Filters | None = None,
        select_connected: bool = False,
        tail: bool = True,
        log_level: int = 2,
    ) -> None:
        self.collector = collector
        # the live collector's lock (dbg.ui.live.LockedCollector), else none needed
        self.lock = getattr(collector, "lock", None) or nullcontext()
        self.filters = filters or Filters()
        self.select_connected = select_connected
        self.tail = tail
        self.playing = False
        self.log_level = log_level
        #: the log's toolbar toggles (C.5 #5): per-second time labels, the stack traces of
        #: ``[error]`` lines (off: their first line only), long lines wrapped instead of cut
        self.log_times = True
        self.log_traces = True
        self.log_wrap = False
        self.mach: str | None = None
        self.pos = -1
        self.step = 0
        self.state: str | None = None  # the selected state (tree), for Alt+H/L
        self.history = AddrHistory()
        self.search = ""  # machine list type-to-search: selects the first id containing it
        self.group = ALL  # the schema tree's group; with the group filter, navigation's too
        self._hists: dict[str, MachineHistory] = {}
        self._vis: tuple[tuple, list[int]] = ((), [])
        self._connected_seen: set[str] = set()
        self._known: set[str] = set()  # the machines the last sync saw
        #: the machines that vanished from the store since the UI last asked (:meth:`gone`)
        self._gone: list[str] = []
        self._catch = 0  # where catch_up goes on

    # ----- the store

    def hist(self, mach_id: str, limit: int | None = None) -> MachineHistory | None:
        """A machine's history, reading what arrived (at most ``limit`` transitions)."""
        rec = self.collector.machines.get(mach_id)
        if rec is None:
            self._hists.pop(mach_id, None)
            return None
        h = self._hists.get(mach_id)
        if h is None or h.record is not rec:  # new, or replaced by a reconnect
            h = self._hists[mach_id] = MachineHistory(rec, self.lock)
        h.sync(limit)
        return h

    def _read(self, mach_id: str) -> MachineHistory | None:
        """The history of a machine as far as it was read, without reading more."""
        h = self._hists.get(mach_id)
        rec = self.collector.machines.get(mach_id)
        return h if h is not None and h.record is rec else None

    def catch_up(self, budget: float) -> bool:
        """Read other machines' new transitions for about ``budget`` seconds (a machine at a
        time, round robin); True when all are read. The machine list, the graph time and
        cross-machine links use what is read, so a flood of telemetry is parsed at the pace
        the UI can afford, not at once."""
        deadline = time.perf_counter() + budget
        machines = dict(self.collector.machines)
        ids = list(machines)
        n = len(ids)
        for k in range(n):
            mach_id = ids[(self._catch + k) % n]
            h = self._read(mach_id)
            if h is not None and not h.pending:
                continue
            while (h := self.hist(mach_id, READ_CHUNK)) is not None and h.pending:
                if time.perf_counter() > deadline:
                    self._catch = (self._catch + k) % n
                    return False
            if time.perf_counter() > deadline:
                self._catch = (self._catch + k + 1) % n
                return False
        return True

    @property
    def current(self) -> MachineHistory | None:
        """The selected machine's history as read so far (:meth:`sync` reads more)."""
        if self.mach is None:
            return None
        h = self._read(self.mach)
        return h if h is not None else self.hist(self.mach, READ_CHUNK)

    def sync(self) -> None:
        """Follow the store after a change: auto-select, tail mode."""
        machines = dict(self.collector.machines)  # a snapshot: the collector thread adds
        for gone in set(self._hists) - set(machines):
            del self._hists[gone]
        self._gone += sorted(self._known - machines.keys(), key=_human_key)
        self._known = set(machines)
        newly = [m for m, r in machines.items() if r.connected and m not in self._connected_seen]
        self._connected_seen.update(newly)
        if self.mach not in machines:
            self.mach = None
            pick = None
            if self.select_connected:
                live = [m for m, r in machines.items() if r.connected]
                pick = live[0] if len(live) == 1 else None
            if pick is None and machines:
                pick = min(machines, key=_human_key) if not newly else newly[0]
            if pick is not None:
                self.select(pick)
        elif self.select_connected and newly:
            live = [m for m, r in machines.items() if r.connected]
            if len(live) == 1 and live[0] != self.mach:
                self.select(live[0])
        h = self.hist(self.mach, 5 * READ_CHUNK) if self.mach else None
        if h is None:
            return
        if self.tail:
            vis = self.visible()
            self.pos = h.offset + (vis[-1] if vis else -1)
            self.step = 0
        elif self.pos >= 0 and self.pos < h.offset:
            self.pos = h.offset  # trimmed under the cursor: the oldest kept
        self._remember()

    def gone(self) -> list[str]:
        """The machines the store dropped since the last call (``--max-mem`` removes small
        disconnected ones): the UI says so, rather than letting them vanish unexplained."""
        gone, self._gone = self._gone, []
        return gone

    # ----- where the cursor is

    @property
    def index(self) -> int:
        """The cursor as an index into the current machine's infos (-1 = before all)."""
        h = self.current
        if h is None or self.pos < 0:
            return -1
        return min(self.pos - h.offset, len(h.infos) - 1)

    @property
    def info(self) -> TxInfo | None:
        h, i = self.current, self.index
        return h.infos[i] if h is not None and i >= 0 else None

    @property
    def next_index(self) -> int:
        """Index of the next visible transition (whose steps the steps timeline walks)."""
        vis = self.visible()
        k = bisect.bisect_right(vis, self.index)
        return vis[k] if k < len(vis) else -1

    @property
    def next_info(self) -> TxInfo | None:
        h, j = self.current, self.next_index
        return h.infos[j] if h is not None and j >= 0 else None

    @property
    def now_ts(self) -> float:
        info = self.info
        return info.ts if info else 0.0

    def visible(self) -> list[int]:
        """Indexes (into infos) of the current machine's transitions the filters let through."""
        h = self.current
        if h is None:
            return []
        gs = group_states(h.record.schema, self.group) if "group" in self.filters.on else None
        key = (self.filters.mask, len(h.infos), h.offset, gs)
        if self._vis[0] != key or getattr(self, "_vis_mach", None) != self.mach:
            vis = h.visible(key[0])
            if gs is not None:  # only transitions calling a state of the group
                vis = [i for i in vis if not gs.isdisjoint(h.infos[i].called)]
            self._vis = (key, vis)
            self._vis_mach = self.mach
        return self._vis[1]

    def counts(self) -> tuple[int, int, int]:
        """(1-based visible position of the cursor, visible count, raw count)."""
        h = self.current
        if h is None:
            return 0, 0, 0
        vis = self.visible()
        return bisect.bisect_right(vis, self.index), len(vis), len(h.infos)

    def _remember(self, push: bool = False) -> None:
        """Record where the cursor is in the address history (a new entry with ``push``)."""
        addr = self.addr()
        if addr is not None:
            (self.history.push if push else self.history.replace)(addr)

    def addr(self) -> MachAddr | None:
        if self.mach is None:
            return None
        info = self.info
        return MachAddr(self.mach, info.tx.id if info else "", self.step if info else 0)

    # ----- navigation

    def _pause(self) -> None:
        self.tail = False
        self.playing = False

    def _set(self, index: int, step: int = 0, *, record: bool = True) -> None:
        h = self.current
        self.pos = -1 if h is None or index < 0 else h.offset + index
        self.step = step
        addr = self.addr()
        if addr and record:
            self.history.replace(addr)

    def move(self, n: int, *, manual: bool = True) -> bool:
        """Move ``n`` visible transitions (negative = back); False at either end."""
        if manual:
            self._pause()
        vis = self.visible()
        if not vis:
            return False
        i = self.index
        k = bisect.bisect_right(vis, i) - 1  # the cursor's place among the visible
        if n > 0:
            target = min(k + n, len(vis) - 1)
        else:
            target = max(k + n, -1) if k >= 0 else -1
        if target == k and self.step == 0:
            return False
        self._set(vis[target] if target >= 0 else -1)
        return True

    def jump_to(self, index: int) -> None:
        """Put the cursor on the transition at ``index`` (a click in the log or rain)."""
        self._pause()
        h = self.current
        if h is not None and -1 <= index < len(h.infos):
            self._set(index)

    def seek(self, fraction: float) -> None:
        """Jump to a fraction of the visible transitions (a click on the timeline)."""
        vis = self.visible()
        if vis:
            k = min(len(vis) - 1, max(0, round(fraction * len(vis)) - 1))
            self.jump_to(vis[k])

    def graph_sum(self) -> int:
        """Machine time summed over every machine at the cursor's time."""
        ts, total = self.now_ts, 0
        for mach_id, rec in list(self.collector.machines.items()):
            h = self.current if mach_id == self.mach else self._read(mach_id)
            if h is None or self.tail:  # the newest, without parsing
                total += sum(rec.latest_clocks())
                continue
            if not h.infos:
                continue
            i = self.index if mach_id == self.mach else (h.at_time(ts) if ts else len(h) - 1)
            total += h.infos[i].time_sum if i >= 0 else 0
        return total

    def first(self) -> None:
        self._pause()
        vis = self.visible()
        self._set(vis[0] if vis else -1)

    def last(self) -> None:
        self._pause()
        vis = self.visible()
        self._set(vis[-1] if vis else -1)

    def next_step(self) -> bool:
        """One step of the next transition; past its last step, onto that transition."""
        self._pause()
        nxt = self.next_info
        if nxt is None:
            return False
        if self.step < len(nxt.tx.steps):
            self.step += 1
            self._remember()
        else:
            self.move(1)
        return True

    def prev_step(self) -> bool:
        self._pause()
        if self.step > 0:
            self.step -= 1
            self._remember()
            return True
        if not self.move(-1):
            return False
        nxt = self.next_info
        self.step = len(nxt.tx.steps) if nxt else 0
        self._remember()
        return True

    def jump(self, direction: int) -> bool:
        """Alt+H/L: to the previous/next transition that changed or called the selected
        state; without one, ``FAST_JUMP`` transitions."""
        h = self.current
        if h is None or not self.state or self.state not in h.states:
            return self.move(direction * FAST_JUMP)
        self._pause()
        s = h.states.index(self.state)
        vis, i = self.visible(), self.index
        k = bisect.bisect_right(vis, i)
        rng = range(k, len(vis)) if direction > 0 else range(k - 2, -1, -1)
        for j in rng:
            if h.infos[vis[j]].changed(s):
                self._set(vis[j])
                return True
        return False

    def play_tick(self) -> bool:
        """One tick of play mode; stops playing at the end."""
        if not self.move(1, manual=False):
            self.playing = False
            return False
        return True

    def toggle_play(self) -> None:
        self.tail = False
        self.playing = not self.playing

    def toggle_tail(self) -> None:
        self.playing = False
        self.tail = not self.tail
        if self.tail:
            self.sync()

    # ----- machines

    def select(self, mach_id: str, *, push: bool = True) -> None:
        """Select a machine; the cursor goes to its last transition in tail mode, else to
        its transition at the current cursor's time (context across machines)."""
        ts = self.now_ts
        h = self.hist(mach_id, READ_CHUNK)
        if h is None:
            raise KeyError(mach_id)
        if not self.tail and ts:  # read only as far as the cursor's time needs
            while h.pending and (not h.infos or h.infos[-1].ts <= ts):
                h.sync(READ_CHUNK)
        elif not self.tail:
            h.sync()
        self.mach, self.step, self.state = mach_id, 0, None
        vis = self.visible()
        if self.tail or not ts:
            index = vis[-1] if vis else -1
        else:
            k = bisect.bisect_right(vis, h.at_time(ts)) - 1
            index = vis[k] if k >= 0 else (vis[0] if vis else -1)
        self._set(index, record=False)
        if push:
            self._remember(push=True)

    def goto(self, addr: MachAddr | str) -> None:
        """Open an address (``mach://id/tx/step`` or ``?t=``/``?q=``/``?ht=``); raises
        :class:`AddrError` with a one-line message when it does not resolve."""
        if isinstance(addr, str):
            addr = MachAddr.parse(addr)
        h = self.hist(addr.mach_id)
        if h is None:
            raise AddrError(f"no machine {addr.mach_id!r}")
        self._pause()
        self.select(addr.mach_id, push=False)
        index: int | None = None
        if addr.tx_id:
            index = h.find_tx(addr.tx_id)
            if index is None:
                raise AddrError(f"no transition {addr.tx_id!r} in {addr.mach_id}")
        elif (t := addr.get("t")) is not None:
            index = h.find_time_sum(int(t)) if t.isdigit() else None
            if index is None:
                raise AddrError(f"no transition at machine time t{t} in {addr.mach_id}")
        elif (q := addr.get("q")) is not None and q.isdigit():
            index = next((i for i, f in enumerate(h.infos) if f.tx.queue_tick >= int(q)), None)
        if index is not None:
            nxt_steps = len(h.infos[index + 1].tx.steps) if index + 1 < len(h.infos) else 0
            self._set(index, min(addr.step, nxt_steps), record=False)
        if (st := addr.get("state")) and st in h.states:
            self.state = st
        self._remember(push=True)

    def back(self) -> bool:
        addr = self.history.back()
        return addr is not None and self._restore(addr)

    def forward(self) -> bool:
        addr = self.history.forward()
        return addr is not None and self._restore(addr)

    def _restore(self, addr: MachAddr) -> bool:
        h = self.hist(addr.mach_id)
        if h is None:
            return False
        self._pause()
        self.mach, self.state = addr.mach_id, None
        index = h.find_tx(addr.tx_id) if addr.tx_id else None
        vis = self.visible()
        index = index if index is not None else (vis[-1] if vis else -1)
        self.pos = -1 if index < 0 else h.offset + index
        self.step = addr.step
        return True

    def source(self) -> MachAddr | None:
        """Where the current transition's mutation came from (another machine), if known."""
        info = self.info
        if info is None or not info.tx.source_machine_id:
            return None
        tx = info.tx
        return MachAddr(tx.source_machine_id, tx.source_tx_id)

    def forks(self) -> Iterator[MachAddr]:
        """Transitions of other machines caused by the current one."""
        info = self.info
        if info is None:
            return
        tx_id = info.tx.id
        for mach_id in list(self.collector.machines):
            if mach_id == self.mach:
                continue
            h = self._read(mach_id)  # histories read so far (see catch_up)
            if h is None:
                continue
            for pos in h.sourced:
                tx = h.infos[pos - h.offset].tx
                if tx.source_tx_id == tx_id and tx.source_machine_id == self.mach:
                    yield MachAddr(mach_id, tx.id)

    def follow(self) -> MachAddr | None:
        """Jump to the source of the current transition, else to the first one it caused."""
        target = self.source() or next(self.forks(), None)
        if target is None:
            return None
        h = self.hist(target.mach_id)
        if h is None or (target.tx_id and h.find_tx(target.tx_id) is None):
            # the source is not loaded (yet): its machine at that time, if we know it
            if h is None:
                return None
            target = MachAddr(target.mach_id)
        self.goto(target)
        return target

    # ----- the machine list

    def tree(self) -> list[tuple[str, int]]:
        """(machine id, depth) of the machine list: a tree by parent, human-sorted, without
        the machines the filters hide. Cheap: nothing is parsed."""
        machines = dict(self.collector.machines)  # a snapshot: the collector thread adds
        shown = {
            m: r for m, r in machines.items()
            if not self.filters.hides_machine(r.connected, r.schema.tags)
        }  # fmt: skip
        children: dict[str, list[str]] = {}
        roots = []
        for m, r in shown.items():
            p = r.schema.parent
            if p and p in shown and p != m:
                children.setdefault(p, []).append(m)
            else:
                roots.append(m)
        out: list[tuple[str, int]] = []
        seen: set[str] = set()
        stack = [(m, 0) for m in sorted(roots, key=_human_key, reverse=True)]
        while stack:
            m, depth = stack.pop()
            if m in seen:
                continue
            seen.add(m)
            out.append((m, depth))
            kids = sorted(children.get(m, ()), key=_human_key, reverse=True)
            stack.extend((c, depth + 1) for c in kids)
        return out

    def rows(self) -> list[MachineRow]:
        """Every row of the machine list (see :meth:`row`)."""
        return [self.row(m, d) for m, d in self.tree()]

    def row(self, mach_id: str, depth: int = 0) -> MachineRow:
        """One machine at the cursor's time (the selected machine's current transition).

        Other machines are never parsed here (see :meth:`catch_up`): in tail mode, or until
        their history is read, they show their newest clocks; once read, the cursor's time."""
        rec = self.collector.machines[mach_id]
        states = rec.schema.states_index
        h = self.current if mach_id == self.mach else self._read(mach_id)
        if h is None or (self.tail and mach_id != self.mach):
            clocks, count, more, pos = rec.latest_clocks(), len(rec), False, len(rec) - 1
            errors = h.errors if h is not None else []
        else:
            ts = self.now_ts
            if mach_id == self.mach:
                i = self.index
            else:
                i = h.at_time(ts) if ts and not self.tail else len(h.infos) - 1
            clocks, count, more = h.clocks_at(i), i + 1, i + 1 < len(h.infos)
            pos, errors = h.offset + i, h.errors

        def on(name: str) -> bool:
            try:
                k = states.index(name)
            except ValueError:
                return False
            return k < len(clocks) and bool(clocks[k] % 2)

        error_now = any(
            t % 2 and (n.startswith("Err") or n == "Exception")
            for n, t in zip(states, clocks, strict=False)
        )
        j = bisect.bisect_right(errors, pos)
        recent = j > 0 and pos - errors[j - 1] < RECENT_ERRORS
        return MachineRow(
            mach_id, depth, rec.connected, count, more, on("Start"), on("Ready"), error_now,
            recent and not error_now,
        )  # fmt: skip

    def remove_machine(self, mach_id: str) -> None:
        with self.lock:
            self.collector.machines.pop(mach_id, None)
        self._hists.pop(mach_id, None)
        if self.mach == mach_id:
            self.mach = None
            self.sync()

    def toggle_filter(self, name: str) -> bool:
        on = self.filters.toggle(name)
        if self.tail:
            self.sync()
        return on

    # ----- export

    def export(self, path: Path, *, single_frame: bool = False) -> Path:
        """Write every machine the machine filters let through as a dump (re-importable);
        ``single_frame``: per machine only its transition at the cursor's human time
        (:func:`dbg.dump.single_frame`)."""
        with self.lock:
            records = list(self.collector.machines.values())
            txs = [list(r.txs) for r in records]
        dumps = [
            MachineDump(r.schema, t, gone_ns=r.gone_ns)
            for r, t in zip(records, txs, strict=True)
            if not self.filters.hides_machine(r.connected, r.schema.tags)
        ]
        if single_frame:
            info = self.info
            if info is None or info.tx.time is None:
                raise ValueError("single frame: the cursor is on no transition with a time")
            dumps = frame_of(dumps, info.tx.time)
        return write_dump(path, dumps)
