"""`am repl` as a real process against machines exposed by other real processes.

One-shot mode (``-- COMMAND``: exit 0 / 1), piped lines, Ctrl-C ending a `watch`, and the
Taskfile's `repl` task. The machines are `tests/fixtures/repl_target.py` processes, each exposing
one machine for the REPL into a directory, as `am start` does for the example's machines.
"""

from __future__ import annotations

import hashlib
import os
import queue
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
TARGET = REPO / "tests" / "fixtures" / "repl_target.py"
AM = [sys.executable, "-m", "cli.main"]
ENV = {**os.environ, "PYTHONPATH": str(REPO), "PYTHONUNBUFFERED": "1"}
TIMEOUT = 30

pytestmark = pytest.mark.timeout(120)


def repl_source_id() -> str:
    """The REPL's id when run from the repo (its mutations' source)."""
    return "repl-" + hashlib.md5(str(REPO).encode()).hexdigest()[:6]


class Proc:
    """A child process whose output lines are read by a thread, to wait for them."""

    def __init__(self, args: list[str], *, stdin: int | None = subprocess.PIPE) -> None:
        self.proc = subprocess.Popen(
            args,
            cwd=REPO,
            env=ENV,
            stdin=stdin,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self.lines: list[str] = []
        self._queue: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self._queue.put(line.rstrip("\n"))
        self._queue.put(None)

    def expect(self, pattern: str, timeout: float = TIMEOUT) -> re.Match[str]:
        """The next line matching `pattern` (earlier lines are kept in `lines`)."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                line = self._queue.get(timeout=max(deadline - time.monotonic(), 0.01))
            except queue.Empty:
                raise AssertionError(f"no line matching {pattern!r}; got {self.lines}") from None
            if line is None:
                raise AssertionError(f"exited before a line matching {pattern!r}: {self.lines}")
            self.lines.append(line)
            if m := re.search(pattern, line):
                return m

    def send(self, line: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()

    def wait(self, timeout: float = TIMEOUT) -> int:
        code = self.proc.wait(timeout)
        # drain what is left
        while (line := self._queue.get(timeout=5)) is not None:
            self.lines.append(line)
        return code

    def stop(self) -> None:
        if self.proc.poll() is None:
            if self.proc.stdin is not None:
                self.proc.stdin.close()
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


class Target(Proc):
    """A process exposing machine `id` for the REPL into `directory`."""

    def __init__(self, id: str, directory: Path) -> None:
        super().__init__([sys.executable, str(TARGET), "--id", id, "--dir", str(directory)])
        self.id = id
        self.addr = self.expect(r"^exposed \S+ (\S+)$").group(1)


@pytest.fixture
def addr_dir(tmp_path: Path) -> Path:
    return tmp_path / "addrs"


@pytest.fixture
def targets(addr_dir: Path) -> Iterator[dict[str, Target]]:
    """foo and bar, exposed into `addr_dir`."""
    started: dict[str, Target] = {}
    try:
        for id in ("foo", "bar"):
            started[id] = Target(id, addr_dir)
        yield started
    finally:
        for t in started.values():
            t.stop()


def repl(*args: str, input: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*AM, "repl", *args],
        cwd=REPO,
        env=ENV,
        input=input,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
    )


def test_one_shot_list_shows_every_machine_and_a_dead_address(
    targets: dict[str, Target], addr_dir: Path
) -> None:
    start = time.monotonic()
    out = repl("--dir", str(addr_dir), "127.0.0.1:1", "--", "list")
    assert time.monotonic() - start < 20  # the dead address costs at most the connect timeout
    assert out.returncode == 0, out
    lines = out.stdout.splitlines()
    assert re.fullmatch(r"=> 1\. bar t2", lines[0])
    assert lines[1] == "=>    CR: (Start:1 Ready:1)"
    assert re.fullmatch(r"=> 2\. foo t2", lines[2])
    assert lines[4] == "=> 3. 127.0.0.1:1"
    assert lines[5].startswith("=>    D-: 127.0.0.1:1: connect failed")
    assert out.stderr == ""


def test_one_shot_add_with_args_reaches_the_machine(
    targets: dict[str, Target], addr_dir: Path
) -> None:
    # Canceled is the machine's answer, not the REPL's error: printed as at the prompt, and
    # exit 3, so a script can tell it from both success and a command that could not run
    out = repl("--dir", str(addr_dir), "--", "add", "foo", "Msg")
    assert (out.returncode, out.stdout, out.stderr) == (
        3,
        "=> Canceled (by MsgEnter); try --arg Msg.Msg --val VALUE\n",
        "",
    )
    out = repl("--dir", str(addr_dir), "--", "add", "foo", "Msg", "--arg", "Msg.Msg", "--val", "hi")
    assert (out.returncode, out.stdout) == (0, "=> Executed\n")
    # the machine's handler printed the message, with the REPL as its author
    targets["foo"].expect(rf"^\[{repl_source_id()}\] hi$")
    out = repl(targets["bar"].addr, "--", "remove", ".", "Ready")
    assert (out.returncode, out.stdout) == (0, "=> Executed\n")
    out = repl(targets["bar"].addr, "--", "mach", "bar")
    assert out.stdout == "=> (Start:1)\n"


def test_one_shot_errors_exit_1_with_one_err_line(
    targets: dict[str, Target], addr_dir: Path
) -> None:
    cases = {
        ("add", "nope", "Msg"): "err> unknown machine 'nope' (known: bar, foo)\n",
        ("add", "foo", "Nope"): "err> unknown state Nope for foo (states: Exception "
        "ErrOnClient Start Ready Bored Msg)\n",
        ("add", "foo", "Msg", "--arg", "Msg.X", "--val", "1"): "err> unknown argument Msg.X "
        "for foo (known: Msg.Msg)\n",
        ("add", "foo", "Msg", "--val", "1"): "err> 0 --arg but 1 --val: each --arg needs one "
        "--val\n",
    }
    for words, expected in cases.items():
        out = repl("--dir", str(addr_dir), "--", *words)
        assert (out.returncode, out.stdout) == (1, expected), words
    # piped lines: each runs, the exit code says whether any failed
    out = repl("--dir", str(addr_dir), input="mach foo\nadd foo Nope\nmach bar\n")
    assert out.returncode == 1 and out.stdout.count("=> (Start:1 Ready:1)") == 2
    out = repl("--dir", str(addr_dir), "127.0.0.1:1", "--req-all", "--", "list")
    assert (out.returncode, out.stdout) == (
        1,
        "err> connected to 2 of 3 (--req-all); not: 127.0.0.1:1\n",
    )
    # `connect` is done only when every machine connected (as --req-all: exit 1 if not)
    out = repl("--dir", str(addr_dir), "127.0.0.1:1", "--", "connect")
    assert (out.returncode, out.stdout) == (1, "err> connected to 2 of 3; not: 127.0.0.1:1\n")
    out = repl("--dir", str(addr_dir), "--", "connect")
    assert (out.returncode, out.stdout) == (0, "=> connected to 2 of 2\n")
    out = repl("--dir", str(addr_dir), "--")
    assert out.returncode == 2 and "nothing after --" in out.stderr
    out = repl("--", "list")
    assert out.returncode == 2 and "give an address" in out.stderr
    out = repl("--dir", str(addr_dir / "nope"), "--", "add", "foo", "Msg")
    assert out.returncode == 2 and "no such directory" in out.stderr, out.stderr
    assert len(out.stderr.splitlines()) == 1


def test_exit_codes_of_canceled_group_script_and_piped_lines(
    targets: dict[str, Target], addr_dir: Path
) -> None:
    """Every way a command runs ends with the same codes: 0 done, 1 error, 3 Canceled."""
    out = repl("--dir", str(addr_dir), "--", "group-add", "Msg")
    assert out.returncode == 3, out
    assert out.stdout.splitlines()[0] == "=> Executed: 0, Queued: 0, Canceled: 2"
    out = repl("--dir", str(addr_dir), "--", "group-add", "Msg", "--arg", "Msg.Msg", "--val", "x")
    assert (out.returncode, out.stdout) == (0, "=> Executed: 2, Queued: 0, Canceled: 0\n")
    # a script goes on after a Canceled line (it is no error) and ends Canceled
    script = addr_dir.parent / "cmds.txt"
    script.write_text("add foo Msg\nmach foo\n")
    out = repl("--dir", str(addr_dir), "--", "script", str(script))
    assert out.returncode == 3, out
    assert out.stdout.splitlines()[-1] == "=> (Start:1 Ready:1)"
    # piped lines: an error outranks a Canceled
    out = repl("--dir", str(addr_dir), input="add foo Msg\nmach foo\n")
    assert out.returncode == 3, out
    out = repl("--dir", str(addr_dir), input="add foo Msg\nadd foo Nope\n")
    assert out.returncode == 1, out
    for query in (["list"], ["status"], ["inspect", "foo", "Msg"], ["time", "foo"], ["help"]):
        out = repl("--dir", str(addr_dir), "--", *query)
        assert out.returncode == 0, (query, out)
    # the codes are documented where a user looks
    help_text = subprocess.run(
        [*AM, "repl", "--help"], env={**ENV, "COLUMNS": "200"}, capture_output=True, text=True,
        timeout=TIMEOUT,
    ).stdout  # fmt: skip
    help_text = " ".join(help_text.split())  # as a reader reads it, across the wrapped lines
    assert "3 the machine canceled the mutation" in help_text
    assert "130 interrupted by Ctrl-C" in help_text
    assert "`connect` or --req-all with not every machine connected" in help_text


def test_file_option_reads_one_address(targets: dict[str, Target], addr_dir: Path) -> None:
    foo_file = next(p for p in addr_dir.glob("*.addr") if p.read_text() == targets["foo"].addr)
    out = repl("--file", str(foo_file), "--", "mach", "foo")
    assert (out.returncode, out.stdout) == (0, "=> (Start:1 Ready:1)\n")
    empty = addr_dir.parent / "empty.addr"
    empty.write_text("")
    for bad, reason in (
        (empty, "empty file"),
        (addr_dir / "nope.addr", "No such file or directory"),
    ):
        out = repl("-f", str(bad), "--", "list")
        assert (out.returncode, out.stderr) == (2, f"am repl: --file {bad}: {reason}\n")


def test_one_shot_when_and_when_not_return_once_the_state_changes(
    targets: dict[str, Target], addr_dir: Path
) -> None:
    foo = targets["foo"]
    for command, toggle, expected in (
        ("when", "Bored", "=> Bored:1"),
        ("when-not", "Bored", "=> Bored:2"),
    ):
        waiting = Proc([*AM, "repl", "--dir", str(addr_dir), "--", command, "foo", toggle])
        try:
            foo.expect(r"^connected repl-")  # the REPL is connected and handshaken
            time.sleep(0.5)
            assert waiting.proc.poll() is None, waiting.lines  # still waiting
            foo.send(toggle)
            assert waiting.wait() == 0
            assert waiting.lines == [expected]
        finally:
            waiting.stop()


def test_watch_prints_changes_until_ctrl_c(targets: dict[str, Target], addr_dir: Path) -> None:
    foo = targets["foo"]
    watching = Proc([*AM, "repl", "--dir", str(addr_dir), "--", "watch", "foo"])
    try:
        watching.expect(r"^=> watching foo \(Start:1 Ready:1\) \(Ctrl-C stops\)$")
        foo.send("Bored")
        watching.expect(r"^=> foo \+Bored:1$")
        foo.send("Bored")
        watching.expect(r"^=> foo -Bored:2$")
        watching.proc.send_signal(signal.SIGINT)
        assert watching.wait() == 0
        assert watching.lines[-1] == "=> stopped watching foo"
    finally:
        watching.stop()
    # a wait interrupted before its answer is no success: 130, as a shell reports Ctrl-C
    foo.expect(r"^connected repl-")  # the watch's connection, printed before
    waiting = Proc([*AM, "repl", "--dir", str(addr_dir), "--", "when", "foo", "Bored"])
    try:
        foo.expect(r"^connected repl-")
        time.sleep(0.5)  # the command is running (no line says so)
        waiting.proc.send_signal(signal.SIGINT)
        assert waiting.wait() == 130
        assert waiting.lines == ["err> when: interrupted"]
    finally:
        waiting.stop()


def test_piped_lines_and_a_malformed_addr_file(targets: dict[str, Target], addr_dir: Path) -> None:
    (addr_dir / "broken.addr").write_text("no address here")
    script = addr_dir.parent / "cmds.txt"
    script.write_text("group-add Bored -p f\nmach foo\n")
    out = repl(
        "--dir", str(addr_dir), input=f"status\nscript {script}\ngroup-remove Bored\nmach foo\n"
    )
    # the broken file: one line on stderr; it is no command's failure
    assert out.stderr.splitlines() == [
        f"err> {addr_dir / 'broken.addr'}: bad address 'no address here': expected HOST:PORT "
        "(skipped)"
    ]
    assert out.returncode == 0
    assert out.stdout.splitlines() == [
        "=> Connected: 2",
        "=> Connecting: 0",
        "=> Disconnected: 0",
        "=> Total: 2",
        "=> Executed: 1, Queued: 0, Canceled: 0 (skipped 1)",
        "=> (Start:1 Ready:1 Bored:1)",
        "=> Executed: 2, Queued: 0, Canceled: 0",
        "=> (Start:1 Ready:1)",
    ]


def test_taskfile_repl_task_uses_the_start_dir(tmp_path: Path) -> None:
    """`task repl` looks where `am start` writes: tmp/, or REPL_DIR from the environment or
    from .env (which `am start` reads too). Run with an `am` that prints its arguments."""
    shutil.copy(REPO / "Taskfile.yml", tmp_path)
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "am").write_text('#!/bin/sh\necho "am $*"\n')
    (bin_dir / "am").chmod(0o755)
    env = dict(os.environ, PATH=f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    env.pop("REPL_DIR", None)

    def repl(**extra: str) -> str:
        out = subprocess.run(
            ["task", "repl"], cwd=tmp_path, capture_output=True, text=True, timeout=TIMEOUT,
            env=dict(env, **extra), stdin=subprocess.DEVNULL,
        )  # fmt: skip
        assert out.returncode == 0, out.stderr
        return out.stdout

    assert "am repl --dir tmp" in repl()
    assert "am repl --dir from-env" in repl(REPL_DIR="from-env")
    (tmp_path / ".env").write_text("REPL_DIR=from-dotenv\n")
    assert "am repl --dir from-dotenv" in repl()
    out = subprocess.run(
        ["task", "--list"], cwd=REPO, capture_output=True, text=True, timeout=TIMEOUT
    )
    assert "Start REPL for both server and browser" in out.stdout


def test_a_silent_machine_is_listed_by_its_file_and_said_busy(tmp_path: Path) -> None:
    """A port that takes the connection but never answers (a tab busy with other REPLs, a
    stuck process): listed by the machine its ``.addr`` file names, and why it is not there."""
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(4)  # never accepted: the kernel completes the connection, nobody answers
        addr = f"127.0.0.1:{silent.getsockname()[1]}"
        (tmp_path / "repl-browser-bar-f00d.addr").write_text(addr)
        out = repl("--dir", str(tmp_path), "--connect-timeout", "1", "--", "list")
        assert out.returncode == 0, out
        # which of the two depends on who wakes first: the one-shot's wait or the handshake's
        # timeout (both the connect timeout)
        name, detail = out.stdout.splitlines()
        assert name == "=> 1. browser-bar-f00d"
        assert detail in (
            f"=>    D-: {addr}: no handshake yet: busy (serving other REPLs) or stuck",
            f"=>    D-: {addr}: no handshake from {addr} in 1 s: busy (serving other REPLs) "
            "or stuck; retrying",
        ), detail
        out = repl("--dir", str(tmp_path), "--connect-timeout", "1", "--", "mach",
                   "browser-bar-f00d")  # fmt: skip
        assert out.returncode == 1
        assert out.stdout.startswith(f"err> browser-bar-f00d is disconnected ({addr}: no "), out
        assert "busy (serving other REPLs) or stuck" in out.stdout
