"""D2 source for a network graph: machines as containers, states as nodes, links as edges.

Why generated text: the real ``d2`` binary lays out and renders it (see :mod:`vis.render`);
this module only decides what to draw, following the options of :mod:`vis.presets`:

1. machines drawn fully (requested, or near enough by distance/depth): a container labelled
   with the id (yellow border when requested, white when drawn because near), its visible
   states as pill nodes classed active/inactive, relation edges between them, a tags block;
2. "half" machines: bare boxes for machines at the other end of a drawn parent/RPC/pipe link;
3. when specific machines were requested, half boxes for machines linking *into* them.

Node ids are short generated ids (``a``..``9``, ``aa``..); labels carry the real names.
"""

from __future__ import annotations

import re

from dbg.model import MutationType
from vis.graph import Graph, Pipe, is_inherited
from vis.presets import RenderOptions
from vis.styles import D2_HEADER, EDGE_STYLES, state_class

__all__ = ["D2Renderer", "render_d2"]

_ID_CHARS = "abcdefghijklmnopqrstuvwxyz0123456789"
# Short ids must never be read as D2 keywords.
_D2_KEYWORDS = frozenset(
    "shape label icon style near link top left width height class classes vars direction "
    "tooltip constraint grid-rows grid-columns source-arrowhead target-arrowhead "
    "on off true false null".split()
)


def _gen_ids():
    n = 1
    while True:
        idx = [0] * n
        while True:
            s = "".join(_ID_CHARS[i] for i in idx)
            if s not in _D2_KEYWORDS:
                yield s
            pos = n - 1
            while pos >= 0 and idx[pos] == len(_ID_CHARS) - 1:
                idx[pos] = 0
                pos -= 1
            if pos < 0:
                break
            idx[pos] += 1
        n += 1


def _quote(text: str) -> str:
    """A D2 double-quoted string (labels may hold any character; ``$`` would substitute)."""
    for ch in ("\\", '"', "$"):
        text = text.replace(ch, "\\" + ch)
    return '"' + text.replace("\n", "\\n") + '"'


def _css(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_]", "_", name)


