"""The current machine's diagram at the cursor's time, drawn by :mod:`vis` into ``--dir``.

Why a cut of every machine's history at the cursor's time: the renderer colours the states
active in each machine's last transition, so cutting there shows that moment, and links to
other machines (RPC, pipes) are those known by then.
"""

from __future__ import annotations

from pathlib import Path

from dbg.model import MachineDump

from .session import Session

__all__ = ["render_diagram"]


def render_diagram(session: Session, out_dir: Path) -> Path:
    """Write ``am-dbg-<machine>.svg`` (and ``.d2``) into ``out_dir``; returns the SVG path.
    Raises :class:`vis.render.RenderError` with a one-line message."""
    from vis.presets import RenderOptions, preset_single
    from vis.render import RenderError, render_files

    if session.mach is None:
        raise RenderError("no machine selected")
    ts = session.now_ts
    dumps = []
    for mach_id in list(session.collector.machines):
        h = session.hist(mach_id)
        if h is None:
            continue
        if mach_id == session.mach:
            end = session.index + 1
        else:
            end = (h.at_time(ts) + 1) if ts else len(h.infos)
        dumps.append(MachineDump(h.record.schema, [f.tx for f in h.infos[:end]]))
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in session.mach)
    out_dir.mkdir(parents=True, exist_ok=True)
    _, svg = render_files(dumps, preset_single(RenderOptions(machs=[session.mach])),
                          out_dir / f"am-dbg-{safe}")  # fmt: skip
    return svg
