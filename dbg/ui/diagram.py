"""The current machine's diagram at the cursor's time, drawn by :mod:`vis` into ``--dir``.

Why a cut of every machine's history at the cursor's time: the renderer colours the states
active in each machine's last transition, so cutting there shows that moment, and links to
other machines (RPC, pipes) are those known by then.
"""

from __future__ import annotations

from pathlib import Path

from .diagrams import snapshot
from .session import Session

__all__ = ["render_diagram"]


def render_diagram(session: Session, out_dir: Path) -> Path:
    """Write ``am-dbg-<machine>.svg`` (and ``.d2``) into ``out_dir``; returns the SVG path.
    Raises :class:`vis.render.RenderError` with a one-line message."""
    from vis.presets import RenderOptions, preset_single
    from vis.render import RenderError, render_files

    if session.mach is None:
        raise RenderError("no machine selected")
    dumps = snapshot(session)
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in session.mach)
    out_dir.mkdir(parents=True, exist_ok=True)
    _, svg = render_files(dumps, preset_single(RenderOptions(machs=[session.mach])),
                          out_dir / f"am-dbg-{safe}")  # fmt: skip
    return svg
