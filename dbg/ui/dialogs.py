"""Small input dialogs: the export (Alt+S: file name, Single Frame) and an address to open
(Ctrl+L)."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Checkbox, Input, Label

__all__ = ["ExportScreen", "PromptScreen"]


class PromptScreen(ModalScreen[str | None]):
    """One line of input; Enter returns it, Esc returns None."""

    BINDINGS = [("escape", "dismiss", "cancel")]
    DEFAULT_CSS = """
    PromptScreen { align: center middle; }
    PromptScreen > Vertical { width: 70; height: auto; border: round $accent;
        background: $surface; padding: 0 1; }
    """

    def __init__(self, title: str, value: str) -> None:
        super().__init__()
        self.title_text, self.value = title, value

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Label(self.title_text)
            yield Input(self.value, id="prompt")

    def on_input_submitted(self, event: Input.Submitted) -> None:
        self.dismiss(event.value.strip() or None)


class ExportScreen(ModalScreen[tuple[str, bool] | None]):
    """Alt+S: the dump's file name and a "Single Frame" checkbox (per machine only the
    transition at the cursor's time). Enter or Save returns ``(name, single_frame)``."""

    BINDINGS = [("escape", "dismiss", "cancel")]
    DEFAULT_CSS = """
    ExportScreen { align: center middle; }
    ExportScreen > Vertical { width: 70; height: auto; border: round $accent;
        background: $surface; padding: 0 1; }
    ExportScreen Horizontal { height: auto; }
    """

    def __init__(self, name: str) -> None:
        super().__init__()
        self.value = name

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Label("Export to (in --dir)")
            yield Input(self.value, id="prompt")
            with Horizontal():
                yield Checkbox("Single Frame", id="single")
                yield Button("Save", id="save", variant="primary")

    def _done(self) -> None:
        name = self.query_one(Input).value.strip()
        self.dismiss((name, self.query_one(Checkbox).value) if name else None)

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        self._done()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        event.stop()
        self._done()
