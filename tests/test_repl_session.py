"""The REPL's session in-process: real machines exposed on loopback (`expose`), a real relay for
the browser's path, and the same `Session.execute` the prompt and the one-shot mode use.

Commands, filters, waiting, discovery as ``.addr`` files come and go, bad input, completion.
"""

from __future__ import annotations

import hashlib
import os
import socket
import subprocess
import sys
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import trio
from prompt_toolkit.completion import CompleteEvent
from prompt_toolkit.document import Document

from cli.repl.completer import ReplCompleter
from cli.repl.output import Output
from cli.repl.session import Session
from machines import Machine, State
from machines.rpc.repl import ReplEndpoint, expose, expose_env

pytestmark = pytest.mark.timeout(60)
TIMEOUT = 20

SCHEMA = {
    "Exception": State(multi=True),
    "ErrOnClient": State(require=["Exception"]),
    "Start": State(),
    "Ready": State(require=["Start"]),
    "Bored": State(),
    "Msg": State(multi=True, remove=["Bored"]),
}
ARGS = {"Msg.Msg": "msg"}


class Handlers:
    def __init__(self) -> None:
        self.messages: list[tuple[str, str]] = []  # (author, msg)

    def MsgEnter(self, e) -> bool:  # noqa: N802
        return bool(e.args.get("msg"))

    def MsgState(self, e) -> None:  # noqa: N802
        src = e.mutation.source
        self.messages.append((src.machine_id if src else "local", e.args["msg"]))


@dataclass
class Exposed:
    mach: Machine
    mux: Any
    handlers: Handlers


class Lines(Output):
    """Collects command output (``=>`` / ``err>`` lines) and, apart, notices (machines coming
    and going); wakes whoever waits for a line."""

    def __init__(self) -> None:
        super().__init__()
        self.lines: list[str] = []
        self.notices: list[str] = []
        self._changed = trio.Event()

    def _write(self, prefix: str, text: str, kind: str) -> None:
        into = self.notices if kind == "notice" else self.lines
        into.extend(prefix + line for line in text.splitlines() or [""])
        self._changed.set()
        self._changed = trio.Event()

    def notice(self, text: str) -> None:
        self._write("=> ", text, "notice")

    def warning(self, text: str) -> None:
        self._write("err> ", text, "warning")

    async def wait_for(self, text: str) -> str:
        """The first line (output or notice) containing `text`, once there is one."""
        while True:
            changed = self._changed
            for line in self.lines + self.notices:
                if text in line:
                    return line
            await changed.wait()

    def take(self) -> list[str]:
        lines, self.lines = self.lines, []
        return lines


@asynccontextmanager
async def session(**opts: Any) -> AsyncIterator[tuple[Session, Lines]]:
    out = Lines()
    opts.setdefault("connect_timeout", 2.0)
    async with Session(out, **opts).running() as s:
        await s.peers.settle(5)
        yield s, out


async def run(s: Session, out: Lines, line: str) -> tuple[bool, list[str]]:
    out.take()
    ok = await s.execute(line)
    return ok, out.take()


@asynccontextmanager
async def exposed(*ids: str, addr_dir: Path | None = None) -> AsyncIterator[dict[str, Exposed]]:
    """Machines (Start and Ready active) exposed for the REPL, by id."""
    out: dict[str, Exposed] = {}
    async with trio.open_nursery() as nursery:
        for mid in ids:
            ready = trio.Event()

            async def serve(mid: str = mid, ready: trio.Event = ready) -> None:
                handlers = Handlers()
                mach = Machine(SCHEMA, id=mid, handlers=handlers)
                mach.add(["Start", "Ready"])
                async with expose(mach, "127.0.0.1:0", addr_dir, args=ARGS) as mux:
                    out[mid] = Exposed(mach, mux, handlers)
                    ready.set()
                    await trio.sleep_forever()

            nursery.start_soon(serve)
            await ready.wait()
        yield out
        nursery.cancel_scope.cancel()


def repl_source_id() -> str:
    return "repl-" + hashlib.md5(os.getcwd().encode()).hexdigest()[:6]


# --- commands --------------------------------------------------------------------------------


