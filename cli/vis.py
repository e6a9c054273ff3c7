"""`am vis`: diagrams and summaries of debugger dumps (this project's and the Go tool's).

A preset (single by default, ``--bird`` or ``--map``) is applied first; then only the render
flags given on the command line change it. Errors are one line on stderr (``am vis: ...``)
with exit code 1, and no output file is written unless every output was produced.
"""

from __future__ import annotations

import typer

from cli.console import fail

vis_app = typer.Typer(
    name="vis",
    help="Render diagrams of debugger dumps (D2 + SVG) and inspect them (Markdown + XML).",
    no_args_is_help=True,
    add_completion=False,
)

_DUMP_HELP = "Dump file (.cbor.br of this project or .gob.br of the Go debugger) or http(s) URL."
_URL_HELP = "mach://<id> of the machine to render (default: every machine)."

# CLI flag -> RenderOptions field; a flag left out keeps the preset's value.
_BOOL_FLAGS = {
    "render_start": "start",
    "render_ready": "ready",
    "render_exception": "exception",
    "render_states": "states",
    "render_inherited": "inherited",
    "render_pipes": "pipes",
    "render_detailed_pipes": "detailed_pipes",
    "render_relations": "relations",
    "render_conns": "conns",
    "render_parent_rel": "parent_rel",
    "render_half_conns": "half_conns",
    "render_half_pipes": "half_pipes",
    "render_nest_submachines": "nest_submachines",
    "render_tags": "tags",
    "output_elk": "elk",
}


def _flag(name: str, help_: str) -> bool | None:
    dashed = name.replace("_", "-")
    return typer.Option(None, f"--{dashed}/--no-{dashed}", help=help_, show_default=False)


@vis_app.command("render-dump")
def render_dump(
    dump: str = typer.Argument(..., help=_DUMP_HELP),
    mach_url: str | None = typer.Argument(None, help=_URL_HELP),
    bird: bool = typer.Option(False, "--bird", "-b", help="Bird's view: machines within 3 hops."),
    map_: bool = typer.Option(False, "--map", help="Topology map: boxes and RPC links only."),
    output: str = typer.Option("am-vis", "--output-filename", "-o", help="Output base name."),
    render_distance: int | None = typer.Option(
        None, "--render-distance", "-d", help="Hops from the requested machine (-1 = all)."
    ),
    render_depth: int | None = typer.Option(
        None, "--render-depth", help="Submachine levels below the requested machine."
    ),
    render_start: bool | None = _flag("render_start", "Show the Start state."),
    render_ready: bool | None = _flag("render_ready", "Show the Ready state."),
    render_exception: bool | None = _flag("render_exception", "Show Exception."),
    render_states: bool | None = _flag("render_states", "Show states."),
    render_inherited: bool | None = _flag(
        "render_inherited", "Show states of the framework's state sets."
    ),
    render_pipes: bool | None = _flag("render_pipes", "Draw pipes."),
    render_detailed_pipes: bool | None = _flag(
        "render_detailed_pipes", "Pipes state to state (else one edge per machine pair)."
    ),
    render_relations: bool | None = _flag("render_relations", "Draw require/add/remove relations."),
    render_conns: bool | None = _flag("render_conns", "Draw RPC links."),
    render_parent_rel: bool | None = _flag("render_parent_rel", "Draw child -> parent edges."),
    render_half_conns: bool | None = _flag(
        "render_half_conns", "RPC links to machines not drawn fully."
    ),
    render_half_pipes: bool | None = _flag(
        "render_half_pipes", "Pipes to machines not drawn fully."
    ),
    render_nest_submachines: bool | None = _flag(
        "render_nest_submachines", "Draw submachines inside their parents."
    ),
    render_tags: bool | None = _flag("render_tags", "Tags block in machines."),
    output_elk: bool | None = _flag("output_elk", "ELK layout (else dagre)."),
) -> None:
    """Render DUMP as NAME.d2 and NAME.svg (NAME from -o, default am-vis)."""
    from dbg.dump import DumpError, read_dump
    from vis.presets import preset_bird, preset_map, preset_single
    from vis.render import RenderError, parse_mach_id, render_files, unknown_machine

    if bird and map_:
        fail("vis", "--bird and --map exclude each other")
    given = locals()
    try:
        mach_id = parse_mach_id(mach_url) if mach_url else None
        machines = read_dump(dump)
        typer.echo(f"Imported {len(machines)} clients")
        opts = (preset_bird if bird else preset_map if map_ else preset_single)()
        if render_distance is not None:
            opts.distance = render_distance
        if render_depth is not None:
            opts.depth = render_depth
        for flag, attr in _BOOL_FLAGS.items():
            if given[flag] is not None:
                setattr(opts, attr, given[flag])
        # Without a machine every machine is requested (and framed as such).
        opts.machs = [mach_id] if mach_id else sorted(m.id for m in machines)
        if mach_id is not None and mach_id not in {m.id for m in machines}:
            raise unknown_machine(mach_id, {m.id for m in machines})  # before "please wait"
        typer.echo("Rendering... please wait")
        d2_path, svg_path = render_files(machines, opts, output)
    except (DumpError, RenderError) as e:
        fail("vis", str(e))
    except OSError as e:
        fail("vis", f"cannot write output: {e}")
    typer.echo(f"Rendered {svg_path}")
    typer.echo(f"Rendered {d2_path}")


@vis_app.command("inspect-dump")
def inspect_dump(
    dump: str = typer.Argument(..., help=_DUMP_HELP),
    mach_url: str | None = typer.Argument(None, help=_URL_HELP),
    output: str = typer.Option("am-vis", "--output-filename", "-o", help="Output base name."),
) -> None:
    """Summarise DUMP as NAME.md (Markdown) and NAME.xml (machines nested by parent)."""
    from dbg.dump import DumpError, read_dump
    from vis.render import RenderError, inspect_files, parse_mach_id

    try:
        mach_id = parse_mach_id(mach_url) if mach_url else None
        machines = read_dump(dump)
        typer.echo(f"Imported {len(machines)} clients")
        md_path, xml_path = inspect_files(machines, output, mach_id)
    except (DumpError, RenderError) as e:
        fail("vis", str(e))
    except OSError as e:
        fail("vis", f"cannot write output: {e}")
    typer.echo(f"Written {md_path}")
    typer.echo(f"Written {xml_path}")
