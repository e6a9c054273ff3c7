"""``--output-diagrams N`` (C.5 #19): the current machine's diagram and the network graph,
kept current in ``--dir`` as the cursor moves.

Files: ``diagrams/mach-<id>-<level>-<hash>.{d2,svg}`` (the layout, every state drawn
inactive), ``diagrams/mach-<id>-<level>-<hash>.active.svg`` (that layout with the states
active at the cursor's time highlighted), ``diagrams/graph-<hash>.{d2,svg}`` (every machine and
their links, the ``map`` preset), and the symlinks ``am-vis-mach.svg`` / ``am-vis-graph.svg``.

Why a hash of the D2 source, with states drawn inactive: running ``d2`` takes tens of
milliseconds to seconds, while the cursor moves many times a second. The layout depends only
on the schema and the links, so ``d2`` runs once per layout; moving the cursor only rewrites
the colours of the active states, through a CSS block added to the cached SVG. As with the
text outputs, the app only marks the diagrams stale; a timer takes a snapshot at most every
:data:`DEBOUNCE` seconds and a worker thread renders and writes. ``d2`` missing or failing is
one status line and the UI keeps going.

The same CSS block carries ``--output-diag-tx`` (what the cursor's transition did not involve
is dimmed) and ``--output-diag-group hide`` (the states outside the selected schema group
are hidden); ``--output-diag-group skip`` is a layout of its own, of the group's states alone
(:func:`diag_filters`, :func:`filter_css`).
"""

from __future__ import annotations

import base64
import hashlib
import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from dbg.model import MachineDump, Relation, StepType

from .groups import ALL, group_states
from .outputs import BackgroundWriter
from .session import Session

__all__ = [
    "DiagFilters",
    "DiagramOutputs",
    "GROUP_MODES",
    "LEVELS",
    "TX_MODES",
    "diag_filters",
    "write_diagrams",
]

DEBOUNCE = 0.5  # seconds between snapshots at most
#: --output-diagrams levels: 1 simple (own states, Ready and Exception), 2 detailed (inherited
#: states and Start too); 3 (submachines nested) draws as 2, nesting is the graph's job here
LEVELS = (0, 1, 2, 3)

#: --output-diag-group: with a schema group selected, "hide" keeps the layout of every state
#: and hides the others (no d2 run), "skip" lays out the group's states alone
GROUP_MODES = ("hide", "skip", "off")
#: --output-diag-tx: which states of the cursor's transition stay lit, the others dimmed:
#: the called ones, the mutated (added or removed), the touched (any step named them), or
#: the touched plus the relation edges its steps went through ("relations")
TX_MODES = ("called", "mutated", "touched", "relations", "off")
DIM = 0.25  # opacity of what the cursor's transition did not involve

# Relation step kinds -> the renderer's edge classes (vis.d2; "after" is not drawn).
_REL_CLASSES = {Relation.REQUIRE: ("req",), Relation.ADD: ("add",),
                Relation.REMOVE: ("rem", "rem2")}  # fmt: skip


@dataclass(frozen=True, slots=True)
class DiagFilters:
    """What the machine diagram makes of the cursor's transition and the selected group
    (C.5 #19). ``group``: the group's states (None: no group selected); ``lit``: the states
    the transition involved (None: nothing dimmed); ``rels``: the relation edges its steps
    went through, as (from, to, relation)."""

    group: frozenset[str] | None = None
    group_mode: str = "hide"
    lit: frozenset[str] | None = None
    rels: frozenset[tuple[str, str, Relation]] = frozenset()


