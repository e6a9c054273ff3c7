"""`am` imports a sub-command's module only when that command runs, and lists them all."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from cli.main import LAZY

ROOT = Path(__file__).resolve().parents[1]

PROBE = """
import sys
sys.argv = ["am", *sys.argv[1:]]
import cli.main
try:
    cli.main.app()
except SystemExit:
    pass
heavy = {"relay", "textual", "trio", "dbg", "vis"}
print("IMPORTED", sorted({m.split(".")[0] for m in sys.modules} & heavy))
"""


def _run(*args: str) -> str:
    env = dict(os.environ, PYTHONPATH=str(ROOT), COLUMNS="120")
    out = subprocess.run(
        [sys.executable, "-c", PROBE, *args], capture_output=True, text=True, env=env, timeout=60
    )
    return out.stdout


def test_help_lists_every_command_without_importing_them() -> None:
    out = _run("--help")
    for name in LAZY:
        assert name in out
    assert "IMPORTED []" in out


def test_a_command_imports_its_own_stack_only() -> None:
    out = _run("vis", "--help")
    assert "render-dump" in out
    assert "relay" not in out.split("IMPORTED")[1]


@pytest.mark.parametrize("name", list(LAZY))
def test_listed_help_is_the_commands_own(name: str) -> None:
    cmd = LAZY[name].load(name)
    assert cmd.name == name
    assert (cmd.help or "").strip().splitlines()[0] == LAZY[name].help
