"""Shared fixtures of the core acceptance suite: the reference's test schemas, a handler recorder,
a log collector, and a runner that runs one async test body under trio and under asyncio."""

from __future__ import annotations

import asyncio
import itertools
import os
import socket
import subprocess
import sys
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import trio
import trio.testing

from machines import Machine, State

#: "NoRels": four states without relations (Exception is added by the machine)
NORELS_NAMES = ("A", "B", "C", "D")
#: "Rels": the reference's related schema
RELS = {
    "A": State(auto=True, require=["C"]),
    "B": State(multi=True, add=["C"]),
    "C": State(after=["D"]),
    "D": State(add=["C", "B"]),
}

#: every handler name a machine with states A-D can dispatch
ALL_HANDLERS = tuple(
    [f"{s}{kind}" for s in NORELS_NAMES for kind in ("Enter", "Exit", "State", "End")]
    + [f"{x}{y}" for x, y in itertools.product(NORELS_NAMES, repeat=2)]
    + ["AnyEnter", "AnyState"]
)


def norels(**overrides: State) -> dict[str, State]:
    """NoRels, with some states replaced (``norels(C=State(remove=["D"]))``)."""
    schema = {n: State() for n in NORELS_NAMES}
    schema.update(overrides)
    return schema


class Recorder:
    """A handler group that appends the name of every handler it is called with.

    ``names`` are the handlers it defines (all of A-D's by default); ``overrides`` maps a handler
    name to its return value, or to a callable ``fn(event)`` whose result is returned.
    """

    def __init__(self, names: tuple[str, ...] = ALL_HANDLERS, **overrides: Any) -> None:
        self.calls: list[str] = []
        self.events: list[Any] = []
        self._names = set(names) | set(overrides)
        self._overrides = overrides

    def __getattr__(self, name: str) -> Callable[[Any], Any]:
        if name.startswith("_") or name not in self.__dict__.get("_names", ()):
            raise AttributeError(name)

        def handler(e: Any) -> Any:
            self.calls.append(name)
            self.events.append(e)
            ret = self._overrides.get(name)
            return ret(e) if callable(ret) else ret

        return handler

    def count(self, name: str) -> int:
        return self.calls.count(name)


def is_subsequence(wanted: list[str], calls: list[str]) -> bool:
    """``wanted`` appears in ``calls`` in this order (other calls may sit in between)."""
    it = iter(calls)
    return all(any(c == w for c in it) for w in wanted)


