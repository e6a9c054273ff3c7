"""REPL address files: ``<dir>/<id>.addr`` holding a listen tunnel's real TCP address.

A REPL finds a browser-side machine by reading this file, so it must hold the address that
was actually bound (port 0 resolved), appear whole (written to a temporary name, then renamed)
and vanish when the tunnel ends.
"""

from __future__ import annotations

import os
from pathlib import Path

REPL_PREFIX = "repl-"


def wants_addr_file(tunnel_id: str) -> bool:
    """Listen tunnels for REPLs are the ones whose id starts with ``repl-``."""
    return tunnel_id.startswith(REPL_PREFIX)


def check_id(tunnel_id: str) -> None:
    """Refuse ids that would escape the directory (ValueError with the reason)."""
    if "/" in tunnel_id or "\\" in tunnel_id or "\x00" in tunnel_id:
        raise ValueError(f"REPL tunnel id {tunnel_id!r} must not contain slashes")


def addr_file_path(directory: Path, tunnel_id: str) -> Path:
    check_id(tunnel_id)
    return directory / f"{tunnel_id}.addr"


def write_addr_file(directory: Path, tunnel_id: str, addr: str) -> Path:
    """Write the file atomically; return its path."""
    path = addr_file_path(directory, tunnel_id)
    directory.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(addr)
    os.replace(tmp, path)
    return path


def remove_addr_file(path: Path, addr: str) -> None:
    """Remove the file only if it still holds ``addr``: a newer tunnel may own it by now."""
    try:
        if path.read_text() == addr:
            path.unlink()
    except FileNotFoundError:
        pass
