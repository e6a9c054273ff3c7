"""What an ``am`` command prints on stderr: its own errors and the log records of the runtime.

One form for every command, so a line says where it comes from once: ``am <command>: what``
for the command's own errors (then it exits), and a log record's message as it is, because
every message names its source itself (``telemetry: ...``, ``rpc client X: ...``,
``dbg: ...``, a machine's id). Printing the logger's name too would say it twice
(``machines.telemetry: telemetry: ...``).
"""

from __future__ import annotations

import logging
from typing import NoReturn

import typer

#: A log record as printed: its message alone (see the module's docstring).
LOG_FORMAT = "%(message)s"


def fail(command: str, message: str, code: int = 1) -> NoReturn:
    """Print ``am <command>: <message>`` on stderr and exit with ``code`` (2: bad usage)."""
    say(command, message)
    raise typer.Exit(code)


def say(command: str, message: str) -> None:
    """One line on stderr, ``am <command>: <message>``, and go on."""
    typer.echo(f"am {command}: {message}", err=True)


def setup_logging(level: int = logging.WARNING) -> None:
    """Log records at ``level`` and above go to stderr, one message per line."""
    logging.basicConfig(level=level, format=LOG_FORMAT)