@pytest.mark.trio
async def test_list_marks_and_add_with_args_carries_the_repl_as_source() -> None:
    with trio.fail_after(TIMEOUT):
        async with (
            exposed("foo", "bar") as ms,
            session(addrs=[ms["foo"].mux.addr, ms["bar"].mux.addr]) as (s, out),
        ):
            ok, lines = await run(s, out, "list")
            assert ok
            assert lines[0].startswith("=> 1. bar t") and lines[1] == "=>    CR: (Start:1 Ready:1)"
            assert lines[2].startswith("=> 2. foo t")
            ok, lines = await run(s, out, "add foo Msg --arg Msg.Msg --val hi")
            assert ok and lines == ["=> Executed"]
            foo = ms["foo"].mach
            assert ms["foo"].handlers.messages == [(repl_source_id(), "hi")]
            assert foo.is_active("Msg") and foo.tick("Msg") == 1
            # `.` is the first connected machine in list order (bar)
            ok, lines = await run(s, out, "add . Bored")
            assert ok and ms["bar"].mach.is_active("Bored") and not foo.is_active("Bored")


@pytest.mark.trio
async def test_mutation_source_is_the_repl_id() -> None:
    handlers = Handlers()
    mach = Machine(SCHEMA, id="src", handlers=handlers)
    with trio.fail_after(TIMEOUT):
        async with (
            expose(mach, "127.0.0.1:0", args=ARGS) as mux,
            session(addrs=[mux.addr]) as (
                s,
                out,
            ),
        ):
            ok, lines = await run(s, out, "add src Msg --arg Msg.Msg --val 'hello there'")
            assert ok and lines == ["=> Executed"]
            assert handlers.messages == [(repl_source_id(), "hello there")]
            ok, lines = await run(s, out, "remove src Msg")
            assert ok and not mach.is_active("Msg")


class Raises(Handlers):
    def BoredEnter(self, e) -> None:  # noqa: N802
        raise RuntimeError("too bored to be bored")


@pytest.mark.trio
async def test_a_canceled_mutation_says_why_to_the_repl_that_asked() -> None:
    mach = Machine(SCHEMA, id="foo", handlers=Raises())
    mach.add(["Start", "Ready"])
    with trio.fail_after(TIMEOUT):
        async with (
            expose(mach, "127.0.0.1:0", args=ARGS) as mux,
            session(addrs=[mux.addr]) as (s, out),
            session(addrs=[mux.addr]) as (other, other_out),
        ):
            # a negotiation handler refused it: which one, and the arguments not given
            ok, lines = await run(s, out, "add foo Msg")
            assert (ok, lines) == (
                True,
                ["=> Canceled (by MsgEnter); try --arg Msg.Msg --val VALUE"],
            )
            # relations, named as the schema has them
            assert (await run(s, out, "remove foo Start")) == (True, ["=> Executed"])
            await s.peer("foo").netmach.when_not("Start")
            ok, lines = await run(s, out, "add foo Ready")
            assert (ok, lines) == (True, ["=> Canceled (Ready requires Start)"])
            # a handler that raised
            ok, lines = await run(s, out, "add foo Bored")
            assert lines == [
                "=> Canceled (by BoredEnter, which raised RuntimeError: too bored to be bored)"
            ]
            # the reason went to the asking REPL only: the other one's answers stay plain
            assert s.peer("foo").cancel_reason and not other.peer("foo").cancel_reason
            assert (await run(other, other_out, "add foo Bored --arg Msg.Msg --val x")) == (
                True,
                ["=> Canceled (by BoredEnter, which raised RuntimeError: too bored to be bored)"],
            )
            # an accepted mutation after a canceled one has no stale reason
            ok, lines = await run(s, out, "add foo Msg --arg Msg.Msg --val hi")
            assert (ok, lines) == (True, ["=> Executed"]) and not s.peer("foo").cancel_reason


@pytest.mark.trio
async def test_mach_time_inspect_status() -> None:
    with trio.fail_after(TIMEOUT):
        async with (
            exposed("foo") as ms,
            session(addrs=[ms["foo"].mux.addr, "127.0.0.1:1"]) as (
                s,
                out,
            ),
        ):
            assert (await run(s, out, "mach foo")) == (True, ["=> (Start:1 Ready:1)"])
            ok, lines = await run(s, out, "mach foo --all")
            assert lines == ["=> (Start:1 Ready:1) [Exception:0 ErrOnClient:0 Bored:0 Msg:0]"]
            assert (await run(s, out, "time foo --sum")) == (True, ["=> 2"])
            assert (await run(s, out, "time foo Start Msg")) == (True, ["=> Start:1 Msg:0"])
            ok, lines = await run(s, out, "inspect foo Ready")
            assert lines == [
                "=> mach://foo",
                "=> 1 Ready",
                "=>     |Tick     1",
                "=>     |Require  Start",
            ]
            ok, lines = await run(s, out, "status")
            assert lines == [
                "=> Connected: 1",
                "=> Connecting: 0",
                "=> Disconnected: 1",
                "=> Total: 2",
            ]


