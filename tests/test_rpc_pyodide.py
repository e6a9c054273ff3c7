"""aRPC's browser half runs in Pyodide: the sans-IO protocol, the NetMach and the callback
endpoints under Pyodide's asyncio, with the pure-Python cbor2 5.x that the browser uses, and the
bytes it produces are the bytes CPython (cbor2 6.x, Rust) produces.

Needs Node, the pinned npm Pyodide and the cbor2 5.9.0 pure wheel, both fetched by `task setup`
(not by the test run). Missing pieces fail the test with the reason; nothing is skipped.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PYODIDE = REPO / "node_modules" / "pyodide" / "pyodide.mjs"

SCENARIO = r'''
import json, sys

before = set(sys.modules)
from machines.rpc import protocol as p
from machines.rpc.endpoint import ClientEndpoint, ServerEndpoint
loaded = set(sys.modules) - before


def frames():
    """A fixed exchange; its bytes must not depend on the runtime."""
    cli = p.ClientConnection("bar", "browser-bar", p.SyncOptions(allowed=["A", "B"]))
    srv = p.ServerConnection()
    out = []
    cli.hello()
    out.append(cli.data_to_send())
    (hello,) = srv.receive_data(out[-1])
    schema = {"A": {"require": ["B"]}, "B": {"multi": True}, "Exception": {"multi": True}}
    export = p.SourceExport("foo", ["A", "B", "Exception"], [1, 300, 0], 7, 0, schema)
    srv.accept_hello(hello.seq, export)
    out.append(srv.data_to_send())
    cli.receive_data(out[-1])
    cli.mutate(p.MUT_ADD, ["B"], {"msg": "hi", "n": [1, 2.5, None, True]}, ("browser-bar", "tx", 3))
    out.append(cli.data_to_send())
    srv.receive_data(out[-1])
    srv.respond_mutation(1 + hello.seq, 0, [1, 302, 0], 8, 0)
    out.append(srv.data_to_send())
    cli.receive_data(out[-1])
    srv.push([2, 302, 0], 9, 0)
    out.append(srv.data_to_send())
    cli.receive_data(out[-1])
    cli.add_ns(["A"])
    out.append(cli.data_to_send())
    return [f.hex() for f in out], cli.mirror.time


async def session():
    import asyncio
    from machines import Machine, State, MutSource

    seen = []

    class H:
        def CState(self, e):
            seen.append(e.mutation.source.machine_id)

    schema = {"Exception": State(multi=True), "A": State(auto=True, require=["C"]),
              "B": State(multi=True), "C": State()}
    src = Machine(schema, id="foo", handlers=H())
    loop = asyncio.get_running_loop()
    box = {}
    server = ServerEndpoint(src, lambda b: loop.call_soon(box["c"].receive, b), push_interval=0.01)
    client = box["c"] = ClientEndpoint("bar", lambda b: loop.call_soon(server.receive, b),
                                       source="browser-bar")
    server.connection_made()
    client.connection_made()
    await client.wait_connected(5)
    net = client.netmach
    res = await net.add("C")
    src.add("B")
    await asyncio.wait_for(net.when("B"), 5)
    src.add("B"); src.add("B")
    await asyncio.wait_for(net.when_time(["B"], [5]), 5)
    return {"result": int(res), "active": net.active_states, "seen": seen,
            "same_clock": net.clock() == src.clock(), "pushes": server.pushes,
            "syncs": client.conn.syncs}


async def main():
    out = {"trio_loaded": "trio" in sys.modules,
           "asyncio_loaded_by_rpc": "asyncio" in loaded,
           "cbor2_version": __import__("importlib.metadata").metadata.version("cbor2"),
           "platform": sys.platform}
    out["frames"], out["mirror"] = frames()
    try:
        out["session"] = await session()
    except Exception as err:
        import traceback
        out["session"] = {"error": traceback.format_exc()}
    print(json.dumps(out))


if __name__ == "__main__":
    import asyncio
    asyncio.run(main())
'''

RUNNER = r"""
import { readFileSync, readdirSync, statSync } from "node:fs";
import { join, relative } from "node:path";
import { pathToFileURL } from "node:url";

const [pyodideMjs, wheel, repo, scenario] = process.argv.slice(2);
const { loadPyodide } = await import(pathToFileURL(pyodideMjs).href);
const pyodide = await loadPyodide({
  stdout: (line) => process.stdout.write(line + "\n"),
  stderr: (line) => process.stderr.write(line + "\n"),
});
pyodide.unpackArchive(new Uint8Array(readFileSync(wheel)), "wheel");
const site = "/home/pyodide/src";
function copy(dir) {
  for (const name of readdirSync(dir)) {
    const path = join(dir, name);
    if (statSync(path).isDirectory()) {
      if (name !== "__pycache__") copy(path);
    } else if (name.endsWith(".py")) {
      const target = join(site, relative(repo, path));
      pyodide.FS.mkdirTree(target.slice(0, target.lastIndexOf("/")));
      pyodide.FS.writeFile(target, readFileSync(path, "utf8"));
    }
  }
}
copy(join(repo, "machines"));
pyodide.FS.writeFile(`${site}/rpc_scenario.py`, readFileSync(scenario, "utf8"));
await pyodide.runPythonAsync(`
import sys
sys.path.insert(0, "${site}")
import rpc_scenario
await rpc_scenario.main()
`);
process.exit(0);
"""


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory, cbor2_wheel: Path) -> dict:
    node = shutil.which("node")
    if node is None or not PYODIDE.is_file():
        pytest.fail("needs Node.js and the pinned Pyodide in node_modules: run `task setup`")
    tmp = tmp_path_factory.mktemp("rpc-pyodide")
    (tmp / "rpc_scenario.py").write_text(SCENARIO)
    (tmp / "runner.mjs").write_text(RUNNER)
    proc = subprocess.run(
        [node, str(tmp / "runner.mjs"), str(PYODIDE), str(cbor2_wheel), str(REPO),
         str(tmp / "rpc_scenario.py")],
        capture_output=True, text=True, timeout=180, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    local = subprocess.run(
        [sys.executable, str(tmp / "rpc_scenario.py")],
        capture_output=True, text=True, timeout=60, check=False, cwd=REPO,
        env={"PYTHONPATH": str(REPO), "PATH": ""},
    )  # fmt: skip
    assert local.returncode == 0, local.stderr[-3000:]

    def last_json(out: str) -> dict:
        return json.loads([ln for ln in out.splitlines() if ln.startswith("{")][-1])

    return {"pyodide": last_json(proc.stdout), "cpython": last_json(local.stdout)}


def test_runs_in_pyodide_without_trio(runs):
    py = runs["pyodide"]
    assert py["platform"] == "emscripten"
    assert py["cbor2_version"] == "5.9.0"
    assert not py["trio_loaded"] and not py["asyncio_loaded_by_rpc"]


def test_the_bytes_on_the_wire_are_the_same_in_both_runtimes(runs):
    assert runs["cpython"]["cbor2_version"].startswith(("5.", "6."))
    assert runs["pyodide"]["frames"] == runs["cpython"]["frames"]
    assert runs["pyodide"]["mirror"] == runs["cpython"]["mirror"] == [2, 302, 0]


def test_endpoint_session_under_pyodide_asyncio(runs):
    for name in ("pyodide", "cpython"):
        ses = runs[name]["session"]
        assert "error" not in ses, ses.get("error")
        assert ses["result"] == 0
        assert ses["active"] == ["A", "B", "C"]
        assert ses["seen"] == ["browser-bar"]
        assert ses["same_clock"] and ses["syncs"] == 0
        assert ses["pushes"] == 2
