// The page's bootstrap: load Pyodide from the relay (no CDN), install this project's wheel and
// the pure cbor2 wheel, then run the browser side (machines.example.web_io) in Python.
// The build (web/build_page.py) writes build/{dev,prod}/manifest.json; the prod build wins.
//
// A cold start is mostly waiting on bytes and on the one main thread, so everything that does
// not depend on something else starts at once: the server's config and both manifests
// together; then the snapshot (fetched in a worker), Pyodide's two scripts, its wasm and
// stdlib (Pyodide fetches those two itself) all in flight together, and the wasm compiled
// while the snapshot is still arriving (see `createPyodideModule` below).
const $ = (id) => document.getElementById(id);
const progress = (text) => { $("progress").textContent = text; $("progress").hidden = !text; };

function fail(message) {
  progress("");
  const el = $("error");
  el.textContent = message;
  el.hidden = false;
  $("status").textContent = "failed";
  window.amExample = { error: message };
}

async function getJson(url) {
  const res = await fetch(url, { cache: "no-cache" });
  return res.ok ? res.json() : null;
}

async function getBytes(url) {
  const res = await fetch(url);
  if (!res.ok) throw new Error(`${url}: HTTP ${res.status}`);
  return new Uint8Array(await res.arrayBuffer());
}

// A fetch in a worker: the body's chunks are read on the worker's thread, not on the page's
// main thread, which is busy meanwhile (Pyodide's script, the wasm's streaming compile, the
// module's start); the bytes then move to the page without a copy. For the snapshot, the
// biggest file and the last to arrive, this was 2.76 s against 3.82 s to Ready (median of 6
// alternating runs on a loaded machine; the snapshot in ~1.0-1.2 s instead of ~2.1-3.4 s).
const FETCH_WORKER = `onmessage = async ({ data: url }) => {
  try {
    const res = await fetch(url);
    if (!res.ok) throw new Error(url + ": HTTP " + res.status);
    const buf = await res.arrayBuffer();
    const [timing] = performance.getEntriesByName(url);
    postMessage({ buf, transferred: timing ? timing.transferSize : 0 }, [buf]);
  } catch (err) { postMessage(String(err && err.message ? err.message : err)); }
};`;

let workerBytes = 0;

function getBytesInWorker(url) {
  return new Promise((resolve, reject) => {
    const src = URL.createObjectURL(new Blob([FETCH_WORKER], { type: "text/javascript" }));
    const worker = new Worker(src);
    const done = () => { worker.terminate(); URL.revokeObjectURL(src); };
    worker.onmessage = ({ data }) => {
      done();
      if (typeof data === "string") return reject(new Error(data));
      workerBytes += data.transferred; // the benchmark's DevTools session sees only the page's
      resolve(new Uint8Array(data.buf));
    };
    worker.onerror = (ev) => { done(); reject(new Error(ev.message || `${url}: worker failed`)); };
    worker.postMessage(new URL(url, location.href).href);
  });
}

// The prod build's snapshot holds only the heap's non-zero runs (web/build_prod.py `_sparse`:
// u32 count, count x (u32 offset, u32 length), then the runs' bytes): lay them into `heap`,
// zeroed and of the heap's full size. Half the heap is zero pages: half the bytes to decode
// and to hold.
async function fillSnapshot(url, heap) {
  const data = await getBytesInWorker(url);
  const view = new DataView(data.buffer, data.byteOffset, data.byteLength);
  const count = view.getUint32(0, true);
  let at = 4 + 8 * count;
  for (let i = 0; i < count; i++) {
    const offset = view.getUint32(4 + 8 * i, true);
    const length = view.getUint32(8 + 8 * i, true);
    heap.set(data.subarray(at, at + length), offset);
    at += length;
  }
  if (at !== data.length) throw new Error(`${url}: not a snapshot of this build`);
}

// milestones since navigation start (ms), read by the benchmark
const marks = {};
const mark = (name) => { marks[name] = Math.round(performance.now()); };

async function main() {
  const started = performance.now();
  // the server names the build it checked (am start); else the prod build wins
  const [config, ...built] = await Promise.all(
    ["config.json", "build/prod/manifest.json", "build/dev/manifest.json"].map(getJson));
  const found = Object.fromEntries(built.filter(Boolean).map((m) => [m.kind, m]));
  const kinds = config?.build ? [config.build] : ["prod", "dev"];
  const manifest = kinds.map((kind) => found[kind]).find(Boolean);
  if (!manifest) {
    fail("The page is not built yet: run `task build` (or `am start`), then reload.");
    return;
  }
  progress(`Loading Python (Pyodide, ${manifest.kind} build)…`);
  const base = `./${manifest.pyodide}`;
  // Pyodide's big script, fetched and parsed alongside its loader instead of after it
  const asm = import(`${base}pyodide.asm.mjs`);
  const loader = import(`${base}pyodide.mjs`);
  const opts = {
    indexURL: new URL(manifest.pyodide, location.href).href,
    env: { HOME: "/home/pyodide", ...(config?.env ?? {}) },
    stdout: (line) => console.log(line),
    stderr: (line) => console.warn(line),
  };
  let snapshotFilled = null;
  if (manifest.snapshot) {
    // Pyodide waits for `_loadSnapshot` before it compiles its wasm, but reads the bytes only
    // after (it needs just the size, to size the memory): hand it the heap at once and fill
    // it while the wasm compiles; the module below is ready only when both are.
    const heap = new Uint8Array(manifest.snapshot_size);
    snapshotFilled = fillSnapshot(manifest.snapshot, heap).then(() => mark("snapshot"));
    snapshotFilled.catch(() => {}); // reported through loadPyodide, not as unhandled
    opts._loadSnapshot = heap;
  }
  opts.createPyodideModule = async (settings) => {
    const created = (await asm).default(settings).then((module) => { mark("wasm"); return module; });
    // a failed snapshot fails the load at once, not after the wasm has started
    return (await Promise.all([created, snapshotFilled]))[0];
  };
  // fetched while Python boots: the wheels (dev) or one zip of the browser's packages (prod)
  const wheelsFetched = Promise.all((manifest.wheels ?? []).map(getBytes));
  const siteFetched = manifest.site ? getBytes(manifest.site) : null;
  mark("manifest");
  const { loadPyodide } = await loader; // it fetches the wasm and the stdlib at once
  const py = await loadPyodide(opts);
  mark("pyodide");
  progress("Installing the wheels…");
  for (const whl of await wheelsFetched) py.unpackArchive(whl, "wheel");
  if (siteFetched) {
    // the snapshot holds every module the page imports, not their files: the zip serves
    // whatever is imported later (zipimport, nothing unpacked)
    py.FS.writeFile("/lib/browser-site.zip", await siteFetched);
    py.runPython("from machines.example import web_io; web_io.use_site_zip('/lib/browser-site.zip')");
  }
  mark("wheels");
  progress("Starting the machines…");
  py.globals.set("page_config", py.toPy(config ?? {}));
  const app = await py.runPythonAsync(
    "from machines.example import web_io\nawait web_io.main(page_config)");
  mark("python");
  window.amExample = {
    app, py, marks, workerBytes, loadMs: performance.now() - started, kind: manifest.kind,
  };
  progress("");
}

main().catch((err) => fail(`Python failed to load: ${err && err.message ? err.message : err}`));
