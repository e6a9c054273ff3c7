"""`am vis`: diagrams of the Go debugger's dump and of made-up dumps with RPC, pipes, parents and
tags (the diagram tool's acceptance scenarios), inspect outputs, and bad input."""

from __future__ import annotations

import http.server
import os
import re
import subprocess
import sys
import threading
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import brotli
import pytest
from typer.testing import CliRunner

from cli.main import app
from dbg.dump import write_dump
from dbg.model import DbgMsgStruct, DbgMsgTx, LogEntry, MachineDump, StateDef
from vis.d2 import render_d2
from vis.graph import Graph, is_inherited
from vis.presets import preset_bird, preset_map, preset_single

FIXTURES = Path(__file__).parent / "fixtures"
GO_DUMP = FIXTURES / "go-am-dbg-sim.gob.br"
RUNNER = CliRunner()


# ----- reading D2 back, so tests talk about machines and states, not generated ids


@dataclass
class Mach:
    path: str
    border: str | None = None
    states: dict[str, str] = field(default_factory=dict)  # name -> class
    rels: list[tuple[str, str, str, str]] = field(default_factory=list)  # from, op, to, label
    tags: list[str] = field(default_factory=list)


@dataclass
class Diagram:
    machs: dict[str, Mach]
    # (source, target, label); endpoints are "mach" or "mach.State"
    edges: list[tuple[str, str, str]]


def parse_d2(text: str) -> Diagram:
    machs: dict[str, Mach] = {}
    by_path: dict[str, str] = {}
    state_ids: dict[str, str] = {}
    raw_edges: list[tuple[str, str, str]] = []
    cur: Mach | None = None
    rel_lines: list[tuple[str, str, str, str]] = []
    for line in text.splitlines():
        if cur is None:
            m = re.match(r'^(\S+): "(.*)" \{$', line)
            if m and m.group(1) not in ("vars", "classes"):
                cur = machs.setdefault(m.group(2), Mach(m.group(1)))
                by_path[m.group(1)] = m.group(2)
                continue
            m = re.match(r'^(\S+) -> (\S+): "(.*)" \{', line)
            if m:
                raw_edges.append(m.groups())
            continue
        if line == "}":
            cur = None
            continue
        if m := re.match(r'^  tags-box: "(.*)" \{shape: text', line):
            cur.tags = [t[1:] for t in m.group(1).split("\\n")[1:]]
        elif m := re.match(r"^  style.stroke: (\S+)$", line):
            cur.border = m.group(1)
        elif m := re.match(r'^  (\w+): "(.*)" \{class: (\w+);', line):
            state_ids[m.group(1)] = m.group(2)
            cur.states[m.group(2)] = m.group(3)
        elif m := re.match(r'^  (\w+) (->|<->) (\w+): "(.*)" \{', line):
            rel_lines.append((by_path[cur.path], *m.groups()))
    for mach_label, a, op, b, label in rel_lines:
        machs[mach_label].rels.append((state_ids[a], op, state_ids[b], label))

    def name(end: str) -> str:
        if end in by_path:
            return by_path[end]
        base, _, sid = end.rpartition(".")
        return f"{by_path[base]}.{state_ids[sid]}"

    return Diagram(machs, [(name(a), name(b), label) for a, b, label in raw_edges])


# ----- made-up dumps


def mach(
    mid: str,
    states: dict[str, StateDef] | Sequence[str],
    txs: Sequence[tuple[Sequence[str], Sequence[str]]] = (((), ()),),
    tags: Sequence[str] = (),
    parent: str = "",
) -> MachineDump:
    """A machine; ``txs`` are (active states after, log lines) per transition."""
    defs = dict(states) if isinstance(states, dict) else {n: StateDef() for n in states}
    index = list(defs)
    out = []
    for n, (active, logs) in enumerate(txs):
        clocks = [1 if s in active else 2 for s in index]
        lines = [LogEntry(3, t) for t in logs]
        out.append(DbgMsgTx(machine_id=mid, id=f"{mid}-{n}", clocks=clocks, log_entries=lines))
    schema = DbgMsgStruct(mid, index, defs, parent=parent, tags=list(tags))
    return MachineDump(schema, out)