@pytest.mark.trio
async def test_list_filters() -> None:
    with trio.fail_after(TIMEOUT):
        async with (
            exposed("foo", "bar", "baz") as ms,
            session(addrs=[m.mux.addr for m in ms.values()]) as (s, out),
        ):
            ms["baz"].mach.add("Bored")
            await s.peer("baz").netmach.when("Bored")

            def ids(lines: list[str]) -> list[str]:
                return [ln.split()[2] for ln in lines if ln[3].isdigit()]

            assert ids((await run(s, out, "list"))[1]) == ["bar", "baz", "foo"]
            assert ids((await run(s, out, "list -a Bored"))[1]) == ["baz"]
            assert ids((await run(s, out, "list -i Bored"))[1]) == ["bar", "foo"]
            assert ids((await run(s, out, "list -p ba"))[1]) == ["bar", "baz"]
            assert ids((await run(s, out, "list -s oo"))[1]) == ["foo"]
            assert ids((await run(s, out, "list -I a"))[1]) == ["bar", "baz"]
            assert ids((await run(s, out, "list -r '^b.r$'"))[1]) == ["bar"]
            assert ids((await run(s, out, "list -t 3"))[1]) == ["baz"]
            assert ids((await run(s, out, "list -T 2"))[1]) == ["bar", "foo"]
            assert ids((await run(s, out, "list -m Bored -t 1"))[1]) == ["baz"]
            assert ids((await run(s, out, "list -f 2 -l 1"))[1]) == ["baz"]
            ok, lines = await run(s, out, "list --no-states")
            assert lines[1] == "=>    CR"
            ok, lines = await run(s, out, "list -a Nope")
            assert ok and lines == ["=> no machines"]
            ok, lines = await run(s, out, "list -r '('")
            assert not ok and lines[0].startswith("err> bad --id-regexp '('")


@pytest.mark.trio
async def test_group_add_and_group_remove_follow_filters() -> None:
    with trio.fail_after(TIMEOUT):
        async with (
            exposed("foo", "bar", "baz") as ms,
            session(addrs=[m.mux.addr for m in ms.values()]) as (s, out),
        ):
            ok, lines = await run(s, out, "group-add Bored -p ba")
            assert ok and lines == ["=> Executed: 2, Queued: 0, Canceled: 0 (skipped 1)"]
            assert [m for m in ms if ms[m].mach.is_active("Bored")] == ["bar", "baz"]
            # group-remove removes (the reference's adds)
            ok, lines = await run(s, out, "group-remove Bored -r z$")
            assert ok and lines == ["=> Executed: 1, Queued: 0, Canceled: 0 (skipped 2)"]
            assert [m for m in ms if ms[m].mach.is_active("Bored")] == ["bar"]
            ok, lines = await run(s, out, "group-add Msg --arg Msg.Msg --val all")
            assert ok and lines == ["=> Executed: 3, Queued: 0, Canceled: 0"]
            assert all(ms[m].mach.tick("Msg") == 1 for m in ms)
            # canceled ones say why, once per distinct reason
            ok, lines = await run(s, out, "group-add Msg -p ba")
            assert (ok, lines) == (
                True,
                [
                    "=> Executed: 0, Queued: 0, Canceled: 2 (skipped 1)",
                    "=> 2 x Canceled (by MsgEnter); try --arg Msg.Msg --val VALUE",
                ],
            )
            ok, lines = await run(s, out, "group-add Nope")
            assert not ok and lines == ["err> no connected machine matches and has Nope"]


