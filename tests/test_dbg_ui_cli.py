"""``am dbg`` as a real process: bad input fails before the UI, and the UI in a real pty
opens an imported dump at a machine, quits on Ctrl+Q with exit 0 and prints the totals."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from pathlib import Path

import pexpect
import pytest
from conftest import GO_DUMP, ROOT
from conftest import dbg_env as _env

pytestmark = pytest.mark.timeout(120)


def _am(*args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "cli.main", "dbg", *args],
        capture_output=True, text=True, timeout=timeout, env=_env(), cwd=ROOT,
        stdin=subprocess.DEVNULL,
    )  # fmt: skip


def test_corrupt_dump_is_one_line_and_exit_1_before_the_ui(tmp_path: Path):
    bad = tmp_path / "bad.gob.br"
    bad.write_bytes(b"\x8b\x00not brotli at all" * 10)
    p = _am("-i", str(bad), "-l", "-1")
    assert p.returncode == 1
    err = p.stderr.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("am dbg: ") and "bad.gob.br" in err[0]
    assert "\x1b[" not in p.stdout  # no UI was drawn


def test_unreachable_url_and_bad_arguments():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again: nothing listens there
    p = _am("-i", f"http://127.0.0.1:{port}/x.gob.br", "-l", "-1")
    assert p.returncode == 1 and len(p.stderr.strip().splitlines()) == 1
    assert "download failed" in p.stderr
    p = _am("http://not-a-mach-url", "-l", "-1")
    assert p.returncode == 2 and "not a machine address" in p.stderr
    p = _am("--view", "sideways", "-l", "-1")
    assert p.returncode == 2 and "unknown --view" in p.stderr
    p = _am("--help")
    assert p.returncode == 0 and "mach://ID/TX/STEP" in p.stdout


def test_listen_port_taken_fails_before_the_ui():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        p = _am("-l", f"127.0.0.1:{port}", "--ws-port", "0")
    assert p.returncode == 1 and "cannot listen on" in p.stderr


def test_real_terminal_opens_the_imported_machine_and_quits_on_ctrl_q(tmp_path: Path):
    t0 = time.monotonic()
    child = pexpect.spawn(
        sys.executable,
        ["-m", "cli.main", "dbg", "-i", str(GO_DUMP), "mach://sim", "-l", "-1",
         "-d", str(tmp_path)],
        env=_env(), cwd=str(ROOT), dimensions=(40, 160), encoding="utf-8",
        codec_errors="replace", timeout=60,
    )  # fmt: skip
    try:
        child.expect("Importing data from")
        child.expect(r"mach://sim/[0-9a-f]+")  # the address bar, at the machine of the URL
        child.expect("Machines:107")
        first_screen = time.monotonic() - t0
        child.send("\x1b[D")  # left: one transition back
        child.expect("Paused")
        child.send("\x11")  # Ctrl+Q
        child.expect("Clients: 107")
        child.expect("Transitions: 7605")
        child.expect(r"Memory: \d+mb")  # the reference's three exit lines
        child.expect(pexpect.EOF)
    finally:
        child.close()
    assert child.exitstatus == 0, child.before
    assert first_screen < 60


def test_counts_in_exit_lines_agree_with_their_number() -> None:
    from cli.dbg import _count

    assert [_count(n, "machine") for n in (0, 1, 2)] == ["0 machines", "1 machine", "2 machines"]
