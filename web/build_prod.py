"""The optimized page build (``task build-prod``), in ``web/build/prod``.

- only the Pyodide files the page loads (no packages, no console pages, no source maps);
- a Pyodide memory snapshot taken after this project's modules were imported (``snapshot.mjs``,
  in Node): the page restores it instead of booting Python and importing;
- every file also precompressed with brotli (``x.br``; the relay serves it with
  ``Content-Encoding: br``);
- content-hashed names (the Pyodide directory, the snapshot, the wheels), so a new build
  never meets a stale cached file.
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import brotli
from build import (
    NODE_PYODIDE,
    OUT,
    PYODIDE_FILES,
    ROOT,
    WEB,
    BuildError,
    build_wheel,
    cbor2_wheel,
    check_pyodide,
    write_manifest,
)

#: brotli quality: 9 is within a few percent of 11 on these files, and far faster
QUALITY = 9
#: files smaller than this are not worth a second copy
MIN_COMPRESS = 1024


def _digest(*files: Path) -> str:
    h = hashlib.sha256()
    for f in files:
        h.update(f.read_bytes())
    return h.hexdigest()[:12]


def _hashed(src: Path, dest_dir: Path, stem: str, suffix: str) -> Path:
    dest = dest_dir / f"{stem}-{_digest(src)}{suffix}"
    shutil.copy2(src, dest)
    return dest


def _compress(path: Path) -> None:
    data = path.read_bytes()
    packed = brotli.compress(data, quality=QUALITY, lgwin=24)
    if len(packed) < len(data):
        path.with_name(path.name + ".br").write_bytes(packed)


def build_prod() -> Path:
    check_pyodide()
    out = OUT / "prod"
    if out.exists():
        shutil.rmtree(out)
    tmp = out / "tmp"
    tmp.mkdir(parents=True)
    project = build_wheel(tmp)
    cbor2 = cbor2_wheel()
    pyo = out / f"pyodide-{_digest(*(NODE_PYODIDE / f for f in PYODIDE_FILES))}"
    pyo.mkdir()
    for name in PYODIDE_FILES:
        shutil.copy2(NODE_PYODIDE / name, pyo / name)
    snap_tmp = tmp / "snapshot.bin"
    cmd = ["node", str(WEB / "snapshot.mjs"), str(pyo), str(snap_tmp), str(project), str(cbor2)]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False, cwd=ROOT)
    if proc.returncode != 0:
        raise BuildError(f"the Pyodide snapshot failed: {proc.stderr.strip()[-800:]}")
    snapshot = _hashed(snap_tmp, out, "snapshot", ".bin")
    wheels = [_hashed(project, out, "asyncmachine_wasm", ".whl"), _hashed(cbor2, out, "cbor2", ".whl")]
    shutil.rmtree(tmp)
    files = [p for p in out.rglob("*") if p.is_file() and p.stat().st_size >= MIN_COMPRESS]
    with ThreadPoolExecutor() as pool:  # brotli releases the GIL
        list(pool.map(_compress, files))
    rel = lambda p: p.relative_to(WEB).as_posix()  # noqa: E731 - paths seen by the page
    write_manifest(
        out,
        {
            "kind": "prod",
            "pyodide": rel(pyo) + "/",
            "snapshot": rel(snapshot),
            "wheels": [rel(w) for w in wheels],
        },
    )
    return out
