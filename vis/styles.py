"""The look of the diagrams: D2 theme, state classes and edge styles.

Why in one place: the renderer only picks class names; colours live here, so the active-state
highlight, relation colours and link styles can be changed without touching the graph logic.
Viewers can restyle the SVG through the CSS classes that D2 copies into it (state classes such
as ``_1``, relation classes ``req``/``add``/``rem``/``rem2`` plus ``M_<mach> F_<from> T_<to>``).
"""

from __future__ import annotations

__all__ = ["D2_HEADER", "EDGE_STYLES", "LAYOUT_PAD", "state_class"]

# Dark Mauve theme with black machine fills and grey borders.
THEME_ID = 200
LAYOUT_PAD = 5

# Relation edges get their look from these classes (see EDGE_STYLES for machine links).
_CLASSES = """\
classes: {
  # own states: active / inactive
  _1: {style: {font-color: black; fill: yellow; border-radius: 999; double-border: true}}
  _0: {style: {stroke: white; border-radius: 999; double-border: true}}
  # inherited (framework) states
  _1i: {style: {font-color: black; fill: yellow; border-radius: 999}}
  _0i: {style: {border-radius: 999}}
  # Start
  _1s: {style: {font-color: black; fill: "#329241"; border-radius: 999}}
  _0s: {style: {border-radius: 999}}
  # Ready
  _1r: {style: {font-color: black; fill: deepskyblue; border-radius: 999}}
  _0r: {style: {border-radius: 999}}
  # an active error state (Exception, Err*)
  _1e: {style: {font-color: white; fill: red; border-radius: 999}}
  # relations
  req: {
    style: {stroke: "#ADD8E6"; stroke-width: 2}
    target-arrowhead: {shape: circle; style.filled: true}
  }
  add: {
    style: {stroke: "#FFA500"; stroke-width: 2}
    target-arrowhead: {shape: triangle; style.filled: true}
  }
  rem: {
    style: {stroke: "#DA70D6"; stroke-width: 2}
    source-arrowhead: {shape: diamond; style.filled: true}
    target-arrowhead: {shape: diamond; style.filled: true}
  }
  rem2: {
    style: {stroke: "#DA70D6"; stroke-width: 4}
    source-arrowhead: {shape: diamond; style.filled: true}
    target-arrowhead: {shape: diamond; style.filled: true}
  }
}
"""

D2_HEADER = f"""\
vars: {{
  d2-config: {{
    theme-id: {THEME_ID}
    pad: {LAYOUT_PAD}
    theme-overrides: {{
      N7: black
      # machine borders
      B1: "#5F5C5C"
      B2: grey
      B3: "#6C7086"
      # machine backgrounds
      B4: "#262424"
      B5: "#45475A"
      B6: "#313244"
      AA2: "#f38BA8"
      AA4: "#45475A"
      AA5: "#313244"
      AB4: "#45475A"
      AB5: "#313244"
    }}
  }}
}}
{_CLASSES}direction: right

"""

# Links between machines (and pipe edges between states of different machines).
EDGE_STYLES = {
    "parent": "style.stroke: white; style.stroke-width: 8; target-arrowhead.shape: circle",
    "rpc": "style.stroke: orange; style.stroke-width: 4",
    "pipe-add": (
        "style.stroke: orange; style.stroke-dash: 3; "
        "target-arrowhead.shape: triangle; target-arrowhead.style.filled: false"
    ),
    "pipe-remove": (
        'style.stroke: "#DA70D6"; style.stroke-dash: 3; '
        "source-arrowhead.shape: diamond; target-arrowhead.shape: diamond"
    ),
    "pipes": "style.stroke: white",
}


def state_class(
    active: bool, inherited: bool, state: str, *, start: bool, ready: bool, mark_inherited: bool
) -> str:
    """The class of a state node: ``_1``/``_0`` plus a suffix for special states."""
    base = "_1" if active else "_0"
    if active and (state == "Exception" or state.startswith("Err")):
        return "_1e"
    if ready and state == "Ready":
        return base + "r"
    if start and state == "Start":
        return base + "s"
    if mark_inherited and inherited:
        return base + "i"
    return base
