"""Every command that listens answers a busy address with one line naming it and the option that
sets it, and exits 1 (the bind error arrives inside trio's ExceptionGroup)."""

from __future__ import annotations

import errno
import os
import socket
import subprocess
import sys
from collections.abc import Iterator

import pytest

from cli.listen import bind_error


@pytest.fixture
def busy_port() -> Iterator[int]:
    """A loopback port with a listener on it for the whole test."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        yield s.getsockname()[1]


def am(*args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AM_", "RELAY_"))}
    return subprocess.run(
        [sys.executable, "-m", "cli.main", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        check=False,
    )


def assert_one_line(res: subprocess.CompletedProcess[str], *fragments: str) -> None:
    assert res.returncode == 1, res.stderr
    line = res.stderr.strip()
    assert "\n" not in line and "Traceback" not in line, res.stderr
    for fragment in fragments:
        assert fragment in line, line


def test_relay_on_a_busy_address(busy_port: int) -> None:
    addr = f"127.0.0.1:{busy_port}"
    res = am("relay", "--listen-addr", addr, "--quiet")
    assert_one_line(res, f"cannot listen on {addr}", "in use", "--listen-addr", "RELAY_HTTP_ADDR")


def test_dbg_headless_on_a_busy_address(busy_port: int, tmp_path) -> None:
    addr = f"127.0.0.1:{busy_port}"
    res = am("dbg", "--headless", "--listen-addr", addr, "--ws-port", "0", "--dir", str(tmp_path))
    assert_one_line(res, f"cannot listen on {addr}", "in use", "--listen-addr")
    assert not list(tmp_path.iterdir())  # no dump written for a collector that never ran


def test_dbg_headless_on_a_busy_websocket_port(busy_port: int, tmp_path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        free = s.getsockname()[1]
    addr = f"127.0.0.1:{free}"
    res = am(
        "dbg", "--headless", "--listen-addr", addr, "--ws-port", str(busy_port),
        "--dir", str(tmp_path),
    )  # fmt: skip
    assert_one_line(res, f"WebSocket port {busy_port}", "in use", "--ws-port")


def test_bind_error_is_found_in_nested_groups() -> None:
    busy = OSError(errno.EADDRINUSE, "Address already in use")
    group = ExceptionGroup("outer", [ValueError("x"), ExceptionGroup("inner", [busy])])
    assert bind_error(group) is busy
    assert bind_error(ExceptionGroup("g", [OSError(errno.EPIPE, "Broken pipe")])) is None
    assert bind_error(busy) is busy


def test_rpc_example_serve_on_a_busy_address(busy_port: int) -> None:
    addr = f"127.0.0.1:{busy_port}"
    res = subprocess.run(
        [sys.executable, "-m", "machines.rpc.example", "serve", "--addr", addr],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert_one_line(res, f"example serve: cannot listen on {addr}", "in use", "--addr")
