"""Per-machine history as the UI reads it: each transition with what it changed.

Why: the collector stores transitions as they came; the UI needs, for every one, the
machine time, added/removed/touched states, errors and which filters hide it - computed
once, when first read, and kept in step with the collector's list. That list only grows at
the end, except when the collector trims the oldest history (``--max-mem``) or a schema
change drops transitions: :meth:`MachineHistory.sync` then drops the same prefix and
counts it in :attr:`MachineHistory.offset`, so absolute positions stay valid.
"""

from __future__ import annotations

import bisect
from contextlib import nullcontext
from dataclasses import dataclass
from typing import Any

from dbg.collector import MachineRecord
from dbg.model import DbgMsgTx, MutationType, Step, StepType

from .filters import K_AUTO, K_CANCELED, K_CHECK, K_EMPTY, K_HEALTH, K_QUEUED

__all__ = ["MachineHistory", "TxInfo", "mutation_name", "step_text"]

HEALTH_STATES = frozenset(("Healthcheck", "Heartbeat"))


@dataclass(slots=True)
class TxInfo:
    """One transition and what it did, by state index."""

    tx: DbgMsgTx
    time_sum: int
    added: tuple[int, ...]
    removed: tuple[int, ...]
    touched: frozenset[int]
    called: tuple[int, ...]
    kinds: int  # filter bits (dbg.ui.filters.K_*)
    error: bool  # an Err*/Exception state is active after it
    ts: float  # wall-clock seconds (0 when unknown), for cross-machine time lookups

    def changed(self, i: int) -> bool:
        return i in self.added or i in self.removed or i in self.called


