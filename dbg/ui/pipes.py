"""Pipes for the log reader (C.5 #6): which states of the selected machine are piped to or
from other machines at the cursor's time.

Why from log lines: a machine logs ``[pipe-out:add] Foo to m2`` / ``[pipe-in:add] Foo from
m1`` when a pipe is made and ``[pipe:gc] m2`` when a peer is gone (the same lines the
diagrams read, see :mod:`dbg.model`); there is no other record of them. Each machine's lines
are scanned once, incrementally, so the reader stays cheap on long histories.

A machine that vanishes without being disposed (its process killed, its tab closed) logs no
``[pipe:gc]``: the collector notes when its telemetry connection ended
(:attr:`dbg.collector.MachineRecord.gone_ns`), and its pipes, and its peers' pipes to it, end
from then on (the reference drops them from the reader on a disconnect). The newest transition
stands for now, so the reader at a gone machine's newest transition shows no pipes.
"""

from __future__ import annotations

import bisect
import re
import weakref
from collections.abc import Mapping
from dataclasses import dataclass

from dbg.collector import MachineRecord

from .history import MachineHistory

__all__ = ["Pipe", "pipes_at"]

_PIPE = re.compile(r"\[pipe-(in|out)(?::(add|remove))?\] (\S+) (?:to|from) (\S+)")
_GC = re.compile(r"\[pipe:gc\] (\S+)")


@dataclass(frozen=True, slots=True)
class Pipe:
    direction: str  # "in" or "out"
    mutation: str  # "add" or "remove": what the pipe passes on
    state: str  # this machine's state
    peer: str  # the other machine's id


class _Scan:
    """Pipe lines of one machine by absolute position, read up to ``upto``."""

    def __init__(self) -> None:
        self.upto = 0
        self.pos: list[int] = []
        self.events: list[Pipe | str] = []  # a Pipe, or a peer id that was gc'd

    def read(self, h: MachineHistory) -> None:
        end = h.offset + len(h.infos)
        for k in range(max(self.upto, h.offset), end):
            tx = h.infos[k - h.offset].tx
            for e in (*tx.pre_log_entries, *tx.log_entries):
                if not e.text.startswith("[pipe"):
                    continue
                if m := _PIPE.match(e.text):
                    d, mut, state, peer = m.groups()
                    self.pos.append(k)
                    self.events.append(Pipe(d, mut or "add", state, peer))
                elif m := _GC.match(e.text):
                    self.pos.append(k)
                    self.events.append(m.group(1))
        self.upto = end


_scans: weakref.WeakKeyDictionary[MachineHistory, _Scan] = weakref.WeakKeyDictionary()


def pipes_at(
    h: MachineHistory, index: int, machines: Mapping[str, MachineRecord] | None = None
) -> list[Pipe]:
    """The pipes of ``h``'s machine made up to its transition ``index`` (not gc'd since);
    with ``machines`` (the collector's), not those ended by a machine gone (see the module
    doc)."""
    scan = _scans.get(h)
    if scan is None:
        scan = _scans[h] = _Scan()
    scan.read(h)
    n = bisect.bisect_right(scan.pos, h.offset + index) if index >= 0 else 0
    open_: dict[Pipe, None] = {}
    for ev in scan.events[:n]:
        if isinstance(ev, Pipe):
            open_[ev] = None
        else:
            open_ = {p: None for p in open_ if p.peer != ev}
    if not open_ or machines is None or not 0 <= index < len(h.infos):
        return list(open_)
    newest = index == len(h.infos) - 1 and not h.pending
    if newest and h.record.gone_ns:
        return []
    ts = h.infos[index].ts

    def ended(peer: str) -> bool:
        rec = machines.get(peer)
        gone = rec.gone_ns if rec is not None else 0
        return bool(gone) and (newest or ts * 1e9 > gone)

    return [p for p in open_ if not ended(p.peer)]
