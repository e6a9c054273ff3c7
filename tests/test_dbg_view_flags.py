"""View flags of `am dbg` (C.2) wired to what the UI has: ``--view-reader`` (Alt+O's
reader), ``--view-narrow`` (the layout under 100 columns, at any width) and ``--version``."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from test_dbg_ui import run, story

pytestmark = pytest.mark.timeout(60)
REPO = Path(__file__).resolve().parents[1]


def test_reader_off_and_alt_o_brings_it_back() -> None:
    async def body(app, pilot):
        assert not app.query_one("#reader").display
        await pilot.press("alt+o")
        await pilot.pause()
        assert app.query_one("#reader").display

    run(body, story(), reader=False)


def test_narrow_at_any_width() -> None:
    async def body(app, pilot):
        assert app.size.width >= 150
        assert app.query_one("#list").region.width == 0

    run(body, story(), size=(160, 50), narrow=True)

    async def wide(app, pilot):  # and without the flag, the list is there at this width
        assert app.query_one("#list").region.width > 0

    run(wide, story(), size=(160, 50))


def test_version_before_anything_else(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    # a bad --view would fail; --version answers first, and starts no server
    p = subprocess.run(
        [sys.executable, "-m", "cli.main", "dbg", "--view", "nope", "--version"],
        env=env, capture_output=True, text=True, timeout=30, cwd=tmp_path,
    )  # fmt: skip
    assert p.returncode == 0, p.stderr
    assert p.stdout.startswith("am ") and len(p.stdout.splitlines()) == 1
