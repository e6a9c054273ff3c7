"""A REPL session: the peers, where they come from, and running one command line at a time.

The session is trio code; the interactive shell (shell.py) and the one-shot mode drive the same
`Session.execute(line)`, so a command behaves the same typed, scripted or after ``--``.
"""

from __future__ import annotations

import enum
import hashlib
import logging
import os
import shlex
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path

import trio

from .discovery import POLL_INTERVAL, Change, DirWatcher, check_addr
from .output import Output
from .peers import NO_ANSWER, Peer, Peers


class Outcome(enum.IntEnum):
    """How a command ended; its value is the exit code of a one-shot ``am repl -- COMMAND``.

    A Canceled mutation is an answer, not an error (nothing was wrong with the command: the
    machine refused it), so it has a code of its own: a script can tell "the machine said no"
    from "the command could not run".
    """

    DONE = 0  # answered: Executed, Queued, a query's result
    ERROR = 1  # an ``err>`` line: unknown machine/state/argument, disconnected, timeout
    CANCELED = 3  # the machine canceled the mutation (for group-*: at least one did)
    INTERRUPTED = 130  # Ctrl-C stopped it (as a shell reports SIGINT)


class CommandError(Exception):
    """A command failed in a way the user can fix: printed as one ``err>`` line."""


def repl_id(cwd: str | None = None) -> str:
    """``repl-<md5(cwd)[:6]>``, as the reference: stable per directory, so the debugger and the
    machines' logs show the same source for mutations from the same place."""
    digest = hashlib.md5((cwd or os.getcwd()).encode()).hexdigest()
    return f"repl-{digest[:6]}"


