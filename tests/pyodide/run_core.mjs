// Run the core scenarios inside Pyodide (CPython 3.14 on WebAssembly) in Node.
//
//   node tests/pyodide/run_core.mjs WHEEL SCENARIOS_PY
//
// Loads the pinned npm `pyodide` (resolved from the repo's node_modules), installs this
// project's pure-Python wheel, then imports SCENARIOS_PY as a module and awaits its `main()`
// with top-level await (Pyodide's asyncio runs on the JS event loop: never asyncio.run).
// The scenarios print one JSON line on stdout; anything else goes to stderr.
import { readFileSync } from "node:fs";
import { basename } from "node:path";
import { loadPyodide } from "pyodide";

const [wheel, scenarios] = process.argv.slice(2);
if (!wheel || !scenarios) {
  console.error("usage: node run_core.mjs WHEEL SCENARIOS_PY");
  process.exit(2);
}

try {
  const pyodide = await loadPyodide({
    stdout: (line) => process.stdout.write(line + "\n"),
    stderr: (line) => process.stderr.write(line + "\n"),
  });
  // Pyodide refuses a Node Buffer here: it must be a plain Uint8Array
  pyodide.unpackArchive(new Uint8Array(readFileSync(wheel)), "wheel");
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
  // forked tasks may have left timers behind: the results are out, stop here
  process.exit(0);
} catch (err) {
  console.error(`pyodide run failed: ${err && err.stack ? err.stack : err}`);
  process.exit(1);
}
