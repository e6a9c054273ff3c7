"""The matrix and rain views (C.5 #13, #14).

Matrix, for the current transition: row ``called`` (``1`` per called state), row ``ticks``
(clock deltas against the previous transition), then one row per state summing the step
types of steps from that state (row) to another (column). Rain: one row per transition, one
character per state - ``1`` active, ``2`` active and touched, ``|`` deactivated, ``c`` called
but canceled, ``*`` touched, ``.`` nothing - called states underlined, active error states
red, then the transition's number and time.
"""

from __future__ import annotations

import bisect

from rich.text import Text
from textual import events
from textual.message import Message

from .history import MachineHistory, TxInfo
from .pane import Pane
from .session import Session

__all__ = ["MatrixView", "RainView", "matrix_rows", "rain_cells"]


def matrix_rows(h: MachineHistory, index: int) -> tuple[list[str], list[list[int]]]:
    """(row labels, rows of numbers) of the matrix for the transition at ``index``."""
    n = len(h.states)
    if index < 0:
        return ["called", "ticks"], [[0] * n, [0] * n]
    info = h.infos[index]
    called = [1 if i in info.called else 0 for i in range(n)]
    prev = h.clocks_at(index - 1) if index > 0 else [0] * n
    ticks = [
        (info.tx.clocks[i] if i < len(info.tx.clocks) else 0) - (prev[i] if i < len(prev) else 0)
        for i in range(n)
    ]
    rel = [[0] * n for _ in range(n)]
    pos = {s: i for i, s in enumerate(h.states)}
    for st in info.tx.steps:
        a, b = pos.get(st.from_state), pos.get(st.to_state)
        if a is not None and b is not None:
            rel[a][b] += int(st.type)
        elif a is not None:
            rel[a][a] += int(st.type)
        elif b is not None:
            rel[b][b] += int(st.type)
    return ["called", "ticks", *h.states], [called, ticks, *rel]


def rain_cells(h: MachineHistory, index: int) -> list[tuple[str, bool, bool]]:
    """(symbol, called, error) per state of the transition at ``index``."""
    info: TxInfo = h.infos[index]
    clocks = info.tx.clocks
    canceled = not info.tx.accepted and not info.tx.is_queued  # queued records: not yet run
    out = []
    for i, name in enumerate(h.states):
        active = i < len(clocks) and clocks[i] % 2 == 1
        touched = i in info.touched
        called = i in info.called
        if active:
            sym = "2" if touched else "1"
        elif i in info.removed:
            sym = "|"
        elif called and canceled:
            sym = "c"
        elif touched:
            sym = "*"
        else:
            sym = "."
        err = active and (name.startswith("Err") or name == "Exception")
        out.append((sym, called, err))
    return out


class MatrixView(Pane):
    def paint(self, session: Session) -> None:
        h = session.current
        if h is None:
            self.show("")
            return
        labels, rows = matrix_rows(h, session.index)
        width = max((len(x) for x in labels), default=0)
        width = min(width, 20)
        t = Text(no_wrap=True, overflow="ellipsis")
        t.append(" " * (width + 1))
        t.append(" ".join(f"{i:>3}" for i in range(len(h.states))) + "\n", style="grey50")
        total = 0
        for label, row in zip(labels, rows, strict=True):
            t.append(
                f"{label[:width]:<{width}} ", style="bold" if label in ("called", "ticks") else ""
            )
            for v in row:
                t.append(f"{v:>3} " if v else "  . ", style="yellow" if v else "grey30")
            t.append("\n")
            if label not in ("called", "ticks"):
                total += sum(row)
        self.show(t)
        info = session.info
        self.border_title = f"Matrix:{total} Time:t{info.time_sum if info else 0}"


class RainView(Pane, can_focus=True):
    """Rows up to the cursor (highlighted); a click selects the state and the transition."""

    class Picked(Message):
        def __init__(self, index: int, state: str | None) -> None:
            super().__init__()
            self.index, self.state = index, state

    def __init__(self, **kw) -> None:
        super().__init__(**kw)
        self._rows: list[int] = []
        self._states: list[str] = []

    def paint(self, session: Session) -> None:
        h = session.current
        if h is None:
            self.show("")
            return
        vis, cur = session.visible(), session.index
        height = max(self.content_size.height, 1)
        k = bisect.bisect_right(vis, cur)
        lo = max(0, k - height)
        self._rows = vis[lo:k]
        self._states = h.states
        t = Text(no_wrap=True, overflow="ellipsis")
        for j in self._rows:
            for sym, called, err in rain_cells(h, j):
                style = "red" if err else ("yellow" if sym in "12" else "grey50")
                if called:
                    style += " underline"
                t.append(sym, style=style)
            tx = h.infos[j].tx
            stamp = tx.time.strftime("%H:%M:%S") if tx.time else ""
            t.append(f" {h.offset + j + 1} {stamp}\n", style="reverse" if j == cur else "grey50")
        self.show(t)
        self.border_title = "Rain"

    def on_click(self, event: events.Click) -> None:
        off = event.get_content_offset(self)
        if off is None or not 0 <= off.y < len(self._rows):
            return
        state = self._states[off.x] if off.x < len(self._states) else None
        self.post_message(self.Picked(self._rows[off.y], state))