def diag_filters(session: Session, group_mode: str, tx_mode: str) -> DiagFilters:
    """The filters at the cursor (call it where the session is not changing)."""
    h, info = session.current, session.info
    group = None
    if h is not None and group_mode != "off" and session.group != ALL:
        in_group = group_states(h.record.schema, session.group)
        if in_group is not None:
            names = h.states
            group = frozenset(names[i] for i in in_group if 0 <= i < len(names))
    if h is None or info is None or tx_mode == "off":
        return DiagFilters(group, group_mode)
    names = h.states
    idxs: tuple[int, ...] | frozenset[int] = {
        "called": info.called,
        "mutated": (*info.added, *info.removed),
    }.get(tx_mode, info.touched)
    lit = frozenset(names[i] for i in idxs if 0 <= i < len(names))
    rels = set()
    if tx_mode == "relations":
        for st in info.tx.steps:
            if st.type & StepType.RELATION:
                a = st.from_state or _name(names, st.from_state_idx)
                b = st.to_state or _name(names, st.to_state_idx)
                if a and b and st.rel_type in _REL_CLASSES:
                    rels.add((a, b, Relation(st.rel_type)))
    return DiagFilters(group, group_mode, lit, frozenset(rels))


def _name(names: list[str], i: int) -> str:
    return names[i] if 0 <= i < len(names) else ""


def _css_name(name: str) -> str:
    """A state name as the renderer puts it into an edge's classes (``F_<name>``)."""
    return re.sub(r"[^A-Za-z0-9_]", "_", name)


def filter_css(mach: str, nodes: dict[str, str], f: DiagFilters, skipped: bool) -> str:
    """CSS that hides the states outside the group (``hide``) and dims what the cursor's
    transition did not involve; ``nodes``: state name -> its d2 class, for the states drawn;
    ``skipped``: the layout holds the group's states only (nothing to hide)."""
    m = f'g[class~="M_{_css_name(mach)}"]'
    rules = []
    if f.group is not None and not skipped:
        for state, node in nodes.items():
            if state not in f.group:
                cs = _css_name(state)
                rules.append(f'g[class~="{node}"], {m}[class~="F_{cs}"], '
                             f'{m}[class~="T_{cs}"] {{display: none}}')  # fmt: skip
    if f.lit is not None:
        for state, node in nodes.items():
            if state not in f.lit:
                rules.append(f'g[class~="{node}"] {{opacity: {DIM}}}')
        rules.append(f"{m} {{opacity: {DIM}}}")  # relation edges, unless lit below
        lit_edges = []
        if f.rels:
            for a, b, rel in sorted(f.rels):
                for cls in _REL_CLASSES[rel]:
                    ends = [(a, b)] if cls != "rem2" else [(a, b), (b, a)]
                    for x, y in ends:
                        lit_edges.append(f'{m}[class~="{cls}"][class~="F_{_css_name(x)}"]'
                                         f'[class~="T_{_css_name(y)}"]')  # fmt: skip
        else:  # no relation steps (another mode, or none recorded): edges between lit states
            lit_names = sorted(s for s in f.lit if s in nodes)
            for x in lit_names:
                for y in lit_names:
                    if x != y:
                        lit_edges.append(f'{m}[class~="F_{_css_name(x)}"]'
                                         f'[class~="T_{_css_name(y)}"]')  # fmt: skip
        if lit_edges:
            rules.append(",\n".join(lit_edges) + " {opacity: 1}")
    return "\n".join(rules)


# The look of an active state node per class (vis.styles keeps the same colours for d2).
_ACTIVE = {
    "_1": ("yellow", "black"),
    "_1i": ("yellow", "black"),
    "_1s": ("#329241", "black"),
    "_1r": ("deepskyblue", "black"),
    "_1e": ("red", "white"),
}


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name)


def _node_class(path: str) -> str:
    """The CSS class d2 gives the ``<g>`` of the node at D2 ``path`` (its base64)."""
    return base64.b64encode(path.encode()).decode()


def overlay_css(nodes: dict[str, str]) -> str:
    """CSS that paints the nodes (d2 class -> state class such as ``_1r``) as active."""
    rules = []
    for node, cls in nodes.items():
        fill, text = _ACTIVE[cls]
        sel = f'g[class~="{node}"]'
        rules.append(
            f"{sel} > .shape > :first-child {{fill: {fill} !important}}"
            f" {sel} > text {{fill: {text} !important}}"
        )
    return "\n".join(rules)


def with_overlay(svg: bytes, css: str) -> bytes:
    """``svg`` with ``css`` added in a ``<style>`` just before its closing tag."""
    end = svg.rfind(b"</svg>")
    if end < 0 or not css:
        return svg
    block = b'<style type="text/css" id="am-dbg-active"><![CDATA[\n' + css.encode()
    return svg[:end] + block + b"\n]]></style>" + svg[end:]