class MachineHistory:
    """The derived history of one machine (see the module doc)."""

    def __init__(self, record: MachineRecord, lock: Any = None) -> None:
        self.record = record
        self._lock = lock or nullcontext()  # held while the collector's list is read
        self.infos: list[TxInfo] = []
        self.offset = 0  # transitions trimmed from the front so far
        self._index: list[str] = []
        self._errs: tuple[int, ...] = ()
        self._health: frozenset[int] = frozenset()
        self.errors: list[int] = []  # absolute positions of error transitions
        self.sourced: list[int] = []  # absolute positions of transitions another machine caused

    @property
    def id(self) -> str:
        return self.record.schema.id

    @property
    def states(self) -> list[str]:
        return self.record.schema.states_index

    def __len__(self) -> int:
        return len(self.infos)

    @property
    def pending(self) -> int:
        """Transitions the collector holds that are not read here yet."""
        return len(self.record) - self.offset - len(self.infos)

    def sync(self, limit: int | None = None) -> int:
        """Catch up with the collector (reading at most ``limit`` new transitions); returns
        how many transitions are new."""
        with self._lock:  # parses what arrived; the list itself is only replaced, never edited
            rec = self.record
            txs = rec.txs if limit is None else rec.read(limit)
        infos = self.infos
        if self._index is not self.states:
            self._reindex()
            if infos:  # other states: derive everything again
                infos.clear()
                self.errors.clear()
                self.sourced.clear()
        if infos and (not txs or txs[0] is not infos[0].tx):
            self._trim(txs)
        n = len(infos)
        if len(txs) == n:
            return 0
        prev = infos[-1].tx.clocks if infos else None
        for tx in txs[n:]:
            infos.append(self._derive(tx, prev))
            if infos[-1].error:
                self.errors.append(self.offset + len(infos) - 1)
            if tx.source_machine_id:
                self.sourced.append(self.offset + len(infos) - 1)
            prev = tx.clocks
        return len(txs) - n

    def _reindex(self) -> None:
        self._index = idx = self.states
        self._errs = tuple(i for i, s in enumerate(idx) if s.startswith("Err") or s == "Exception")
        self._health = frozenset(i for i, s in enumerate(idx) if s in HEALTH_STATES)

    def _trim(self, txs: list[DbgMsgTx]) -> None:
        first = txs[0] if txs else None
        cut = len(self.infos)
        for j, info in enumerate(self.infos):
            if info.tx is first:
                cut = j
                break
        del self.infos[:cut]
        self.offset += cut
        self.errors = [e for e in self.errors if e >= self.offset]
        self.sourced = [e for e in self.sourced if e >= self.offset]

    def _derive(self, tx: DbgMsgTx, prev: list[int] | None) -> TxInfo:
        clocks = tx.clocks
        idx = self._index
        if prev is None or len(prev) != len(clocks):
            prev = [0] * len(clocks)
        added, removed, ticked = [], [], False
        for i, (a, b) in enumerate(zip(prev, clocks, strict=False)):
            if a != b:
                ticked = True
                if b % 2 and (not a % 2 or b - a >= 2):
                    added.append(i)  # activated, or re-entered (a multi state)
                elif a % 2 and not b % 2:
                    removed.append(i)
        if tx.called_states_idxs:
            called = tuple(i for i in tx.called_states_idxs if 0 <= i < len(idx))
        else:
            called = tuple(idx.index(s) for s in tx.called_states if s in idx)
        touched = set(added) | set(removed) | set(called)
        for st in tx.steps:
            for name in (st.from_state, st.to_state):
                if name and name in idx:
                    touched.add(idx.index(name))
        kinds = 0
        if not tx.accepted and not tx.is_queued:
            kinds |= K_CANCELED
        if tx.is_queued:
            kinds |= K_QUEUED
        if tx.is_auto:
            kinds |= K_AUTO
        if not ticked and tx.accepted and not tx.is_queued:
            kinds |= K_EMPTY
        if called and all(i in self._health for i in called):
            kinds |= K_HEALTH
        if tx.is_check:
            kinds |= K_CHECK
        error = any(i < len(clocks) and clocks[i] % 2 for i in self._errs)
        ts = tx.time.timestamp() if tx.time is not None else 0.0
        return TxInfo(
            tx, sum(clocks), tuple(added), tuple(removed), frozenset(touched), called, kinds,
            error, ts,
        )  # fmt: skip

    # ----- queries (positions are indexes into infos)

    def visible(self, mask: int) -> list[int]:
        """Positions of the transitions no filter in ``mask`` hides."""
        if not mask:
            return list(range(len(self.infos)))
        return [i for i, info in enumerate(self.infos) if not info.kinds & mask]

    def at_time(self, ts: float) -> int:
        """Position of the last transition at or before wall-clock ``ts`` (-1 = before all)."""
        return bisect.bisect_right(self.infos, ts, key=lambda info: info.ts) - 1

    def find_tx(self, tx_id: str) -> int | None:
        for i in range(len(self.infos) - 1, -1, -1):
            if self.infos[i].tx.id == tx_id:
                return i
        return None

    def find_time_sum(self, t: int) -> int | None:
        """Position of the transition whose machine time is ``t`` (clocks only grow)."""
        i = bisect.bisect_left(self.infos, t, key=lambda info: info.time_sum)
        return i if i < len(self.infos) and self.infos[i].time_sum == t else None

    def clocks_at(self, pos: int) -> list[int]:
        if pos < 0 or not self.infos:
            return [0] * len(self.states)
        return self.infos[pos].tx.clocks

    def step_marks(self, pos: int, steps: int) -> dict[int, str]:
        """Marks of the first ``steps`` steps of the transition at ``pos``: state index ->
        ``+`` (activated), ``-`` (deactivated), ``*`` (handler ran), ``!`` (canceled)."""
        marks: dict[int, str] = {}
        if not 0 <= pos < len(self.infos):
            return marks
        idx = self._index
        for st in self.infos[pos].tx.steps[:steps]:
            name = st.to_state or st.from_state
            if name not in idx:
                continue
            i = idx.index(name)
            t = st.type
            if t & StepType.CANCEL:
                marks[i] = "!"
            elif t & StepType.ACTIVATE:
                marks[i] = "+"
            elif t & (StepType.DEACTIVATE | StepType.DEACTIVATE_PASSIVE):
                marks[i] = "-"
            elif t & StepType.HANDLER:
                marks[i] = "*"
        return marks


_REL_NAMES = {0: "after", 1: "add", 2: "require", 3: "remove"}
_STEP_NAMES = (
    (StepType.CANCEL, "cancel"),
    (StepType.HANDLER, "handler"),
    (StepType.ACTIVATE, "activate"),
    (StepType.DEACTIVATE, "deactivate"),
    (StepType.DEACTIVATE_PASSIVE, "deactivate-passive"),
    (StepType.CALLED, "requested"),
    (StepType.RELATION, "rel"),
)


def step_text(st: Step) -> str:
    """A step as the reference prints it: ``A require B`` or ``handler FooEnter``."""
    if st.type & StepType.RELATION:
        return f"{st.from_state} {_REL_NAMES.get(st.rel_type, '?')} {st.to_state}"
    kind = next((n for flag, n in _STEP_NAMES if st.type & flag), "step")
    state = st.from_state or st.to_state or "Any"
    if st.type & StepType.HANDLER:
        if st.is_self:
            state += state
        elif st.is_final:
            state += "State" if st.is_enter else "End"
        else:
            state += "Enter" if st.is_enter else "Exit"
    return f"{kind} {state}"


def mutation_name(t: int) -> str:
    """``add``, ``remove``, ``set`` or ``eval`` (the number itself when unknown)."""
    try:
        return str(MutationType(t))
    except ValueError:
        return str(t)