class Logged:
    """A machine factory whose machines log everything into ``lines``."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    def __call__(self, schema: dict[str, State], **kw: Any) -> Machine:
        kw.setdefault("log_level", 5)
        kw.setdefault("logger", lambda lvl, text: self.lines.append(text))
        return Machine(schema, **kw)

    def has(self, fragment: str) -> bool:
        return any(fragment in line for line in self.lines)

    def clear(self) -> None:
        self.lines.clear()


@pytest.fixture
def logged() -> Logged:
    return Logged()


class Kit:
    """What an async test body needs from its event loop, the same under trio and asyncio."""

    def __init__(self, lib: str, nursery: Any) -> None:
        self.lib = lib
        #: has ``start_soon(fn, *args)``: pass it to ``Machine.fork`` / ``Machine(nursery=...)``
        self.nursery = nursery

    def spawn(self, fn: Callable[..., Awaitable[Any]], *args: Any) -> None:
        self.nursery.start_soon(fn, *args)

    def event(self) -> Any:
        return trio.Event() if self.lib == "trio" else asyncio.Event()

    async def checkpoint(self) -> None:
        if self.lib == "trio":
            await trio.lowlevel.checkpoint()
        else:
            await asyncio.sleep(0)

    async def to_thread(self, fn: Callable[..., Any], *args: Any) -> Any:
        if self.lib == "trio":
            return await trio.to_thread.run_sync(fn, *args, abandon_on_cancel=True)
        return await asyncio.to_thread(fn, *args)


class _TaskGroupNursery:
    """``start_soon`` on an asyncio TaskGroup, so bodies spawn the same way under both loops."""

    def __init__(self, tg: asyncio.TaskGroup) -> None:
        self._tg = tg

    def start_soon(self, fn: Callable[..., Awaitable[Any]], *args: Any) -> None:
        self._tg.create_task(fn(*args))


Body = Callable[[Kit], Awaitable[None]]
TIMEOUT = 5.0


@pytest.fixture(params=["trio", "asyncio"])
def run(request: pytest.FixtureRequest) -> Callable[[Body], None]:
    """``run(body)``: run ``await body(kit)`` under the parametrised loop, bounded in time."""
    lib = request.param

    def runner(body: Body) -> None:
        if lib == "trio":

            async def main_trio() -> None:
                with trio.fail_after(TIMEOUT):
                    async with trio.open_nursery() as nursery:
                        await body(Kit("trio", nursery))

            trio.run(main_trio)
        else:

            async def main_asyncio() -> None:
                async with asyncio.timeout(TIMEOUT), asyncio.TaskGroup() as tg:
                    await body(Kit("asyncio", _TaskGroupNursery(tg)))

            asyncio.run(main_asyncio())

    return runner


@pytest.fixture
def jump_clock() -> trio.testing.MockClock:
    """A virtual clock for rate and timeout tests: pytest-trio runs a test that asks for it on
    this clock, whose time jumps to the next deadline once every task has waited 0.1 s of real
    time (real sockets on loopback answer well within that)."""
    return trio.testing.MockClock(autojump_threshold=0.1)


# -- the browser's Python (Pyodide) ---------------------------------------------------------

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def project_wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """This checkout's wheel, built the way a release is (hatchling; no network needed)."""
    out = tmp_path_factory.mktemp("wheel")
    cmd = [sys.executable, "-m", "build", "--wheel", "--no-isolation", "--outdir", str(out)]
    proc = subprocess.run(
        [*cmd, str(REPO)], capture_output=True, text=True, timeout=120, check=False
    )
    if proc.returncode != 0:
        pytest.fail(f"building the wheel failed ({' '.join(cmd)}):\n{proc.stderr[-3000:]}")
    wheels = list(out.glob("*.whl"))
    assert len(wheels) == 1, wheels
    return wheels[0]


#: where ``task setup`` puts the wheels the browser's Python installs (git-ignored)
WHEELS = REPO / "web" / "build" / "cache"
CBOR2_WHEEL = "cbor2-5.9.0-py3-none-any.whl"


@pytest.fixture(scope="session")
def cbor2_wheel() -> Path:
    """The pure-Python cbor2 wheel Pyodide installs, fetched by the install step, not by a test
    (the test run needs no network)."""
    wheel = WHEELS / CBOR2_WHEEL
    if not wheel.is_file():
        pytest.fail(f"{wheel} is missing: run `task setup` (it downloads the browser's wheels)")
    return wheel


def free_port_pair() -> int:
    """A loopback port P with P + 1 free too (the debugger's listen port and its web port)."""
    return free_port_run(2)


def free_port_run(count: int) -> int:
    """A loopback port P with P + 1 ... P + count - 1 free too (``am dbg --ui-ssh`` listens
    on P, P + 1 and P + 2)."""
    while True:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        try:
            for n in range(1, count):
                with socket.socket() as s:
                    s.bind(("127.0.0.1", port + n))
            return port
        except OSError:
            continue


ROOT = Path(__file__).resolve().parent.parent
#: the Go debugger's dump of its simulator (107 machines, 7605 transitions)
GO_DUMP = ROOT / "tests" / "fixtures" / "go-am-dbg-sim.gob.br"


def dbg_env() -> dict[str, str]:
    """The environment for the real commands: this checkout first, no debugger to report to."""
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    env.pop("AM_DBG_ADDR", None)
    return env


@contextmanager
def running_dbg(*args: str, ready: str) -> Iterator[tuple[subprocess.Popen[str], list[str]]]:
    """The real ``am dbg ARGS`` (no terminal: stdout and stderr are pipes, no AM_DBG_ADDR),
    once it printed a line starting with ``ready``: the process and its lines so far. Killed on
    the way out if still running, so a failed test leaves nothing behind."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "cli.main", "dbg", *args], env=dbg_env(), cwd=ROOT,
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        lines: list[str] = []
        while not (lines and lines[-1].startswith(ready)):
            line = proc.stdout.readline()
            assert line, proc.stderr.read() if proc.stderr else ""
            lines.append(line)
        yield proc, lines
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
