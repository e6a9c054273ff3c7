"""The schema tree (C.5 #3, #4): every state with its tick, Multi marker and relations.

Active states are yellow, errors red; while stepping, the next transition's steps mark
states ``+`` (activated), ``-`` (deactivated), ``*`` (handler ran), ``!`` (canceled); touched
states are bold and called ones underlined, and the relation steps taken so far are drawn as
link lines in side columns (green where a relation starts, red where it ends).

Relations are children of their state, one line per referenced state; ↑/↓ walk the lines and
Enter on a relation line jumps to the state it references; typing selects the first state
containing the typed text. A machine whose schema has groups
gets a selector line (``group: all``; click or Ctrl+G) that restricts the tree to a group.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from rich.text import Text
from textual import events
from textual.message import Message

from dbg.model import StepType

from .groups import ALL, group_names, group_states
from .pane import Pane
from .session import Session

__all__ = ["SchemaTree", "link_columns"]

_MARK_STYLE = {"+": "bold green", "-": "bold red", "*": "bold cyan", "!": "bold red reverse"}
_RELATIONS = ("require", "add", "remove", "after")
MAX_LINKS = 6  # side columns at most: the newest relation steps
SEARCH_RESET = 1.5  # seconds of typing pause that start a new search


def search_char(event: events.Key) -> str:
    """The character a key adds to a type-to-search (a-z, ``-``, ``_``), else "".

    A key with Alt or Ctrl is a command even when it carries a character (Alt+G's is ``g``),
    so it never extends the search.
    """
    ch = event.character or ""
    if "+" in event.key or not (len(ch) == 1 and (ch.isalpha() or ch in "-_")):
        return ""
    return ch


@dataclass(slots=True)
class _Line:
    state: str | None  # the state the line belongs to (None: the group selector)
    target: str | None  # a relation line: the state it references
    text: Text


def link_columns(lines: list[str | None], links: list[tuple[str, str]]) -> list[Text]:
    """Side columns drawing ``links`` (from state, to state) between the state lines of
    ``lines`` (a state name per line, None for other lines): per link a column with a green
    end at the from-state, a red end at the to-state and ``│`` between."""
    rows = {name: k for k, name in enumerate(lines) if name is not None}
    cols = [Text(" " * len(links), no_wrap=True) for _ in lines]
    for c, (src, dst) in enumerate(links):
        if src not in rows or dst not in rows:
            continue
        a, b = rows[src], rows[dst]
        top, bottom = min(a, b), max(a, b)
        for k in range(top + 1, bottom):
            cols[k] = _put(cols[k], c, "│", "grey50")
        if a == b:
            cols[a] = _put(cols[a], c, "o", "bold yellow")  # a state relating to itself
            continue
        cols[a] = _put(cols[a], c, "┐" if a < b else "┘", "bold green")
        cols[b] = _put(cols[b], c, "┘" if a < b else "┐", "bold red")
    return cols


def _put(t: Text, col: int, ch: str, style: str) -> Text:
    out = t[:col]
    out.append(ch, style=style)
    out.append_text(t[col + 1 :])
    return out


class SchemaTree(Pane, can_focus=True):
    """States of the selected machine at the cursor (plus ``step`` steps of the next tx)."""

    class Picked(Message):
        def __init__(self, state: str) -> None:
            super().__init__()
            self.state = state

    class CycleGroup(Message):
        """The group selector was clicked."""

    show_relations = True

    def __init__(self, empty: Callable[[], str] | None = None, **kw) -> None:
        super().__init__(**kw)
        #: what the pane says before any machine: live, where machines should report
        self.empty = empty or (lambda: "no machine yet")
        self._shown_lines: list[_Line] = []  # per painted line (for clicks)
        self._lines: list[_Line] = []  # every line of the last paint
        self.sub = 0  # the cursor's relation line under the selected state (0: the state)
        self._sub_of: str | None = None  # the state ``sub`` belongs to
        self._search = ""
        self._search_at = 0.0

    # ----- the cursor over lines (states and their relation lines)

    def _cursor(self, session: Session) -> int:
        if session.state != self._sub_of:
            self.sub, self._sub_of = 0, session.state
        own = [k for k, ln in enumerate(self._lines) if ln.state == session.state]
        return own[min(self.sub, len(own) - 1)] if own else -1

    def move(self, session: Session, n: int) -> None:
        """↑/↓: the previous/next line (a state or one of its relation lines)."""
        lines = [k for k, ln in enumerate(self._lines) if ln.state is not None]
        if not lines:
            return
        cur = self._cursor(session)
        k = lines.index(cur) + n if cur in lines else 0
        line = self._lines[lines[max(0, min(k, len(lines) - 1))]]
        session.state = line.state
        own = [ln for ln in self._lines if ln.state == line.state]
        self.sub, self._sub_of = own.index(line), line.state

    def enter(self, session: Session) -> bool:
        """Enter: on a relation line, jump to the state it references (leaving a group
        that hides it); False elsewhere."""
        cur = self._cursor(session)
        if cur < 0 or self._lines[cur].target is None:
            return False
        target = self._lines[cur].target
        h = session.current
        if h is not None:
            gs = group_states(h.record.schema, session.group)
            if gs is not None and target in h.states and h.states.index(target) not in gs:
                session.group = ALL
        session.state, self.sub, self._sub_of = target, 0, target
        return True

    # ----- painting

    def paint(self, session: Session) -> None:
        h = session.current
        if h is None:
            self.show(self.empty())
            self.border_title = "Schema"
            self._lines = self._shown_lines = []
            return
        i = session.index
        clocks = h.clocks_at(i)
        states = h.states
        schema = h.record.schema
        sdefs = schema.states
        nxt = session.next_info
        marks: dict[int, str] = {}
        touched: frozenset[int] = frozenset()
        called: tuple[int, ...] = ()
        links: list[tuple[str, str]] = []
        if session.step and nxt is not None:
            marks = h.step_marks(session.next_index, session.step)
            touched, called = frozenset(marks), nxt.called
            links = [
                (st.from_state, st.to_state)
                for st in nxt.tx.steps[: session.step]
                if st.type & StepType.RELATION and st.from_state and st.to_state
            ][-MAX_LINKS:]
        elif session.info is not None:
            touched, called = session.info.touched, session.info.called
        lines: list[_Line] = []
        groups = group_names(schema)
        gs = group_states(schema, session.group)
        if groups:
            sel = Text("group: ", style="grey50", no_wrap=True)
            sel.append(session.group or "all", style="bold cyan")
            sel.append(" ▾", style="grey50")
            lines.append(_Line(None, None, sel))
        for k, name in enumerate(states):
            if gs is not None and k not in gs:
                continue
            tick = clocks[k] if k < len(clocks) else 0
            sdef = sdefs.get(name)
            err = name.startswith("Err") or name == "Exception"
            style = ("red" if err else "yellow") if tick % 2 else "grey70"
            if k in touched:
                style += " bold"
            if k in called:
                style += " underline"
            mark = marks.get(k, " ")
            line = Text(no_wrap=True, overflow="ellipsis")
            line.append(mark, style=_MARK_STYLE.get(mark, ""))
            line.append(name, style=style)
            if sdef is not None and sdef.multi:
                line.append(" M", style="magenta")
            if sdef is not None and sdef.auto:
                line.append(" A", style="blue")
            line.append(f" |{tick}", style="grey50")
            if sdef is not None and sdef.tags:
                line.append(" #" + " #".join(sdef.tags), style="grey50")
            lines.append(_Line(name, None, line))
            if self.show_relations and sdef is not None:
                for rel in _RELATIONS:
                    for target in getattr(sdef, rel):
                        sub = Text(f"  {rel} ", style="grey50", no_wrap=True, overflow="ellipsis")
                        sub.append(target, style="cyan")
                        lines.append(_Line(name, target, sub))
        self._lines = lines
        cur = self._cursor(session)
        if cur >= 0:
            lines[cur].text = lines[cur].text.copy()
            lines[cur].text.stylize("reverse", 1 if lines[cur].target is None else 2)
        if links:
            width = max(len(ln.text) for ln in lines) + 1
            cols = link_columns([ln.state if ln.target is None else None for ln in lines], links)
            for ln, col in zip(lines, cols, strict=True):
                ln.text = ln.text.copy()
                ln.text.pad_right(width - len(ln.text))
                ln.text.append_text(col)
        height = max(self.content_size.height, 1)
        start = max(0, min(max(cur, 0) - height // 2, len(lines) - height))
        shown = lines[start : start + height]
        self._shown_lines = shown
        self.show(Text("\n").join(ln.text for ln in shown))
        title = f"Schema:{len(states)}"
        if gs is not None:
            title += f" {session.group}:{len(gs)}"
        self.border_title = title

    def on_key(self, event: events.Key) -> None:
        """Type to search (a-z, ``-``, ``_``; a pause of ``SEARCH_RESET`` starts anew): the
        first listed state containing the typed text is selected."""
        ch = search_char(event)
        if not ch:
            return
        now = time.monotonic()
        if now - self._search_at > SEARCH_RESET:
            self._search = ""
        self._search_at = now
        self._search += ch.lower()
        event.stop()
        hit = next(
            (ln.state for ln in self._lines
             if ln.target is None and ln.state and self._search in ln.state.lower()),
            None,
        )  # fmt: skip
        if hit is not None:
            self.sub, self._sub_of = 0, hit
            self.post_message(self.Picked(hit))
        self.border_subtitle = f"search: {self._search}"

    def on_blur(self, event: events.Blur) -> None:
        self._search, self.border_subtitle = "", ""

    def on_click(self, event: events.Click) -> None:
        off = event.get_content_offset(self)
        if off is None or not 0 <= off.y < len(self._shown_lines):
            return
        line = self._shown_lines[off.y]
        if line.state is None:
            self.post_message(self.CycleGroup())
            return
        own = [ln for ln in self._lines if ln.state == line.state]
        self.sub, self._sub_of = own.index(line), line.state
        self.post_message(self.Picked(line.state))
