// The page's bootstrap: load Pyodide from the relay (no CDN), install this project's wheel and
// the pure cbor2 wheel, then run the browser side (machines.example.web_io) in Python.
// The build (web/build_page.py) writes build/{dev,prod}/manifest.json; the prod build wins.
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

// milestones since navigation start (ms), read by the benchmark
const marks = {};
const mark = (name) => { marks[name] = Math.round(performance.now()); };

async function main() {
  const started = performance.now();
  // the server names the build it checked (am start); else the prod build wins
  const config = (await getJson("config.json")) ?? {};
  const kinds = config.build ? [config.build] : ["prod", "dev"];
  let manifest = null;
  for (const kind of kinds) manifest ??= await getJson(`build/${kind}/manifest.json`);
  if (!manifest) {
    fail("The page is not built yet: run `task build` (or `am start`), then reload.");
    return;
  }
  progress(`Loading Python (Pyodide, ${manifest.kind} build)…`);
  const { loadPyodide } = await import(`./${manifest.pyodide}pyodide.mjs`);
  const opts = {
    indexURL: new URL(manifest.pyodide, location.href).href,
    env: { HOME: "/home/pyodide", ...(config.env ?? {}) },
    stdout: (line) => console.log(line),
    stderr: (line) => console.warn(line),
  };
  if (manifest.snapshot) opts._loadSnapshot = getBytes(manifest.snapshot);
  // fetched while Python boots: the wheels (dev) or one zip of the browser's packages (prod)
  const wheelsFetched = Promise.all((manifest.wheels ?? []).map(getBytes));
  const siteFetched = manifest.site ? getBytes(manifest.site) : null;
  mark("manifest");
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
  py.globals.set("page_config", py.toPy(config));
  const app = await py.runPythonAsync(
    "from machines.example import web_io\nawait web_io.main(page_config)");
  mark("python");
  window.amExample = { app, py, marks, loadMs: performance.now() - started, kind: manifest.kind };
  progress("");
}

main().catch((err) => fail(`Python failed to load: ${err && err.message ? err.message : err}`));
