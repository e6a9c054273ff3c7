"""Renderer options and the three presets of the diagram tool: single, bird and map.

Why: a preset decides which machines are drawn fully, which as "half" boxes, and which parts
(states, relations, pipes, tags) appear; the CLI applies one and then only the flags the user
typed on top of it.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

__all__ = ["RenderOptions", "baseline", "preset_bird", "preset_map", "preset_single", "PRESETS"]


@dataclass(slots=True)
class RenderOptions:
    """What to draw. ``machs`` are the requested machines (empty = every machine)."""

    machs: list[str] = field(default_factory=list)
    skip_machs: list[str] = field(default_factory=list)
    #: only these states, when given (the debugger's ``--output-diag-group skip``: a layout
    #: of the selected group's states alone)
    allowlist: list[str] = field(default_factory=list)
    # graph hops from the requested machines to draw fully; -1 = all machines
    distance: int = -1
    # parent-child levels below the requested machines to draw fully
    depth: int = 10
    states: bool = True
    start: bool = True
    ready: bool = True
    exception: bool = True
    inherited: bool = True
    mark_inherited: bool = True
    active: bool = True
    relations: bool = True
    parent_rel: bool = True
    pipes: bool = True
    detailed_pipes: bool = False
    pipe_states: bool = True
    conns: bool = True
    tags: bool = True
    half_conns: bool = True
    half_pipes: bool = True
    half_hierarchy: bool = True
    nest_submachines: bool = False
    # layout engine: ELK, else dagre
    elk: bool = True


def baseline() -> RenderOptions:
    """Everything on except nesting and detailed pipes; all machines; depth 10."""
    return RenderOptions()


def preset_single(opts: RenderOptions | None = None) -> RenderOptions:
    """The requested machines fully, their neighbours as half boxes; Start hidden."""
    o = replace(opts) if opts else baseline()
    o.start = False
    o.distance = 0
    o.depth = 0
    o.states = True
    o.detailed_pipes = True
    o.relations = True
    o.inherited = True
    o.conns = True
    o.parent_rel = True
    o.half_conns = True
    o.half_pipes = True
    return o


def preset_bird(opts: RenderOptions | None = None) -> RenderOptions:
    """Single plus every machine within 3 hops; framework states hidden (not Ready/Exception)."""
    o = preset_single(opts)
    o.distance = 3
    o.inherited = False
    return o


def preset_map(opts: RenderOptions | None = None) -> RenderOptions:
    """A topology map: every machine as a box nested in its parent, RPC links, no states.

    Laid out by ELK, unlike the reference (dagre): with machine names as large as they are
    (font 50), dagre let a nested machine rise over its container's top, covering the name
    of its parent (a tab's box under its own handler machine); ELK reserves the label's
    room in every container.
    """
    o = replace(opts) if opts else baseline()
    o.nest_submachines = True
    o.states = False
    o.pipes = False
    o.start = False
    o.ready = False
    o.exception = False
    o.tags = False
    o.depth = 0
    o.relations = False
    o.elk = True
    return o


PRESETS = {"single": preset_single, "bird": preset_bird, "map": preset_map}
