// Make the prod build's Pyodide memory snapshot (run by web/build_prod.py, in Node):
//
//   node web/snapshot.mjs INDEX_DIR OUT_FILE WHEEL...
//
// Loads Pyodide from INDEX_DIR with `_makeSnapshot`, installs the wheels, imports the browser
// program's modules (pure Python only: no `js` objects may be alive in a snapshot), and writes
// the heap. The page restores it with `_loadSnapshot` instead of booting Python and importing.
import { readFileSync, writeFileSync } from "node:fs";
import { pathToFileURL } from "node:url";
import { resolve } from "node:path";

const [indexDir, out, ...wheels] = process.argv.slice(2);
if (!indexDir || !out || !wheels.length) {
  console.error("usage: node snapshot.mjs INDEX_DIR OUT_FILE WHEEL...");
  process.exit(2);
}
const { loadPyodide } = await import(pathToFileURL(resolve(indexDir, "pyodide.mjs")).href);
const py = await loadPyodide({
  indexURL: resolve(indexDir) + "/",
  _makeSnapshot: true,
  env: { HOME: "/home/pyodide" },
});
for (const whl of wheels) py.unpackArchive(new Uint8Array(readFileSync(whl)), "wheel");
py.runPython(`
import machines, machines.rpc.endpoint, machines.rpc.netmach, machines.rpc.protocol
import machines.telemetry, machines.telemetry_browser
import machines.example.browser, machines.example.config, machines.example.schemas
import machines.example.web_io
import asyncio, cbor2, json
import zipimport  # the page imports what comes later from a zip
`);
const snapshot = py.makeMemorySnapshot();
writeFileSync(out, snapshot);
console.log(`snapshot: ${snapshot.length} bytes`);
process.exit(0);