@pytest.mark.trio
async def test_when_when_not_when_time_return_once_the_state_changes() -> None:
    with trio.fail_after(TIMEOUT):
        async with exposed("foo") as ms, session(addrs=[ms["foo"].mux.addr]) as (s, out):
            foo = ms["foo"].mach
            results: list[tuple[bool, list[str]]] = []
            async with trio.open_nursery() as nursery:

                async def waiting(line: str) -> None:
                    results.append(await run(s, out, line))

                # all three wait on the same change
                done = trio.Event()

                async def sequence() -> None:
                    await s.execute("when foo Bored")
                    await s.execute("when-time foo -s Bored -t 1 -s Start -t 1")
                    done.set()

                nursery.start_soon(sequence)
                await trio.testing.wait_all_tasks_blocked()
                assert not done.is_set()
                foo.add("Bored")
                await done.wait()
            assert "=> Bored:1" in out.lines and "=> Bored:1 Start:1" in out.lines
            out.take()
            async with trio.open_nursery() as nursery:
                nursery.start_soon(s.execute, "when-not foo Bored Msg")
                await trio.testing.wait_all_tasks_blocked()
                assert out.lines == []
                foo.remove("Bored")
            assert out.lines == ["=> Bored:2 Msg:0"]
            # already true: returns at once
            assert (await run(s, out, "when . Ready")) == (True, ["=> Ready:1"])


@pytest.mark.trio
async def test_when_fails_when_the_machine_goes_away(tmp_path: Path) -> None:
    with trio.fail_after(TIMEOUT):
        async with session(directory=tmp_path) as (s, out):
            async with trio.open_nursery() as nursery:
                stop = trio.Event()

                async def serve() -> None:
                    async with exposed("gone", addr_dir=tmp_path):
                        await stop.wait()

                nursery.start_soon(serve)
                await out.wait_for("+ gone")
                result: list[bool] = []

                async def wait() -> None:
                    result.append(await s.execute("when gone Bored"))

                nursery.start_soon(wait)
                await trio.testing.wait_all_tasks_blocked()
                stop.set()
            line = await out.wait_for("err> ")
            assert result == [False] and "gone" in line


@pytest.mark.trio
async def test_watch_prints_each_change_until_interrupted() -> None:
    with trio.fail_after(TIMEOUT):
        async with exposed("foo") as ms, session(addrs=[ms["foo"].mux.addr]) as (s, out):
            foo = ms["foo"].mach
            out.take()
            async with trio.open_nursery() as nursery:
                nursery.start_soon(s.execute, "watch foo")
                await out.wait_for("watching foo (Start:1 Ready:1)")
                foo.add("Bored")
                await out.wait_for("+Bored:1")
                foo.add("Msg", {"msg": "x"})  # removes Bored
                await out.wait_for("Msg")
                foo.add("Msg", {"msg": "y"})  # re-entered: a tick change without a flip
                await out.wait_for("Msg:1->3")
                assert s.interrupt()
            lines = out.take()
            assert "=> foo -Bored:2 +Msg:1" in lines
            assert lines[-1] == "=> stopped watching foo"
            # watching some states: others' changes are not printed
            async with trio.open_nursery() as nursery:
                nursery.start_soon(s.execute, "watch foo Bored")
                await out.wait_for("watching foo")
                foo.add("Msg", {"msg": "z"})
                foo.remove("Msg")  # an active Msg blocks Bored
                foo.add("Bored")
                await out.wait_for("+Bored")
                s.interrupt()
            assert [ln for ln in out.take() if "Msg" in ln and "watching" not in ln] == []


@pytest.mark.trio
async def test_script_runs_lines_and_stops_at_the_first_error(tmp_path: Path) -> None:
    script = tmp_path / "cmds.txt"
    script.write_text("# set up\nadd foo Bored\n\nmach foo\nadd foo Nope\nmach foo --all\n")
    with trio.fail_after(TIMEOUT):
        async with exposed("foo") as ms, session(addrs=[ms["foo"].mux.addr]) as (s, out):
            ok, lines = await run(s, out, f"script {script}")
            assert not ok
            assert lines[:2] == ["=> Executed", "=> (Start:1 Ready:1 Bored:1)"]
            assert lines[2].startswith("err> unknown state Nope for foo")
            assert lines[3] == f"err> script {script}:5: stopped at this error"
            assert len(lines) == 4


