"""``am dbg --ui-ssh`` (C.6 #17): the real command serves its UI to a real SSH client.

The client is asyncssh's, with a PTY; what it receives is drawn by ``pyte`` (a terminal
emulator), so the assertions read the screen a person would see."""

from __future__ import annotations

import asyncio
import re
import signal
import socket
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import asyncssh
import pyte
import pytest
from conftest import GO_DUMP, ROOT, free_port_run, running_dbg
from conftest import dbg_env as _env

pytestmark = pytest.mark.timeout(120)

HOME = b"\x1b[H"
CTRL_Q = b"\x11"


PRODUCER = """
from machines import Machine, State
a = Machine({"A": State(), "B": State(add=["A"])}, id="proc-a")
b = Machine({"X": State(multi=True)}, id="proc-b", parent=a)
for _ in range(50):
    a.add("B"); a.remove(["A", "B"]); b.add("X")
"""


class Term(asyncssh.SSHClientSession):
    """The client's terminal: pyte draws what the server sends; waits are on arrivals."""

    def __init__(self, cols: int = 120, rows: int = 40) -> None:
        self.screen = pyte.Screen(cols, rows)
        self.stream = pyte.ByteStream(self.screen)
        self.raw = bytearray()
        self.changed = asyncio.Event()
        self.closed = asyncio.Event()

    def data_received(self, data: bytes, datatype: object) -> None:
        self.raw += data
        self.stream.feed(data)
        self.changed.set()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed.set()
        self.changed.set()

    @property
    def text(self) -> str:
        return "\n".join(self.screen.display)

    async def until(self, ok: Callable[[Term], bool], timeout: float = 30) -> None:
        """Wait until ``ok(self)``; fail with the screen if the session ends first."""
        try:
            async with asyncio.timeout(timeout):
                while not ok(self):
                    assert not self.closed.is_set(), f"session closed; screen:\n{self.text}"
                    self.changed.clear()
                    await self.changed.wait()
        except TimeoutError:
            raise AssertionError(f"not seen in {timeout} s; screen:\n{self.text}") from None


async def _open(
    port: int, pty: bool = True, size: tuple[int, int] = (120, 40), command: str | None = None
) -> tuple[asyncssh.SSHClientConnection, asyncssh.SSHClientChannel, Term]:
    conn = await asyncssh.connect(
        "127.0.0.1", port, known_hosts=None, username="someone", config=None
    )
    chan, term = await conn.create_session(
        lambda: Term(*size),
        command,
        term_type="xterm" if pty else None,
        term_size=size if pty else None,
        encoding=None,
    )
    return conn, chan, term


async def _refused(port: int, **kw: object) -> tuple[str, int | None]:
    """What a session that does not get the UI reads, and its exit status."""
    conn, chan, term = await _open(port, **kw)  # type: ignore[arg-type]
    async with conn:
        async with asyncio.timeout(20):
            await term.closed.wait()
        return term.raw.decode(), chan.get_exit_status()


