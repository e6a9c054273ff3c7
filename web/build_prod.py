"""The optimized page build (``task build-prod``), in ``web/build/prod``.

- only the Pyodide files the page loads (no packages, no console pages, no source maps);
- a Pyodide memory snapshot taken after this project's modules were imported (``snapshot.mjs``,
  in Node): the page restores it instead of booting Python and importing;
- the snapshot stored sparse: half of the 31 MB heap is zero pages (the stack, the unused
  top), so the file holds only the non-zero runs and the page lays them into a zeroed buffer
  of the size the manifest names (``snapshot_size``);
- every file also precompressed with zstd and brotli (``x.zst``, ``x.br``; the relay serves
  the best one the browser takes, with ``Content-Encoding``): zstd first, because Chromium
  decodes it several times faster than brotli at about the same size, and the decode is on
  the page's critical path;
- instead of the wheels, one zip of the browser's packages (``machines`` and ``cbor2``), put
  on ``sys.path`` as it is (zipimport): the snapshot already holds every module the page
  imports, and writing one file costs nothing next to unpacking two wheels;
- content-hashed names (the Pyodide directory, the snapshot, the zip), so a new build never
  meets a stale cached file.
"""

from __future__ import annotations

import hashlib
import shutil
import struct
import subprocess
import zipfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import brotli
import zstandard
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
#: zstd level: 19 is smaller than brotli 9 here; its window (8 MiB) is what browsers accept
ZSTD_LEVEL = 19
#: the snapshot's sparse unit: a run of zero pages this size is left out of the file
PAGE = 4096
#: files smaller than this are not worth a second copy
MIN_COMPRESS = 1024
#: nor copies that save less than this fraction (python_stdlib.zip is deflated already: the
#: browser would decode 2.5 MB to save 2 %)
MIN_SAVING = 0.1
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


def _sparse(heap: bytes) -> bytes:
    """``heap`` without its zero pages: ``u32 count``, ``count`` x (``u32 offset``, ``u32
    length``), then those runs' bytes (little-endian; the page's ``fillSnapshot`` reads it)."""
    runs: list[list[int]] = []
    zero = bytes(PAGE)
    view = memoryview(heap)
    for at in range(0, len(heap), PAGE):
        page = view[at : at + PAGE]
        if page == zero[: len(page)]:
            continue
        if runs and runs[-1][0] + runs[-1][1] == at:
            runs[-1][1] += len(page)
        else:
            runs.append([at, len(page)])
    head = struct.pack(f"<{1 + 2 * len(runs)}I", len(runs), *(n for run in runs for n in run))
    return head + b"".join(view[at : at + n] for at, n in runs)


def _compress(path: Path) -> None:
    data = path.read_bytes()
    for suffix, packed in (
        (".zst", zstandard.ZstdCompressor(level=ZSTD_LEVEL).compress(data)),
        (".br", brotli.compress(data, quality=QUALITY, lgwin=24)),
    ):
        if len(packed) <= len(data) * (1 - MIN_SAVING):
            path.with_name(path.name + suffix).write_bytes(packed)


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
    heap = snap_tmp.read_bytes()
    snap_tmp.write_bytes(_sparse(heap))
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
            "snapshot_size": len(heap),
            "site": rel(site),
        },
    )
    return out