RPC_SERVER_STATES = ["Start", "ClientConnected", "Handshaking", "HandshakeDone", "Ready"]


def rpc_dump() -> list[MachineDump]:
    """A client app, its aRPC client, and a server app with its aRPC server (telemetry noise)."""
    server = mach(
        "rs-foo",
        RPC_SERVER_STATES,
        txs=[
            (["Start"], ["[add] Start"]),
            (["Start", "HandshakeDone"], ["[add] HandshakeDone (id=rc-bar)"]),
        ],
        tags=["rpc-server"],
        parent="server-foo",
    )
    client = mach(
        "rc-bar",
        ["Start", "Connected", "Ready"],
        txs=[(["Start", "Ready"], [])],
        tags=["rpc-client"],
    )
    return [
        mach("server-foo", ["Start", "Foo"], txs=[(["Start", "Foo"], [])]),
        mach("browser-bar", ["Start", "Bar"]),
        server,
        client,
    ]


def rel_dump() -> list[MachineDump]:
    states = {
        "A": StateDef(require=["B"], add=["C"], remove=["D", "A"]),
        "B": StateDef(),
        "C": StateDef(),
        "D": StateDef(remove=["A"]),
        "E": StateDef(remove=["B"]),
        "Start": StateDef(),
        "Ready": StateDef(auto=True, require=["Start"]),
        "Exception": StateDef(multi=True),
    }
    return [mach("m", states, txs=[(["A", "B", "Ready", "Start"], [])])]


def chain_dump() -> list[MachineDump]:
    """A - B (parent) - C (rpc) - D (pipe) - E (pipe): a line of machines, 1 hop apart."""
    basic = ["Exception", "ErrNetwork", "ErrHandlerTimeout", "Start", "Ready", "Healthcheck"]
    basic += ["Heartbeat"]
    return [
        mach("A", basic + ["Own"], parent="B"),
        mach("B", basic),
        mach(
            "C",
            basic + ["HandshakeDone"],
            txs=[([], []), (["HandshakeDone"], ["[add] HandshakeDone (id=B)"])],
            tags=["rpc-server"],
        ),
        mach("D", basic, txs=[([], ["[pipe-out:add] Ready to C", "[pipe-out:add] Ready to E"])]),
        mach("E", basic, txs=[([], ["[pipe-in:add] Ready from D"])]),
    ]


def pipe_dump(gc: bool = False) -> list[MachineDump]:
    a_logs = ["[pipe-out:add] Ready to B", "[pipe-out:remove] Ready to B"]
    b_logs = ["[pipe-in:add] Connected from A", "[pipe-in:remove] Connected from A"]
    a_txs = [(["Ready"], a_logs)] + ([(["Ready"], ["[pipe:gc] B"])] if gc else [])
    dump = [
        mach("A", ["Start", "Ready"], txs=a_txs),
        mach("B", ["Start", "Connected"], txs=[(["Connected"], b_logs)]),
    ]
    # A pipes, B pipes, then A's gc: the replay follows the transitions' times
    for n, tx in enumerate([dump[0].txs[0], dump[1].txs[0], *dump[0].txs[1:]]):
        tx.time = datetime(2026, 1, 1, 0, 0, n, tzinfo=UTC)
    return dump


def dump_file(tmp_path: Path, machines: list[MachineDump], name: str = "d.cbor.br") -> str:
    return str(write_dump(tmp_path / name, machines))


def vis(tmp_path: Path, *args: str) -> tuple[int, str]:
    """Run `am vis ...` in-process with tmp_path as the working directory."""
    cwd = os.getcwd()
    os.chdir(tmp_path)
    try:
        result = RUNNER.invoke(app, ["vis", *args])
    finally:
        os.chdir(cwd)
    return result.exit_code, result.output


def render(tmp_path: Path, machines_or_path: list[MachineDump] | str, *args: str) -> Diagram:
    path = (
        machines_or_path
        if isinstance(machines_or_path, str)
        else dump_file(tmp_path, machines_or_path)
    )
    code, out = vis(tmp_path, "render-dump", path, *args)
    assert code == 0, out
    name = "am-vis"
    for i, a in enumerate(args):
        if a in ("-o", "--output-filename"):
            name = args[i + 1]
    return parse_d2((tmp_path / f"{name}.d2").read_text())


