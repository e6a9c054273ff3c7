"""Pipes for the log reader (C.5 #6): which states of the selected machine are piped to or
from other machines at the cursor's time.

Why from log lines: a machine logs ``[pipe-out:add] Foo to m2`` / ``[pipe-in:add] Foo from
m1`` when a pipe is made and ``[pipe:gc] m2`` when a peer is gone (the same lines the
diagrams read, see :mod:`dbg.model`); there is no other record of them. Each machine's lines
are scanned once, incrementally, so the reader stays cheap on long histories.
"""

from __future__ import annotations

import bisect
import re
import weakref
from dataclasses import dataclass

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


def pipes_at(h: MachineHistory, index: int) -> list[Pipe]:
    """The pipes of ``h``'s machine made up to its transition ``index`` (not gc'd since)."""
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
    return list(open_)
