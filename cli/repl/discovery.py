"""Where the machines are: addresses given on the command line and ``*.addr`` files in a dir.

Every exposed machine writes ``<dir>/<name>.addr`` holding ``host:port`` (``host:port/path``
for a WebSocket endpoint), removes it when it goes, and replaces it (atomically) when it moves.
The session polls the directory (`DirWatcher.poll`, every `POLL_INTERVAL`): there are a handful
of small files, a poll every quarter second costs nothing measurable, and it works on every file
system without inotify limits; each poll reports what appeared, changed and disappeared.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from machines.addr import parse_hostport

ADDR_SUFFIX = ".addr"
POLL_INTERVAL = 0.25


def check_addr(addr: str) -> str:
    """A usable address (``host:port`` or ``host:port/path``), or ValueError saying why."""
    addr = addr.strip()
    hostport = addr.split("/", 1)[0]
    if parse_hostport(hostport).port == 0:
        raise ValueError(f"bad address {addr!r}: port 0 is not bound yet")
    if any(c.isspace() for c in addr):
        raise ValueError(f"bad address {addr!r}: whitespace inside")
    return addr


def machine_id_of(path: Path) -> str:
    """The machine an ``.addr`` file names: ``<id>-repl.addr`` (written by an exposed
    machine) or ``repl-<id>.addr`` (a tab's, written by the relay). Shown until the machine
    answers the handshake (which gives its real id), so that a busy or slow tab is listed by
    name rather than by a bare address."""
    name = path.name.removesuffix(ADDR_SUFFIX)
    return name.removesuffix("-repl") if name.endswith("-repl") else name.removeprefix("repl-")


def read_addr_file(path: Path) -> str:
    """The address in an ``.addr`` file (content trimmed); ValueError if it holds none."""
    try:
        text = path.read_text(errors="replace")
    except UnicodeError as err:  # pragma: no cover - errors="replace" decodes anything
        raise ValueError(f"unreadable: {err}") from None
    if not text.strip():
        raise ValueError("empty file")
    if len(text) > 512 or "\n" in text.strip():
        raise ValueError("expected one host:port line")
    return check_addr(text)


def scan(directory: Path) -> dict[Path, str | ValueError]:
    """Every ``*.addr`` under `directory` (recursively, hidden temp files skipped): its
    address, or the error that makes it unusable. A missing directory holds nothing."""
    found: dict[Path, str | ValueError] = {}
    if not directory.is_dir():
        return found
    for path in sorted(directory.rglob(f"*{ADDR_SUFFIX}")):
        if path.name.startswith(".") or not path.is_file():
            continue
        try:
            found[path] = read_addr_file(path)
        except FileNotFoundError:  # removed between listing and reading
            continue
        except (OSError, ValueError) as err:
            found[path] = err if isinstance(err, ValueError) else ValueError(str(err))
    return found


@dataclass
class Change:
    """One difference between two looks at the directory."""

    path: Path
    addr: str | None  # None: the file is gone
    error: ValueError | None = None  # the file is there but unusable


class DirWatcher:
    """Compares successive scans of one directory."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._seen: dict[Path, str] = {}  # path -> address or error text, as last reported

    def poll(self) -> list[Change]:
        """What changed since the previous call (everything, the first time)."""
        now = scan(self.directory)
        changes: list[Change] = []
        for path in sorted(self._seen.keys() - now.keys()):
            changes.append(Change(path, None))
            del self._seen[path]
        for path, found in now.items():
            key = found if isinstance(found, str) else f"error: {found}"
            if self._seen.get(path) == key:
                continue
            self._seen[path] = key
            if isinstance(found, str):
                changes.append(Change(path, found))
            else:
                changes.append(Change(path, None, found))
        return changes
