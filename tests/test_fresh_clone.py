"""A fresh clone, alone in an empty folder, runs: nothing reads outside the repo.

The clone gets no sibling folders and no untracked files (no fixtures that only live beside this
checkout); a quick subset of the suite, including the tests that read the Go dump fixture, must
pass there."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

#: cheap tests that touch the fixtures and every package's import path
SUBSET = ["tests/test_core_schema.py", "tests/test_gob.py", "tests/test_dump.py"]


@pytest.mark.timeout(300)
def test_fresh_clone_passes_a_quick_subset(tmp_path: Path) -> None:
    if shutil.which("git") is None or not (REPO / ".git").exists():
        pytest.fail("this test needs git and a git checkout of the project")
    clone = tmp_path / "empty" / "clone"
    clone.parent.mkdir()
    subprocess.run(
        ["git", "clone", "-q", "--no-local", str(REPO), str(clone)],
        check=True,
        timeout=120,
        capture_output=True,
    )
    assert sorted(p.name for p in clone.parent.iterdir()) == ["clone"]
    env = {**os.environ, "PYTHONPATH": str(clone)}
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", *SUBSET],
        cwd=clone,
        env=env,
        capture_output=True,
        text=True,
        timeout=280,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    assert " passed" in proc.stdout and "skipped" not in proc.stdout, proc.stdout[-1000:]
