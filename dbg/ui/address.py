"""Machine addresses (``mach://ID[/TX[/STEP]]``) and the address bar's back/forward history.

Why apart: the CLI's positional argument, the address bar and cross-machine jumps all speak
the same URL form, and the history only needs to compare and store them.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import parse_qsl, quote, unquote, urlencode, urlsplit

__all__ = ["AddrError", "AddrHistory", "MachAddr"]

SCHEME = "mach://"


class AddrError(ValueError):
    """Not a machine address; the message says why in one line."""


@dataclass(frozen=True, slots=True)
class MachAddr:
    """A position: machine, transition id ("" = the machine's current one), step (0 = none).

    ``query`` holds the optional selectors of the reference (``t`` machine time sum, ``q``
    queue tick, ``ht`` human time, ``state``), sorted so equal addresses compare equal.
    """

    mach_id: str
    tx_id: str = ""
    step: int = 0
    query: tuple[tuple[str, str], ...] = ()

    @classmethod
    def parse(cls, url: str) -> MachAddr:
        url = url.strip()
        if not url.startswith(SCHEME):
            if "://" in url or not url:
                raise AddrError(f"not a machine address: {url!r} (want mach://ID[/TX[/STEP]])")
            url = SCHEME + url  # a bare machine id
        parts = urlsplit(url)
        mach_id = unquote(parts.netloc)
        if not mach_id:
            raise AddrError(f"no machine id in {url!r}")
        segs = [unquote(s) for s in parts.path.split("/") if s]
        if len(segs) > 2:
            raise AddrError(f"too many parts in {url!r} (want mach://ID[/TX[/STEP]])")
        step = 0
        if len(segs) == 2:
            if not segs[1].isdigit():
                raise AddrError(f"step must be a number in {url!r}")
            step = int(segs[1])
        query = tuple(sorted(parse_qsl(parts.query)))
        return cls(mach_id, segs[0] if segs else "", step, query)

    def get(self, key: str) -> str | None:
        for k, v in self.query:
            if k == key:
                return v
        return None

    def __str__(self) -> str:
        out = SCHEME + quote(self.mach_id, safe="-_.~:@")
        if self.tx_id:
            out += "/" + quote(self.tx_id, safe="-_.~:@")
            if self.step:
                out += f"/{self.step}"
        if self.query:
            out += "?" + urlencode(self.query)
        return out


class AddrHistory:
    """Back/forward over visited addresses, like a browser's; capped at ``limit`` entries."""

    def __init__(self, limit: int = 100) -> None:
        self.limit = limit
        self._items: list[MachAddr] = []
        self._pos = -1

    def push(self, addr: MachAddr) -> None:
        if 0 <= self._pos and self._items[self._pos] == addr:
            return
        del self._items[self._pos + 1 :]
        self._items.append(addr)
        if len(self._items) > self.limit:
            del self._items[0]
        self._pos = len(self._items) - 1

    def replace(self, addr: MachAddr) -> None:
        """Update the current entry (the cursor moved within one visit)."""
        if self._pos < 0:
            self.push(addr)
        else:
            self._items[self._pos] = addr

    def back(self) -> MachAddr | None:
        if self._pos <= 0:
            return None
        self._pos -= 1
        return self._items[self._pos]

    def forward(self) -> MachAddr | None:
        if self._pos >= len(self._items) - 1:
            return None
        self._pos += 1
        return self._items[self._pos]

    @property
    def can_back(self) -> bool:
        return self._pos > 0

    @property
    def can_forward(self) -> bool:
        return self._pos < len(self._items) - 1
