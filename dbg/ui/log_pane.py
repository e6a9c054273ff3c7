"""The log pane and the log reader (C.5 #5, #6).

The log shows the selected machine's log lines (up to the session's level) around the cursor,
the current transition highlighted, with a margin mark per transition: executed (green),
canceled (red), queued (yellow). Transitions without lines of their own get one synthetic
line (``[cance]``, ``[queue]``, ``[empty]``) as in the reference. Three toolbar toggles
shape it as the reference's do: ``times`` (a grey time label after each transition that
starts a new wall-clock second), ``traces`` (the stack trace under an ``[error]`` line, or
its first line only) and ``wrap`` (long lines wrapped, or cut with an ellipsis).

The reader extracts from the current transition: its source machine (a link, followed with
Alt+G), the transitions it caused in other machines, the machine's pipes at that time (links
to the peers), handlers run, arguments and queue details. Subscriptions (``When*``) and state
contexts are not in this project's telemetry, so the reader has no such entries.
"""

from __future__ import annotations

import bisect
import time
from datetime import timedelta

from rich.text import Text
from textual import events
from textual.message import Message

from dbg.model import StepType

from .address import MachAddr
from .history import TxInfo, mutation_name, step_text
from .pane import Pane
from .pipes import pipes_at
from .session import Session

__all__ = ["LogPane", "LogReader", "entry_lines", "time_label", "tx_log_lines"]

_WINDOW = 60  # transitions each side of the cursor that the log looks at
_TRACED = ("[error", "[breakpoint")  # entries whose later lines are a stack trace
_SECOND = timedelta(seconds=1)


def tx_log_lines(info: TxInfo, states: list[str], level: int) -> list[str]:
    """The log lines of one transition at ``level``, or one synthetic line."""
    tx = info.tx
    lines = [e.text for e in (*tx.pre_log_entries, *tx.log_entries) if e.level <= level]
    if lines:
        return lines
    called = " ".join(states[i] for i in info.called)
    args = " ".join(f"{k}={v}" for k, v in sorted(tx.args.items()))
    args = f" ({args})" if args else ""
    if tx.is_queued:
        tag = "aqueu" if tx.is_auto else "queue"
        return [f"[{tag}] {mutation_name(tx.type)} {called}{args}"]
    if not tx.accepted:
        return [f"[cance] {mutation_name(tx.type)} {called}{args}"]
    if not info.added and not info.removed:
        return [f"[empty] {mutation_name(tx.type)} {called}{args}"]
    diff = " ".join([f"+{states[i]}" for i in info.added] + [f"-{states[i]}" for i in info.removed])
    return [f"[state] {diff}{args}"]


def entry_lines(text: str, traces: bool = True) -> list[str]:
    """The screen lines of one log entry. An ``[error]`` (or ``[breakpoint]``) entry carries
    its stack trace on the lines after the first; with ``traces`` off only the first line
    stays, as the reference's ``traces`` toggle does."""
    lines = text.rstrip("\n").split("\n")  # a trace ends with a newline: no empty row
    if not traces and text.startswith(_TRACED):
        return lines[:1]
    return lines


def time_label(prev: TxInfo, info: TxInfo) -> Text | None:
    """The grey ``HH:MM:SS.ffffff t<sum>`` line the reference puts after a transition whose
    wall-clock second differs from the previous transition's (or that came more than a
    second later): the log's timestamps, a label per second instead of one per line."""
    t, p = info.tx.time, prev.tx.time
    if t is None or p is None or (t.second == p.second and t - p <= _SECOND):
        return None
    label = Text(f" {t:%H:%M:%S.%f} ", style="grey50", no_wrap=True, overflow="ellipsis")
    label.append(f"t{info.time_sum}", style="bold grey50")
    return label