def svg_texts(path: Path) -> set[str]:
    return set(re.findall(r">([^<>]+)</(?:text|tspan)>", path.read_text()))


# ----- scenario 1: usage


def test_vis_without_subcommand_shows_usage() -> None:
    result = RUNNER.invoke(app, ["vis"])
    assert "render-dump" in result.output and "inspect-dump" in result.output


# ----- scenarios 2, 3, 5, 7 on the Go debugger's dump


@pytest.fixture(scope="module")
def go_all(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Diagram, str]:
    tmp = tmp_path_factory.mktemp("go-all")
    code, out = vis(tmp, "render-dump", str(GO_DUMP))
    assert code == 0, out
    return tmp, parse_d2((tmp / "am-vis.d2").read_text()), out


def test_render_go_dump_all_machines(go_all: tuple[Path, Diagram, str]) -> None:
    tmp, diagram, out = go_all
    assert "Imported 107 clients" in out
    assert "Rendered am-vis.svg" in out and "Rendered am-vis.d2" in out
    assert len(diagram.machs) == 107
    # every machine was requested, so every box has the requested (yellow) border
    assert {m.border for m in diagram.machs.values()} == {"yellow"}
    texts = svg_texts(tmp / "am-vis.svg")
    assert {"sim", "sim-p11", "ps-17", "sim-t-the-matrix", "Connected", "IdentityReady"} <= texts
    # no parents, RPC or pipes in this dump
    assert diagram.edges == []


def test_render_go_dump_one_machine(tmp_path: Path) -> None:
    diagram = render(tmp_path, str(GO_DUMP), "mach://sim-p11", "-o", "out/x")
    assert (tmp_path / "out" / "x.svg").exists() and (tmp_path / "out" / "x.d2").exists()
    assert list(diagram.machs) == ["sim-p11"]
    p11 = diagram.machs["sim-p11"]
    assert p11.border == "yellow"
    assert "Start" not in p11.states  # hidden in the single preset
    assert p11.states["Ready"] == "_1r"  # active Ready: its own colour
    assert p11.states["Exception"] == "_0i"  # inactive framework state
    assert p11.states["Connected"] == "_1"  # active
    assert p11.states["IsDHT"] == "_0"  # inactive
    assert p11.states["FwdToSim"] == "_1"
    # relations found in the dump's schema
    assert ("Ready", "->", "Connected", "require") in p11.rels
    assert ("EventHostConnected", "->", "Connected", "add") in p11.rels
    assert ("Disconnecting", "->", "BootstrapsConnected", "remove") in p11.rels
    doubles = [r for r in p11.rels if r[3] == "double remove"]
    assert len(doubles) == 4
    assert {frozenset((a, b)) for a, _, b, _ in doubles} == {
        frozenset(("Connected", "Connecting")),
        frozenset(("Connected", "Disconnecting")),
        frozenset(("Connecting", "Disconnecting")),
        frozenset(("IdentityReady", "GenIdentity")),
    }
    texts = svg_texts(tmp_path / "out" / "x.svg")
    assert {"sim-p11", "Ready", "Connected", "IsDHT", "FwdToSim"} <= texts
    assert "Start" not in texts and "sim" not in texts


def test_d2_output_compiles_with_d2(tmp_path: Path) -> None:
    render(tmp_path, str(GO_DUMP), "mach://sim")
    proc = subprocess.run(
        [_d2(), "validate", str(tmp_path / "am-vis.d2")], capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stderr


def _d2() -> str:
    from vis.render import find_d2

    return find_d2()


# ----- scenario 4: unknown machine; 16: corrupt files - one line, no outputs


def test_unknown_machine(tmp_path: Path) -> None:
    code, out = vis(tmp_path, "render-dump", str(GO_DUMP), "mach://nope")
    assert code != 0
    assert "machine nope not found in the dump file" in out
    assert not list(tmp_path.iterdir())
    code, out = vis(tmp_path, "inspect-dump", str(GO_DUMP), "mach://nope")
    assert code != 0 and "machine nope not found" in out
    # the error names what the dump holds, or the ids closest to the one asked for
    assert "(it holds " in out and "more)" in out, out
    code, out = vis(tmp_path, "render-dump", str(GO_DUMP), "mach://sim-p1x")
    assert code != 0 and "(did you mean sim-p1" in out, out
    assert "please wait" not in out  # the error comes first, not after a promise
    assert len(out.strip().splitlines()[-1]) < 200
    assert not list(tmp_path.iterdir())


def _run_am(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "cli.main", *args],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).parents[1])},
    )