class Session:
    """Peers for the given addresses and ``--dir`` files, and the commands' shared state."""

    def __init__(
        self,
        out: Output,
        *,
        addrs: list[str] | tuple[str, ...] = (),
        directory: Path | None = None,
        watch: bool = True,
        connect_timeout: float = 3.0,
        call_timeout: float = 3.0,
    ) -> None:
        self.out = out
        self.addrs = list(addrs)
        self.directory = directory
        self.watch = watch
        self.connect_timeout = connect_timeout
        self.call_timeout = call_timeout
        self.id = repl_id()
        self.exit_requested = False
        self.script_depth = 0
        self._canceled = False  # the running command got a Canceled answer (see `canceled`)
        self._peers: Peers | None = None
        self._watcher: DirWatcher | None = None
        self._interrupt_targets: list[trio.CancelScope] = []

    @property
    def peers(self) -> Peers:
        assert self._peers is not None, "the session is not running"
        return self._peers

    @asynccontextmanager
    async def running(self) -> AsyncIterator[Session]:
        """Connect to every source, watch the directory, and drop everything on the way out."""
        # the clients' own log lines would garble the prompt; list/status show their errors
        logging.getLogger("machines.rpc").setLevel(logging.CRITICAL)
        async with trio.open_nursery() as nursery:
            self._peers = Peers(
                nursery,
                self.id,
                connect_timeout=self.connect_timeout,
                call_timeout=self.call_timeout,
                on_change=self._peer_changed,
            )
            self._add_sources()
            if self.watch and self.directory is not None:
                nursery.start_soon(self._watch)
            try:
                yield self
            finally:
                leaving = [self.peers.drop(key) for key in self.peers.keys()]
                with trio.move_on_after(2):  # let the peers say bye
                    for peer in leaving:
                        if peer is not None:
                            await peer.gone.wait()
                nursery.cancel_scope.cancel()

    def _add_sources(self) -> None:
        for addr in self.addrs:
            try:
                addr = check_addr(addr)
            except ValueError as err:
                self.out.warning(f"{err} (skipped)")
                continue
            self.peers.add(f"addr:{addr}", addr)
        if self.directory is not None:
            self._watcher = DirWatcher(self.directory)
            if not self.directory.is_dir():
                self.out.notice(f"waiting for *.addr files in {self.directory}")
            for change in self._watcher.poll():
                self._dir_changed(change)

    def reconnect(self) -> int:
        """Drop every connection and start again from the sources (re-reading the dir)."""
        for key in self.peers.keys():
            self.peers.drop(key)
        self._add_sources()
        return len(self.peers)

    async def _watch(self) -> None:
        while True:
            await trio.sleep(POLL_INTERVAL)
            if self._watcher is not None:
                for change in self._watcher.poll():
                    self._dir_changed(change)

    def _dir_changed(self, change: Change) -> None:
        key = f"file:{change.path}"
        if change.error is not None:
            self.peers.drop(key)
            self.out.warning(f"{change.path}: {change.error} (skipped)")
        elif change.addr is None:
            peer = self.peers.drop(key)
            if peer is not None:
                self.out.notice(f"- {peer.name} ({change.path.name} removed)")
        else:
            peer = self.peers.get(key)
            if peer is not None and peer.addr == change.addr:
                return  # the peer followed the file already (see `Peer._open`)
            self.peers.add(key, change.addr, change.path)

    def _peer_changed(self, peer: Peer, connected: bool) -> None:
        if connected:
            self.out.notice(f"+ {peer.id} ({peer.addr})")
        elif not peer.stopping:
            self.out.notice(f"- {peer.name} disconnected")

    # --- finding machines ----------------------------------------------------------------------

    def peer(self, name: str) -> Peer:
        """The connected peer whose remote machine is `name` (``.`` = the first connected)."""
        peers = list(self.peers)
        if name == ".":
            for peer in peers:
                if peer.connected:
                    return peer
            raise CommandError("no machine is connected (`.` means the first connected one)")
        for peer in peers:
            if peer.id == name or (not peer.id and name in (peer.addr, peer.file_id)):
                if not peer.connected:
                    why = peer.error or f"no handshake yet: {NO_ANSWER}"
                    raise CommandError(f"{name} is disconnected ({peer.addr}: {why})")
                return peer
        known = ", ".join(p.name for p in peers) or "none"
        raise CommandError(f"unknown machine {name!r} (known: {known})")

    def connected(self) -> list[Peer]:
        return [p for p in self.peers if p.connected]

    # --- running commands ----------------------------------------------------------------------

    async def execute(self, line: str) -> bool:
        """Run one command line; False if it printed an error (or was interrupted)."""
        return await self.run(line) in (Outcome.DONE, Outcome.CANCELED)

    async def run(self, line: str) -> Outcome:
        """Run one command line and say how it ended (a `script` ends as its worst line)."""
        from .commands import run_command

        try:
            words = shlex.split(line, comments=True)
        except ValueError as err:
            self.out.error(f"cannot parse the line: {err}")
            return Outcome.ERROR
        if not words:
            return Outcome.DONE
        # a nested run (a script's line) reports its Canceled up to the script's own run
        outer, self._canceled = self._canceled, False
        try:
            with self.interruptible() as scope:
                try:
                    await run_command(self, words)
                except CommandError as err:
                    self.out.error(str(err))
                    return Outcome.ERROR
                except Exception as err:  # a bug or an unforeseen failure: say so, keep serving
                    self.out.error(f"{words[0]}: {type(err).__name__}: {err}")
                    return Outcome.ERROR
            if scope.cancelled_caught:
                self.out.error(f"{words[0]}: interrupted")
                return Outcome.INTERRUPTED
            return Outcome.CANCELED if self._canceled else Outcome.DONE
        finally:
            self._canceled = outer or self._canceled

    def canceled(self) -> None:
        """The running command printed a Canceled answer: it ends as `Outcome.CANCELED`."""
        self._canceled = True

    @contextmanager
    def interruptible(self) -> Iterator[trio.CancelScope]:
        """A scope that Ctrl-C (`interrupt`) cancels: the innermost one wins."""
        with trio.CancelScope() as scope:
            self._interrupt_targets.append(scope)
            try:
                yield scope
            finally:
                self._interrupt_targets.remove(scope)

    def interrupt(self) -> bool:
        """Ctrl-C while a command runs: stop it. False if nothing was running."""
        if not self._interrupt_targets:
            return False
        self._interrupt_targets[-1].cancel()
        return True
