"""The debugger's Textual app: layout, keys and the paint loop.

Why so thin: what each key does lives in :class:`dbg.ui.session.Session`; the panes paint
themselves from it. The collector (the store) notifies changes; a timer coalesces them into
at most one repaint per frame, so a flood of telemetry costs one paint per frame, not one
per transition.
"""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from textual import events
from textual.app import App, ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.css.query import NoMatches

from machines.addr import format_hostport

from .address import AddrError, MachAddr
from .bars import AddressBar, ClickableLine, StatusBar, TagsBar, Toolbar
from .call_log import CallLogOutputs
from .diagrams import DEBOUNCE as DIAGRAMS_DEBOUNCE
from .diagrams import DiagramOutputs
from .dialogs import ExportScreen, PromptScreen
from .filters import FILTERS
from .groups import next_group
from .help import HelpScreen
from .live import LiveServer
from .log_pane import LogPane, LogReader
from .machine_list import MachineList
from .matrix import MatrixView, RainView
from .outputs import DEBOUNCE as OUTPUTS_DEBOUNCE
from .outputs import TextOutputs
from .pane import Pane
from .schema_tree import SchemaTree, search_char
from .session import Session
from .theme import LIGHT, THEMES
from .timelines import StepTimeline, TimelineWheel, TxBar, TxTimeline

__all__ = ["TIMELINES", "VIEWS", "DebuggerApp"]

VIEWS = ("tree-log", "tree-matrix", "tree-rain", "matrix", "matrix-rain")
#: panes of the content area per view
_VIEW_PANES = {
    "tree-log": {"tree", "log", "reader"},
    "tree-matrix": {"tree", "matrix"},
    "tree-rain": {"tree", "rain"},
    "matrix": {"matrix"},
    "matrix-rain": {"matrix", "rain"},
}
_PANES = ("#addr", "#tags", "#list", "#tree", "#log", "#reader", "#matrix", "#rain", "#txbar",
          "#txtl", "#nextbar", "#steptl", "#toolbar")  # fmt: skip
_ALWAYS = frozenset(("quit", "focus_next", "focus_previous"))
TIMELINES = (0, 1, 2)
NARROW_WIDTH = 100  # below: no machine list
SEARCH_RESET = 1.5  # seconds of typing pause that start a new search
PLAY_INTERVAL = 0.5
FRAME = 1 / 30
DATA_FRAME = 0.25  # new data repaints at most this often; keys repaint at once
CATCH_UP_BUDGET = 0.008  # seconds per frame for reading other machines' histories
QUIET = 0.5  # seconds without new data before other machines' histories are read
HOLD_MAX = 0.5  # seconds the UI may keep the live collector waiting


