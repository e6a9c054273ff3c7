"""The base of every pane: a widget that repaints only the lines whose text changed.

Why not a ``Static``: a key press changes a few lines of each pane (the cursor's row in the
log, the clocks of the touched states, one count in the machine list), but a ``Static``
renders all of its lines again on any change, and Textual's rendering of a 200x60 screen
was most of a key's cost (~50 ms of ~60 ms). Here each line is kept as its rich ``Text``; a
new text is compared line by line and only the changed lines are rendered (into cached
strips) and refreshed.
"""

from __future__ import annotations

from rich.cells import cell_len
from rich.segment import Segment
from rich.text import Text
from textual.geometry import Region, Size
from textual.strip import Strip
from textual.widget import Widget

from .theme import recolour

__all__ = ["Pane"]

# Widget's descriptors of the border's texts: they refresh the whole widget on every set
_TITLES = {name: Widget.__dict__[name] for name in ("border_title", "border_subtitle")}


class Pane(Widget):
    DEFAULT_CSS = "Pane { height: auto; }"
    #: the light theme's colour map (dbg.ui.theme), set by the app; None: as painted
    palette: dict[str, str] | None = None
    _palette_cache: dict = {}

    def __init__(self, **kw) -> None:
        super().__init__(**kw)
        self._shown: Text | str | None = None
        self._pane_text = Text()
        self._pane_lines: list[Text] = []  # the shown text, a line each
        self._pane_rows: list[Text] = []  # the lines as laid out at _pane_width (long ones wrapped)
        self._pane_strips: list[Strip | None] = []  # rendered rows, None until needed
        self._pane_width = -1
        self._pane_titles: dict[str, object] = {}
        self._pane_border_only = False

    # ----- the border's texts: a change repaints the border's rows, not every line

    def _set_title(self, name: str, title: object) -> None:
        if self._pane_titles.get(name, self) == title:
            return
        self._pane_titles[name] = title
        self._pane_border_only = True
        try:
            _TITLES[name].__set__(self, title)
        finally:
            self._pane_border_only = False

    @property
    def border_title(self) -> str | None:
        return _TITLES["border_title"].__get__(self)

    @border_title.setter
    def border_title(self, title: object) -> None:
        self._set_title("border_title", title)

    @property
    def border_subtitle(self) -> str | None:
        return _TITLES["border_subtitle"].__get__(self)

    @border_subtitle.setter
    def border_subtitle(self, title: object) -> None:
        self._set_title("border_subtitle", title)

    def refresh(self, *regions: Region, repaint: bool = True, layout: bool = False,
                recompose: bool = False) -> Pane:  # fmt: skip
        if getattr(self, "_pane_border_only", False) and not (regions or layout or recompose):
            off, outer = self.content_offset, self.outer_size
            regions = (
                Region(-off.x, -off.y, outer.width, 1),
                Region(-off.x, outer.height - 1 - off.y, outer.width, 1),
            )
        return super().refresh(*regions, repaint=repaint, layout=layout, recompose=recompose)

    @property
    def content(self) -> Text:
        """What is shown (``.plain`` is its text)."""
        return self._pane_text

    def show(self, text: Text | str) -> None:
        if _same(text, self._shown):
            return
        self._shown = text
        if self.palette is not None:
            text = recolour(text, self.palette, Pane._palette_cache)
        self._pane_text = Text(text) if isinstance(text, str) else text
        self._pane_lines = (
            list(self._pane_text.split("\n", allow_blank=True)) if self._pane_text else []
        )
        self._layout(self.size.width)

    def _layout(self, width: int) -> None:
        """Lay the lines out at ``width`` and refresh the rows that differ from before."""
        rows: list[Text] = []
        for line in self._pane_lines:
            if width > 0 and cell_len(line.plain) > width:
                if line.no_wrap or self._pane_text.no_wrap:
                    line = line.copy()
                    line.truncate(width, overflow=line.overflow or self._pane_text.overflow)
                    rows.append(line)
                    continue
                rows.extend(line.wrap(self.app.console, width))
            else:
                rows.append(line)
        old, old_strips = self._pane_rows, self._pane_strips
        self._pane_rows = rows
        if width != self._pane_width:
            self._pane_width = width
            self._pane_strips = [None] * len(rows)
            self.refresh(layout=len(rows) != len(old) and self._auto_height())
            return
        self._pane_strips = [
            old_strips[y] if y < len(old) and _same(old[y], row) else None
            for y, row in enumerate(rows)
        ]
        changed = [y for y, s in enumerate(self._pane_strips) if s is None]
        changed += range(len(rows), len(old))  # rows that are gone
        if len(rows) != len(old) and self._auto_height():
            self.refresh(layout=True)
        elif changed:
            self.refresh(*(Region(0, y, max(width, 1), 1) for y in changed))

    def _auto_height(self) -> bool:
        height = self.styles.height
        return height is None or height.is_auto

    def on_resize(self) -> None:
        if self.size.width != self._pane_width:
            self._layout(self.size.width)

    def get_content_height(self, container: Size, viewport: Size, width: int) -> int:
        if width != self._pane_width:
            self._layout(width)
        return len(self._pane_rows)

    def get_content_width(self, container: Size, viewport: Size) -> int:
        return max((cell_len(line.plain) for line in self._pane_lines), default=0)

    def render_line(self, y: int) -> Strip:
        width, style = self.size.width, self.rich_style
        if width != self._pane_width:
            self._layout(width)
        if y >= len(self._pane_rows):
            return Strip.blank(width, style)
        strip = self._pane_strips[y]
        if strip is None:
            row = self._pane_rows[y]
            segments = Segment.apply_style(row.render(self.app.console, end=""), style)
            strip = self._pane_strips[y] = Strip(segments, cell_len(row.plain))
        return strip.crop_extend(0, width, style)


def _same(a: Text | str | None, b: Text | str | None) -> bool:
    # rich's Text equality leaves out the base style (a greyed line would not repaint)
    if isinstance(a, Text) and isinstance(b, Text):
        return a.plain == b.plain and a.style == b.style and a.spans == b.spans
    return type(a) is type(b) and a == b