class D2Renderer:
    """One rendering of a graph with some options; :meth:`render` returns the D2 text."""

    def __init__(self, graph: Graph, opts: RenderOptions) -> None:
        self.g = graph
        self.o = opts
        self._ids: dict[str, str] = {}
        self._gen = _gen_ids()
        self._edges: list[str] = []
        self._edge_keys: set[tuple[str, str, str]] = set()
        self._halfs: dict[str, None] = {}
        #: set when the diagram can only be laid out by ELK (see :meth:`_add_edge`)
        self.needs_elk = False
        self._dist = graph.distances(opts.machs) if opts.machs else {}
        self._full: set[str] = {m for m in graph.machines if self.should_render_mach(m)}

    # ----- decisions

    def short_id(self, key: str) -> str:
        sid = self._ids.get(key)
        if sid is None:
            sid = self._ids[key] = next(self._gen)
        return sid

    def should_render_mach(self, mach_id: str) -> bool:
        o = self.o
        if mach_id in o.skip_machs or mach_id not in self.g.machines:
            return False
        if not o.machs or mach_id in o.machs:
            return True
        if o.distance == -1 or self._dist.get(mach_id, o.distance + 1) <= o.distance:
            return True
        if o.depth >= 1:
            chain = self.g.ancestors(mach_id)
            for req in o.machs:
                if req in chain and chain.index(mach_id) - chain.index(req) <= o.depth:
                    return True
        return False

    def should_render_state(self, mach_id: str, state: str) -> bool:
        o = self.o
        if mach_id not in self._full or (o.allowlist and state not in o.allowlist):
            return False
        special = (
            (o.start and state == "Start")
            or (o.ready and state == "Ready")
            or (o.exception and state == "Exception")
        )
        if not o.states:
            return special
        if (
            (not o.start and state == "Start")
            or (not o.ready and state == "Ready")
            or (not o.exception and state == "Exception")
        ):
            return False
        index = self.g.machines[mach_id].schema.states_index
        if not o.inherited and is_inherited(state, index):
            return special
        return True

    def mach_path(self, mach_id: str) -> str:
        if self.o.nest_submachines:
            return ".".join(self.short_id("m:" + m) for m in self.g.ancestors(mach_id))
        return self.short_id("m:" + mach_id)

    def state_path(self, mach_id: str, state: str) -> str:
        return self.mach_path(mach_id) + "." + self.short_id("s:" + state)

    # ----- output

    def render(self) -> str:
        out = [D2_HEADER]
        for mach_id in sorted(self._full):
            out.append(self._full_mach(mach_id))
        for mach_id in sorted(self._full):
            self._links_from(mach_id, into_full_only=False)
        if self.o.machs and self._any_half_option():
            for mach_id in sorted(self.g.all_ids() - self._full - set(self.o.skip_machs)):
                self._links_from(mach_id, into_full_only=True)
        # Half boxes (and, when nesting, any ancestor container not drawn otherwise).
        done: set[str] = set(self._full)
        queue = list(self._halfs)
        if self.o.nest_submachines:
            for mach_id in list(self._full) + queue:
                queue.extend(self.g.ancestors(mach_id)[:-1])
        for mach_id in queue:
            if mach_id in done:
                continue
            done.add(mach_id)
            if mach_id not in self._full:
                # Half boxes point at the full machines they link to, too.
                self._links_from(mach_id, into_full_only=True)
            out.append(self._half_mach(mach_id))
        out.append("\n".join(self._edges) + "\n")
        return "".join(out)

    def _any_half_option(self) -> bool:
        o = self.o
        return (
            (o.pipes and o.half_pipes)
            or (o.conns and o.half_conns)
            or (o.parent_rel and o.half_hierarchy)
        )

    def _mach_head(self, mach_id: str, border: str | None) -> list[str]:
        lines = [
            f"{self.mach_path(mach_id)}: {_quote(mach_id)} {{",
            "  label.near: top-center",
            "  style.font-size: 50",
        ]
        if border:
            lines.append(f"  style.stroke: {border}")
        return lines

    def _full_mach(self, mach_id: str) -> str:
        o, g = self.o, self.g
        m = g.machines[mach_id]
        border = None
        if o.machs:
            border = "yellow" if mach_id in o.machs else "white"
        lines = self._mach_head(mach_id, border)
        if o.tags and m.schema.tags:
            # a text node, not a block string: tags may hold any character, even "|"
            text = _quote("\n".join(["Tags"] + ["#" + t for t in m.schema.tags]))
            lines.append(f"  tags-box: {text} {{shape: text; style.font: mono}}")
        index = m.schema.states_index
        names = index + [s for s in m.schema.states if s not in index]
        visible = [s for s in names if self.should_render_state(mach_id, s)]
        for state in visible:
            cls = state_class(
                o.active and g.is_active(mach_id, state),
                is_inherited(state, index),
                state,
                start=o.start,
                ready=o.ready,
                mark_inherited=o.mark_inherited,
            )
            sid = self.short_id("s:" + state)
            lines.append(f"  {sid}: {_quote(state)} {{class: {cls}; style.font-size: 30}}")
        if o.relations:
            lines.extend(self._relations(mach_id, visible))
        lines.append("}\n")
        return "\n".join(lines) + "\n"

    def _relations(self, mach_id: str, visible: list[str]) -> list[str]:
        schema = self.g.machines[mach_id].schema.states
        shown = set(visible)
        lines: list[str] = []
        removes_done: set[frozenset[str]] = set()
        m_cls = "M_" + _css(mach_id)
        for state in visible:
            sdef = schema.get(state)
            if sdef is None:
                continue
            src = self.short_id("s:" + state)

            def edge(
                op: str, target: str, label: str, cls: str, src: str = src, state: str = state
            ) -> None:
                classes = f"[{cls}; {m_cls}; F_{_css(state)}; T_{_css(target)}]"
                dst = self.short_id("s:" + target)
                lines.append(f"  {src} {op} {dst}: {_quote(label)} {{class: {classes}}}")

            for target in dict.fromkeys(sdef.require):
                if target in shown:
                    edge("->", target, "require", "req")
            for target in dict.fromkeys(sdef.add):
                if target in shown:
                    edge("->", target, "add", "add")
            for target in dict.fromkeys(sdef.remove):
                if target not in shown or target == state:
                    continue  # self-removal is not drawn
                other = schema.get(target)
                if other is not None and state in other.remove:
                    pair = frozenset((state, target))
                    if pair in removes_done:
                        continue
                    removes_done.add(pair)
                    edge("<->", target, "double remove", "rem2")
                else:
                    edge("->", target, "remove", "rem")
        return lines

    def _half_mach(self, mach_id: str) -> str:
        return "\n".join(self._mach_head(mach_id, None) + ["}\n"]) + "\n"

    # ----- links between machines

    def _add_edge(self, src: str, dst: str, label: str, style: str) -> None:
        key = (src, dst, label)
        if key in self._edge_keys:
            return
        self._edge_keys.add(key)
        if src.startswith(dst + ".") or dst.startswith(src + "."):
            # A container linked with its own descendant: only ELK can lay that out.
            self.needs_elk = True
        self._edges.append(f"{src} -> {dst}: {_quote(label)} {{{EDGE_STYLES[style]}}}")

    def _reach(self, target: str, half_ok: bool) -> bool:
        """Whether a link to ``target`` is drawn; marks it as a half box when needed."""
        if target in self.o.skip_machs:
            return False
        if target in self._full:
            return True
        if half_ok:
            self._halfs.setdefault(target, None)
            return True
        return False

    def _links_from(self, mach_id: str, into_full_only: bool) -> None:
        o, g = self.o, self.g
        # parent
        parent = g.parents.get(mach_id)
        if parent and o.parent_rel and not o.nest_submachines:
            half_ok = o.half_hierarchy and not into_full_only
            if self._reach(parent, half_ok):
                self._halfs_if_needed(mach_id, into_full_only)
                self._add_edge(self.mach_path(mach_id), self.mach_path(parent), "parent", "parent")
        # rpc: client -> server
        if o.conns:
            for client, server in sorted(g.rpc):
                if client != mach_id:
                    continue
                if self._reach(server, o.half_conns and not into_full_only):
                    self._halfs_if_needed(mach_id, into_full_only)
                    self._add_edge(self.mach_path(client), self.mach_path(server), "rpc", "rpc")
        # pipes
        if o.pipes:
            for (src, dst), pipes in sorted(g.pipes.items()):
                if src != mach_id or src == dst or not pipes:
                    continue
                if not self._reach(dst, o.half_pipes and not into_full_only):
                    continue
                self._halfs_if_needed(mach_id, into_full_only)
                for pipe in pipes:
                    self._pipe_edge(src, dst, pipe)

    def _halfs_if_needed(self, mach_id: str, into_full_only: bool) -> None:
        if into_full_only and mach_id not in self._full:
            self._halfs.setdefault(mach_id, None)

    def _pipe_edge(self, src: str, dst: str, pipe: Pipe) -> None:
        if not self.o.detailed_pipes:
            self._add_edge(self.mach_path(src), self.mach_path(dst), "pipes", "pipes")
            return
        a = self._pipe_end(src, pipe.from_state)
        b = self._pipe_end(dst, pipe.to_state)
        if pipe.mut == MutationType.REMOVE:
            self._add_edge(a, b, "remove", "pipe-remove")
        else:
            self._add_edge(a, b, "add", "pipe-add")

    def _pipe_end(self, mach_id: str, state: str) -> str:
        # A hidden or unknown state falls back to its machine's box.
        m = self.g.machines.get(mach_id)
        known = m is not None and (state in m.schema.states or state in m.schema.states_index)
        if state and known and self.should_render_state(mach_id, state):
            return self.state_path(mach_id, state)
        return self.mach_path(mach_id)


def render_d2(graph: Graph, opts: RenderOptions) -> str:
    """The D2 source of ``graph`` drawn with ``opts``."""
    return D2Renderer(graph, opts).render()
