"""The schema tree (C.5 #3, #4): every state with its tick, Multi marker and relations.

Active states are yellow, errors red; while stepping, the next transition's steps mark
states ``+`` (activated), ``-`` (deactivated), ``*`` (handler ran), ``!`` (canceled); touched
states are bold and called ones underlined.
"""

from __future__ import annotations

from rich.text import Text
from textual import events
from textual.message import Message

from .pane import Pane
from .session import Session

__all__ = ["SchemaTree"]

_MARK_STYLE = {"+": "bold green", "-": "bold red", "*": "bold cyan", "!": "bold red reverse"}
_RELATIONS = ("require", "add", "remove", "after")


class SchemaTree(Pane, can_focus=True):
    """States of the selected machine at the cursor (plus ``step`` steps of the next tx)."""

    class Picked(Message):
        def __init__(self, state: str) -> None:
            super().__init__()
            self.state = state

    show_relations = True

    def __init__(self, **kw) -> None:
        super().__init__(**kw)
        self._states: list[str | None] = []  # state per painted line (for clicks)

    def paint(self, session: Session) -> None:
        h = session.current
        if h is None:
            self.show("no machine yet")
            self.border_title = "Schema"
            return
        i = session.index
        clocks = h.clocks_at(i)
        states = h.states
        schema = h.record.schema.states
        nxt = session.next_info
        marks: dict[int, str] = {}
        touched: frozenset[int] = frozenset()
        called: tuple[int, ...] = ()
        if session.step and nxt is not None:
            marks = h.step_marks(session.next_index, session.step)
            touched, called = frozenset(marks), nxt.called
        elif session.info is not None:
            touched, called = session.info.touched, session.info.called
        lines: list[tuple[str | None, Text]] = []
        for k, name in enumerate(states):
            tick = clocks[k] if k < len(clocks) else 0
            sdef = schema.get(name)
            err = name.startswith("Err") or name == "Exception"
            style = ("red" if err else "yellow") if tick % 2 else "grey70"
            if k in touched:
                style += " bold"
            if k in called:
                style += " underline"
            if name == session.state:
                style += " reverse"
            mark = marks.get(k, " ")
            line = Text(no_wrap=True, overflow="ellipsis")
            line.append(mark, style=_MARK_STYLE.get(mark, ""))
            line.append(name, style=style)
            if sdef is not None and sdef.multi:
                line.append(" M", style="magenta")
            if sdef is not None and sdef.auto:
                line.append(" A", style="blue")
            line.append(f" |{tick}", style="grey50")
            lines.append((name, line))
            if self.show_relations and sdef is not None:
                for rel in _RELATIONS:
                    targets = getattr(sdef, rel)
                    if targets:
                        sub = Text(f"  {rel} ", style="grey50", no_wrap=True, overflow="ellipsis")
                        sub.append(" ".join(targets), style="cyan")
                        lines.append((name, sub))
        height = max(self.content_size.height, 1)
        sel = next((n for n, (s, _) in enumerate(lines) if s == session.state), 0)
        start = max(0, min(sel - height // 2, len(lines) - height))
        shown = lines[start : start + height]
        self._states = [s for s, _ in shown]
        self.show(Text("\n").join(t for _, t in shown))
        self.border_title = f"Schema:{len(states)}"

    def on_click(self, event: events.Click) -> None:
        off = event.get_content_offset(self)
        state = self._states[off.y] if off is not None and 0 <= off.y < len(self._states) else None
        if state:
            self.post_message(self.Picked(state))
