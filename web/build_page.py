"""Build the page's assets: ``python web/build_page.py [--prod] [--if-stale]``.

Development build (``web/build/dev``): the pinned Pyodide files copied from ``node_modules``
(so the page loads Python from the relay, offline), this project's wheel and the pure cbor2
wheel (cbor2 6 is a Rust extension; 5.9.0 is the last pure one), and ``manifest.json`` that the
page's bootstrap reads. The production build is in ``web/build_prod.py``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
WEB = ROOT / "web"
OUT = WEB / "build"
NODE_PYODIDE = ROOT / "node_modules" / "pyodide"
#: what loadPyodide fetches (no packages: the example needs none of Pyodide's)
PYODIDE_FILES = (
    "pyodide.mjs",
    "pyodide.asm.mjs",
    "pyodide.asm.wasm",
    "python_stdlib.zip",
    "pyodide-lock.json",
)
CBOR2 = "cbor2==5.9.0"
CBOR2_WHEEL = "cbor2-5.9.0-py3-none-any.whl"
#: the sources whose change makes a build stale
SOURCES = ("machines", "relay", "vis", "dbg", "cli")


class BuildError(Exception):
    """One line for the user: what is missing and how to get it."""


def newest_source() -> float:
    """The newest modification time of what goes into the wheel (and the build scripts)."""
    times = [(ROOT / "pyproject.toml").stat().st_mtime]
    times += [p.stat().st_mtime for p in (*WEB.glob("*.py"), WEB / "snapshot.mjs")]
    for pkg in SOURCES:
        times += [p.stat().st_mtime for p in (ROOT / pkg).rglob("*.py")]
    return max(times)


def is_fresh(kind: str) -> bool:
    manifest = OUT / kind / "manifest.json"
    return manifest.is_file() and manifest.stat().st_mtime >= newest_source()


def build_wheel(dest: Path) -> Path:
    dest.mkdir(parents=True, exist_ok=True)
    for old in dest.glob("asyncmachine_wasm-*.whl"):
        old.unlink()
    cmd = [sys.executable, "-m", "build", "--wheel", "--no-isolation", "--outdir", str(dest)]
    proc = subprocess.run([*cmd, str(ROOT)], capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise BuildError(f"building the wheel failed: {proc.stderr.strip().splitlines()[-1:]}")
    (wheel,) = dest.glob("asyncmachine_wasm-*.whl")
    return wheel


def cbor2_wheel() -> Path:
    """The pure cbor2 wheel, downloaded once into ``web/build/cache`` (a build-time fetch)."""
    cache = OUT / "cache"
    found = cache / CBOR2_WHEEL
    if found.is_file():
        return found
    cmd = [sys.executable, "-m", "pip", "download", CBOR2, "--no-deps", "--only-binary=:all:"]
    cmd += ["--platform", "any", "--python-version", "3.14", "-d", str(cache)]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0 or not found.is_file():
        raise BuildError(f"cannot download {CBOR2} ({' '.join(cmd)}): {proc.stderr.strip()}")
    return found


def check_pyodide() -> None:
    missing = [f for f in PYODIDE_FILES if not (NODE_PYODIDE / f).is_file()]
    if missing:
        raise BuildError(f"node_modules/pyodide lacks {', '.join(missing)}: run `task setup`")


def write_manifest(out: Path, data: dict) -> None:
    tmp = out / ".manifest.json.tmp"
    tmp.write_text(json.dumps(data, indent=2))
    os.replace(tmp, out / "manifest.json")  # last: a half build has no manifest


def build_dev() -> Path:
    check_pyodide()
    out = OUT / "dev"
    (out / "manifest.json").unlink(missing_ok=True)
    pyo = out / "pyodide"
    pyo.mkdir(parents=True, exist_ok=True)
    for name in PYODIDE_FILES:
        shutil.copy2(NODE_PYODIDE / name, pyo / name)
    wheels = out / "wheels"
    project = build_wheel(wheels)
    cbor2 = shutil.copy2(cbor2_wheel(), wheels / CBOR2_WHEEL)
    rel = lambda p: Path(p).relative_to(WEB).as_posix()  # noqa: E731 - paths seen by the page
    write_manifest(
        out,
        {
            "kind": "dev",
            "pyodide": rel(pyo) + "/",
            "wheels": [rel(project), rel(cbor2)],
        },
    )
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prod", action="store_true", help="the optimized build")
    parser.add_argument("--if-stale", action="store_true", help="only when missing or stale")
    args = parser.parse_args()
    kind = "prod" if args.prod else "dev"
    if args.if_stale and is_fresh(kind):
        print(f"web/build/{kind} is up to date")
        return 0
    try:
        if args.prod:
            sys.path.insert(0, str(WEB))
            from build_prod import build_prod

            out = build_prod()
        else:
            out = build_dev()
    except BuildError as err:
        print(f"build: {err}", file=sys.stderr)
        return 1
    print(f"built {out.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
