"""Running a session: at an interactive prompt, once (``-- COMMAND``), or over piped lines.

The prompt is prompt_toolkit, which runs on asyncio; the aRPC clients are trio. The interactive
shell runs asyncio as the host loop and trio inside it in guest mode
(`trio.lowlevel.start_guest_run`): one thread, so the completer reads the mirrored machines
while no trio task can be changing them, machine notices print above the live prompt, and
there are no locks or thread hand-offs. (Trio in a second thread would make every completion
race the clients' receive tasks.) Trio drives the loop: it awaits each prompt as an asyncio task
and runs the command itself. Ctrl-C at the prompt is a key (the terminal is raw): it clears the
line. While a command runs the terminal is cooked, so Ctrl-C is a SIGINT, which the asyncio
loop turns into cancelling that command (`Session.interrupt`); the REPL runs in a process group
of its own (`foreground_group`), so that SIGINT never reaches a launcher such as `task repl`.
Ctrl-D at the prompt exits 0.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from collections.abc import Callable, Coroutine, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any, TypeVar

import trio

from .output import Output, PromptOutput
from .session import Outcome, Session

T = TypeVar("T")

PROMPT = "am> "


def run_once(make_session: Callable[[Output], Session], line: str, req_all: bool = False) -> int:
    """Connect, run one command line, exit with how it ended (`Outcome`: 0 done, 1 an error,
    3 Canceled, 130 interrupted).

    With `req_all`, fail before running it unless every machine connected.
    """
    out = Output()

    async def main() -> int:
        session = make_session(out)
        async with session.running():
            await session.peers.settle(session.connect_timeout)
            connected, total = len(session.connected()), len(session.peers)
            if req_all and connected < total:
                missing = ", ".join(p.name for p in session.peers if not p.connected)
                out.error(f"connected to {connected} of {total} (--req-all); not: {missing}")
                return 1
            async with trio.open_nursery() as nursery:
                nursery.start_soon(_interrupt_on_sigint, session)
                outcome = await session.run(line)
                nursery.cancel_scope.cancel()
        return int(outcome)

    return trio.run(main)


def run_lines(make_session: Callable[[Output], Session], stream: Any) -> int:
    """Run each line read from `stream` (not a terminal) in turn; 1 if any failed (an error or
    interrupted), else 3 if any was Canceled, else 0."""
    out = Output()

    async def main() -> int:
        failed = canceled = False
        session = make_session(out)
        async with session.running():
            await session.peers.settle(session.connect_timeout)
            async with trio.open_nursery() as nursery:
                nursery.start_soon(_interrupt_on_sigint, session)
                # a thread per line, abandoned on Ctrl-C (a blocked read cannot be cancelled)
                while line := await trio.to_thread.run_sync(
                    stream.readline, abandon_on_cancel=True
                ):
                    outcome = await session.run(line)
                    failed |= outcome in (Outcome.ERROR, Outcome.INTERRUPTED)
                    canceled |= outcome is Outcome.CANCELED
                    if session.exit_requested:
                        break
                nursery.cancel_scope.cancel()
        return Outcome.ERROR if failed else Outcome.CANCELED if canceled else Outcome.DONE

    return trio.run(main)


async def _interrupt_on_sigint(session: Session) -> None:
    """Ctrl-C stops the running command (e.g. `watch`) instead of killing the process."""
    with trio.open_signal_receiver(signal.SIGINT) as signals:
        async for _ in signals:
            if not session.interrupt():
                raise KeyboardInterrupt


def run_interactive(make_session: Callable[[Output], Session], history: Path | None) -> int:
    """The prompt: asyncio hosts prompt_toolkit, trio runs as its guest (see the module doc)."""
    with foreground_group():
        return asyncio.run(_host(make_session, history))


@contextmanager
def foreground_group() -> Iterator[None]:
    """Run in a process group of our own, the terminal's foreground one, as a shell's job.

    A launcher in between (`task repl`) shares our process group, so every Ctrl-C that stops a
    running command (a SIGINT then: the terminal is cooked) reached it too, and go-task forces
    its way out at the third, leaving this REPL orphaned on a terminal the shell takes back.
    In a group of its own only the REPL gets Ctrl-C; the launcher's group gets the terminal
    back on the way out. Ctrl-Z is ignored meanwhile: a stopped group the shell does not know
    about would hang the terminal. Nothing changes when we already lead the foreground group
    (run from a shell), run in the background, or there is no terminal.
    """
    try:
        fd = sys.stdin.fileno()
        before = os.tcgetpgrp(fd)
    except (OSError, ValueError):  # no terminal
        yield
        return
    if before != os.getpgrp() or os.getpgrp() == os.getpid():
        # a shell's job already, or in the background (``am repl &``): the terminal is not
        # ours to take
        yield
        return
    old_ttou = signal.signal(signal.SIGTTOU, signal.SIG_IGN)  # a background tcsetpgrp
    old_tstp = signal.signal(signal.SIGTSTP, signal.SIG_IGN)
    moved = False
    try:
        os.setpgid(0, 0)
        os.tcsetpgrp(fd, os.getpgrp())
        moved = True
    except OSError:  # not permitted: back in the launcher's group, which has the terminal
        with suppress(OSError):
            os.setpgid(0, before)
        signal.signal(signal.SIGTSTP, old_tstp)
    finally:
        signal.signal(signal.SIGTTOU, old_ttou)
    try:
        yield
    finally:
        if moved:
            old_ttou = signal.signal(signal.SIGTTOU, signal.SIG_IGN)
            try:
                os.tcsetpgrp(fd, before)
            except OSError:  # the launcher's group is gone: its shell takes the terminal
                pass
            finally:
                signal.signal(signal.SIGTTOU, old_ttou)
            signal.signal(signal.SIGTSTP, old_tstp)


async def _host(make_session: Callable[[Output], Session], history: Path | None) -> int:
    loop = asyncio.get_running_loop()
    done: asyncio.Future[Any] = loop.create_future()
    shell = _Shell(loop, make_session(PromptOutput()), history)

    def finished(outcome: Any) -> None:
        if not done.done():
            done.set_result(outcome)

    # before trio starts, so it leaves SIGINT to us; prompt_toolkit is told not to touch it
    loop.add_signal_handler(signal.SIGINT, shell.sigint)
    try:
        trio.lowlevel.start_guest_run(
            shell.main,
            run_sync_soon_threadsafe=loop.call_soon_threadsafe,
            done_callback=finished,
            host_uses_signal_set_wakeup_fd=True,
        )
        outcome = await done
    finally:
        loop.remove_signal_handler(signal.SIGINT)
    return outcome.unwrap()


class _Shell:
    """The REPL loop, as a trio task that borrows the asyncio loop for each prompt."""

    def __init__(
        self, loop: asyncio.AbstractEventLoop, session: Session, history: Path | None
    ) -> None:
        self.loop = loop
        self.session = session
        self.history = history
        self._token: trio.lowlevel.TrioToken | None = None

    def sigint(self) -> None:
        """SIGINT (Ctrl-C while a command runs): cancel that command, in trio."""
        if self._token is not None:
            self._token.run_sync_soon(self.session.interrupt)

    async def main(self) -> int:
        from prompt_toolkit import PromptSession
        from prompt_toolkit.history import FileHistory, InMemoryHistory

        from .completer import ReplCompleter

        self._token = trio.lowlevel.current_trio_token()
        session = self.session
        hist = FileHistory(str(self.history)) if self.history is not None else InMemoryHistory()
        # Tab completes as in a shell (the common part, then a menu); completing while typing
        # would drop a Tab that arrives while the previous keystroke's completion still runs
        prompt: PromptSession[str] = PromptSession(
            history=hist, completer=ReplCompleter(session), complete_while_typing=False
        )
        async with session.running():
            session.out.notice(
                f"{session.id}: {len(session.peers)} address(es); `help` lists commands"
            )
            while not session.exit_requested:
                kind, line = await self._on_host(self._prompt(prompt))
                if kind == "eof":
                    break
                if kind == "line" and line.strip():
                    await session.execute(line)
        return 0

    @staticmethod
    async def _prompt(prompt: Any) -> tuple[str, str]:
        # KeyboardInterrupt / EOFError must not escape an asyncio task (they would stop the loop)
        try:
            return "line", await prompt.prompt_async(PROMPT, handle_sigint=False)
        except KeyboardInterrupt:
            return "interrupt", ""
        except EOFError:
            return "eof", ""

    async def _on_host(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run `coro` as an asyncio task and wait for it from trio."""
        assert self._token is not None
        token, finished = self._token, trio.Event()
        task = self.loop.create_task(coro)
        task.add_done_callback(lambda _: token.run_sync_soon(finished.set))
        try:
            await finished.wait()
        except trio.Cancelled:
            task.cancel()
            raise
        return task.result()


def is_terminal() -> bool:
    return sys.stdin.isatty()
