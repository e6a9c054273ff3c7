"""The base of every pane: a Static that repaints only when its text changed.

Why: panes are repainted from the session up to 30 times a second while telemetry streams
in; skipping identical text and re-layout (every pane has a fixed size) keeps a frame cheap.
"""

from __future__ import annotations

from rich.text import Text
from textual.widgets import Static

from .theme import recolour

__all__ = ["Pane"]


class Pane(Static):
    _shown: Text | str | None = None
    #: the light theme's colour map (dbg.ui.theme), set by the app; None: as painted
    palette: dict[str, str] | None = None
    _palette_cache: dict = {}

    def show(self, text: Text | str) -> None:
        if text == self._shown:
            return
        self._shown = text
        if self.palette is not None:
            text = recolour(text, self.palette, Pane._palette_cache)
        self.update(text, layout=False)
