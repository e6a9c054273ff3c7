"""``--view-theme dark|light`` (C.5 #18): the Textual theme plus the panes' own colours.

Why a palette: the panes colour their text with Rich colour names chosen for a dark
background (yellow active states, light greys for inactive ones); on a light background
those are unreadable. The light theme maps each such colour to a darker one when a pane
shows its text (:class:`dbg.ui.pane.Pane`), so the panes keep one set of styles.
"""

from __future__ import annotations

import re

from rich.style import Style
from rich.text import Span, Text

__all__ = ["LIGHT", "THEMES", "recolour"]

#: --view-theme -> the Textual theme
THEMES = {"dark": "textual-dark", "light": "textual-light"}

#: dark-background colour -> its light-background counterpart
LIGHT = {
    "yellow": "dark_goldenrod",
    "grey70": "grey39",
    "grey62": "grey42",
    "grey50": "grey46",
    "grey30": "grey78",
    "cyan": "dark_cyan",
    "green": "dark_green",
    "magenta": "dark_magenta",
    "hot_pink": "deep_pink3",
    "blue": "blue3",
    "grey23": "grey85",  # backgrounds ("on grey23"): the current transition in the log
}

_WORD = re.compile(r"[a-z_0-9]+")


def _style(style: str | Style, palette: dict[str, str], cache: dict) -> str | Style:
    if not isinstance(style, str):
        return style
    out = cache.get(style)
    if out is None:
        out = cache[style] = _WORD.sub(lambda m: palette.get(m.group(0), m.group(0)), style)
    return out


def recolour(text: Text | str, palette: dict[str, str], cache: dict | None = None) -> Text | str:
    """``text`` with its colours mapped through ``palette`` (a copy; str is returned as is)."""
    if not isinstance(text, Text):
        return text
    cache = {} if cache is None else cache
    out = text.copy()
    out.style = _style(out.style, palette, cache)
    out.spans = [Span(s.start, s.end, _style(s.style, palette, cache)) for s in out.spans]
    return out
