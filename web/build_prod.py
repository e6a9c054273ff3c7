"""The optimized page build (``task build-prod``), in ``web/build/prod``.

- only the Pyodide files the page loads (no packages, no console pages, no source maps);
- a Pyodide memory snapshot taken after this project's modules were imported (``snapshot.mjs``,
  in Node): the page restores it instead of booting Python and importing;
- every file also precompressed with brotli (``x.br``; the relay serves it with
  ``Content-Encoding: br``);
- instead of the wheels, one zip of the browser's packages (``machines`` and ``cbor2``), put
  on ``sys.path`` as it is (zipimport): the snapshot already holds every module the page
  imports, and writing one file costs nothing next to unpacking two wheels;
- content-hashed names (the Pyodide directory, the snapshot, the zip), so a new build never
  meets a stale cached file.
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import zipfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import brotli
from build_page import (
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
#: the packages the browser imports (from the wheels)
BROWSER_PACKAGES = ("machines/", "cbor2/")


def _digest(*files: Path) -> str:
    h = hashlib.sha256()
    for f in files:
        h.update(f.read_bytes())
    return h.hexdigest()[:12]


def _hashed(src: Path, dest_dir: Path, stem: str, suffix: str) -> Path:
    dest = dest_dir / f"{stem}-{_digest(src)}{suffix}"
    shutil.copy2(src, dest)
    return dest


def _browser_zip(dest: Path, *wheels: Path) -> Path:
    """The Python files of :data:`BROWSER_PACKAGES` from ``wheels``, stored (not deflated:
    brotli compresses the whole zip far better, and imports need no inflating)."""
    with zipfile.ZipFile(dest, "w", zipfile.ZIP_STORED) as out:
        for wheel in wheels:
            with zipfile.ZipFile(wheel) as zf:
                for name in sorted(zf.namelist()):
                    if name.startswith(BROWSER_PACKAGES) and name.endswith(".py"):
                        out.writestr(zipfile.ZipInfo(name, (2020, 1, 1, 0, 0, 0)), zf.read(name))
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
    site = _hashed(_browser_zip(tmp / "site.zip", project, cbor2), out, "site", ".zip")
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
            "site": rel(site),
        },
    )
    return out
