"""The two timelines with their info bars (C.5 #7, #8).

Transitions: ``Transition N / M [raw]`` and a progress bar; clicking it jumps there. Steps:
``Next mutation step N / M`` over the next transition's steps, grey for a canceled
transition and red on the final step of one. The info bars above them describe the current
and the next transition.
"""

from __future__ import annotations

from rich.text import Text
from textual import events
from textual.message import Message

from .history import TxInfo, mutation_name, step_text
from .pane import Pane
from .session import Session

__all__ = ["WHEEL_TXS", "StepTimeline", "TxBar", "TxTimeline", "TimelineWheel"]

WHEEL_TXS = 5  # transitions per wheel notch on the transitions timeline (steps: one)


class TimelineWheel(Message):
    """The mouse wheel over a timeline: ``n`` transitions (or steps with ``steps``)."""

    def __init__(self, n: int, steps: bool) -> None:
        super().__init__()
        self.n, self.steps = n, steps


class _Wheeled:
    """Timelines turn wheel notches into :class:`TimelineWheel` messages."""

    _per_notch = WHEEL_TXS
    _steps = False

    def on_mouse_scroll_down(self, event: events.MouseScrollDown) -> None:
        event.stop()
        self.post_message(TimelineWheel(self._per_notch, self._steps))  # type: ignore[attr-defined]

    def on_mouse_scroll_up(self, event: events.MouseScrollUp) -> None:
        event.stop()
        self.post_message(TimelineWheel(-self._per_notch, self._steps))  # type: ignore[attr-defined]


def _bar(done: int, total: int, width: int, style: str) -> Text:
    width = max(width, 1)
    fill = 0 if not total else round(width * done / total)
    t = Text(no_wrap=True)
    t.append("█" * fill, style=style)
    t.append("░" * (width - fill), style="grey30")
    return t


def describe(info: TxInfo | None, states: list[str], prev_sum: int | None) -> Text:
    """One line about a transition: type, called states, flags and counts, time."""
    t = Text(no_wrap=True, overflow="ellipsis")
    if info is None:
        t.append("-", style="grey50")
        return t
    tx = info.tx
    t.append(f"t{info.time_sum}")
    if prev_sum is not None:
        t.append(f" +{info.time_sum - prev_sum}", style="grey70")
    if tx.is_queued:
        t.append(" q", style="yellow")
    t.append(f" [{mutation_name(tx.type)}] ", style="bold")
    t.append(" ".join(states[i] for i in info.called))
    for flag, on, style in (
        ("auto", tx.is_auto, "blue"),
        ("check", tx.is_check, "magenta"),
        ("canceled", not tx.accepted and not tx.is_queued, "red"),
    ):
        if on:
            t.append(f" {flag}", style=style)
    t.append(f"  +{len(info.added)} -{len(info.removed)} *{len(info.touched)}", style="grey70")
    if tx.time is not None:
        t.append("  " + tx.time.strftime("%H:%M:%S.%f"), style="grey50")
    return t


class TxBar(Pane):
    """The current (or, with ``nxt``, the next) transition's info bar."""

    def __init__(self, nxt: bool = False, **kw) -> None:
        super().__init__(**kw)
        self.nxt = nxt

    def paint(self, session: Session) -> None:
        h = session.current
        t = Text(no_wrap=True, overflow="ellipsis")
        if h is None:
            self.show(t)
            return
        if self.nxt:
            j = session.next_index
            info = h.infos[j] if j >= 0 else None
            t.append("Next ", style="bold")
        else:
            j, info = session.index, session.info
            mode = "Playing" if session.playing else "Tail" if session.tail else "Paused"
            t.append(f"{mode} ", style="bold green" if mode != "Paused" else "bold")
            t.append(f"tx:{h.offset + j + 1 if j >= 0 else 0} ")
        prev = h.infos[j - 1].time_sum if j > 0 else None
        t.append_text(describe(info, h.states, prev))
        self.show(t)


class TxTimeline(_Wheeled, Pane, can_focus=True):
    """``Transition N / M [raw]`` and a bar; a click jumps to that point."""

    class Seek(Message):
        def __init__(self, fraction: float) -> None:
            super().__init__()
            self.fraction = fraction

    _label_width = 0

    def paint(self, session: Session) -> None:
        n, m, raw = session.counts()
        label = f"Transition {n} / {m}" + (f" [{raw}] " if raw != m else " ")
        self._label_width = len(label)
        t = Text(label, style="bold" if self.has_focus else "", no_wrap=True)
        t.append_text(_bar(n, m, self.content_size.width - len(label), "cyan"))
        self.show(t)

    def on_click(self, event: events.Click) -> None:
        off = event.get_content_offset(self)
        width = self.content_size.width - self._label_width
        if off is not None and width > 0 and off.x >= self._label_width:
            self.post_message(self.Seek((off.x - self._label_width + 1) / width))


class StepTimeline(_Wheeled, Pane, can_focus=True):
    """Steps of the next transition; focused, ←/→ walk steps instead of transitions."""

    _per_notch = 1
    _steps = True

    def paint(self, session: Session) -> None:
        nxt = session.next_info
        total = len(nxt.tx.steps) if nxt else 0
        label = f"Next mutation step {session.step} / {total} "
        canceled = nxt is not None and not nxt.tx.accepted
        style = "grey50" if canceled else "green"
        if canceled and total and session.step == total:
            style = "red"
        t = Text(label, style="bold" if self.has_focus else "", no_wrap=True)
        t.append_text(_bar(session.step, total, self.content_size.width - len(label), style))
        self.show(t)


def current_step_text(session: Session) -> str:
    nxt = session.next_info
    if nxt is None or not session.step:
        return ""
    return step_text(nxt.tx.steps[session.step - 1])
