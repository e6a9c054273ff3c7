"""Remote control of the UI (C.5 #23): what the MCP tools read and do, on the UI's loop.

Why apart from :mod:`dbg.mcp` (the protocol side): everything here touches Textual objects
and the session, which belong to the UI's asyncio loop; the MCP server runs on trio in the
collector's thread and calls these through :meth:`textual.app.App.call_from_thread`, the same
bridge the forwarder's status lines use. Each function is one tool's UI half; heavy text
(a long log, the network graph) is only snapshotted here and rendered off the UI's loop.
"""

from __future__ import annotations

import asyncio
import io
import unicodedata
from collections.abc import Callable
from typing import TYPE_CHECKING

from rich.console import Console
from textual import events
from textual.binding import Binding
from textual.widget import Widget

from dbg.model import MachineDump

from .address import MachAddr
from .diagrams import snapshot
from .filters import FILTERS
from .help import help_text
from .log_pane import LogReader
from .outputs import clients_text, log_text, tx_text
from .schema_tree import SchemaTree

if TYPE_CHECKING:
    from .app import DebuggerApp

__all__ = [
    "TOGGLES",
    "Refused",
    "clients",
    "go_to",
    "graph_snapshot",
    "help_page",
    "key_names",
    "log",
    "press",
    "reader",
    "screen_text",
    "toggle",
    "transition",
]

#: keys taken besides the bound ones: moving the focus and the cursor, confirming, typing
EXTRA_KEYS = frozenset(
    ("enter", "tab", "shift+tab", "up", "down", "left", "right", "escape", "backspace",
     "space", "home", "end")
)  # fmt: skip
#: the character a terminal sends with a named key (Textual's key events carry it)
_CHARS = {"enter": "\r", "tab": "\t", "escape": "\x1b", "backspace": "\x7f", "space": " "}


class Refused(ValueError):
    """A key or toggle the debugger does not take now; the message (one line) says why and
    lists what it takes."""


async def _refreshed(target: Widget | DebuggerApp) -> None:
    """Wait until ``target`` has handled what is queued for it and the screen is refreshed."""
    done: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def finish() -> None:
        if not done.done():
            done.set_result(None)

    if target.call_after_refresh(finish):
        await done


async def screen_text(app: DebuggerApp) -> str:
    """The screen as plain text, a line per row, as a terminal would show it.

    Rendered by Textual's compositor, as its own screenshots are (``export_screenshot``), so
    it works without a terminal (headless, under a test pilot) and shows a dialog over the
    panes it covers."""
    await _refreshed(app)
    width, height = app.size
    console = Console(
        width=width, height=height, file=io.StringIO(), record=True, color_system=None,
        force_terminal=True, legacy_windows=False, safe_box=False,
    )  # fmt: skip
    console.print(
        app.screen._compositor.render_update(full=True, screen_stack=app._background_screens)
    )
    lines = console.export_text(styles=False).splitlines()
    return "\n".join(line.rstrip() for line in lines) + "\n"


def log(app: DebuggerApp) -> Callable[[], str]:
    """The selected machine's log (as ``log.md``): a renderer of a snapshot taken now."""
    return log_text(app.session)


def reader(app: DebuggerApp) -> str:
    """The log reader's lines for the current transition (painted now if it is hidden)."""
    pane = app.query_one(LogReader)
    if not pane.display:
        pane.paint(app.session)
    return pane.content.plain + "\n"


def clients(app: DebuggerApp) -> str:
    return clients_text(app.session)


def help_page(app: DebuggerApp) -> str:
    return help_text(app.info).plain


def graph_snapshot(app: DebuggerApp) -> list[MachineDump]:
    """Every machine cut at the cursor's time (the network graph is built from it)."""
    return snapshot(app.session)


def transition(app: DebuggerApp) -> str:
    return tx_text(app.session)


def go_to(app: DebuggerApp, url: str) -> str:
    """Open ``url`` as the address bar does; raises ``AddrError`` (one line) when it does
    not resolve. Returns the transition now current (as ``tx.md``)."""
    app.session.goto(MachAddr.parse(url))
    app.paint()
    return tx_text(app.session)


