"""`am`: the project's single command.

Each tool registers itself here as a sub-command; only commands that work are listed.

Sub-commands are imported only when they run (:data:`LAZY`): a tool's module pulls in its
whole stack (the relay, trio, Textual...), and ``am --help`` or ``am dbg`` should not pay for
the others. The list in ``am --help`` is made from the one-line help given here.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import import_module
from importlib.metadata import PackageNotFoundError, version
from typing import Any

import typer
import typer.core
import typer.main


@dataclass(frozen=True)
class Lazy:
    """A sub-command defined in ``module``: ``attr`` is its function (or a ``typer.Typer``
    for a group of commands); ``cls`` names a click command class in the same module."""

    module: str
    attr: str
    help: str
    cls: str | None = None

    def load(self, name: str) -> Any:
        mod = import_module(self.module)
        target = getattr(mod, self.attr)
        if isinstance(target, typer.Typer):
            cmd = typer.main.get_command(target)
        else:
            single = typer.Typer(add_completion=False)
            kw = {"cls": getattr(mod, self.cls)} if self.cls else {}
            single.command(name, **kw)(target)
            cmd = typer.main.get_command(single)
        cmd.name = name
        return cmd


#: name -> where it is defined, in the order of ``am --help``
LAZY = {
    "start": Lazy(
        "cli.start",
        "start",
        "Start server-foo, its aRPC and REPL endpoints and the relay serving the page.",
    ),
    "relay": Lazy(
        "cli.relay",
        "relay",
        "Give browsers TCP endpoints over WebSocket, and serve a folder (--static-dir).",
    ),
    "vis": Lazy(
        "cli.vis",
        "vis_app",
        "Render diagrams of debugger dumps (D2 + SVG) and inspect them (Markdown + XML).",
    ),
    "dbg": Lazy(
        "cli.dbg", "dbg", "The debugger: step through every machine's history (a terminal UI)."
    ),
    "repl": Lazy(
        "cli.repl",
        "repl",
        "An interactive shell into machines exposed for the REPL; after `--`, one command.",
        cls="ReplCommand",
    ),
}


class _Placeholder(typer.core.TyperCommand):
    """What ``am --help`` lists for a sub-command not imported yet."""


class LazyGroup(typer.core.TyperGroup):
    """A command group whose :data:`LAZY` sub-commands are imported when one is run."""

    def __init__(self, **kw: Any) -> None:
        super().__init__(**kw)
        for name, lazy in LAZY.items():
            self.commands.setdefault(name, _Placeholder(name=name, help=lazy.help))

    def resolve_command(self, ctx: Any, args: list[str]) -> Any:
        name, cmd, rest = super().resolve_command(ctx, args)
        if isinstance(cmd, _Placeholder) and name is not None:
            cmd = self.commands[name] = LAZY[name].load(name)
        return name, cmd, rest


app = typer.Typer(
    name="am",
    help="asyncmachine tools: machines, aRPC, relay, debugger and diagrams.",
    no_args_is_help=True,
    add_completion=False,
    cls=LazyGroup,
)


def _version() -> str:
    try:
        return version("asyncmachine-wasm")
    except PackageNotFoundError:  # running from a source tree
        return "0.0.0+src"


def _print_version(value: bool) -> None:
    if value:
        typer.echo(f"am {_version()}")
        raise typer.Exit()


@app.callback()
def main(
    version_: bool = typer.Option(
        False,
        "--version",
        callback=_print_version,
        is_eager=True,
        help="Print the version and exit.",
    ),
) -> None:
    """asyncmachine tools: machines, aRPC, relay, debugger and diagrams."""


@app.command()
def demo() -> None:
    """Run a short example of the machine API and print what happens."""
    from machines.demo import run

    run()


if __name__ == "__main__":
    app()
