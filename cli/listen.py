"""Running a command that listens: a busy or unusable address is one line, not a traceback.

A bind error surfaces inside trio's ``ExceptionGroup`` (from the nursery that opened the
listener), so an ``except OSError`` around ``trio.run`` misses it. :func:`run_listening` looks
through the group for it and answers with the address and the option (or variable) that sets it.
"""

from __future__ import annotations

import errno
from collections.abc import Awaitable, Callable
from typing import Any

import typer

#: errors that mean "this address cannot be listened on" (not a failure while serving)
BIND_ERRNOS = frozenset({errno.EADDRINUSE, errno.EADDRNOTAVAIL, errno.EACCES})


def bind_error(err: BaseException) -> OSError | None:
    """The first bind error in ``err`` (which may be an exception group, however nested)."""
    if isinstance(err, OSError):
        return err if err.errno in BIND_ERRNOS or _is_resolve_error(err) else None
    if isinstance(err, BaseExceptionGroup):
        for sub in err.exceptions:
            found = bind_error(sub)
            if found is not None:
                return found
    return None


def _is_resolve_error(err: OSError) -> bool:
    import socket

    return isinstance(err, socket.gaierror)  # a host name that does not resolve


def run_listening(
    prog: str,
    addr: str,
    how_to_set: str,
    main: Callable[..., Awaitable[Any]],
    *args: Any,
) -> None:
    """``trio.run(main, *args)``; if listening fails, print one line (``prog: cannot listen on
    ADDR: reason (set HOW_TO_SET)``, e.g. ``"--listen-addr or RELAY_HTTP_ADDR"``) and exit 1."""
    import trio

    try:
        trio.run(main, *args)
    except (OSError, BaseExceptionGroup) as err:
        found = bind_error(err)
        if found is None:
            raise
        reason = found.strerror or str(found)
        typer.echo(f"{prog}: cannot listen on {addr}: {reason} (set {how_to_set})", err=True)
        raise typer.Exit(1) from None
