"""`am repl`: one shell into every machine exposed for it, in servers and in browser tabs.

    am repl --dir tmp                        # every tmp/*.addr, watched: tabs come and go
    am repl 127.0.0.1:14010 -- list          # one command, then exit (0 done, 1 error, 3 canceled)
    am repl -f tmp/server-foo-repl.addr      # the address in a file

Layout: `discovery` (addresses and ``.addr`` files), `peers` (one aRPC client per address),
`session` (the peers and running a command line), `commands` (what each command does),
`completer` (Tab), `output` (``=>`` / ``err>`` lines), `shell` (prompt, one-shot, piped input).
"""

from __future__ import annotations

import shlex
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from typer.core import TyperCommand

from cli.console import fail

DEFAULT_HISTORY = Path("~/.am_repl_history")


class ReplCommand(TyperCommand):
    """Takes the one-shot command after ``--`` off before click parses the rest (click would
    merge both sides of ``--`` into the ADDR arguments)."""

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        if "--" in args:
            cut = args.index("--")
            ctx.meta["repl_command"] = args[cut + 1 :]
            args = args[:cut]
        return super().parse_args(ctx, args)


def repl(
    ctx: typer.Context,
    addrs: Annotated[
        list[str] | None,
        typer.Argument(
            metavar="ADDR...",
            help="host:port of a machine's REPL endpoint (host:port/path: over WebSocket).",
            show_default=False,
        ),
    ] = None,
    files: Annotated[
        list[Path] | None,
        typer.Option(
            "--file",
            "-f",
            help="A file holding one address, e.g. tmp/server-foo-repl.addr (repeatable).",
            show_default=False,
        ),
    ] = None,
    directory: Annotated[
        Path | None,
        typer.Option("--dir", "-d", help="Connect to every *.addr file under this directory."),
    ] = None,
    watch: Annotated[
        bool,
        typer.Option(
            "--watch/--no-watch", "-w/-W", help="Follow *.addr files as they come and go."
        ),
    ] = True,
    connect_timeout: Annotated[
        float, typer.Option(help="Seconds one connection attempt (and a one-shot) may wait.")
    ] = 3.0,
    call_timeout: Annotated[float, typer.Option(help="Seconds a mutation may wait.")] = 3.0,
    req_all: Annotated[
        bool,
        typer.Option(
            "--req-all",
            "-a",
            help="One-shot: fail (exit 1) unless every machine connected, before running the "
            "command.",
        ),
    ] = False,
    history: Annotated[
        Path, typer.Option(help="History file of the interactive prompt.")
    ] = DEFAULT_HISTORY,
) -> None:
    """An interactive shell into machines exposed for the REPL; after `--`, one command.

    Type `help` at the prompt for the commands (list, mach, add, remove, when, watch, ...).

    Exit codes of a one-shot command (`am repl --dir tmp -- add server-foo Msg`) and of piped
    input: 0 done (Executed, Queued, a query answered; `watch` ended by Ctrl-C); 1 an error
    (an `err>` line: unknown machine, state or argument, disconnected, timed out; `connect`
    or --req-all with not every machine connected); 2 bad options of `am repl` itself; 3 the
    machine canceled the mutation (`=> Canceled (why)`; for group-add/-remove, at least one
    machine did); 130 interrupted by Ctrl-C. Piped lines: 1 if any line failed, else 3 if any
    was canceled.
    """
    from .discovery import read_addr_file
    from .output import Output
    from .session import Session
    from .shell import is_terminal, run_interactive, run_lines, run_once

    words: list[str] | None = ctx.meta.get("repl_command")
    addrs = list(addrs or [])
    for file in files or []:
        try:
            addrs.append(read_addr_file(file))
        except (OSError, ValueError) as err:
            reason = err.strerror if isinstance(err, OSError) and err.strerror else err
            fail("repl", f"--file {file}: {reason}", 2)
    if not addrs and directory is None:
        fail("repl", "give an address (ADDR), an address file (--file) or a directory of .addr "
             "files (--dir)", 2)  # fmt: skip
    if words is not None and not words:
        fail("repl", "nothing after --: give a command, e.g. -- list", 2)
    if words is not None and directory is not None and not directory.is_dir():
        # a one-shot command cannot wait for the directory (interactive, --watch does): say so
        # rather than "unknown machine (known: none)"
        fail("repl", f"--dir {directory}: no such directory (am start writes its .addr files "
             "into REPL_DIR, tmp by default, where it runs)", 2)  # fmt: skip

    def make_session(out: Output) -> Session:
        return Session(
            out,
            addrs=addrs,
            directory=directory,
            watch=watch,
            connect_timeout=connect_timeout,
            call_timeout=call_timeout,
        )

    try:
        if words is not None:
            code = run_once(make_session, shlex.join(words), req_all=req_all)
        elif not is_terminal():
            code = run_lines(make_session, sys.stdin)
        else:
            code = run_interactive(make_session, history.expanduser())
    except KeyboardInterrupt:  # Ctrl-C with no command running (e.g. while connecting)
        code = 130
    raise typer.Exit(int(code))
