"""Length-prefixed CBOR frames over a byte stream: a big-endian u32 length, then one CBOR item.

Both of the project's byte-stream protocols use it: aRPC (`machines.rpc.protocol`) and
telemetry to the debugger (`machines.telemetry`). Sans-IO: bytes in, items out. Only
``cbor2.dumps`` / ``cbor2.loads``, so the browser's pure-Python cbor2 5.x and CPython's cbor2 6.x
produce and read the same bytes.
"""

from __future__ import annotations

import struct
from typing import Any

import cbor2

HEADER = struct.Struct(">I")


def _brief(err: BaseException, limit: int = 120) -> str:
    text = " ".join(str(err).split()) or type(err).__name__
    return text if len(text) <= limit else text[:limit] + "..."


def encode_frame(item: Any, max_frame: int | None = None) -> bytes:
    """One CBOR item with its length prefix; with ``max_frame``, refuses bigger bodies (the
    peer would refuse them anyway). Raises ``ValueError``."""
    try:
        body = cbor2.dumps(item)
    except Exception as err:  # cbor2 raises several types for unencodable values
        raise ValueError(f"cannot encode as CBOR: {err}") from None
    if max_frame is not None and len(body) > max_frame:
        raise ValueError(f"frame of {len(body)} bytes exceeds the limit of {max_frame}")
    return HEADER.pack(len(body)) + body


class FrameReader:
    """Splits a byte stream into decoded CBOR items. Bad framing or bad CBOR raises ``error``
    (the caller's exception type) with a one-line reason; the stream is then unusable."""

    def __init__(self, max_frame: int, error: type[Exception] = ValueError) -> None:
        self.max_frame = max_frame
        self._error = error
        self._buf = bytearray()

    @property
    def pending(self) -> int:
        """Bytes of an unfinished frame (non-zero at EOF means a truncated frame)."""
        return len(self._buf)

    def feed(self, data: bytes | bytearray) -> list[Any]:
        buf = self._buf
        if buf:  # a frame began in an earlier chunk: complete it before decoding anything
            buf += data
            if len(buf) < 4 or len(buf) < 4 + self._size(buf, 0):
                return []
            data = bytes(buf)
            buf.clear()
        # decoded straight from the chunk (one copy per frame body): a chunk that holds whole
        # frames, the usual case, never touches the buffer
        items: list[Any] = []
        pos, end = 0, len(data)
        unpack, limit, loads = HEADER.unpack_from, self.max_frame, cbor2.loads
        while end - pos >= 4:
            (size,) = unpack(data, pos)
            if not 0 < size <= limit:
                self._size(data, pos)  # raises why
            start = pos + 4
            if start + size > end:
                break
            pos = start + size
            try:
                items.append(loads(data[start:pos]))
            except RecursionError:
                raise self._error("malformed CBOR: nested too deeply") from None
            except Exception as err:
                raise self._error(f"malformed CBOR: {_brief(err)}") from None
        if pos < end:
            buf += memoryview(data)[pos:]
        return items

    def _size(self, data: bytes | bytearray, pos: int) -> int:
        """The body length in the header at `pos`, checked before the body is buffered (so a
        bogus length costs nothing)."""
        (size,) = HEADER.unpack_from(data, pos)
        if size > self.max_frame:
            raise self._error(f"frame of {size} bytes exceeds the limit of {self.max_frame}")
        if size == 0:
            raise self._error("empty frame")
        return size