class DebuggerApp(App[None]):
    """``am dbg``'s UI. ``live`` (optional) serves telemetry into ``session.collector``."""

    TITLE = "am dbg"
    CSS = """
    Screen { layout: vertical; }
    #addr, #tags, #txbar, #txtl, #nextbar, #steptl, #status { height: 1; }
    #toolbar { height: 2; }
    #main { height: 1fr; }
    #list { width: 34; height: 100%; border: round $primary-darken-2; }
    #tree { width: 1fr; height: 100%; min-width: 20; border: round $primary-darken-2; }
    #right { width: 2fr; height: 100%; }
    #log, #matrix, #rain { height: 1fr; border: round $primary-darken-2; }
    #reader { height: 35%; max-height: 12; border: round $primary-darken-2; }
    #list:focus, #tree:focus, #log:focus, #reader:focus, #rain:focus { border: round $accent; }
    #txtl:focus, #steptl:focus, #toolbar:focus { background: $boost; }
    #status { background: $panel; }
    .narrow #list { display: none; }
    .short #nextbar, .short #tags { display: none; }
    .no-tree #tree { display: none; }
    .timelines-0 #txbar, .timelines-0 #txtl { display: none; }
    .timelines-0 #nextbar, .timelines-0 #steptl, .timelines-1 #nextbar, .timelines-1 #steptl {
        display: none;
    }
    """

    BINDINGS = [
        Binding("left", "nav(-1)", "prev", show=False),
        Binding("right", "nav(1)", "next", show=False),
        Binding("alt+j", "step(-1)", show=False),
        Binding("alt+k", "step(1)", show=False),
        Binding("alt+h,alt+left", "jump(-1)", show=False),
        Binding("alt+l,alt+right", "jump(1)", show=False),
        Binding("home", "first", show=False),
        Binding("end", "last", show=False),
        Binding("space", "play", show=False),
        Binding("alt+v", "tail", show=False),
        Binding("up", "updown(-1)", show=False),
        Binding("down", "updown(1)", show=False),
        Binding("alt+g", "follow", show=False),
        Binding("left_square_bracket", "history_back", show=False),
        Binding("right_square_bracket", "history_forward", show=False),
        Binding("ctrl+l", "edit_address", show=False),
        Binding("alt+m", "cycle_view", show=False),
        Binding("alt+r", "rain", show=False),
        Binding("alt+e", "relations", show=False),
        Binding("alt+o", "reader", show=False),
        Binding("alt+s", "export", show=False),
        Binding("alt+i", "diagram", show=False),
        Binding("alt+d", "remove_machine", show=False),
        Binding("enter", "enter", show=False),
        Binding("ctrl+g", "group", show=False),
        Binding("alt+n", "page(1)", show=False),
        Binding("alt+p", "page(-1)", show=False),
        # a terminal sends Alt+F as ESC f, which Textual reads as ctrl+right (readline's
        # forward-word): both focus the toolbar
        Binding("alt+f,ctrl+right", "focus_toolbar", show=False),
        Binding("alt+t", "timelines", show=False),
        Binding("alt+w", "log_wrap", show=False),
        Binding("question_mark", "help", show=False),
        Binding("escape", "focus_list", show=False),
        Binding("0", "log_level", show=False),
        *(Binding(str(n), f"filter('{name}')", show=False) for n, name in enumerate(FILTERS, 1)),
        Binding("ctrl+q", "quit", "quit", priority=True),
    ]

    def __init__(
        self,
        session: Session,
        *,
        out_dir: Path = Path("."),
        live: LiveServer | None = None,
        view: str = "tree-log",
        open_addr: MachAddr | None = None,
        info: str = "",
        outputs: set[str] | frozenset[str] = frozenset(),
        theme: str = "dark",
        diagrams: int = 0,
        on_diagrams: Callable[[set[str]], None] | None = None,
        graph_text: bool = False,
        diag_group: str = "hide",
        diag_tx: str = "relations",
        call_log: bool = False,
        reader: bool = True,
        narrow: bool = False,
        timelines: int = 2,
        log_wrap: bool = False,
        quit_on_signals: bool = False,
    ) -> None:
        super().__init__()
        #: SIGINT and SIGTERM quit as Ctrl+Q does (off-screen, no key can)
        self.quit_on_signals = quit_on_signals
        if view not in VIEWS:
            raise ValueError(f"unknown view {view!r}; one of {', '.join(VIEWS)}")
        self.session = session
        self.out_dir = out_dir
        self.live = live
        self.view = view
        self.show_reader = reader
        #: the narrow layout (no machine list) at any width, not only under NARROW_WIDTH
        self.narrow = narrow
        if timelines not in TIMELINES:
            raise ValueError(f"timelines is 0, 1 or 2, not {timelines!r}")
        #: 2: both timelines with their bars, 1: the transitions' only, 0: none
        self.timelines = timelines
        session.log_wrap = log_wrap
        self.info = info
        self._pending = open_addr
        self._dirty = True
        self._hint_bound = False  # the empty schema pane names the bound port (see _frame)
        self._painted_at = 0.0
        self._data_at = 0.0
        self._holding = False
        self._held: Any = None  # the collector's lock while _holding
        self._hold_id = 0  # the current hold (see _hold)
        self._key_hold = 0  # the hold of the key or click being handled
        self._key_at = 0.0  # when a key or click came that the screen does not show yet
        self._caught_up = False  # other machines' histories all read (see _frame)
        self._search_at = 0.0
        self._unsub: Callable[[], None] | None = None
        self.paints = 0  # for tests and benchmarks: frames painted
        self.outputs = TextOutputs(session, out_dir, set(outputs)) if outputs else None
        #: --output-call-log: every machine's executed handlers (see dbg.ui.call_log)
        self.call_log = CallLogOutputs(session, out_dir) if call_log else None
        #: --output-diagrams, --output-graph: kept by a worker thread (see dbg.ui.diagrams)
        self.diagrams = (
            DiagramOutputs(
                session,
                out_dir,
                diagrams,
                on_diagrams,
                text=graph_text,
                group_mode=diag_group,
                tx_mode=diag_tx,
            )
            if diagrams or graph_text
            else None
        )
        if theme not in THEMES:
            raise ValueError(f"unknown theme {theme!r}; one of {', '.join(THEMES)}")
        self.view_theme = theme

    # ----- layout

    def compose(self) -> ComposeResult:
        yield AddressBar(id="addr")
        yield TagsBar(id="tags")
        with Horizontal(id="main"):
            yield MachineList(id="list")
            yield SchemaTree(id="tree", empty=self._empty_hint)
            with Vertical(id="right"):
                yield LogPane(id="log")
                yield LogReader(id="reader")
                yield MatrixView(id="matrix")
                yield RainView(id="rain")
        yield TxBar(id="txbar")
        yield TxTimeline(id="txtl")
        yield TxBar(nxt=True, id="nextbar")
        yield StepTimeline(id="steptl")
        yield Toolbar(id="toolbar")
        yield StatusBar(id="status")

    def on_mount(self) -> None:
        if self.quit_on_signals:
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.add_signal_handler(sig, self.call_later, self.action_quit)
        self._unsub = self.session.collector.subscribe(self._changed)
        if self.live is not None:
            self.live.start(on_ready=lambda bound: self._changed())
        self._apply_view()
        self._layout_classes(self.size.width, self.size.height)
        self.query_one("#list").focus()
        self.set_interval(FRAME, self._frame)
        self.set_interval(PLAY_INTERVAL, self._play)
        if self.outputs is not None:
            self.set_interval(OUTPUTS_DEBOUNCE, lambda: self.outputs.tick(self.status))
        if self.call_log is not None:
            self.set_interval(OUTPUTS_DEBOUNCE, lambda: self.call_log.tick(self.status))
        if self.diagrams is not None:
            self.set_interval(DIAGRAMS_DEBOUNCE, lambda: self.diagrams.tick(self.status))
        self.theme = THEMES[self.view_theme]
        Pane.palette = LIGHT if self.view_theme == "light" else None
        pending = self._pending
        if pending is not None and pending.mach_id not in self.session.collector.machines:
            # MACH_URL names no loaded machine: say so (it silently opened another one). Live,
            # it may still connect, and opens then.
            if self.live is None:
                self._pending = None
                self.status(f"no machine {pending.mach_id!r} in the imported data")
            else:
                self.status(f"mach://{pending.mach_id}: not here yet; it opens when it connects")
        self.call_after_refresh(self._frame)

    # ----- the UI first: ingest waits while a key or a frame is being painted

    def _hold(self) -> int:
        """Pause the live collector (it ingests under the same lock) until :meth:`_release`
        with the id returned: two threads share one interpreter lock, and under a flood of
        telemetry the UI otherwise gets a small share of it (keys took ~0.5 s). A hold taken
        while one is on takes it over (the older id no longer releases it). Bounded: released
        after ``HOLD_MAX`` at the latest. 0 when there is nothing to hold."""
        lock = getattr(self.session.collector, "lock", None)  # a LockedCollector's
        if lock is None or self.live is None:
            return 0
        if not self._holding:
            if not lock.acquire(timeout=0.2):
                return 0
            self._held, self._holding = lock, True
        self._hold_id += 1
        hold_id = self._hold_id
        self.set_timer(HOLD_MAX, lambda: self._release(hold_id))
        return hold_id

    def _release(self, hold_id: int | None = None) -> None:
        """End the hold ``hold_id`` if it is still the current one (None: any)."""
        if self._holding and (hold_id is None or hold_id == self._hold_id):
            self._holding = False
            self._held.release()

    async def on_event(self, event: events.Event) -> None:
        if isinstance(event, (events.Key, events.MouseDown)) and not event.is_forwarded:
            # the collector waits from the key's arrival until the screen shows its effect
            # (see paint): a refresh in between, e.g. a frame's, must not end the hold
            self._key_hold = self._hold()
            now = time.monotonic()
            if not self._key_at or now - self._key_at >= HOLD_MAX:  # else: one not shown yet
                self._key_at = now
        await super().on_event(event)

    def _key_shown(self) -> None:
        self._key_at = 0.0
        self._release(self._key_hold)

    def _changed(self) -> None:  # called by the collector, possibly from its thread
        self._dirty = True
        self._caught_up = False
        self._data_at = time.monotonic()

    def on_resize(self, event: events.Resize) -> None:
        self._layout_classes(event.size.width, event.size.height)
        self.call_after_refresh(self.paint)

    def _layout_classes(self, width: int, height: int) -> None:
        self.screen.set_class(self.narrow or width < NARROW_WIDTH, "narrow")
        self.screen.set_class(height < 30, "short")

    def _apply_view(self) -> None:
        panes = set(_VIEW_PANES[self.view])
        if not self.show_reader:
            panes.discard("reader")
        self.screen.set_class("tree" not in panes, "no-tree")
        for n in TIMELINES:  # the main area (1fr) takes the rows of hidden timelines
            self.screen.set_class(self.timelines == n, f"timelines-{n}")
        hidden = ("txtl", "steptl")[self.timelines :]
        if self.focused is not None and self.focused.id in hidden:
            self.query_one("#list").focus()
        for name in ("log", "reader", "matrix", "rain"):
            self.query_one(f"#{name}").display = name in panes
        self.call_after_refresh(self.paint)

    # ----- painting

    def _frame(self) -> None:
        if self._key_at and time.monotonic() - self._key_at < HOLD_MAX:
            # keys first: a data frame (reading and painting what arrived) waits until the
            # screen shows the key's effect, instead of delaying that refresh by its own work
            return
        if self._pending is not None and self._pending.mach_id in self.session.collector.machines:
            addr, self._pending = self._pending, None
            self._goto(addr)
        if not self._hint_bound and self.live is not None and self.live.bound:
            self._hint_bound = self._dirty = True  # the port bound: the empty pane names it
        now = time.monotonic()
        caught_up = True
        data_frame = self._dirty and now - self._painted_at >= DATA_FRAME
        catching_up = not self.session.tail and not self._caught_up and now - self._data_at > QUIET
        hold_id = self._hold() if data_frame or catching_up else 0
        if catching_up:
            # other machines at the cursor's time need their history; read it while the
            # stream is quiet (reading a machine can take long; keys must not wait for it)
            caught_up = self._caught_up = self.session.catch_up(CATCH_UP_BUDGET)
        if data_frame:
            self._dirty = False
            self.session.sync()
            gone = self.session.gone()
            if gone:
                more = f" and {len(gone) - 3} more" if len(gone) > 3 else ""
                StatusBar.message = f"gone from the store: {', '.join(gone[:3])}{more}"
            cur = self.session.current
            if cur is not None and cur.pending:
                # a sync reads a slice of a flood: the next frame reads on, even when no new
                # data arrives meanwhile (a finished burst would stay cut short otherwise)
                self._dirty = True
            self.paint()
        elif not caught_up:
            self.paint()
        else:
            self._release(hold_id)
            return
        self.call_after_refresh(self._release, hold_id)  # the UI keeps the GIL to refresh

    def _play(self) -> None:
        if self.session.playing:
            self.session.play_tick()
            self.paint()

    def paint(self) -> None:
        s = self.session
        self._painted_at = time.monotonic()
        try:
            panes: list[Any] = [self.query_one(w) for w in _PANES]  # each has paint(session)
            status = self.query_one(StatusBar)
        except NoMatches:  # closing: the main screen is gone, a timer fired late
            return
        for w in panes:
            if w.display:
                w.paint(s)
        status.paint(s, s.graph_sum())
        self.paints += 1
        if self.outputs is not None:
            self.outputs.changed()
        if self.call_log is not None:
            self.call_log.changed()
        if self.diagrams is not None:
            self.diagrams.changed()
        if self._key_at:  # a key's effect: the collector waits until it is on screen
            self.call_after_refresh(self._key_shown)

    def status(self, message: str) -> None:
        StatusBar.message = message
        self.paint()

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        # under a dialog or the help only quitting and moving the focus (between a dialog's
        # fields) reach the app (the panes are hidden)
        return action in _ALWAYS or len(self.screen_stack) <= 1

    # ----- actions (keys)

    def _steps_focused(self) -> bool:
        return self.focused is not None and self.focused.id == "steptl"

    def action_nav(self, n: int) -> None:
        if self._steps_focused():
            self.action_step(n)
            return
        self.session.move(n)
        self.paint()

    def action_step(self, n: int) -> None:
        (self.session.next_step if n > 0 else self.session.prev_step)()
        self.paint()

    def action_jump(self, direction: int) -> None:
        self.session.jump(direction)
        self.paint()

    def action_first(self) -> None:
        self.session.first()
        self.paint()

    def action_last(self) -> None:
        self.session.last()
        self.paint()

    def action_play(self) -> None:
        self.session.toggle_play()
        self.paint()

    def action_tail(self) -> None:
        self.session.toggle_tail()
        self.paint()

    def action_updown(self, n: int) -> None:
        s = self.session
        if self.focused is not None and self.focused.id == "tree":
            self.query_one(SchemaTree).move(s, n)
        else:
            ids = self.query_one(MachineList).ids or [m for m, _ in s.tree()]
            if ids:
                k = ids.index(s.mach) + n if s.mach in ids else 0
                s.select(ids[max(0, min(k, len(ids) - 1))])
        self.paint()

    def action_follow(self) -> None:
        target = self.session.follow()
        self.status(f"jumped to {target}" if target else "no source or caused transition")

    def action_history_back(self) -> None:
        self.session.back()
        self.paint()

    def action_history_forward(self) -> None:
        self.session.forward()
        self.paint()

    def _empty_hint(self) -> str:
        """The schema pane before any machine: live, the address machines should report to (a
        first run showed a blank screen and no clue where to point ``AM_DBG_ADDR``; browser
        machines get theirs from it too, the WebSocket port being the next one)."""
        live = self.live
        if live is None:
            return "no machine yet"
        port = live.bound[0] if live.bound else live.port
        return f"no machine yet: run them with AM_DBG_ADDR={format_hostport(live.host, port)}"

    def action_edit_address(self) -> None:
        def done(value: str | None) -> None:
            if value:
                self._goto(value)

        self.push_screen(PromptScreen("Open address", str(self.session.addr() or "")), done)

    def _goto(self, addr: MachAddr | str) -> None:
        try:
            self.session.goto(addr)
        except (AddrError, ValueError) as err:
            self.status(str(err))
            return
        self.paint()

    def action_cycle_view(self) -> None:
        self.view = VIEWS[(VIEWS.index(self.view) + 1) % len(VIEWS)]
        self._apply_view()

    def action_rain(self) -> None:
        self.view = "tree-log" if "rain" in self.view else "tree-rain"
        self._apply_view()

    def action_relations(self) -> None:
        tree = self.query_one(SchemaTree)
        tree.show_relations = not tree.show_relations
        self.paint()

    def action_enter(self) -> None:
        if self.focused is not None and self.focused.id == "tree":
            if self.query_one(SchemaTree).enter(self.session):
                self.paint()

    def action_group(self) -> None:
        s, h = self.session, self.session.current
        if h is None:
            return
        s.group = next_group(h.record.schema, s.group)
        if s.tail:
            s.sync()
        self.status(f"group {s.group or 'all'}")

    def on_schema_tree_cycle_group(self, msg: SchemaTree.CycleGroup) -> None:
        self.action_group()

    def action_reader(self) -> None:
        self.show_reader = not self.show_reader
        self._apply_view()

    def action_timelines(self) -> None:
        self.timelines = (self.timelines + 1) % len(TIMELINES)
        self._apply_view()

    def action_log_wrap(self) -> None:
        self.session.log_wrap = not self.session.log_wrap
        self.paint()

    def action_log_times(self) -> None:
        self.session.log_times = not self.session.log_times
        self.paint()

    def action_log_traces(self) -> None:
        self.session.log_traces = not self.session.log_traces
        self.paint()

    def switches(self) -> dict[str, tuple[bool, str, str]]:
        """The toolbar's second row: label -> (on, action, what its box shows when on)."""
        s = self.session
        return {
            "tail": (s.tail, "tail", "x"),
            "reader": (self.show_reader, "reader", "x"),
            "expand": (self.query_one(SchemaTree).show_relations, "relations", "x"),
            "traces": (s.log_traces, "log_traces", "x"),
            "timelines": (self.timelines > 0, "timelines", str(self.timelines)),
            "wrap": (s.log_wrap, "log_wrap", "x"),
            "rain": ("rain" in self.view, "rain", "x"),
        }

    def action_filter(self, name: str) -> None:
        on = self.session.toggle_filter(name)
        self.status(f"filter {name} {'on' if on else 'off'}")

    def action_log_level(self) -> None:
        self.session.log_level = (self.session.log_level + 1) % 6
        self.paint()

    def action_export(self) -> None:
        def done(choice: tuple[str, bool] | None) -> None:
            if choice:
                self.export(*choice)

        self.push_screen(ExportScreen("am-dbg-dump"), done)

    def export(self, name: str, single_frame: bool = False) -> Path | None:
        if not name.endswith((".cbor.br", ".gob.br")):
            name += ".cbor.br"
        try:
            self.out_dir.mkdir(parents=True, exist_ok=True)
            path = self.session.export(self.out_dir / name, single_frame=single_frame)
        except (OSError, ValueError) as err:
            self.status(f"export failed: {err}")
            return None
        self.status(f"exported {path}")
        return path

    def action_diagram(self) -> None:
        from vis.render import RenderError

        from .diagram import render_diagram

        try:
            path = render_diagram(self.session, self.out_dir)
        except (RenderError, OSError) as err:
            self.status(f"diagram failed: {err}")
            return
        self.status(f"diagram {path}")

    def action_remove_machine(self) -> None:
        if self.session.mach:
            self.session.remove_machine(self.session.mach)
            self.paint()

    def action_help(self) -> None:
        self.push_screen(HelpScreen(self.info))

    def action_focus_list(self) -> None:
        self.session.search = ""
        self.query_one("#list").focus()
        self.paint()

    async def action_quit(self) -> None:
        self._release()
        if self._unsub is not None:
            self._unsub()
            self._unsub = None
        if self.live is not None:
            await self.live.stop()
        self.exit()

    # ----- typing and clicks

    def on_key(self, event: events.Key) -> None:
        if self.focused is None or self.focused.id != "list":
            return
        ch = search_char(event)
        s = self.session
        if event.key == "backspace" and s.search:
            s.search = s.search[:-1]
        elif ch:
            now = time.monotonic()
            if now - self._search_at > SEARCH_RESET:
                s.search = ""
            self._search_at = now
            s.search += ch.lower()
        else:
            return
        event.stop()
        hit = next((m for m, _ in s.tree() if s.search and s.search in m.lower()), None)
        if hit is not None and hit != s.mach:
            s.select(hit)
        self.paint()

    def on_machine_list_picked(self, msg: MachineList.Picked) -> None:
        self.session.select(msg.mach_id)
        self.paint()

    def on_schema_tree_picked(self, msg: SchemaTree.Picked) -> None:
        self.session.state = msg.state
        self.paint()

    def on_log_pane_jump(self, msg: LogPane.Jump) -> None:
        self.session.jump_to(msg.index)
        self.paint()

    def on_log_reader_follow(self, msg: LogReader.Follow) -> None:
        self._goto(msg.addr)

    def on_tx_timeline_seek(self, msg: TxTimeline.Seek) -> None:
        self.session.seek(msg.fraction)
        self.paint()

    def on_timeline_wheel(self, msg: TimelineWheel) -> None:
        s = self.session
        if msg.steps:
            (s.next_step if msg.n > 0 else s.prev_step)()
        else:
            s.move(msg.n)
        self.paint()

    def action_page(self, direction: int) -> None:
        """Alt+N/P: a page down/up in the focused pane (machines, schema lines, or else
        transitions, which the log and the rain follow)."""
        w = self.focused
        n = direction * max(1, (w.content_size.height if w is not None else 10) - 1)
        wid = w.id if w is not None else None
        if wid == "tree":
            self.query_one(SchemaTree).move(self.session, n)
        elif wid == "list":
            self.action_updown(n)
            return
        else:
            self.session.move(n)
        self.paint()

    def action_repaint(self) -> None:
        self.paint()

    def action_focus_toolbar(self) -> None:
        self.query_one(Toolbar).focus()
        self.paint()

    def on_rain_view_picked(self, msg: RainView.Picked) -> None:
        self.session.jump_to(msg.index)
        if msg.state:
            self.session.state = msg.state
        self.paint()

    async def on_clickable_line_clicked(self, msg: ClickableLine.Clicked) -> None:
        await self.run_action(msg.action)