@pytest.mark.trio
async def test_help_and_usage() -> None:
    with trio.fail_after(TIMEOUT):
        async with session() as (s, out):
            ok, lines = await run(s, out, "help")
            assert ok and any(ln.startswith("=> add ") for ln in lines)
            for name in ("list", "group-remove", "when-time", "watch", "script", "connect"):
                assert any(ln.startswith(f"=> {name} ") for ln in lines), name
            ok, lines = await run(s, out, "add --help")
            assert ok and lines[0].startswith("=> Usage: add [OPTIONS] MACH STATES...")
            ok, lines = await run(s, out, "exit")
            assert ok and s.exit_requested


# --- bad input -------------------------------------------------------------------------------


@pytest.mark.trio
async def test_bad_input_is_one_err_line_and_the_session_keeps_serving() -> None:
    with trio.fail_after(TIMEOUT):
        async with exposed("foo") as ms, session(addrs=[ms["foo"].mux.addr]) as (s, out):
            cases = {
                "add nope Msg": "err> unknown machine 'nope' (known: foo)",
                "add foo Nope": "err> unknown state Nope for foo (states: Exception ErrOnClient "
                "Start Ready Bored Msg)",
                "add foo Msg --arg Msg.Nope --val x": "err> unknown argument Msg.Nope for foo "
                "(known: Msg.Msg)",
                "add foo Msg --arg Msg.Msg": "err> 1 --arg but 0 --val: each --arg needs one --val",
                "when-time foo -s Bored": "err> when-time: Missing option '-t' / '--tick'.",
                "when-time foo -s Bored -s Msg -t 1": (
                    "err> 2 -s but 1 -t: each state needs one tick"
                ),
                "add": "err> add: Missing argument 'MACH'.",
                "frobnicate": "err> unknown command 'frobnicate' (try: help)",
                "add foo 'Msg": "err> cannot parse the line: No closing quotation",
                "list --zzz": "err> list: No such option '--zzz'.",
            }
            for line, expected in cases.items():
                ok, lines = await run(s, out, line)
                assert (ok, lines) == (False, [expected]), line
            # still serving
            assert (await run(s, out, "add foo Msg --arg Msg.Msg --val ok")) == (
                True,
                ["=> Executed"],
            )


@pytest.mark.trio
async def test_server_refuses_unknown_args_even_unchecked() -> None:
    """The endpoint checks too: a REPL that does not know the names gets the server's error."""
    with trio.fail_after(TIMEOUT):
        async with exposed("foo") as ms, session(addrs=[ms["foo"].mux.addr]) as (s, out):
            s.peer("foo").arg_names = None  # as if the announcement never came
            ok, lines = await run(s, out, "add foo Msg --arg Other --val x")
            assert not ok and len(lines) == 1
            assert lines[0].startswith("err> foo: ") and "unknown argument Other" in lines[0]


@pytest.mark.trio
async def test_dead_address_is_listed_disconnected_within_the_timeout() -> None:
    # a listener that never accepts: the handshake cannot happen
    sock = trio.socket.socket()
    await sock.bind(("127.0.0.1", 0))
    sock.listen(1)
    silent = f"127.0.0.1:{sock.getsockname()[1]}"
    with sock, trio.fail_after(TIMEOUT):
        start = trio.current_time()
        async with (
            exposed("foo") as ms,
            session(addrs=[ms["foo"].mux.addr, "127.0.0.1:1", silent], connect_timeout=1.0) as (
                s,
                out,
            ),
        ):
            assert trio.current_time() - start < 8
            ok, lines = await run(s, out, "list")
            assert ok and lines[0].startswith("=> 1. foo")
            assert "=> 2. 127.0.0.1:1" in lines and "=> 3. " + silent in lines
            assert any(ln.startswith("=>    D-: 127.0.0.1:1: connect failed") for ln in lines)
            # "no handshake yet", or once the handshake timeout (= connect timeout) passed,
            # "no handshake from ADDR in 1 s": which one depends on who wakes first
            assert any(ln.startswith(f"=>    D-: {silent}: no handshake ") for ln in lines)
            ok, lines = await run(s, out, "mach 127.0.0.1:1")
            assert not ok and lines[0].startswith("err> 127.0.0.1:1 is disconnected")
            ok, lines = await run(s, out, "list --no-disconn")
            assert [ln for ln in lines if ln[3].isdigit()] == [lines[0]]


