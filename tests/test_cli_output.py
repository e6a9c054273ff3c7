"""What the ``am`` commands print on stderr: every error line starts ``am <command>: ``, and a
log record reads once (its message names its source; the logger's name is not added)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from test_example_browser import REPO, AmStart, base_env, free_port

pytestmark = pytest.mark.timeout(180)


def _am(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"}
    return subprocess.run(
        [sys.executable, "-m", "cli.main", *args],
        cwd=cwd, env=env, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip


@pytest.mark.parametrize(
    ("args", "code", "says"),
    [
        (("vis", "render-dump", "missing.cbor.br"), 1, "missing.cbor.br"),
        (("repl",), 2, "give an address"),
        (("repl", "--dir", "nowhere", "--", "list"), 2, "no such directory"),
        (("start", "--page", "fresh"), 2, "--page must be auto, dev or prod"),
        (("dbg", "--view", "nope"), 2, "unknown --view 'nope'"),
        (("relay", "--token", "a b"), 2, "token may only hold"),
    ],
)
def test_an_error_is_one_line_naming_the_command(
    tmp_path: Path, args: tuple[str, ...], code: int, says: str
) -> None:
    res = _am(tmp_path, *args)
    lines = res.stderr.splitlines()
    assert res.returncode == code, res
    assert len(lines) == 1, res.stderr
    assert lines[0].startswith(f"am {args[0]}: ") and says in lines[0], lines[0]


def test_am_start_prints_a_log_record_once(tmp_path: Path) -> None:
    """Telemetry to a debugger nobody runs warns; the line names telemetry once."""
    closed = free_port()  # nothing listens there
    srv = AmStart(tmp_path, base_env(AM_DBG_ADDR=f"127.0.0.1:{closed}"))
    try:
        line = srv.wait_line(r"debugger at .* unreachable", 60).string
    finally:
        rc, _ = srv.stop()
    assert line.startswith(f"telemetry: debugger at 127.0.0.1:{closed} unreachable"), line
    assert not [x for x in srv.lines if "machines." in x], srv.lines
    assert rc == 0