class LogPane(Pane, can_focus=True):
    """The log, windowed so that the current transition is in view; click a line's
    transition to jump there."""

    class Jump(Message):
        def __init__(self, index: int) -> None:
            super().__init__()
            self.index = index

    def __init__(self, **kw) -> None:
        super().__init__(**kw)
        self._tx_at: list[int] = []

    def paint(self, session: Session) -> None:
        h = session.current
        info = session.info
        self.border_title = f"Log:{session.log_level} (t{info.time_sum if info else 0})"
        if h is None:
            self.show("")
            return
        vis, cur = session.visible(), session.index
        k = bisect.bisect_right(vis, cur) - 1
        lo, hi = max(0, k - _WINDOW), min(len(vis), k + _WINDOW + 1)
        states = h.states
        # the text width after the margin mark; wrapped rows are laid out here (not by the
        # pane) so that each screen row maps to its transition for scrolling and clicks
        width = max(self.content_size.width - 1, 10)
        rows: list[tuple[int, Text]] = []
        cur_first = None
        for j in vis[lo:hi]:
            f = h.infos[j]
            tx = f.tx
            mark = "yellow" if tx.is_queued else ("green" if tx.accepted else "red")
            style = "on grey23" if j == cur else ""
            if j == cur and cur_first is None:
                cur_first = len(rows)
            for entry in tx_log_lines(f, states, session.log_level):
                for line in entry_lines(entry, session.log_traces):
                    body = Text(line, style=style)
                    parts = body.wrap(self.app.console, width) if session.log_wrap else [body]
                    for part in parts:
                        t = Text(no_wrap=True, overflow="ellipsis")
                        t.append("▌", style=mark)
                        t.append_text(part)
                        rows.append((j, t))
            if session.log_times and j > 0:
                label = time_label(h.infos[j - 1], f)
                if label is not None:
                    rows.append((j, label))
        height = max(self.content_size.height, 1)
        if cur_first is None:  # before the first transition: show the start
            cur_first = 0
        start = max(0, min(cur_first - height // 3, len(rows) - height))
        shown = rows[start : start + height]
        self._tx_at = [j for j, _ in shown]
        # no_wrap: the joined text's lines take its settings, and the pane would wrap them
        self.show(Text("\n", no_wrap=True, overflow="ellipsis").join(t for _, t in shown))

    def on_click(self, event: events.Click) -> None:
        off = event.get_content_offset(self)
        if off is not None and 0 <= off.y < len(self._tx_at):
            self.post_message(self.Jump(self._tx_at[off.y]))


class LogReader(Pane, can_focus=True):
    """What the current transition says beyond its log (see the module doc)."""

    class Follow(Message):
        def __init__(self, addr: MachAddr) -> None:
            super().__init__()
            self.addr = addr

    def __init__(self, **kw) -> None:
        super().__init__(**kw)
        self._links: dict[int, MachAddr] = {}
        self._forks_key: tuple = ()
        self._forks: list[MachAddr] = []
        self._forks_at = 0.0

    def forks(self, session: Session) -> list[MachAddr]:
        # scanning every machine is linear: at most twice a second while data streams in
        info = session.info
        key = (session.mach, info.tx.id if info else "")
        now = time.monotonic()
        if key != self._forks_key or now - self._forks_at > 0.5:
            self._forks_key, self._forks_at = key, now
            self._forks = list(session.forks())[:20]
        return self._forks

    def paint(self, session: Session) -> None:
        h, info = session.current, session.info
        self._links = {}
        if h is None or info is None:
            self.show(Text("no transition selected", style="grey50"))
            return
        tx, states = info.tx, h.states
        lines: list[Text] = []

        def add(label: str, value: str = "", style: str = "", link: MachAddr | None = None):
            t = Text(no_wrap=True, overflow="ellipsis")
            t.append(label, style="bold")
            t.append(value, style=style)
            if link is not None:
                self._links[len(lines)] = link
            lines.append(t)

        called = " ".join(states[i] for i in info.called)
        add("Tx ", f"{tx.id} [{mutation_name(tx.type)}] {called}")
        src = session.source()
        if src is not None:
            add("Source ", f"{src} (Alt+G)", "underline cyan", src)
        else:
            add("Source ", "auto" if tx.is_auto else "local", "grey50")
        for fork in self.forks(session):
            add("Caused ", str(fork), "underline cyan", fork)
        for p in pipes_at(h, session.index, session.collector.machines):
            arrow = "->" if p.direction == "out" else "<-"
            peer = MachAddr(p.peer)
            add(f"Pipe-{p.direction} ", f"{p.state} {arrow} {peer} ({p.mutation})",
                "underline cyan", peer)  # fmt: skip
        handlers = [
            s for s in tx.steps if s.type & StepType.HANDLER and not s.type & StepType.CANCEL
        ]
        names = []
        for s in handlers:
            names.append(step_text(s).split(" ", 1)[1])
        if not names:
            names = [
                e.text.split("] ", 1)[1]
                for e in tx.log_entries
                if e.text.startswith("[handler") and "] " in e.text
            ]
        if names:
            add("Handlers ", " ".join(names))
        if tx.args:
            add("Args ", " ".join(f"{k}={v}" for k, v in sorted(tx.args.items())))
        add("Queue ", f"len {tx.queue}, tick {tx.queue_tick}")
        if tx.mut_queue_tick or tx.mut_queue_token:
            add("Queued ", f"for tick {tx.mut_queue_tick}, token {tx.mut_queue_token}")
        if tx.time is not None:
            add("Time ", tx.time.isoformat())
        if tx.stack_trace:
            add("Trace ", tx.stack_trace.splitlines()[0])
        self.show(Text("\n").join(lines))
        self.border_title = "Reader"

    def on_click(self, event: events.Click) -> None:
        off = event.get_content_offset(self)
        if off is not None and off.y in self._links:
            self.post_message(self.Follow(self._links[off.y]))