async def _scenario(port: int, proc: subprocess.Popen) -> None:
    # a session with a PTY sees the UI, at its size (120 columns: the machine list shows)
    conn_a, chan_a, a = await _open(port)
    await a.until(lambda t: "mach://sim-p11/" in t.screen.display[0] and "Machines:107" in t.text)
    assert "Transition 9 / 9" in a.text

    # keys work: Home goes to the first transition
    chan_a.write(HOME)
    await a.until(lambda t: "Transition 1 / 9" in t.text)
    # the help; a lone Escape (a key once no sequence follows it) closes it
    chan_a.write(b"?")
    await a.until(lambda t: "quit (over SSH: end the session" in t.text)
    chan_a.write(b"\x1b")
    await a.until(lambda t: "over SSH" not in t.text and "Transition 1 / 9" in t.text)

    # one session at a time: a second is refused, the first keeps the UI
    text, status = await _refused(port)
    assert text.startswith("am-dbg server busy...") and status == 1
    # without a terminal there is no UI to show (one line, whether a shell or a command)
    text, status = await _refused(port, pty=False)
    assert text == "am-dbg server busy... (one SSH session at a time)\n" and status == 1

    # not SSH at all: that connection is dropped, the session goes on
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n" + bytes(range(256)) * 64)
    async with asyncio.timeout(20):
        await reader.read()  # until the server closes it
    writer.close()

    # the window shrinks: the UI follows (under 100 columns: no machine list)
    a.screen.resize(30, 90)
    chan_a.change_terminal_size(90, 30)
    await a.until(
        # the transitions' timeline is 6th from the bottom: the next-tx bar, the steps
        # timeline, 2 toolbar rows and the status bar under it
        lambda t: "Machines:" not in t.text and "Transition 1 / 9" in t.screen.display[-6]
    )

    # bad input (not UTF-8, a broken mouse report) is dropped; the session goes on
    chan_a.write(b"\xff\xfe\x1b[<999;x;yM\x1b[")
    chan_a.write(b"\x1b[F")  # End
    await a.until(lambda t: "Transition 9 / 9" in t.text)

    # the mouse too (SGR reports): a click halfway along the transitions' timeline seeks there
    row = next(i for i, line in enumerate(a.screen.display) if line.startswith("Transition 9"))
    chan_a.write(f"\x1b[<0;45;{row + 1}M\x1b[<0;45;{row + 1}m".encode())
    await a.until(lambda t: re.search(r"Transition [2-8] / 9", t.text) is not None)
    chan_a.write(b"\x1b[F")  # End
    await a.until(lambda t: "Transition 9 / 9" in t.text)

    # Ctrl+Q ends the session, not the debugger
    chan_a.write(CTRL_Q)
    async with asyncio.timeout(20):
        await a.closed.wait()
    assert chan_a.get_exit_status() == 0
    assert b"session ended (Ctrl+Q); the debugger keeps running" in a.raw
    assert a.raw.endswith(b"\x1b[?1049l\x1b[?25h\x1b[?1004lam-dbg: session ended (Ctrl+Q); "
                          b"the debugger keeps running\r\n")  # fmt: skip
    conn_a.close()
    assert proc.poll() is None

    # free again: without a PTY now the reason is the terminal
    text, status = await _refused(port, pty=False, command="ls")
    assert "needs a terminal" in text and status == 1

    # off-screen, the collector goes on collecting
    producer = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-c", PRODUCER],
        env=dict(_env(), AM_DBG_ADDR=f"127.0.0.1:{port - 2}"),
        timeout=60,
    )
    assert producer.returncode == 0

    # the same UI again (the cursor where the last session left it), at this client's size,
    # with the machines that came meanwhile
    conn_b, chan_b, b = await _open(port, size=(110, 35))
    await b.until(lambda t: "Transition 9 / 9" in t.text and "Machines:109" in t.text)
    chan_b.write(HOME)
    await b.until(lambda t: "Transition 1 / 9" in t.text)

    # the connection drops mid-session (no SSH goodbye): the UI goes back off-screen
    conn_b.abort()
    conn_c, chan_c, c = await _open(port)
    await c.until(lambda t: "Transition 1 / 9" in t.text)

    # the debugger quits (SIGTERM where it runs): the session is told and closed
    proc.send_signal(signal.SIGTERM)
    async with asyncio.timeout(30):
        await c.closed.wait()
    assert b"am-dbg: the debugger quit\r\n" in c.raw
    conn_c.close()


def test_ui_over_ssh_one_session_at_a_time_ctrl_q_ends_it(tmp_path: Path):
    """C.6 #17: ``ssh -p P+2 127.0.0.1`` with a PTY shows the TUI; a second session is refused
    with "am-dbg server busy..."; Ctrl+Q ends the session but the server keeps running; a
    dropped connection frees the UI for the next session; garbage on the port is dropped."""
    port = free_port_run(3)
    with running_dbg(
        "--ui-ssh", "-i", str(GO_DUMP), "mach://sim-p11", "-l", f"127.0.0.1:{port}",
        "-d", str(tmp_path), "--no-clean-on-connect", ready="am dbg: SSH ",
    ) as (proc, lines):  # fmt: skip
        assert (
            f"am dbg: SSH ssh 127.0.0.1 -p {port + 2} -o UserKnownHostsFile=/dev/null "
            "-o StrictHostKeyChecking=no\n"
        ) in lines
        asyncio.run(_scenario(port + 2, proc))
        out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert not err, err  # nothing to say: every session and bad connection was handled
    assert "Clients: 109" in out and "Transitions: 7755" in out


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "cli.main", "dbg", "--ui-ssh", *args],
        env=_env(), cwd=ROOT, stdin=subprocess.DEVNULL, capture_output=True, text=True,
        timeout=60,
    )  # fmt: skip


def test_ui_ssh_needs_a_listen_port_and_says_when_its_port_is_taken(tmp_path: Path):
    done = _run("-l", "-1", "-d", str(tmp_path))
    assert done.returncode == 2
    assert done.stderr == "am dbg: --ui-ssh needs --listen-addr: SSH listens on its port + 2\n"

    port = free_port_run(3)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", port + 2))
        taken.listen()
        done = _run("-l", f"127.0.0.1:{port}", "-d", str(tmp_path))
    assert done.returncode == 1
    assert done.stderr.startswith(f"am dbg: cannot listen on 127.0.0.1:{port + 2}: ")
    assert "SSH listens on its port + 2" in done.stderr
