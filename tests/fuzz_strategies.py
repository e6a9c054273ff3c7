"""Hypothesis strategies for the fuzz suites (tests/test_fuzz_*.py): hostile values, and the
protocols' own shapes with one part swapped for one of them.

Example counts: the `default` profile keeps `task test` quick; `task fuzz` runs the `fuzz`
profile (HYPOTHESIS_PROFILE=fuzz) for a longer hunt.
"""

from __future__ import annotations

import os
import socket
import threading
from collections.abc import Callable
from typing import Any

import cbor2
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

_COMMON = {
    "deadline": None,  # the machine is shared and loaded: no per-example time limit
    "suppress_health_check": [HealthCheck.too_slow, HealthCheck.data_too_large],
    "derandomize": False,
    "database": None,
}
settings.register_profile("default", max_examples=60, **_COMMON)
settings.register_profile("fuzz", max_examples=3000, **_COMMON)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))

#: A CBOR bignum with more digits than Python formats (int -> str refuses over 4,300).
BIG = cbor2.loads(b"\xc2\x59\x08\x00" + b"\x7f" * 2048)

# values hypothesis cannot repr (it describes strategies and examples) come from builds()
big = st.one_of(st.builds(lambda: BIG), st.builds(lambda: -BIG))
ints = st.one_of(
    st.integers(-(2**70), 2**70),
    st.sampled_from([0, 1, -1, 2**31, 2**63, 2**64, -(2**63) - 1]),
    big,
)
scalars = st.one_of(
    st.none(),
    st.booleans(),
    ints,
    st.floats(allow_nan=True),
    st.text(max_size=20),
    st.binary(max_size=20),
    st.sampled_from(["", "A", "Exception", "h", "a", "x" * 5000]),
)
#: any CBOR value, nested a few levels
values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=5),
        st.dictionaries(st.one_of(st.text(max_size=8), ints), inner, max_size=5),
    ),
    max_leaves=12,
)


def deep(n: int) -> Any:
    out: Any = []
    for _ in range(n):
        out = [out]
    return out


hostile = st.one_of(
    values,
    st.builds(deep, st.sampled_from([200, 2000])),
    st.builds(lambda: {"k": deep(100)}),
)


def _paths(item: Any, prefix: tuple = ()) -> list[tuple]:
    """Every position in a nested list/dict (for swapping one)."""
    out = [prefix]
    if isinstance(item, list):
        for i, v in enumerate(item):
            out += _paths(v, (*prefix, i))
    elif isinstance(item, dict):
        for k, v in item.items():
            out += _paths(v, (*prefix, k))
    return out


def _replace(item: Any, path: tuple, value: Any) -> Any:
    if not path:
        return value
    head, rest = path[0], path[1:]
    if isinstance(item, list):
        copy = list(item)
    else:
        copy = dict(item)
    copy[head] = _replace(copy[head], rest, value)
    return copy


@st.composite
def mutated(draw: Callable, shape: st.SearchStrategy) -> Any:
    """A well-formed item of `shape`, as is, or with one part swapped, dropped or added to."""
    item = draw(shape)
    how = draw(st.sampled_from(["keep", "swap", "swap", "swap", "drop", "extend"]))
    if how == "swap":
        path = draw(st.sampled_from(_paths(item)))
        return _replace(item, path, draw(hostile))
    if how == "drop" and isinstance(item, list) and item:
        return item[: draw(st.integers(0, len(item) - 1))]
    if how == "extend" and isinstance(item, list):
        return item + draw(st.lists(hostile, min_size=1, max_size=3))
    return item


def encode_all(items: list[Any], header: Callable[[int], bytes]) -> bytes:
    """Length-prefixed frames; an item cbor2 cannot encode becomes raw garbage instead."""
    out = b""
    for item in items:
        try:
            body = cbor2.dumps(item)
        except Exception:
            body = b"\xff\x00"
        out += header(len(body)) + body
    return out


def chunked(data: bytes, cuts: list[int]) -> list[bytes]:
    """`data` split at the given offsets (a stream delivers frames in any pieces)."""
    points = sorted({c % (len(data) + 1) for c in cuts} | {0, len(data)})
    return [data[a:b] for a, b in zip(points, points[1:], strict=False) if b > a]


def rss_bytes() -> int:
    with open("/proc/self/statm", "rb") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def send_and_drain(addr: tuple[str, int], data: bytes, timeout: float = 2.0) -> None:
    """Send hostile bytes, read what comes back until the server closes or goes quiet."""
    with socket.create_connection(addr, timeout=timeout) as s:
        try:
            s.sendall(data)
            s.shutdown(socket.SHUT_WR)
            while s.recv(65536):
                pass
        except (TimeoutError, OSError):
            pass


class TrioThread:
    """A trio program in a thread for the duration of a test module (a server to fuzz)."""

    def __init__(self, main: Callable[..., Any]) -> None:
        import queue

        self._main = main
        self._stop = threading.Event()
        self._ready: queue.Queue = queue.Queue()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self.error: BaseException | None = None

    def _run(self) -> None:
        import trio

        async def runner() -> None:
            async def stopper(cancel: Any) -> None:
                await trio.to_thread.run_sync(self._stop.wait, abandon_on_cancel=True)
                cancel()

            async with trio.open_nursery() as nursery:
                nursery.start_soon(stopper, nursery.cancel_scope.cancel)
                await self._main(self._ready.put)

        try:
            trio.run(runner)
        except BaseException as err:  # the test asserts the server never died
            self.error = err
            self._ready.put(err)

    def start(self, timeout: float = 20) -> Any:
        self._thread.start()
        value = self._ready.get(timeout=timeout)
        if isinstance(value, BaseException):
            raise value
        return value

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(20)
