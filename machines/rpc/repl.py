"""Exposing a machine for the REPL: an aRPC mux named ``repl-<id>`` and its address file.

A REPL (``am repl --dir DIR``) finds machines by reading ``DIR/*.addr``; each file holds one
``host:port`` that answers aRPC for one machine. The file must hold the address actually bound
(port 0 resolved), appear whole, and vanish when the machine stops being exposed, so a REPL never
dials a port that nobody serves.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from .mux import Mux, serve

#: ``AM_REPL_ADDR=1`` means "any free port on loopback".
DEFAULT_ADDR = "127.0.0.1:0"


def addr_file_name(machine_id: str) -> str:
    """``server-foo`` -> ``server-foo-repl.addr`` (the reference's name)."""
    return f"{machine_id}-repl.addr"


def env_addr() -> str | None:
    """The address asked for by ``AM_REPL_ADDR`` (``1`` = any free loopback port), or None."""
    value = os.environ.get("AM_REPL_ADDR", "").strip()
    if not value or value == "0":
        return None
    return DEFAULT_ADDR if value == "1" else value


@asynccontextmanager
async def expose(
    machine: Any, addr: str = DEFAULT_ADDR, addr_dir: str | Path | None = None, **opts: Any
) -> AsyncIterator[Mux]:
    """Serve `machine` to REPL clients on `addr` until the block ends.

    With `addr_dir` (default: ``AM_REPL_DIR``), writes ``<addr_dir>/<id>-repl.addr`` with the
    bound address and removes it on the way out. `opts` go to :func:`machines.rpc.serve`.
    """
    from relay.addrfile import remove_addr_file, write_addr_file

    if addr_dir is None:
        addr_dir = os.environ.get("AM_REPL_DIR") or None
    async with serve(machine, addr, name=f"repl-{machine.id}", **opts) as mux:
        path = None
        if addr_dir is not None:
            path = write_addr_file(Path(addr_dir), f"{machine.id}-repl", mux.addr)
        try:
            yield mux
        finally:
            if path is not None:
                remove_addr_file(path, mux.addr)
