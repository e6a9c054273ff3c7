"""`am relay` as a real process: it prints what it serves, tunnels work, bad options get a
one-line error, and Ctrl-C closes tunnels and removes address files."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
from functools import partial
from pathlib import Path

import pytest
import trio
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

REPO = Path(__file__).resolve().parents[1]
AM = [sys.executable, "-m", "cli.main"]


def test_help_lists_relay_and_its_options() -> None:
    out = subprocess.run([*AM, "--help"], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and "relay" in out.stdout
    out = subprocess.run(
        [*AM, "relay", "--help"], cwd=REPO, capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0
    for option in ("--listen-addr", "--static-dir", "--repl-addr-dir", "--allow", "--token"):
        assert option in out.stdout
    for option in ("--max-tunnels-per-peer", "--idle-timeout", "--dial-timeout"):
        assert option in out.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--idle-timeout", "-1"], "idle timeout must be positive"),
        (["--dial-timeout", "0"], "dial timeout must be positive"),
        (["--max-tunnels-per-peer", "0"], "max tunnels per peer must be at least 1"),
    ],
)
def test_bad_limits_are_one_line_errors(args: list[str], message: str) -> None:
    cmd = [*AM, "relay", *args]
    out = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=60)
    assert out.returncode == 2
    assert out.stderr.startswith("am relay: ") and message in out.stderr
    assert len(out.stderr.splitlines()) == 1, out.stderr


def test_bad_option_is_a_one_line_error() -> None:
    out = subprocess.run(
        [*AM, "relay", "--allow", "nohost"], cwd=REPO, capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 2
    assert out.stderr.startswith("am relay: bad address 'nohost'"), out.stderr
    assert len(out.stderr.splitlines()) == 1, out.stderr


@pytest.mark.trio
async def test_serves_then_stops_cleanly_on_ctrl_c(tmp_path: Path) -> None:
    site = tmp_path / "site"
    site.mkdir()
    (site / "index.html").write_text("hi")
    addr_dir = tmp_path / "addrs"
    with trio.fail_after(60):
        proc, addr, out = await _relay_started(
            f"--static-dir={site}", f"--repl-addr-dir={addr_dir}", "--allow=127.0.0.1:0"
        )
        try:
            text = out.decode()
            assert f"serving {site}" in text and "allowed targets: 127.0.0.1:0" in text
            url = f"ws://{addr}/listen/repl-cli/127.0.0.1:0"
            conn = await trio.to_thread.run_sync(partial(connect, url, legacy=True))
            assert (addr_dir / "repl-cli.addr").exists()
            proc.send_signal(signal.SIGINT)

            def close_code() -> int | None:
                try:
                    while True:
                        conn.recv(timeout=10)
                except ConnectionClosed:
                    return conn.close_code

            assert await trio.to_thread.run_sync(close_code) == 1001
            while chunk := await proc.stdout.receive_some():
                out += chunk
            assert await proc.wait() == 0
            assert re.search(r"limits: \d+ tunnels, \d+ per client, 60 s idle", out.decode())
        finally:
            proc.kill()
            await proc.wait()
        assert "relay stopped" in out.decode()
        assert not (addr_dir / "repl-cli.addr").exists()


@pytest.mark.trio
async def test_ctrl_c_with_a_browser_that_stopped_reading(tmp_path: Path) -> None:
    """A client that never reads holds a socket write of the relay; Ctrl-C still ends the
    process promptly (every write can be interrupted), with the address file removed."""
    with trio.fail_after(60):
        proc, addr, out = await _relay_started(f"--repl-addr-dir={tmp_path}", "--allow=127.0.0.1:0")
        try:
            url = f"ws://{addr}/listen/repl-stuck/127.0.0.1:0"
            # No pings: like a frozen browser tab, this client neither reads nor answers.
            conn = await trio.to_thread.run_sync(
                partial(connect, url, legacy=True, ping_interval=None, max_queue=1)
            )
            addr_file = tmp_path / "repl-stuck.addr"
            host, port = addr_file.read_text().rsplit(":", 1)
            tcp = await trio.open_tcp_stream(host, int(port))
            sent = [0]

            async def flood() -> None:
                block = b"x" * (1 << 20)
                try:
                    while True:
                        await tcp.send_all(block)
                        sent[0] += len(block)
                except trio.BrokenResourceError:
                    pass  # the relay is gone

            async with trio.open_nursery() as nursery:
                nursery.start_soon(flood)
                last = -1
                while sent[0] != last:  # until the relay stops taking more
                    last = sent[0]
                    await trio.sleep(0.5)
                proc.send_signal(signal.SIGINT)
                started = trio.current_time()
                while chunk := await proc.stdout.receive_some():
                    out += chunk
                assert await proc.wait() == 0
                print(f"exited {trio.current_time() - started:.1f} s after SIGINT")
                assert trio.current_time() - started < 6
                nursery.cancel_scope.cancel()
            assert not addr_file.exists()
            assert "relay stopped" in out.decode()
            conn.close_timeout = 0.1  # the relay is gone; no close handshake to wait for
            await trio.to_thread.run_sync(conn.close)
        finally:
            proc.kill()
            await proc.wait()


async def _relay_started(*options: str) -> tuple[trio.Process, str, bytes]:
    """`am relay --listen-addr=127.0.0.1:0 *options`, up: (process, its address, what it
    printed so far). The process is killed if it does not come up."""
    args = [*AM, "relay", "--listen-addr=127.0.0.1:0", *options]
    proc = await trio.lowlevel.open_process(
        args, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    try:
        out = b""
        while b"allowed origins" not in out:
            chunk = await proc.stdout.receive_some()
            assert chunk, out
            out += chunk
    except BaseException:
        proc.kill()
        raise
    addr = re.search(r"relay listening on http://([^/]+)/", out.decode()).group(1)
    return proc, addr, out


def _status(addr: str, path: str) -> int:
    import http.client

    host, port = addr.rsplit(":", 1)
    conn = http.client.HTTPConnection(host, int(port), timeout=10)
    try:
        conn.request("GET", path)
        return conn.getresponse().status
    finally:
        conn.close()


@pytest.mark.trio
async def test_static_dir_serves_a_folder_whole_and_the_page_dir_only_its_files(
    tmp_path: Path,
) -> None:
    """A user's folder: every file but dotfiles. The page's own folder (web/): only the
    page's files, as `am start` serves it; its build scripts are 404."""
    site = tmp_path / "site"
    (site / "js").mkdir(parents=True)
    (site / "notes.txt").write_text("mine")
    (site / "js" / "app.js").write_text("export {}")
    (site / ".env").write_text("TOKEN=x")
    cases = {
        site: {"/notes.txt": 200, "/js/app.js": 200, "/.env": 404},
        REPO / "web": {
            "/index.html": 200,
            "/main.mjs": 200,
            "/build_page.py": 404,
            "/build_prod.py": 404,
        },  # fmt: skip
    }
    with trio.fail_after(60):
        for static_dir, want in cases.items():
            proc, addr, out = await _relay_started(f"--static-dir={static_dir}")
            text = out.decode()
            try:
                if static_dir == site:
                    assert f"serving {site} at http://{addr}/ (every file but dotfiles)" in text
                else:
                    assert f"serving the page from {static_dir} at" in text
                    assert "(only its files)" in text
                for path, status in want.items():
                    assert await trio.to_thread.run_sync(_status, addr, path) == status, path
            finally:
                proc.send_signal(signal.SIGINT)
                with trio.move_on_after(10):
                    await proc.wait()
                proc.kill()
                await proc.wait()