@pytest.mark.trio
async def test_bad_addresses_on_the_command_line_are_skipped() -> None:
    with trio.fail_after(TIMEOUT):
        async with session(addrs=["nohost", "127.0.0.1:0", "127.0.0.1:99999"]) as (s, out):
            assert len(s.peers) == 0
            errors = [ln for ln in out.lines if ln.startswith("err> ")]
            assert len(errors) == 3 and all("bad address" in e for e in errors)


# --- discovery -------------------------------------------------------------------------------


@pytest.mark.trio
async def test_watch_dir_machines_come_and_go(tmp_path: Path) -> None:
    with trio.fail_after(TIMEOUT):
        async with session(directory=tmp_path / "later") as (s, out):
            assert out.notices == [f"=> waiting for *.addr files in {tmp_path / 'later'}"]
            async with trio.open_nursery() as nursery:
                stop = trio.Event()

                async def serve() -> None:
                    async with exposed("one", "two", addr_dir=tmp_path / "later"):
                        await stop.wait()

                nursery.start_soon(serve)
                await out.wait_for("+ one")
                await out.wait_for("+ two")
                assert sorted(p.name for p in (tmp_path / "later").iterdir()) == [
                    "one-repl.addr",
                    "two-repl.addr",
                ]
                ok, lines = await run(s, out, "list")
                assert [ln for ln in lines if ln[3].isdigit()][1].startswith("=> 2. two")
                stop.set()
            await out.wait_for("- one (one-repl.addr removed)")
            await out.wait_for("- two (two-repl.addr removed)")
            assert len(s.peers) == 0
            assert (await run(s, out, "list")) == (True, ["=> no machines"])


@pytest.mark.trio
async def test_malformed_addr_file_is_skipped_with_one_line(tmp_path: Path) -> None:
    (tmp_path / "bad.addr").write_text("not an address")
    (tmp_path / "zero.addr").write_text("localhost:0")
    (tmp_path / "empty.addr").write_text("")
    with trio.fail_after(TIMEOUT):
        async with exposed("foo", addr_dir=tmp_path), session(directory=tmp_path) as (s, out):
            await out.wait_for("+ foo")
            # several polls later, still one line per bad file
            for _ in range(3):
                await trio.sleep(0.3)
            errors = sorted(ln for ln in out.lines if ln.startswith("err> "))
            assert errors == [
                f"err> {tmp_path / 'bad.addr'}: bad address 'not an address': expected "
                "HOST:PORT (skipped)",
                f"err> {tmp_path / 'empty.addr'}: empty file (skipped)",
                f"err> {tmp_path / 'zero.addr'}: bad address 'localhost:0': port 0 is not "
                "bound yet (skipped)",
            ]
            ok, lines = await run(s, out, "list")
            assert ok and lines[0].startswith("=> 1. foo")


@pytest.mark.trio
async def test_no_watch_reads_the_dir_once(tmp_path: Path) -> None:
    with trio.fail_after(TIMEOUT):
        async with (
            exposed("first", addr_dir=tmp_path),
            session(directory=tmp_path, watch=False) as (s, out),
        ):
            async with exposed("second", addr_dir=tmp_path):
                await trio.sleep(1)  # the watcher would have polled four times by now
                assert [p.name for p in s.peers] == ["first"]
                # `connect` re-reads the directory
                ok, lines = await run(s, out, "connect")
                assert ok and lines == ["=> connected to 2 of 2"]


def refused_addr() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return f"127.0.0.1:{sock.getsockname()[1]}"


@pytest.mark.trio
async def test_a_refused_address_from_a_file_is_read_again(tmp_path: Path) -> None:
    """The file held a stale address (its owner moved): within the same connect attempt the
    peer looks at the file again and follows it, even with no watcher (a one-shot REPL that
    read the dir a moment too early). A file that does not change leaves the refusal."""
    moved, dead = tmp_path / "moved.addr", tmp_path / "dead.addr"
    moved.write_text(refused_addr())
    dead.write_text(refused_addr())
    with trio.fail_after(TIMEOUT):
        async with exposed("foo") as ms, trio.open_nursery() as nursery:

            async def owner_moves() -> None:
                await trio.sleep(0.3)
                tmp = tmp_path / ".moved.tmp"
                tmp.write_text(ms["foo"].mux.addr)
                os.replace(tmp, moved)

            nursery.start_soon(owner_moves)
            start = trio.current_time()
            async with session(directory=tmp_path, watch=False, connect_timeout=2.0) as (s, out):
                assert trio.current_time() - start < 4
                ok, lines = await run(s, out, "list")
                assert ok and lines[0].startswith("=> 1. foo"), lines
                assert lines[1].startswith("=>    CR"), lines
                assert "=> 2. dead" in lines  # not connected: named by its file
                assert any("D-: " in ln and "connect failed" in ln for ln in lines), lines
                assert s.peer("foo").addr == ms["foo"].mux.addr


