// Run a scenario module inside Pyodide (CPython 3.14 on WebAssembly) in Node.
//
//   node tests/pyodide/run.mjs WHEEL SCENARIOS_PY [MORE_WHEELS...]
//
// Loads the pinned npm `pyodide` (resolved from the repo's node_modules), installs this
// project's pure-Python wheel (and any other wheels given, e.g. the pure cbor2), then imports
// SCENARIOS_PY as a module and awaits its `main()` with top-level await (Pyodide's asyncio runs
// on the JS event loop: never asyncio.run). The scenarios print one JSON line on stdout;
// anything else goes to stderr. Like a page, the Python side gets `js.WebSocket` (Node 20 has
// none: the `ws` package stands in) and the AM_* environment variables of this process.
import { readFileSync } from "node:fs";
import { basename } from "node:path";
import { loadPyodide } from "pyodide";
import WebSocket from "ws";

const [wheel, scenarios, ...wheels] = process.argv.slice(2);
if (!wheel || !scenarios) {
  console.error("usage: node run.mjs WHEEL SCENARIOS_PY [MORE_WHEELS...]");
  process.exit(2);
}
globalThis.WebSocket ??= WebSocket;
const env = { HOME: "/home/pyodide" };
for (const [k, v] of Object.entries(process.env)) if (k.startsWith("AM_")) env[k] = v;

try {
  const pyodide = await loadPyodide({
    env,
    stdout: (line) => process.stdout.write(line + "\n"),
    stderr: (line) => process.stderr.write(line + "\n"),
  });
  // Pyodide refuses a Node Buffer here: it must be a plain Uint8Array
  for (const whl of [wheel, ...wheels]) {
    pyodide.unpackArchive(new Uint8Array(readFileSync(whl)), "wheel");
  }
  const dir = "/home/pyodide/scenarios";
  pyodide.FS.mkdirTree(dir);
  const name = basename(scenarios);
  pyodide.FS.writeFile(`${dir}/${name}`, readFileSync(scenarios, "utf8"));
  pyodide.globals.set("scenario_dir", dir);
  pyodide.globals.set("scenario_module", name.replace(/\.py$/, ""));
  await pyodide.runPythonAsync(`
import importlib, sys
sys.path.insert(0, scenario_dir)
await importlib.import_module(scenario_module).main()
`);
  // forked tasks and sockets may have left timers behind: the results are out, stop here
  process.exit(0);
} catch (err) {
  console.error(`pyodide run failed: ${err && err.stack ? err.stack : err}`);
  process.exit(1);
}
