"""The address bar, the tags bar, the filter toolbar and the status bar.

Why together: each is one line of text with clickable parts, painted from the session.
"""

from __future__ import annotations

from rich.text import Text
from textual import events
from textual.message import Message

from .filters import FILTERS
from .pane import Pane
from .session import Session
from .timelines import current_step_text

__all__ = ["AddressBar", "StatusBar", "TagsBar", "Toolbar"]


class ClickableLine(Pane):
    """A line (or a few: see ``_row``) whose painted parts map x ranges to actions."""

    class Clicked(Message):
        def __init__(self, action: str) -> None:
            super().__init__()
            self.action = action

    def __init__(self, **kw) -> None:
        super().__init__(**kw)
        #: clickable parts: (row, from x, to x, action)
        self._spans: list[tuple[int, int, int, str]] = []
        self._row = 0  # the row that _part paints into

    def _part(self, t: Text, text: str, style: str, action: str | None) -> None:
        if action:
            self._spans.append((self._row, len(t), len(t) + len(text), action))
        t.append(text, style=style)

    def on_click(self, event: events.Click) -> None:
        off = event.get_content_offset(self)
        if off is None:
            return
        for row, a, b, action in self._spans:
            if row == off.y and a <= off.x < b:
                self.post_message(self.Clicked(action))
                return


class AddressBar(ClickableLine):
    """``◀ ▶ mach://id/tx/step``; Ctrl+L (or a click on the address) edits it."""

    def paint(self, session: Session) -> None:
        self._spans = []
        t = Text(no_wrap=True, overflow="ellipsis")
        hist = session.history
        self._part(t, " ◀ ", "bold" if hist.can_back else "grey30", "history_back")
        self._part(t, " ▶ ", "bold" if hist.can_forward else "grey30", "history_forward")
        addr = session.addr()
        self._part(t, f" {addr or 'mach://'} ", "bold cyan", "edit_address")
        if session.state:
            t.append(f" state:{session.state}", style="yellow")
        self.show(t)


class TagsBar(Pane):
    """The selected machine's tags (``rpc-server``, ``key:value``...), from its schema."""

    def paint(self, session: Session) -> None:
        h = session.current
        tags = h.record.schema.tags if h is not None else []
        t = Text(no_wrap=True, overflow="ellipsis")
        if tags:
            for tag in tags:
                t.append(f"#{tag} ", style="magenta")
        else:
            t.append("no tags", style="grey50")
        self.show(t)


class Toolbar(ClickableLine, can_focus=True):
    """Two rows of toggles. Row 1: the filters (keys 1-9), the log level (key 0) and the
    log's timestamps; row 2: the view's switches, as the reference's toolbar rows 3 and 4
    have them (tail, reader, expand, stack traces, timelines 0-2, log wrap, rain). Focused
    (Alt+F): ←/→ pick a toggle, Enter or Space flips it. ``app`` answers which view switches
    are on (the session holds the rest)."""

    BINDINGS = [
        ("left", "pick(-1)"),
        ("right", "pick(1)"),
        ("enter,space", "press"),
    ]

    picked = 0  # the toggle ←/→ moved to (while focused)

    def _toggle(self, t: Text, label: str, on: bool, action: str, value: str = "x") -> None:
        self._part(t, f"[{value if on else ' '}]{label}", "bold" if on else "grey62", action)
        t.append(" ")

    def paint(self, session: Session) -> None:
        self._spans = []
        rows = [Text(no_wrap=True, overflow="ellipsis") for _ in range(2)]
        self._row, t = 0, rows[0]
        for n, name in enumerate(FILTERS, 1):
            on = name in session.filters.on
            self._part(t, f"{n}:{'[x]' if on else '[ ]'}{name}", "bold" if on else "grey62",
                       f"filter('{name}')")  # fmt: skip
            t.append(" ")
        self._part(t, f"0:log {session.log_level}", "bold", "log_level")
        t.append(" ")
        self._toggle(t, "times", session.log_times, "log_times")
        self._row, t = 1, rows[1]
        switches: dict[str, tuple[bool, str, str]] = getattr(self.app, "switches", dict)()
        for label, (on, action, value) in switches.items():
            self._toggle(t, label, on, action, value)
        if self.has_focus and self._spans:
            row, a, b, _ = self._spans[self.picked % len(self._spans)]
            rows[row].stylize("reverse", a, b)
        self.show(Text("\n", no_wrap=True, overflow="ellipsis").join(rows))

    def action_pick(self, n: int) -> None:
        if self._spans:
            self.picked = (self.picked + n) % len(self._spans)
            self.post_message(self.Clicked("repaint"))

    def action_press(self) -> None:
        if self._spans:
            self.post_message(self.Clicked(self._spans[self.picked % len(self._spans)][3]))


class StatusBar(Pane):
    """Left: ``Graph:t<sum>`` across machines at the cursor's time and the selected state;
    right: the current step as text, or the last message."""

    message = ""  # the last notice (export, diagram, errors), shown until replaced

    def paint(self, session: Session, graph_sum: int) -> None:
        t = Text(no_wrap=True, overflow="ellipsis")
        t.append(f"Graph:t{graph_sum}", style="bold")
        h = session.current
        if session.state and h is not None and session.state in h.states:
            k = h.states.index(session.state)
            clocks = h.clocks_at(session.index)
            tick = clocks[k] if k < len(clocks) else 0
            t.append(f"  {session.state} #{k} tick {tick}", style="yellow")
        right = current_step_text(session) or self.message
        if right:
            pad = max(1, self.content_size.width - len(t) - len(right))
            t.append(" " * pad)
            t.append(right, style="cyan")
        self.show(t)