# --- browser tabs: a relay listen tunnel, and a WebSocket address ----------------------------


@pytest.mark.trio
async def test_a_tab_exposed_through_the_relay_comes_and_goes(tmp_path: Path) -> None:
    """What a tab does, in Python: a `ReplEndpoint` on a relay listen tunnel
    ``/listen/repl-browser-bar-<sess>/127.0.0.1:0``; the relay writes the address file with the
    bound port and removes it when the tunnel ends."""
    from trio_websocket import open_websocket_url

    from relay import RelayConfig, open_relay

    handlers = Handlers()
    bar = Machine(SCHEMA, id="browser-bar-ab12", handlers=handlers)
    bar.add("Start")
    config = RelayConfig(
        listen_addr="127.0.0.1:0",
        allow=("127.0.0.1:*",),
        repl_addr_dir=tmp_path,
        repl_grace=0.5,  # how long the relay keeps a tab's REPL address for it to come back
    )
    with trio.fail_after(TIMEOUT):
        async with open_relay(config) as relay, session(directory=tmp_path) as (s, out):
            url = f"ws://{relay.addr}/listen/repl-browser-bar-ab12/127.0.0.1:0"
            async with open_websocket_url(url) as ws, trio.open_nursery() as nursery:
                outbox_send, outbox = trio.open_memory_channel[bytes](100)
                endpoint = ReplEndpoint(
                    bar, outbox_send.send_nowait, args=ARGS, call_later=_trio_call_later(nursery)
                )

                async def pump_out() -> None:
                    async for data in outbox:
                        await ws.send_message(data)

                async def pump_in() -> None:
                    while True:
                        endpoint.receive(await ws.get_message())

                endpoint.connection_made()
                nursery.start_soon(pump_out)
                nursery.start_soon(pump_in)
                await out.wait_for("+ browser-bar-ab12")
                ok, lines = await run(s, out, "add browser-bar-ab12 Msg --arg Msg.Msg --val hi")
                assert (ok, lines) == (True, ["=> Executed"])
                assert handlers.messages == [(repl_source_id(), "hi")]
                ok, lines = await run(s, out, "add browser-bar-ab12 Msg")
                assert (ok, lines) == (
                    True,
                    ["=> Canceled (by MsgEnter); try --arg Msg.Msg --val VALUE"],
                )
                ok, lines = await run(s, out, "list")
                assert lines[1] == "=>    CS: (Start:1 Msg:1)"
                assert s.peer("browser-bar-ab12").arg_names == ["Msg.Msg"]
                nursery.cancel_scope.cancel()
            # the tab is gone: after the grace period, so is its file, and the REPL forgets it
            await out.wait_for("repl-browser-bar-ab12.addr removed")
            assert list(tmp_path.iterdir()) == []


def _trio_call_later(nursery: trio.Nursery) -> Callable[[float, Callable[[], None]], None]:
    def call_later(delay: float, fn: Callable[[], None]) -> None:
        async def later() -> None:
            await trio.sleep(delay)
            fn()

        nursery.start_soon(later)

    return call_later


@pytest.mark.trio
async def test_websocket_address_reaches_the_machine_through_a_relay_dial() -> None:
    """``host:port/path`` is a WebSocket endpoint: here the relay's dial tunnel to foo's mux."""
    from relay import RelayConfig, open_relay

    config = RelayConfig(listen_addr="127.0.0.1:0", allow=("127.0.0.1:*",))
    with trio.fail_after(TIMEOUT):
        async with exposed("foo") as ms, open_relay(config) as relay:
            ws_addr = f"{relay.addr}/dial/repl-foo/{ms['foo'].mux.addr}"
            async with session(addrs=[ws_addr]) as (s, out):
                ok, lines = await run(s, out, "add foo Bored")
                assert (ok, lines) == (True, ["=> Executed"])
                assert ms["foo"].mach.is_active("Bored")


