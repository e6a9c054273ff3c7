"""The machine list (C.5 #2): a tree by parent with ``S|R|E`` markers and tx counts.

Colours: connected (default), disconnected (grey), error now (red), error within the last
100 transitions (pink); the selected machine is bold and underlined.
"""

from __future__ import annotations

from rich.text import Text
from textual import events
from textual.message import Message

from .pane import Pane
from .session import Session

__all__ = ["MachineList"]


class MachineList(Pane, can_focus=True):
    """Rows from :meth:`Session.rows`, windowed around the selected machine."""

    class Picked(Message):
        def __init__(self, mach_id: str) -> None:
            super().__init__()
            self.mach_id = mach_id

    def __init__(self, **kw) -> None:
        super().__init__(**kw)
        self._ids: list[str] = []  # machine id per painted line (for clicks)
        self.ids: list[str] = []  # every listed machine, in order

    def paint(self, session: Session) -> None:
        tree = session.tree()
        self.ids = [m for m, _ in tree]
        height = max(self.content_size.height, 1)
        sel = next((i for i, (m, _) in enumerate(tree) if m == session.mach), 0)
        start = max(0, min(sel - height // 2, len(tree) - height))
        shown = [session.row(m, d) for m, d in tree[start : start + height]]
        self._ids = [r.id for r in shown]
        text = Text(no_wrap=True, overflow="ellipsis")
        for r in shown:
            style = "grey50" if not r.connected else ""
            if r.error_now:
                style = "red"
            elif r.error_recent:
                style = "hot_pink"
            if r.id == session.mach:
                style += " bold underline"
            marks = "".join(
                m for m, on in (("S", r.start), ("R", r.ready), ("E", r.error_now)) if on
            )
            text.append("-" * r.depth + r.id, style=style.strip())
            if marks:
                text.append(" " + marks, style="bold " + ("red" if r.error_now else "green"))
            text.append(f" |{r.txs}{'+' if r.more else ''}\n", style="grey70")
        self.show(text)
        total = sum(len(r) for r in list(session.collector.machines.values()))
        self.border_title = f"Machines:{len(tree)} T:{total}"
        if session.search:
            self.border_subtitle = f"search: {session.search}"
        else:
            self.border_subtitle = ""

    def on_click(self, event: events.Click) -> None:
        off = event.get_content_offset(self)
        if off is not None and 0 <= off.y < len(self._ids):
            self.post_message(self.Picked(self._ids[off.y]))