def key_names(app: DebuggerApp) -> set[str]:
    """The named keys taken now: every binding of the app and of the focused chain (a
    dialog's too), and :data:`EXTRA_KEYS`."""
    names = set(EXTRA_KEYS)
    for binding in app.BINDINGS:
        key = binding.key if isinstance(binding, Binding) else binding[0]
        names.update(k.strip() for k in key.split(","))
    names.update(app.screen.active_bindings)
    return names


def _key_event(app: DebuggerApp, key: str) -> events.Key:
    if len(key) == 1:
        if not key.isprintable():
            raise Refused(f"unknown key {key!r}: a control character; name it (enter, tab)")
        name = key
        if not key.isalnum():  # Textual names punctuation: "?" is question_mark
            name = unicodedata.name(key).lower().replace("-", "_").replace(" ", "_")
        return events.Key(name, key)
    name = key.strip().lower()
    known = key_names(app)
    if name not in known:
        raise Refused(
            f"unknown key {key!r}; keys: {', '.join(sorted(known))}, or one printable character"
        )
    char = _CHARS.get(name)
    if char is None and "+" not in name:
        try:  # question_mark -> "?"
            char = unicodedata.lookup(name.replace("_", " "))
        except KeyError:
            char = None
    return events.Key(name, char)


async def press(app: DebuggerApp, key: str) -> str:
    """Press ``key`` as a terminal would send it and wait until the screen shows its effect;
    raises :class:`Refused` for a key the debugger does not take. Returns where the cursor
    is (its address, its place among the transitions shown) and which pane has the focus:
    a right that did not move, at the last transition, says so."""
    event = _key_event(app, key)
    app.post_message(event)
    # the app handles the key (priority bindings), then hands it to the focused widget,
    # which runs the binding; each hop is a message queue
    await _refreshed(app)
    await _refreshed(app.focused or app.screen)
    await _refreshed(app)
    focus = app.focused.id if app.focused is not None else None
    s = app.session
    n, total, _ = s.counts()
    mode = " (tail)" if s.tail else " (playing)" if s.playing else ""
    return (
        f"pressed {event.key}; address: {s.addr() or '-'}; transition {n} / {total}{mode}; "
        f"focus: {focus or '-'}\n"
    )


#: the toggles ToggleTool flips: name -> the app's action (its key's or toolbar button's)
TOGGLES = {
    **{name: f"filter('{name}')" for name in FILTERS},
    "tail": "tail",
    "play": "play",
    "rain": "rain",
    "reader": "reader",
    "expand": "relations",
    "times": "log_times",
    "traces": "log_traces",
    "wrap": "log_wrap",
    "timelines": "timelines",  # cycles 2 -> 0 -> 1 -> 2, as the toolbar button
}


def _is_on(app: DebuggerApp, name: str) -> bool:
    s = app.session
    if name in FILTERS:
        return name in s.filters.on
    return {
        "tail": lambda: s.tail,
        "play": lambda: s.playing,
        "rain": lambda: "rain" in app.view,
        "reader": lambda: app.show_reader,
        "expand": lambda: app.query_one(SchemaTree).show_relations,
        "times": lambda: s.log_times,
        "traces": lambda: s.log_traces,
        "wrap": lambda: s.log_wrap,
        "timelines": lambda: app.timelines > 0,
    }[name]()


async def toggle(app: DebuggerApp, name: str) -> str:
    """Flip the toggle ``name`` (:data:`TOGGLES`) as its key does; returns its new state
    (``timelines``: how many are shown).
    Raises :class:`Refused` for a name that is not a toggle."""
    action = TOGGLES.get(name.strip().lower())
    if action is None:
        raise Refused(f"unknown toggle {name!r}; toggles: {', '.join(TOGGLES)}")
    name = name.strip().lower()
    if len(app.screen_stack) > 1:
        raise Refused(f"a dialog is open: close it first (PressKey escape) to flip {name}")
    await app.run_action(action)
    await _refreshed(app)
    if name == "timelines":
        return f"timelines {app.timelines}\n"
    return f"{name} {'on' if _is_on(app, name) else 'off'}\n"
