"""The prod page build's sparse snapshot: only the heap's non-zero pages are stored, and laying
them into a zeroed buffer of the heap's size (what the page's ``fillSnapshot`` does) gives the
heap back byte for byte."""

from __future__ import annotations

import struct
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "web"))
from build_prod import PAGE, _sparse  # noqa: E402 - web/ is not a package


def unsparse(data: bytes, size: int) -> bytes:
    """The page's ``fillSnapshot``, in Python."""
    heap = bytearray(size)
    (count,) = struct.unpack_from("<I", data)
    at = 4 + 8 * count
    for i in range(count):
        offset, length = struct.unpack_from("<II", data, 4 + 8 * i)
        heap[offset : offset + length] = data[at : at + length]
        at += length
    assert at == len(data)
    return bytes(heap)


@pytest.mark.parametrize(
    "heap",
    [
        b"",
        bytes(PAGE * 3),  # all zero: no runs
        b"\1" * (PAGE * 2 + 5),  # one run, a short last page
        bytes(PAGE) + b"\2" * PAGE + bytes(PAGE * 4) + b"\3" + bytes(PAGE - 1) + b"\4" * 10,
    ],
)
def test_sparse_round_trip(heap: bytes) -> None:
    data = _sparse(heap)
    assert unsparse(data, len(heap)) == heap


def test_zero_pages_are_left_out_and_neighbours_join() -> None:
    heap = b"\1" * PAGE + b"\2" * PAGE + bytes(PAGE * 8) + b"\3" * PAGE
    data = _sparse(heap)
    assert struct.unpack_from("<5I", data) == (2, 0, 2 * PAGE, 10 * PAGE, PAGE)
    assert len(data) == 4 + 8 * 2 + 3 * PAGE
