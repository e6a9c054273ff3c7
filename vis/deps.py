"""The project's dependencies, read from its real import graph (grimp).

``list``: what the browser program imports (the code the page runs), module by module, each with
the distribution and version it comes from, and the pinned Pyodide: written as Markdown
(``task deps`` → ``deps.md``). ``graph``: the browser program's import graph (``--all``: every
module of the project), drawn by ``d2`` (``task deps-graph`` → ``deps-graph.svg``).

Imports inside functions count: grimp reads every ``import`` statement, which is what can run.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

from vis.render import render_svg

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("machines", "relay", "dbg", "vis", "cli")
#: the module the page runs (and headless browser-side peers)
BROWSER_ENTRY = "machines.example.browser"
#: where `task setup` puts the wheels the page installs into Pyodide
WHEELS = REPO / "web" / "build" / "cache"
#: modules Pyodide itself provides (no wheel)
PYODIDE_BUILTINS = frozenset({"js", "pyodide", "pyodide_js"})


@dataclass(frozen=True)
class Dep:
    module: str
    source: str  # where the module comes from in the page
    version: str
    note: str = ""


def build_graph(packages: tuple[str, ...] = PACKAGES):  # -> grimp ImportGraph
    import grimp

    return grimp.build_graph(*packages, include_external_packages=True, cache_dir=None)


def pyodide_version(repo: Path = REPO) -> str:
    """The Pyodide pinned in package.json (the runtime the page loads)."""
    pkg = json.loads((repo / "package.json").read_text())
    return str(pkg["dependencies"]["pyodide"])


def _page_wheels(wheels: Path) -> dict[str, tuple[str, str]]:
    """``{import name: (distribution, version)}`` of the wheels the page installs."""
    out = {}
    for whl in sorted(wheels.glob("*.whl")):
        dist, version = whl.name.split("-")[:2]
        out[dist.replace("-", "_").lower()] = (dist, version)
    return out


def browser_deps(entry: str = BROWSER_ENTRY, wheels: Path = WHEELS) -> list[Dep]:
    """Every module ``entry`` imports, directly or not, and where the page gets it."""
    graph = build_graph()
    if entry not in graph.modules:
        raise SystemExit(f"deps: module {entry} is not in the project's import graph (--entry)")
    pyodide = pyodide_version()
    project = metadata.version("asyncmachine-wasm")
    page = _page_wheels(wheels)
    dists = metadata.packages_distributions()
    deps = []
    for mod in sorted(graph.find_upstream_modules(entry) | {entry}):
        top = mod.split(".")[0]
        if top in PACKAGES:
            deps.append(Dep(mod, "asyncmachine-wasm (this project's wheel)", project))
        elif top in sys.stdlib_module_names:
            deps.append(Dep(mod, "Python standard library", f"Pyodide {pyodide}"))
        elif top in PYODIDE_BUILTINS:
            deps.append(Dep(mod, "Pyodide runtime", pyodide))
        elif top.lower() in page:
            dist, version = page[top.lower()]
            deps.append(Dep(mod, f"{dist} (wheel installed in the page)", version))
        else:
            dist = (dists.get(top) or [top])[0]
            try:
                version = metadata.version(dist)
            except metadata.PackageNotFoundError:
                version = "?"
            note = "not in the page: imported only where it exists (CPython)"
            deps.append(Dep(mod, dist, version, note))
    return deps


def deps_markdown(entry: str = BROWSER_ENTRY, wheels: Path = WHEELS) -> str:
    deps = browser_deps(entry, wheels)
    lines = [
        f"# Dependencies of the browser program (`{entry}`)",
        "",
        f"Runtime: Pyodide {pyodide_version()} (npm `pyodide`, pinned in package.json).",
        "Computed from the import graph (grimp); imports inside functions included.",
        "",
        "| module | comes from | version | note |",
        "|---|---|---|---|",
    ]
    lines += [f"| `{d.module}` | {d.source} | {d.version} | {d.note} |" for d in deps]
    return "\n".join(lines) + "\n"


def graph_d2(packages: tuple[str, ...] = PACKAGES, entry: str | None = BROWSER_ENTRY) -> str:
    """A module import graph in D2: modules nested in their packages (a dotted module name is a
    D2 path), one arrow per import.

    With ``entry`` (the default: the browser program, as the reference's ``godepgraph -s``
    draws its program), only what ``entry`` imports, directly or not, plus the third-party
    packages among them (the standard library left out); the whole project's 120-odd modules
    made a drawing too big to read. ``entry=None``: every module of ``packages``, ours only.
    """
    graph = build_graph(packages)
    ours = sorted(m for m in graph.modules if m.split(".")[0] in packages)
    externals: list[str] = []
    if entry is not None:
        if entry not in graph.modules:
            raise SystemExit(f"vis.deps: no module {entry!r} in {', '.join(packages)}")
        keep = {entry, *graph.find_upstream_modules(entry)}
        ours = [m for m in ours if m in keep]
        externals = sorted(
            m for m in keep
            if m.split(".")[0] not in packages and m.split(".")[0] not in sys.stdlib_module_names
        )  # fmt: skip
    lines = ["direction: right"]
    lines += [f"{m}: {m.rsplit('.', 1)[-1]}" for m in ours]
    lines += [f"{m}: {m} {{style.stroke-dash: 3}}" for m in externals]
    drawn = set(ours) | set(externals)
    for m in ours:
        for dep in sorted(graph.find_modules_directly_imported_by(m)):
            # an import of a package's own parent is the package's __init__: not an edge
            if dep in drawn and dep != m and not m.startswith(dep + "."):
                lines.append(f"{m} -> {dep}")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m vis.deps", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    lst = sub.add_parser("list", help="list the browser program's dependencies (Markdown)")
    lst.add_argument("-o", "--out", type=Path, default=Path("deps.md"))
    lst.add_argument("--entry", default=BROWSER_ENTRY, help="the browser program's module")
    grp = sub.add_parser("graph", help="render the import graph (SVG via d2)")
    grp.add_argument("-o", "--out", type=Path, default=Path("deps-graph.svg"))
    grp.add_argument("--entry", default=BROWSER_ENTRY, help="draw what this module imports")
    grp.add_argument("--all", action="store_true", help="every module of the project instead")
    args = parser.parse_args(argv)
    if args.command == "list":
        args.out.write_text(deps_markdown(args.entry))
    else:
        source = graph_d2(entry=None if args.all else args.entry)
        args.out.with_suffix(".d2").write_text(source)
        args.out.write_bytes(render_svg(source))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
