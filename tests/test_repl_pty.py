"""The interactive `am repl` on a real pty (pexpect), as a person uses it: the prompt, Tab
completion of a command, a machine id, a state and an argument name, commands, Ctrl-C (clears
the line at the prompt, stops a running `watch`), machines appearing and leaving while the
prompt is up, the history file, and Ctrl-D exiting 0."""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path

import pexpect
import pytest
from test_repl import ENV, REPO, Target

pytestmark = pytest.mark.timeout(180)
TIMEOUT = 30
PROMPT = "am>"  # the space after it is drawn as a cursor move
ANSI = re.compile(r"\x1b\[[0-9;?]*[a-zA-Z]")


def spawn(*args: str) -> pexpect.spawn:
    # no cursor-position requests: pexpect's pty does not answer them
    env = {**ENV, "PROMPT_TOOLKIT_NO_CPR": "1", "TERM": "xterm"}
    child = pexpect.spawn(
        sys.executable,
        ["-m", "cli.main", "repl", *args],
        cwd=str(REPO),
        env=env,
        encoding="utf-8",
        timeout=TIMEOUT,
        dimensions=(40, 160),
    )
    return child


def screen_text(child: pexpect.spawn) -> str:
    return ANSI.sub("", child.before or "")


def test_interactive_prompt_completion_commands_ctrl_c_ctrl_d(tmp_path: Path) -> None:
    addr_dir, history = tmp_path / "addrs", tmp_path / "history"
    foo = Target("foo", addr_dir)
    child = spawn("--dir", str(addr_dir), "--history", str(history))
    bar = None
    try:
        child.expect_exact("+ foo (")
        child.expect_exact(PROMPT)

        # Tab completes a command name. Completion is asynchronous, so each Tab waits for its
        # insertion to be drawn (the screen is drawn as differences: only the new characters)
        # before typing on; what runs proves what was completed.
        child.send("li\t")
        child.expect_exact("st")
        child.send("\r")
        child.expect(r"1\. foo t2")
        child.expect_exact("CR: (Start:1 Ready:1)")
        child.expect_exact(PROMPT)

        # a machine id, a state, an argument name
        child.send("add f\t")
        child.expect_exact("oo")
        child.send("Ms\t")
        child.expect_exact("g")
        child.send("--a\t")
        child.expect_exact("rg")
        child.send("\t")
        child.expect_exact("Msg.Msg")
        child.send("--val 'hi there'\r")
        child.expect_exact("Executed")
        foo.expect(r"^\[repl-\w+\] hi there$")
        child.expect_exact(PROMPT)

        # Ctrl-C clears the line being typed: it never runs
        child.send("add foo Nope")
        child.expect_exact("Nope")
        child.sendintr()
        child.expect_exact(PROMPT)
        child.send("status\r")
        child.expect_exact("Total: 1")
        assert "unknown state" not in screen_text(child)
        child.expect_exact(PROMPT)

        # watch prints changes live; Ctrl-C stops it and the prompt comes back
        child.send("watch foo\r")
        child.expect_exact("watching foo")
        foo.send("Bored")
        child.expect_exact("foo +Bored:1")
        child.sendintr()
        child.expect_exact("stopped watching foo")
        child.expect_exact(PROMPT)

        # a machine appears and leaves while the prompt is up
        bar = Target("bar", addr_dir)
        child.expect_exact("+ bar (")
        bar.stop()
        child.expect_exact("- bar")
        child.send("mach .\r")
        child.expect_exact("(Start:1 Ready:1 Bored:1)")

        # Ctrl-D at an empty prompt exits 0
        child.expect_exact(PROMPT)
        child.sendeof()
        child.expect(pexpect.EOF)
        child.close()
        assert child.exitstatus == 0
        saved = history.read_text()
        assert "+status" in saved and "+watch foo" in saved and "+add foo Nope" not in saved
    finally:
        if child.isalive():
            child.terminate(force=True)
        foo.stop()
        if bar is not None:
            bar.stop()


def test_interactive_bad_input_keeps_the_prompt(tmp_path: Path) -> None:
    child = spawn("127.0.0.1:1", "--history", os.devnull, "--connect-timeout", "1")
    try:
        child.expect_exact(PROMPT)
        child.send("add nope Msg\r")
        child.expect_exact("unknown machine 'nope' (known: 127.0.0.1:1)")
        child.expect_exact(PROMPT)
        child.send("list\r")
        child.expect_exact("D-: 127.0.0.1:1: connect failed")
        child.expect_exact(PROMPT)
        child.send("exit\r")
        child.expect(pexpect.EOF)
        child.close()
        assert child.exitstatus == 0
    finally:
        if child.isalive():
            child.terminate(force=True)


def test_ctrl_c_under_task_repl_stops_commands_and_never_ends_task(tmp_path: Path) -> None:
    """`task repl` (go-task in between): each Ctrl-C that stops a running command was a SIGINT
    to task too, which gave up at the third ("Forcing shutdown") and left the REPL orphaned on
    a terminal the shell took back. In a process group of its own, only the REPL sees it."""
    import shutil

    task = shutil.which("task")
    if task is None:
        pytest.fail("the go-task binary is missing: pip install go-task-bin")
    addr_dir = tmp_path / "addrs"
    (tmp_path / "Taskfile.yml").write_text(
        'version: "3"\n'
        "tasks:\n"
        "  repl:\n"
        "    interactive: true\n"
        "    cmds:\n"
        f"      - {sys.executable} -m cli.main repl --dir {addr_dir} --history {os.devnull}\n"
    )
    foo = Target("foo", addr_dir)
    env = {**ENV, "PROMPT_TOOLKIT_NO_CPR": "1", "TERM": "xterm"}
    child = pexpect.spawn(
        task, ["--silent", "--taskfile", str(tmp_path / "Taskfile.yml"), "repl"],
        cwd=str(REPO), env=env, encoding="utf-8", timeout=TIMEOUT, dimensions=(40, 160),
    )  # fmt: skip
    try:
        child.expect_exact("+ foo (")
        child.expect_exact(PROMPT)
        for _ in range(4):  # task forced its way out at the third
            child.send("watch foo\r")
            child.expect_exact("watching foo")
            child.sendintr()
            child.expect_exact("stopped watching foo")
            child.expect_exact(PROMPT)
        child.send("status\r")
        child.expect_exact("Total: 1")
        child.expect_exact(PROMPT)
        assert "Signal received" not in screen_text(child)
        child.sendeof()
        child.expect(pexpect.EOF)
        child.close()
        seen = screen_text(child)
        assert "Signal received" not in seen and "Forcing" not in seen, seen
        assert child.exitstatus == 0, seen
    finally:
        if child.isalive():
            child.terminate(force=True)
        foo.stop()
