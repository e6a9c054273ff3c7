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
    """A line whose painted parts map x ranges to actions."""

    class Clicked(Message):
        def __init__(self, action: str) -> None:
            super().__init__()
            self.action = action

    def __init__(self, **kw) -> None:
        super().__init__(**kw)
        self._spans: list[tuple[int, int, str]] = []

    def _part(self, t: Text, text: str, style: str, action: str | None) -> None:
        if action:
            self._spans.append((len(t), len(t) + len(text), action))
        t.append(text, style=style)

    def on_click(self, event: events.Click) -> None:
        off = event.get_content_offset(self)
        if off is None:
            return
        for a, b, action in self._spans:
            if a <= off.x < b:
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
    """The filters as toggles (keys 1-9), the log level (key 0) and the view. Focused
    (Alt+F): ←/→ pick a toggle, Enter or Space flips it."""

    BINDINGS = [
        ("left", "pick(-1)"),
        ("right", "pick(1)"),
        ("enter,space", "press"),
    ]

    picked = 0  # the toggle ←/→ moved to (while focused)

    def paint(self, session: Session) -> None:
        self._spans = []
        t = Text(no_wrap=True, overflow="ellipsis")
        for n, name in enumerate(FILTERS, 1):
            on = name in session.filters.on
            self._part(t, f"{n}:{'[x]' if on else '[ ]'}{name}", "bold" if on else "grey62",
                       f"filter('{name}')")  # fmt: skip
            t.append(" ")
        self._part(t, f"0:log {session.log_level}", "bold", "log_level")
        if self.has_focus and self._spans:
            a, b, _ = self._spans[self.picked % len(self._spans)]
            t.stylize("reverse", a, b)
        self.show(t)

    def action_pick(self, n: int) -> None:
        if self._spans:
            self.picked = (self.picked + n) % len(self._spans)
            self.post_message(self.Clicked("repaint"))

    def action_press(self) -> None:
        if self._spans:
            self.post_message(self.Clicked(self._spans[self.picked % len(self._spans)][2]))


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