# --- completion ------------------------------------------------------------------------------


def complete(s: Session, text: str) -> list[str]:
    doc = Document(text, len(text))
    return [c.text for c in ReplCompleter(s).get_completions(doc, CompleteEvent(True))]


@pytest.mark.trio
async def test_completion_of_commands_machines_states_and_args() -> None:
    with trio.fail_after(TIMEOUT):
        async with (
            exposed("foo", "bar") as ms,
            session(addrs=[m.mux.addr for m in ms.values()]) as (s, out),
        ):
            assert complete(s, "li") == ["list "]
            assert complete(s, "when") == ["when ", "when-not ", "when-time "]
            assert complete(s, "add ") == ["bar ", "foo ", ". "]
            assert complete(s, "add f") == ["foo "]
            # add: inactive states, or Multi ones (Exception and Msg are Multi)
            assert complete(s, "add foo ") == [
                "Exception ",
                "ErrOnClient ",
                "Bored ",
                "Msg ",
            ]
            assert complete(s, "add foo Bored ") == ["Exception ", "ErrOnClient ", "Msg "]
            # remove: the active ones
            assert complete(s, "remove foo ") == ["Start ", "Ready "]
            assert complete(s, "remove . R") == ["Ready "]
            assert complete(s, "when-not foo ") == ["Start ", "Ready "]
            assert complete(s, "when foo B") == ["Bored "]
            assert complete(s, "add foo Msg --arg ") == ["Msg.Msg "]
            assert complete(s, "add foo Msg --arg Msg.Msg --val ") == []
            assert complete(s, "add foo Msg --a") == ["--arg "]
            assert complete(s, "when-time foo -s ") == [
                "Exception ",
                "ErrOnClient ",
                "Start ",
                "Ready ",
                "Bored ",
                "Msg ",
            ]
            assert complete(s, "list -a St") == ["Start "]
            assert "--id-prefix " in complete(s, "list --id")
            assert complete(s, "group-add B") == ["Bored "]
            assert complete(s, "help wa") == ["watch "]
            assert complete(s, "nosuch ") == []
            assert complete(s, "add nosuch ") == []


@pytest.mark.trio
async def test_completion_of_script_files(tmp_path: Path) -> None:
    (tmp_path / "cmds.txt").write_text("list\n")
    async with session() as (s, out):
        assert complete(s, f"script {tmp_path}/cm") == ["ds.txt"]


# --- exposing --------------------------------------------------------------------------------


@pytest.mark.trio
async def test_expose_env_follows_am_repl_addr_and_dir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    handlers = Handlers()
    mach = Machine(SCHEMA, id="env", handlers=handlers)
    monkeypatch.delenv("AM_TEST_RUNNER", raising=False)
    monkeypatch.setenv("AM_REPL_DIR", str(tmp_path))
    with trio.fail_after(TIMEOUT):
        for off in ("", "0"):
            monkeypatch.setenv("AM_REPL_ADDR", off)
            async with expose_env(mach) as mux:
                assert mux is None and list(tmp_path.iterdir()) == []
        monkeypatch.setenv("AM_REPL_ADDR", "1")  # any free port on loopback
        async with expose_env(mach, args=ARGS) as mux:
            assert mux is not None and mux.addr.startswith("127.0.0.1:")
            assert (tmp_path / "env-repl.addr").read_text() == mux.addr
            async with session(directory=tmp_path) as (s, out):
                ok, lines = await run(s, out, "add env Msg --arg Msg.Msg --val from-env")
                assert (ok, lines) == (True, ["=> Executed"])
        assert handlers.messages == [(repl_source_id(), "from-env")]
        assert list(tmp_path.iterdir()) == []  # removed on the way out
        monkeypatch.setenv("AM_TEST_RUNNER", "1")  # off under a test runner, as the reference
        async with expose_env(mach) as mux:
            assert mux is None


def test_the_repl_endpoint_imports_without_trio() -> None:
    """What a browser tab needs (`ReplEndpoint`) must import where there is no trio."""
    code = (
        "import sys; from machines.rpc.repl import ReplEndpoint, ReplSource; "
        "assert 'trio' not in sys.modules, sorted(m for m in sys.modules if 'trio' in m)"
    )
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