def _link(out_dir: Path, name: str, target: Path) -> None:
    """Point ``out_dir/name`` at ``target`` (relative), replacing an old link atomically."""
    link = out_dir / name
    tmp = out_dir / f".{name}.{os.getpid()}.tmp"
    tmp.unlink(missing_ok=True)
    os.symlink(os.path.relpath(target, out_dir), tmp)
    os.replace(tmp, link)


def _cached(src: str, stem: str, diag_dir: Path, elk: bool) -> tuple[Path, bool]:
    """The SVG of D2 ``src`` under ``diag_dir/<stem>-<hash>.svg``, rendered once."""
    from vis.render import render_svg, write_all

    h = hashlib.blake2b(src.encode(), digest_size=6).hexdigest()
    svg = diag_dir / f"{stem}-{h}.svg"
    if svg.is_file():
        return svg, False
    data = render_svg(src, elk=elk)
    write_all({svg.with_suffix(".d2"): src.encode(), svg: data})
    return svg, True


def write_diagrams(
    dumps: list[MachineDump],
    mach: str | None,
    level: int,
    out_dir: Path,
    text: bool = False,
    filters: DiagFilters | None = None,
) -> dict:
    """Render (when the layout changed) and write the diagrams of ``dumps`` cut at the
    cursor; returns ``{"mach": (path, d2_ran), "graph": (path, d2_ran)}`` for what exists.
    With ``text``, also ``graph.md`` and ``graph.xml`` (``--output-graph``; no d2);
    ``filters``: the group and the cursor's transition (:func:`diag_filters`).
    Raises :class:`vis.render.RenderError` (one line) or ``OSError``."""
    from vis.d2 import D2Renderer
    from vis.graph import Graph, is_inherited
    from vis.presets import RenderOptions, preset_map, preset_single
    from vis.styles import state_class

    f = filters or DiagFilters()
    g = Graph.from_dump(dumps)
    out: dict = {}
    if text and g.machines:
        from vis.inspect_dump import inspect_markdown, inspect_xml
        from vis.render import write_all

        write_all({
            out_dir / "graph.md": inspect_markdown(g).encode(),
            out_dir / "graph.xml": inspect_xml(g).encode(),
        })  # fmt: skip
    if not level:
        return out
    diag_dir = out_dir / "diagrams"
    diag_dir.mkdir(parents=True, exist_ok=True)
    if mach is not None and mach in g.machines:
        lvl = min(level, 2)
        opts = preset_single(RenderOptions(machs=[mach]))
        opts.active = False  # the layout; active states are an overlay
        if lvl == 1:
            opts.inherited = False
        else:
            opts.start = True
        stem = f"mach-{_safe(mach)}-{lvl}"
        skipped = f.group is not None and f.group_mode == "skip"
        if skipped:  # a layout of the group's states alone (named after them: cached)
            assert f.group is not None
            opts.allowlist = sorted(f.group)
            h = hashlib.blake2b(" ".join(opts.allowlist).encode(), digest_size=4).hexdigest()
            stem = f"mach-{_safe(mach)}-g{h}-{lvl}"
        r = D2Renderer(g, opts)
        src = r.render()
        base, ran = _cached(src, stem, diag_dir, opts.elk or r.needs_elk)
        index = g.machines[mach].schema.states_index
        active, drawn = {}, {}
        for state in index:
            if not r.should_render_state(mach, state):
                continue
            node = _node_class(r.state_path(mach, state))
            drawn[state] = node
            if g.is_active(mach, state):
                inherited = is_inherited(state, index)
                cls = state_class(True, inherited, state, start=opts.start, ready=opts.ready,
                                  mark_inherited=opts.mark_inherited)  # fmt: skip
                active[node] = cls
        css = "\n".join(c for c in (overlay_css(active), filter_css(mach, drawn, f, skipped)) if c)
        live = base.with_name(base.stem + ".active.svg")
        data = with_overlay(base.read_bytes(), css)
        if not live.is_file() or live.read_bytes() != data:
            tmp = live.with_name(f".{live.name}.tmp")
            tmp.write_bytes(data)
            os.replace(tmp, live)
        _link(out_dir, "am-vis-mach.svg", live)
        out["mach"] = (live, ran)
    if g.machines:
        opts = preset_map()
        r = D2Renderer(g, opts)
        src = r.render()
        svg, ran = _cached(src, "graph", diag_dir, opts.elk or r.needs_elk)
        _link(out_dir, "am-vis-graph.svg", svg)
        out["graph"] = (svg, ran)
    return out


