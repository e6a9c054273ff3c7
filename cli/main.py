"""`am`: the project's single command.

Each tool registers itself here as a sub-command; only commands that work are listed.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

import typer

app = typer.Typer(
    name="am",
    help="asyncmachine tools: machines, aRPC, relay, debugger and diagrams.",
    no_args_is_help=True,
    add_completion=False,
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


from cli.start import start as _start  # noqa: E402

app.command("start")(_start)

from cli.relay import relay as _relay  # noqa: E402

app.command("relay")(_relay)

from cli.vis import vis_app  # noqa: E402

app.add_typer(vis_app, name="vis")

from cli.dbg import dbg as _dbg  # noqa: E402

app.command("dbg")(_dbg)

from cli.repl import ReplCommand  # noqa: E402
from cli.repl import repl as _repl  # noqa: E402

app.command("repl", cls=ReplCommand)(_repl)


if __name__ == "__main__":
    app()
