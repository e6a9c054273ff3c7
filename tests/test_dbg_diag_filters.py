"""``--output-diag-group hide|skip`` and ``--output-diag-tx called|mutated|touched|relations``
(C.2, C.5 #19): what the machine diagram makes of the selected schema group and of the
cursor's transition. ``skip`` is a layout of the group's states alone (the D2 text); ``hide``
and the transition's dimming are CSS over the cached layout (no d2 run), checked as text and,
once, in Chromium: the rules must reach the SVG's elements."""

from __future__ import annotations

from pathlib import Path

import pytest
from test_dbg_ui import Recorder, _mach
from test_vis import parse_d2

from dbg.collector import Collector
from dbg.model import Relation
from dbg.ui.diagrams import DIM, diag_filters, snapshot, write_diagrams
from dbg.ui.session import Session

pytestmark = pytest.mark.timeout(120)
CHROMIUM = "/usr/bin/chromium"


def grouped() -> Collector:
    """m1 with groups; its last transition adds Foo (requires Ready, removes Bar)."""
    rec = Recorder()
    m = rec.attach(_mach("m1", steps=True), full=True)
    m.add(["Start", "Ready"])
    m.add("Bar")
    m.add("Foo")
    c = rec.flush()
    schema = c.machines["m1"].schema
    idx = schema.states_index
    schema.groups = {"Work": [idx.index("Foo"), idx.index("Bar")]}
    schema.groups_order = ["Work"]
    return c


def at_newest(c: Collector, group: str = "") -> Session:
    s = Session(c, tail=False)
    s.goto("mach://m1")
    s.last()
    s.group = group
    return s


def layout_d2(out: dict):
    live = out["mach"][0]
    return parse_d2(live.with_name(live.name.removesuffix(".active.svg") + ".d2").read_text())


def test_filters_at_the_cursor_per_mode() -> None:
    s = at_newest(grouped(), "Work")
    f = diag_filters(s, "hide", "called")
    assert (f.group, f.group_mode, f.lit, f.rels) == ({"Foo", "Bar"}, "hide", {"Foo"}, set())
    assert diag_filters(s, "skip", "mutated").lit == {"Foo", "Bar"}  # Bar removed
    touched = diag_filters(s, "hide", "touched")
    # the steps name Foo and Bar (Ready was active already: its requirement took no step)
    assert touched.lit == {"Foo", "Bar"} and not touched.rels
    rel = diag_filters(s, "hide", "relations")
    assert rel.lit == touched.lit
    assert rel.rels == {("Foo", "Bar", Relation.REMOVE)}
    off = diag_filters(s, "off", "off")
    assert (off.group, off.lit) == (None, None)
    s.group = ""  # "all": no group
    assert diag_filters(s, "hide", "off").group is None


def test_skip_lays_out_the_group_alone(tmp_path: Path) -> None:
    s = at_newest(grouped(), "Work")
    whole = layout_d2(write_diagrams(snapshot(s), "m1", 2, tmp_path))
    assert {"Start", "Ready", "Foo", "Bar", "Msg"} <= set(whole.machs["m1"].states)
    out = write_diagrams(snapshot(s), "m1", 2, tmp_path, filters=diag_filters(s, "skip", "off"))
    alone = layout_d2(out)
    assert set(alone.machs["m1"].states) == {"Foo", "Bar"}
    assert alone.machs["m1"].rels == [("Foo", "<->", "Bar", "double remove")]
    assert out["mach"][1]  # a layout of its own: d2 ran
    # hide: the whole layout again (cached: no d2 run), Start and its edges hidden by CSS
    out = write_diagrams(snapshot(s), "m1", 2, tmp_path, filters=diag_filters(s, "hide", "off"))
    assert set(layout_d2(out).machs["m1"].states) == set(whole.machs["m1"].states)
    assert not out["mach"][1]
    css = out["mach"][0].read_text()
    assert 'g[class~="M_m1"][class~="F_Ready"]' in css and "display: none" in css


def test_tx_modes_dim_what_the_transition_did_not_involve(tmp_path: Path) -> None:
    s = at_newest(grouped())
    out = write_diagrams(snapshot(s), "m1", 2, tmp_path, filters=diag_filters(s, "hide", "called"))
    css = out["mach"][0].read_text().split('id="am-dbg-active"')[1]
    assert f"{{opacity: {DIM}}}" in css and "display: none" not in css
    out = write_diagrams(
        snapshot(s), "m1", 2, tmp_path, filters=diag_filters(s, "hide", "relations")
    )
    css = out["mach"][0].read_text().split('id="am-dbg-active"')[1]
    assert 'g[class~="M_m1"][class~="rem2"][class~="F_Bar"][class~="T_Foo"]' in css
    assert 'g[class~="M_m1"][class~="rem"][class~="F_Foo"][class~="T_Bar"]' in css
    assert "F_Ready" not in css.split("{opacity: 1}")[0].rsplit("}", 1)[-1]


def test_the_css_reaches_the_svg_in_chromium(tmp_path: Path) -> None:
    """Opened in Chromium: Msg (not touched) dimmed, Foo (called) not; the Foo-Bar remove
    edge (a relation step) lit, Foo's require edge dimmed; with hide and the Work group,
    Start is not shown."""
    from playwright.sync_api import sync_playwright

    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: apt-get install chromium")
    s = at_newest(grouped(), "Work")
    f = diag_filters(s, "hide", "relations")
    out = write_diagrams(snapshot(s), "m1", 2, tmp_path, filters=f)
    d2 = layout_d2(out)
    labels = {"Foo", "Msg", "Start"}
    assert labels <= set(d2.machs["m1"].states)
    js = """labels => Object.fromEntries(labels.map(l => {
        const t = [...document.querySelectorAll('text')].find(t => t.textContent === l);
        const g = t.closest('g');
        return [l, [getComputedStyle(g).opacity, getComputedStyle(g).display]];
    }))"""
    edges_js = """() => [...document.querySelectorAll('g[class~="M_m1"]')].map(g =>
        [g.getAttribute('class').split(' ').slice(1).join(' '), getComputedStyle(g).opacity])"""
    args = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
            "--disable-component-update", "--disable-sync", "--no-first-run"]  # fmt: skip
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=args)
        try:
            page = b.new_page()
            page.goto(out["mach"][0].resolve().as_uri())
            seen = page.evaluate(js, sorted(labels))
            edges = dict(page.evaluate(edges_js))
        finally:
            b.close()
    assert seen["Foo"] == ["1", "inline"]
    assert seen["Msg"][0] == str(DIM)
    assert seen["Start"][1] == "none"
    rem = [k for k in edges if k.startswith("rem2 ")]
    assert len(rem) == 1 and edges[rem[0]] == "1"
    assert edges["req M_m1 F_Foo T_Ready"] == str(DIM)
