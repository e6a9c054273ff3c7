"""The ``?`` screen: legend and keys (C.5 #16)."""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Static

__all__ = ["KEYS", "HelpScreen", "help_text"]

KEYS = (
    ("←/→", "previous/next transition (steps when the steps timeline is focused)"),
    ("Alt+J/K", "previous/next step of the next transition"),
    ("Alt+H/L, Alt+←/→", "±50 transitions, or to the previous/next that changed the state"),
    ("Home/End", "first/last transition"),
    ("Space", "play (2 transitions/s, stops at the end)"),
    ("Alt+V", "tail mode: follow new transitions"),
    ("↑/↓", "previous/next machine (list), or state/relation line (schema)"),
    ("Enter", "schema: on a relation line, jump to the state it references"),
    ("Ctrl+G", "schema group: all, then each group of the machine (or click the group line)"),
    ("Alt+N/P", "page down/up in the focused pane (machines, schema, else transitions)"),
    ("Alt+F", "focus the toolbar: ←/→ pick a toggle, Enter/Space flip it (or click one)"),
    ("Alt+T", "timelines: 2 both, 0 none, 1 transitions only (toolbar 'timelines N')"),
    ("Alt+W", "wrap long log lines, or cut them (toolbar 'wrap')"),
    ("wheel", "on the timelines: ±5 transitions / ±1 step"),
    ("a-z - _", "type to search machines (in the list) or states (in the schema)"),
    ("1-9", "toggle filters: canceled queued auto empty health checks disconn rpc group"),
    ("0", "cycle the log level 0-5"),
    ("Alt+G", "follow the mutation's source machine (or what it caused)"),
    ("[ / ]", "address history back/forward"),
    ("Ctrl+L", "type an address (mach://id/tx/step)"),
    ("Alt+M / Alt+R", "cycle views / toggle rain"),
    ("Alt+E / Alt+O", "expand/collapse all relations in the schema / the log reader"),
    ("Alt+S", "export a dump into --dir (Single Frame: each machine at the cursor's time)"),
    ("Alt+I", "render the machine's diagram (SVG) into --dir (--output-diagrams: kept live)"),
    ("Alt+D", "remove the selected machine"),
    ("Tab / Shift+Tab", "focus next/previous pane; Esc: back to the list"),
    ("?", "this help"),
    ("Ctrl+Q", "quit (over SSH: end the session, the debugger runs on)"),
)

LEGEND = (
    "Machines: S/R/E = Start/Ready/Error active at the cursor, |N transitions up to it, + more",
    "  grey disconnected, red error now, pink error in the last 100 transitions",
    "Schema: yellow active, red active error, bold touched, underline called, M multi, A auto",
    "  steps: + activated, - deactivated, * handler ran, ! canceled;",
    "  relation steps so far: side columns, green where a relation starts, red where it ends",
    "Reader: source, caused transitions, pipes (links), handlers, args, queue",
    "Log margin: green executed, red canceled, yellow queued",
    "Toolbar row 1: filters, 'log N' level, 'times' = grey HH:MM:SS.ffffff tN label where a",
    "  new second starts; row 2: tail, reader, expand, 'traces' = stack traces under [error]",
    "  lines (off: first line only), 'timelines N', 'wrap' long log lines, rain",
    "Rain: 1 active, 2 active+touched, | deactivated, c called+canceled, * touched, . none",
)


def help_text(info: str) -> Text:
    """The help: keys, legend, then ``info`` (addresses); ``.plain`` for a text-only reader."""
    t = Text()
    t.append("Keys\n", style="bold")
    for k, what in KEYS:
        t.append(f"  {k:<18}", style="cyan")
        t.append(what + "\n")
    t.append("\nLegend\n", style="bold")
    for line in LEGEND:
        t.append("  " + line + "\n")
    t.append("\n" + info + "\n", style="grey70")
    return t


class HelpScreen(ModalScreen[None]):
    BINDINGS = [("escape,question_mark,q", "dismiss", "close")]
    DEFAULT_CSS = """
    HelpScreen { align: center middle; }
    HelpScreen > VerticalScroll { width: 90%; height: 90%; border: round $accent;
        background: $surface; padding: 0 1; }
    """

    def __init__(self, info: str) -> None:
        super().__init__()
        self.info = info

    def compose(self) -> ComposeResult:
        with VerticalScroll():
            yield Static(help_text(self.info))