def test_corrupt_files_exit_non_zero_with_one_line_and_no_output(tmp_path: Path) -> None:
    go = GO_DUMP.read_bytes()
    bad = {
        "truncated.gob.br": go[: len(go) // 3],
        "random.gob.br": os.urandom(3000),
        "wrong-brotli.gob.br": brotli.compress(b"not a dump at all"),
        "cut-gob.gob.br": brotli.compress(brotli.decompress(go)[:50_000]),
        "empty.cbor.br": b"",
    }
    src = tmp_path / "src"
    src.mkdir()
    for name, data in bad.items():
        (src / name).write_bytes(data)
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    for name in bad:
        proc = _run_am(out_dir, "vis", "render-dump", str(src / name), "-o", "x")
        assert proc.returncode != 0, name
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("am vis: "), (name, proc.stderr)
        assert name in lines[0]
        assert not list(out_dir.iterdir()), name


def test_failed_render_leaves_no_partial_output(tmp_path: Path, monkeypatch) -> None:
    import vis.render as render_mod
    from vis.presets import preset_single

    def broken(*_a, **_kw):
        raise render_mod.RenderError("d2 failed (exit 1): boom")

    monkeypatch.setattr(render_mod, "render_svg", broken)
    opts = preset_single()
    with pytest.raises(render_mod.RenderError):
        render_mod.render_files(rel_dump(), opts, tmp_path / "x")
    assert not list(tmp_path.iterdir())
    # an existing output stays as it was
    (tmp_path / "x.d2").write_text("old")
    with pytest.raises(render_mod.RenderError):
        render_mod.render_files(rel_dump(), opts, tmp_path / "x")
    assert (tmp_path / "x.d2").read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.d2"]


def test_empty_dump(tmp_path: Path) -> None:
    code, out = vis(tmp_path, "render-dump", dump_file(tmp_path, []), "-o", "x")
    assert code != 0 and "the dump holds no machines" in out
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d.cbor.br"]


def test_bad_d2_source_is_reported() -> None:
    from vis.render import RenderError, render_svg

    with pytest.raises(RenderError, match="d2 failed"):
        render_svg("a -> {{{")


# ----- scenario 6: relations


def test_relation_edges_and_double_remove(tmp_path: Path) -> None:
    diagram = render(tmp_path, rel_dump(), "mach://m", "--render-start")
    m = diagram.machs["m"]
    rels = m.rels
    assert ("A", "->", "B", "require") in rels
    assert ("A", "->", "C", "add") in rels
    assert ("E", "->", "B", "remove") in rels
    doubles = [r for r in rels if r[3] == "double remove"]
    assert len(doubles) == 1 and {doubles[0][0], doubles[0][2]} == {"A", "D"}
    assert not any(r[0] == r[2] for r in rels)  # no self-removal edge
    assert m.states["Start"] == "_1s" and m.states["Ready"] == "_1r"
    assert m.states["A"] == "_1" and m.states["C"] == "_0"
    # CSS classes for viewers
    src = (tmp_path / "am-vis.d2").read_text()
    assert re.search(r"class: \[req; M_m; F_A; T_B\]", src)
    assert "rem2" in (tmp_path / "am-vis.svg").read_text()


# ----- scenario 8: bird's view and distance


def test_bird_view_distance(tmp_path: Path) -> None:
    diagram = render(tmp_path, chain_dump(), "--bird", "-d", "2", "mach://B")
    # B's neighbours: A (child), C (rpc). Two hops: D (pipe into C). E is 3 hops away.
    full = {k for k, m in diagram.machs.items() if m.states}
    assert full == {"A", "B", "C", "D"}
    assert diagram.machs["B"].border == "yellow"
    assert {diagram.machs[k].border for k in ("A", "C", "D")} == {"white"}
    # E is drawn only as a half box (end of a pipe from D), without states or border
    assert diagram.machs["E"].states == {} and diagram.machs["E"].border is None
    # inherited framework states are hidden, except Ready and Exception
    assert set(diagram.machs["A"].states) == {"Own", "Ready", "Exception"}
    assert ("A", "B", "parent") in diagram.edges
    assert ("B", "C", "rpc") in diagram.edges


def test_single_preset_draws_neighbours_as_half_boxes(tmp_path: Path) -> None:
    diagram = render(tmp_path, chain_dump(), "mach://C")
    assert {k for k, m in diagram.machs.items() if m.states} == {"C"}
    # B is the rpc client (points into C); D pipes into C
    assert set(diagram.machs) == {"B", "C", "D"}
    assert ("B", "C", "rpc") in diagram.edges
    # C logged no pipe-in, so the pipe's target state is unknown: it ends at C's box
    assert ("D", "C", "add") in diagram.edges


def test_distance_counts_every_kind_of_link() -> None:
    g = Graph.from_dump(chain_dump())
    assert g.distances(["A"]) == {"A": 0, "B": 1, "C": 2, "D": 3, "E": 4}
    assert g.neighbours("C") == {"B", "D"}


# ----- scenario 9: map


def test_map_preset(tmp_path: Path) -> None:
    diagram = render(tmp_path, rpc_dump(), "--map")
    assert set(diagram.machs) == {"server-foo", "browser-bar", "rs-foo", "rc-bar"}
    assert all(m.states == {} and m.tags == [] for m in diagram.machs.values())
    # the aRPC server sits inside its parent's box, and the rpc edge reaches it there
    parent_path = diagram.machs["server-foo"].path
    assert diagram.machs["rs-foo"].path.startswith(parent_path + ".")
    assert ("rc-bar", "rs-foo", "rpc") in diagram.edges
    src = (tmp_path / "am-vis.d2").read_text()
    assert f'-> {diagram.machs["rs-foo"].path}: "rpc"' in src
    assert not any(label == "parent" for *_, label in diagram.edges)


def test_map_with_an_edge_into_an_ancestor(tmp_path: Path) -> None:
    # dagre cannot draw a container linked with its own descendant: ELK can (the map's)
    dump = rpc_dump()
    dump[2].schema.parent = "rc-bar"  # the server inside its own client's box
    diagram = render(tmp_path, dump, "--map")
    assert ("rc-bar", "rs-foo", "rpc") in diagram.edges
    assert diagram.machs["rs-foo"].path.startswith(diagram.machs["rc-bar"].path + ".")
    assert (tmp_path / "am-vis.svg").stat().st_size > 0


# ----- scenario 10: RPC machines and the rpc edge


def test_rpc_edge_from_client_to_server(tmp_path: Path) -> None:
    diagram = render(tmp_path, rpc_dump())
    assert ("rc-bar", "rs-foo", "rpc") in diagram.edges
    assert ("rs-foo", "server-foo", "parent") in diagram.edges
    texts = svg_texts(tmp_path / "am-vis.svg")
    assert {"rc-bar", "rs-foo", "rpc", "parent"} <= texts
    # without the aRPC machines there is no rpc edge
    plain = [m for m in rpc_dump() if not m.id.startswith(("rc-", "rs-"))]
    diagram = render(tmp_path, plain)
    assert set(diagram.machs) == {"server-foo", "browser-bar"}
    assert diagram.edges == []


def test_rpc_needs_a_new_handshake_and_the_server_tag() -> None:
    dump = rpc_dump()
    dump[2].schema.tags = []
    assert Graph.from_dump(dump).rpc == set()
    # HandshakeDone already active before: no new connection in this transition
    dump = rpc_dump()
    dump[2].txs[0].clocks[3] = 1
    assert Graph.from_dump(dump).rpc == set()
    # a client id cut short in the log is matched to the machine it starts
    dump = rpc_dump()
    dump[3].schema.id = "rc-a-very-long-client-name"
    dump[2].txs[1].log_entries = [LogEntry(3, "[add] HandshakeDone (id=rc-a-very-long-cl...)")]
    assert Graph.from_dump(dump).rpc == {("rc-a-very-long-client-name", "rs-foo")}


def test_rpc_edge_between_the_apps_without_arpc_machines(tmp_path: Path) -> None:
    # the aRPC server notes each client's machine on the source machine it serves
    foo = mach(
        "server-foo", ["Start", "Foo"], txs=[(["Start", "Foo"], ["[rpc:connected] browser-bar"])]
    )
    dump = [foo, mach("browser-bar", ["Start", "Bar"])]
    diagram = render(tmp_path, dump)
    assert ("browser-bar", "server-foo", "rpc") in diagram.edges
    assert Graph.from_dump([foo]).rpc == {("browser-bar", "server-foo")}


# ----- scenario 11: pipes


def test_detailed_pipes(tmp_path: Path) -> None:
    diagram = render(tmp_path, pipe_dump(), "--render-start")
    assert ("A.Ready", "B.Connected", "add") in diagram.edges
    assert ("A.Ready", "B.Connected", "remove") in diagram.edges


def test_grouped_pipes(tmp_path: Path) -> None:
    diagram = render(tmp_path, pipe_dump(), "--no-render-detailed-pipes")
    assert diagram.edges == [("A", "B", "pipes")]


def test_pipe_gc_removes_pipes(tmp_path: Path) -> None:
    diagram = render(tmp_path, pipe_dump(gc=True))
    assert diagram.edges == []


def test_pipe_to_hidden_state_falls_back_to_the_machine(tmp_path: Path) -> None:
    # Start is hidden in the single preset: the pipe starts at A's box
    dump = pipe_dump()
    dump[0].txs[0].log_entries = [LogEntry(3, "[pipe-out:add] Start to B")]
    diagram = render(tmp_path, dump)
    assert ("A", "B.Connected", "add") in diagram.edges


# ----- scenario 12: parent


def test_parent_edge_and_nesting(tmp_path: Path) -> None:
    dump = [mach("root", ["X"]), mach("child", ["Y"], parent="root")]
    diagram = render(tmp_path, dump)
    assert diagram.edges == [("child", "root", "parent")]
    diagram = render(tmp_path, dump, "--render-nest-submachines")
    assert diagram.edges == []
    root, child = diagram.machs["root"], diagram.machs["child"]
    assert child.path.startswith(root.path + ".")
    assert child.states == {"Y": "_0"}


def test_parent_outside_the_dump_is_a_half_box(tmp_path: Path) -> None:
    diagram = render(tmp_path, [mach("child", ["Y"], parent="gone")])
    assert diagram.machs["gone"].states == {}
    assert diagram.edges == [("child", "gone", "parent")]


# ----- scenario 13: tags


def test_tags_block(tmp_path: Path) -> None:
    dump = [mach("m", ["X"], tags=["rpc-server", "env:test"])]
    diagram = render(tmp_path, dump)
    assert diagram.machs["m"].tags == ["rpc-server", "env:test"]
    assert "#env:test" in svg_texts(tmp_path / "am-vis.svg")
    diagram = render(tmp_path, dump, "--no-render-tags")
    assert diagram.machs["m"].tags == []


# ----- scenario 14: inspect-dump


def test_inspect_dump(tmp_path: Path) -> None:
    dump = rpc_dump() + pipe_dump()
    code, out = vis(tmp_path, "inspect-dump", dump_file(tmp_path, dump), "-o", "insp")
    assert code == 0, out
    md = (tmp_path / "insp.md").read_text()
    assert md.startswith("# am-vis inspect-dump\n\n## A\n")
    assert "## rs-foo\nTime: t" in md and "Parent: server-foo\n" in md
    assert "## rc-bar\n" in md and "### RPC\n- rs-foo\n" in md
    assert "### Pipes\n\n#### B\n- [add] Ready -> Connected\n- [remove] Ready -> Connected\n" in md
    assert md.count("-----\n") == 6
    root = ET.parse(tmp_path / "insp.xml").getroot()
    assert root.tag == "graph"
    top = {m.get("id") for m in root.findall("machine")}
    assert top == {"A", "B", "browser-bar", "rc-bar", "server-foo"}
    nested = root.find("machine[@id='server-foo']/machine[@id='rs-foo']")
    assert nested is not None
    hs = nested.find("state[.='HandshakeDone']")
    assert hs is not None and hs.get("active") == "1" and hs.get("tick") == "1"
    assert root.find("machine[@id='rc-bar']/rpc").text == "rs-foo"
    pipe = root.find("machine[@id='A']/pipe")
    assert pipe.attrib == {"to": "B", "add": "1", "as": "Ready"} and pipe.text == "Connected"
    assert [t.text for t in nested.findall("tag")] == ["rpc-server"]


def test_inspect_go_dump(tmp_path: Path) -> None:
    code, out = vis(tmp_path, "inspect-dump", str(GO_DUMP))
    assert code == 0, out
    md = (tmp_path / "am-vis.md").read_text()
    assert md.count("\n## ") == 107
    root = ET.parse(tmp_path / "am-vis.xml").getroot()
    p11 = root.find("machine[@id='sim-p11']")
    assert p11.get("time") == str(sum([1, 0, 1, 1, 2, 0, 0, 1, 2, 0, 2, 2, 0, 0, 0, 0, 1, 0]))
    # a state with relations has its name on its own line, above them
    ready = next(st for st in p11.findall("state") if st.text.strip() == "Ready")
    assert ready.get("active") == "1" and ready.get("auto") == "1"
    assert [r.text for r in ready.findall("require")] == ["Connected", "Start"]


# ----- scenario 15: URL


def test_render_from_url(tmp_path: Path) -> None:
    class Handler(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *a, **kw):
            super().__init__(*a, directory=str(FIXTURES), **kw)

        def log_message(self, *a):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/{GO_DUMP.name}"
        diagram = render(tmp_path, url, "mach://sim-t-the-matrix")
        assert list(diagram.machs) == ["sim-t-the-matrix"]
    finally:
        server.shutdown()
        server.server_close()


# ----- presets and inherited states, directly


def test_presets() -> None:
    s, b, m = preset_single(), preset_bird(), preset_map()
    assert (s.distance, s.depth, s.start, s.detailed_pipes, s.pipes) == (0, 0, False, True, True)
    assert (b.distance, b.inherited, b.ready, b.exception) == (3, False, True, True)
    assert (m.states, m.nest_submachines, m.pipes, m.tags, m.elk, m.distance) == (
        False,
        True,
        False,
        False,
        True,  # unlike the reference's dagre: see preset_map
        -1,
    )


def test_inherited_needs_the_whole_state_set() -> None:
    basic = ["Exception", "ErrNetwork", "ErrHandlerTimeout", "Start", "Ready", "Healthcheck"]
    assert is_inherited("Exception", ["Exception"])
    assert not is_inherited("Start", ["Start", "Ready", "Exception"])
    assert is_inherited("Start", basic + ["Heartbeat"])
    assert not is_inherited("Own", basic + ["Heartbeat", "Own"])


def test_machine_without_transitions_renders_inactive() -> None:
    dump = [MachineDump(DbgMsgStruct("m", ["X"], {"X": StateDef()}))]
    opts = preset_single()
    opts.machs = ["m"]
    diagram = parse_d2(render_d2(Graph.from_dump(dump), opts))
    assert diagram.machs["m"].states == {"X": "_0"}


def test_names_and_tags_with_d2_syntax_render(tmp_path: Path) -> None:
    states = {"A|b": StateDef(require=['c"d']), 'c"d': StateDef(), "${v}": StateDef()}
    dump = [mach("x|y", states, tags=["a|b", "c||d", "`x`", "${v}"])]
    diagram = render(tmp_path, dump)
    m = diagram.machs["x|y"]
    assert set(m.states) == {"A|b", 'c\\"d', "\\${v}"}
    assert m.tags == ["a|b", "c||d", "`x`", "\\${v}"]
    texts = svg_texts(tmp_path / "am-vis.svg")
    assert {"x|y", "A|b", "${v}"} <= texts


def test_labels_with_special_characters(tmp_path: Path) -> None:
    dump = [mach('we"ird {id};#x', ["X"]), mach("ok", ["Y"], parent='we"ird {id};#x')]
    diagram = render(tmp_path, dump)
    assert 'we\\"ird {id};#x' in diagram.machs
    assert 'we"ird {id};#x' in svg_texts(tmp_path / "am-vis.svg") or any(
        "ird {id};#x" in t for t in svg_texts(tmp_path / "am-vis.svg")
    )
