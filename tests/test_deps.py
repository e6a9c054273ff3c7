"""`task deps` and `task deps-graph`: computed from the real import graph, written as files."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from vis import deps

REPO = Path(__file__).resolve().parents[1]


def test_browser_deps_follow_the_import_graph(tmp_path: Path) -> None:
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    (wheels / "cbor2-5.9.0-py3-none-any.whl").write_bytes(b"")
    found = {d.module: d for d in deps.browser_deps("machines.rpc.endpoint", wheels)}
    # the entry and what it imports, directly or not
    for mod in ("machines.rpc.endpoint", "machines.rpc.protocol", "machines.machine"):
        assert found[mod].source.startswith("asyncmachine-wasm")
    assert "relay.server" not in found and "dbg.collector" not in found
    assert (found["cbor2"].source, found["cbor2"].version) == (
        "cbor2 (wheel installed in the page)",
        "5.9.0",
    )
    assert found["js"].source == "Pyodide runtime"
    assert found["asyncio"].version == f"Pyodide {deps.pyodide_version()}"


def test_unknown_entry_is_one_clear_error() -> None:
    with pytest.raises(SystemExit, match="machines.nope is not in the project's import graph"):
        deps.browser_deps("machines.nope")


def _task(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run(
        [sys.executable, "-m", "vis.deps", *args],
        cwd=cwd, env=env, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip


def test_deps_writes_markdown(tmp_path: Path) -> None:
    res = _task("list", "--entry", "machines.rpc.endpoint", "-o", "deps.md", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    text = (tmp_path / "deps.md").read_text()
    assert text.startswith("# Dependencies of the browser program (`machines.rpc.endpoint`)")
    assert f"Pyodide {deps.pyodide_version()}" in text
    assert "| `machines.rpc.protocol` | asyncmachine-wasm" in text


def test_deps_graph_draws_the_browser_program_as_the_reference(tmp_path: Path) -> None:
    """By default what the page's program imports (the reference draws its program with
    ``godepgraph -s``): our modules it reaches and its third-party packages, no stdlib, none
    of the debugger, the relay server or the CLI (all of it was too big to read)."""
    res = _task("graph", "-o", "deps-graph.svg", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    source = (tmp_path / "deps-graph.d2").read_text()
    nodes = {line.split(":")[0] for line in source.splitlines()[1:] if "->" not in line}
    assert {"machines.example.browser", "machines.rpc.protocol", "cbor2", "trio"} <= nodes
    assert "machines.rpc.core -> machines.rpc.protocol" in source
    assert not any(n.split(".")[0] in ("dbg", "cli", "vis") for n in nodes), nodes
    assert not {"asyncio", "json", "os"} & nodes  # the standard library is left out
    assert "relay.config" not in nodes
    assert "-> cbor2" in source


def test_deps_graph_all_renders_the_core_modules(tmp_path: Path) -> None:
    res = _task("graph", "--all", "-o", "deps-graph.svg", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    source = (tmp_path / "deps-graph.d2").read_text()
    assert "machines.machine -> machines.schema" in source
    assert "machines.rpc.core -> machines.rpc.protocol" in source
    assert "relay.config -> machines.addr" in source
    svg = (tmp_path / "deps-graph.svg").read_text()
    assert svg.lstrip().startswith("<?xml") or "<svg" in svg[:500]
    for label in ("machine", "protocol", "relay"):
        assert f">{label}<" in svg