def snapshot(session: Session) -> list[MachineDump]:
    """Every machine's history cut at the cursor's time (the current one at the cursor).

    A machine whose telemetry connection ended by then is gone, and so are the pipes to and
    from it (:attr:`MachineDump.gone_ns`), as in the log reader (:mod:`.pipes`): the current
    machine's newest transition stands for now, so every machine gone by now counts there.
    """
    ts = session.now_ts
    cur = session.current
    newest = cur is not None and session.index == len(cur.infos) - 1 and not cur.pending
    dumps = []
    for mach_id, rec in list(session.collector.machines.items()):
        h = session.hist(mach_id)
        if h is None:
            continue
        if mach_id == session.mach:
            end = session.index + 1
        else:
            end = (h.at_time(ts) + 1) if ts else len(h.infos)
        gone = rec.gone_ns if rec.gone_ns and (newest or rec.gone_ns <= ts * 1e9) else 0
        dumps.append(MachineDump(h.record.schema, [f.tx for f in h.infos[:end]], gone_ns=gone))
    return dumps


class DiagramOutputs(BackgroundWriter):
    """Keeps ``--dir``'s diagrams at the cursor; ``on_written(types)`` (from a worker
    thread) hears which of ``mach`` / ``graph`` changed (the web viewer refreshes)."""

    def __init__(
        self,
        session: Session,
        out_dir: Path,
        level: int,
        on_written: Callable[[set[str]], None] | None = None,
        text: bool = False,
        group_mode: str = "hide",
        tx_mode: str = "relations",
    ) -> None:
        if level not in LEVELS:
            raise ValueError(f"diagram level {level} is not one of 0, 1, 2, 3")
        if group_mode not in GROUP_MODES:
            raise ValueError(f"diagram group mode {group_mode!r}: one of {', '.join(GROUP_MODES)}")
        if tx_mode not in TX_MODES:
            raise ValueError(f"diagram tx mode {tx_mode!r}: one of {', '.join(TX_MODES)}")
        self.text = text
        self.group_mode = group_mode
        self.tx_mode = tx_mode
        self.session = session
        self.out_dir = out_dir
        self.level = level
        self.on_written = on_written
        self.renders = 0  # snapshots written (for tests)
        self.d2_runs = 0  # d2 processes run (for tests: the cache works)
        self._key: tuple = ()
        self._written: dict[str, bytes] = {}

    def tick(self, notify: Callable[[str], None] | None = None) -> None:
        if not self._claim():
            return
        s = self.session
        h = s.current
        recs = list(s.collector.machines.values())
        gone = sum(1 for r in recs if r.gone_ns)  # a machine vanished: its pipes end
        key = (s.mach, s.index, len(h.infos) if h else 0, len(recs), gone, s.group)
        if key == self._key and not self.error:
            return
        self._key = key
        filters = diag_filters(s, self.group_mode, self.tx_mode)
        self._start(self._flush, snapshot(s), s.mach, filters, notify=notify)

    def _flush(self, dumps: list[MachineDump], mach: str | None, filters: DiagFilters) -> str:
        from vis.render import RenderError

        try:
            out = write_diagrams(dumps, mach, self.level, self.out_dir, self.text, filters)
        except (RenderError, OSError) as err:
            return f"diagrams: {err}"
        self.renders += 1
        changed = set()
        for kind, (path, ran) in out.items():
            self.d2_runs += ran
            data = path.read_bytes()
            if self._written.get(kind) != data:
                self._written[kind] = data
                changed.add(kind)
        if changed and self.on_written is not None:
            self.on_written(changed)
        return ""
