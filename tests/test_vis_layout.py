"""The laid-out diagrams, read back from the SVG that ``d2`` drew: every nested machine's box
lies inside its parent's box, below the parent's name (a tab's name box was drawn over by its
child machine in the ``map`` preset: the dagre layout let a child escape its container's top
when labels are large)."""

from __future__ import annotations

import base64
import re
from pathlib import Path

import pytest
from test_vis import mach, render

from dbg.model import MachineDump
from vis.d2 import D2Renderer
from vis.graph import Graph
from vis.presets import preset_map
from vis.render import render_svg

pytestmark = pytest.mark.timeout(120)

_BOX = re.compile(
    r'<g class="([A-Za-z0-9+/=]+)"><g class="shape" ><rect x="([\d.-]+)" y="([\d.-]+)" '
    r'width="([\d.]+)" height="([\d.]+)"[^>]*/></g><text x="[\d.-]+" y="([\d.-]+)"'
    r"[^>]*font-size:(\d+)px[^>]*>([^<]*)</text>"
)


def boxes(svg: str) -> dict[str, tuple[str, float, float, float, float, float]]:
    """D2 path -> (label, x, y, width, height, bottom of the label)."""
    out = {}
    for m in _BOX.finditer(svg):
        path = base64.b64decode(m.group(1)).decode()
        x, y, w, h, baseline = (float(v) for v in m.group(2, 3, 4, 5, 6))
        size = float(m.group(7))
        out[path] = (m.group(8), x, y, w, h, baseline + size * 0.25)  # descenders
    return out


def overlaps(svg: str) -> list[str]:
    """Children that stick out of their parent's box or cover the parent's name."""
    found = []
    b = boxes(svg)
    for path, (label, x, y, w, h, _) in b.items():
        parent = path.rpartition(".")[0]
        if not parent:
            continue
        plabel, px, py, pw, ph, pbottom = b[parent]
        if x < px or y < py or x + w > px + pw or y + h > py + ph:
            found.append(f"{label} sticks out of {plabel}")
        elif y < pbottom:
            found.append(f"{label} covers the name of {plabel}")
    return found


def example_dump() -> list[MachineDump]:
    """What `am start` reports with AM_RPC_DBG=1 and one tab: the tab's machine and its
    handler machine, server-foo with its aRPC machines nested in it."""
    s = ["Start", "Ready"]
    return [
        mach("browser-bar-a133", s, txs=[(["Start"], ["[rpc:connected] server-foo"])]),
        mach("browser-foo-a133", s, parent="browser-bar-a133"),
        mach("server-foo", s, txs=[(["Start"], ["[rpc:connected] browser-bar-a133"])]),
        mach("rc-server-bar-a133", s, tags=["rpc-client"], parent="server-foo"),
        mach("rm-repl-server-foo", s, tags=["rpc-mux"], parent="server-foo"),
        mach("rm-server-foo", s, tags=["rpc-mux"], parent="server-foo"),
        mach("rs-server-foo-1", s, tags=["rpc-server"], parent="rm-server-foo"),
    ]


def test_map_nests_children_below_their_parents_name(tmp_path: Path) -> None:
    render(tmp_path, example_dump(), "--map")
    svg = (tmp_path / "am-vis.svg").read_text()
    assert len(boxes(svg)) == 7
    assert overlaps(svg) == []


def test_the_checker_sees_the_dagre_overlap() -> None:
    """The same input laid out by dagre: the check above would fail (it is why the map is
    laid out by ELK)."""
    src = D2Renderer(Graph.from_dump(example_dump()), preset_map()).render()
    assert overlaps(render_svg(src, elk=False).decode())
