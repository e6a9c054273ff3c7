"""Text views of a dump's graph: Markdown for people and XML for tools (``am vis inspect-dump``).

Why: a quick, diffable summary of every machine (time, parent, states, RPC links, pipes)
without rendering a diagram; the XML nests machines under their parents so tools (and the
debugger's graph output) can walk the hierarchy.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET

from dbg.model import MutationType
from vis.graph import Graph

__all__ = ["inspect_markdown", "inspect_xml"]


def _mut_name(mut: MutationType) -> str:
    return "add" if mut == MutationType.ADD else "remove"


def _rpc_peers(g: Graph, mach_id: str) -> list[str]:
    """Servers this machine is an RPC client of."""
    return sorted({server for client, server in g.rpc if client == mach_id})


def inspect_markdown(g: Graph) -> str:
    """Per machine (sorted by id): time, parent, states, RPC servers and pipes."""
    out = ["# am-vis inspect-dump\n\n"]
    for mach_id in sorted(g.all_ids()):
        out.append(f"## {mach_id}\n")
        m = g.machines.get(mach_id)
        if m is not None:
            out.append(f"Time: t{g.time_sum(mach_id)}\n")
        parent = g.parents.get(mach_id)
        out.append(f"Parent: {parent}\n\n" if parent else "\n")
        if m is not None and m.schema.states_index:
            states = sorted(set(m.schema.states_index) | set(m.schema.states))
            out.append("### States\n" + "".join(f"- {s}\n" for s in states) + "\n")
        peers = _rpc_peers(g, mach_id)
        if peers:
            out.append("### RPC\n" + "".join(f"- {p}\n" for p in peers) + "\n")
        targets = sorted(dst for (src, dst), pipes in g.pipes.items() if src == mach_id and pipes)
        if targets:
            out.append("### Pipes\n\n")
            for dst in targets:
                lines = sorted(
                    f"[{_mut_name(p.mut)}] {p.from_state} -> {p.to_state}"
                    for p in g.pipes[(mach_id, dst)]
                )
                out.append(f"#### {dst}\n" + "".join(f"- {ln}\n" for ln in lines) + "\n")
        out.append("-----\n\n")
    return "".join(out)


def inspect_xml(g: Graph) -> str:
    """``<graph>`` with ``<machine>`` elements nested under their parents."""
    root = ET.Element("graph")
    ids = g.all_ids()
    children: dict[str, list[str]] = {}
    roots = []
    for mach_id in sorted(ids):
        parent = g.parents.get(mach_id)
        if parent and parent in ids and parent != mach_id and _no_cycle(g, mach_id):
            children.setdefault(parent, []).append(mach_id)
        else:
            roots.append(mach_id)

    def add(parent_el: ET.Element, mach_id: str, level: int = 1) -> None:
        el = ET.SubElement(parent_el, "machine", id=mach_id, time=str(g.time_sum(mach_id)))
        m = g.machines.get(mach_id)
        if m is not None:
            clocks = m.latest_clocks()
            for i, name in enumerate(m.schema.states_index):
                tick = clocks[i] if i < len(clocks) else 0
                sdef = m.schema.states.get(name)
                st = ET.SubElement(el, "state", tick=str(tick))
                if tick % 2:
                    st.set("active", "1")
                if sdef is not None and sdef.auto:
                    st.set("auto", "1")
                if sdef is not None and sdef.multi:
                    st.set("multi", "1")
                st.text = name
                if sdef is None:
                    continue
                for rel in ("require", "add", "remove", "after"):
                    for target in sorted(set(getattr(sdef, rel))):
                        ET.SubElement(st, rel).text = target
                if len(st):
                    # the name on its own line, above the relations (indent leaves text as is)
                    pad = "\n" + "  " * (level + 2)
                    st.text = pad + name + pad
        for peer in _rpc_peers(g, mach_id):
            ET.SubElement(el, "rpc").text = peer
        for (src, dst), pipes in sorted(g.pipes.items()):
            if src != mach_id:
                continue
            for p in pipes:
                pe = ET.SubElement(
                    el, "pipe", to=dst, add="1" if p.mut == MutationType.ADD else "0"
                )
                pe.set("as", p.from_state)
                pe.text = p.to_state
        for tag in m.schema.tags if m is not None else []:
            ET.SubElement(el, "tag").text = tag
        for child in children.get(mach_id, []):
            add(el, child, level + 1)

    for mach_id in roots:
        add(root, mach_id)
    ET.indent(root)
    return ET.tostring(root, encoding="unicode") + "\n"


def _no_cycle(g: Graph, mach_id: str) -> bool:
    # A parent loop (a -> b -> a) would hide both machines; such machines stay at the root.
    seen = {mach_id}
    cur = g.parents.get(mach_id)
    while cur:
        if cur in seen:
            return False
        seen.add(cur)
        cur = g.parents.get(cur)
    return True
