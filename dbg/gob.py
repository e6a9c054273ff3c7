"""A decoder for Go's ``encoding/gob`` streams, written from the format's public specification.

Why: the Go debugger writes its dumps (``*.gob.br``) and speaks its telemetry protocol in gob,
and no maintained Python library reads it. This module is generic: it turns any gob stream into
plain Python values, without knowing the Go types in advance, because every gob stream carries
its own type definitions.

Mapping of Go values to Python:

- bool, ints, uints, floats, complex, string -> ``bool``, ``int``, ``float``, ``complex``, ``str``
  (invalid UTF-8 is replaced, as the dumps are text for people);
- ``[]byte`` -> ``bytes``; slices and arrays -> ``list``; maps -> ``dict`` (unhashable keys
  become tuples);
- structs -> ``dict`` of field name to value, holding **only the fields present on the wire**
  (gob omits zero-valued fields: callers apply their own defaults);
- interface values -> :class:`GobInterface` (the registered Go type name and the value),
  a nil interface -> ``None``;
- ``GobEncoder`` / ``BinaryMarshaler`` / ``TextMarshaler`` values -> the result of a hook
  registered for their type name (``time.Time`` -> an aware :class:`datetime.datetime` by
  default), else :class:`GobOpaque` with the raw bytes.

Bad input never escapes as ``IndexError`` or ``RecursionError``: every problem raises
:class:`GobError` (a ``ValueError``) saying at which byte of the stream, in which message and
at which field path it was found.
"""

from __future__ import annotations

import builtins
import struct
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

__all__ = [
    "GobDecoder",
    "GobError",
    "GobInterface",
    "GobOpaque",
    "decode_go_time",
    "loads_all",
]

# Predefined type ids of the gob specification.
T_BOOL, T_INT, T_UINT, T_FLOAT, T_BYTES, T_STRING, T_COMPLEX, T_INTERFACE = range(1, 9)
T_WIRE_TYPE, T_ARRAY_TYPE, T_COMMON_TYPE, T_SLICE_TYPE = 16, 17, 18, 19
T_STRUCT_TYPE, T_FIELD_TYPE, T_FIELD_TYPE_SLICE, T_MAP_TYPE = 20, 21, 22, 23
# gobEncoderType only appears inside wireType, which is never sent; this id is ours.
T_GOB_ENCODER_TYPE = 24
#: The lowest id a stream may define; lower ids are reserved by the format.
FIRST_USER_ID = 64

# A stream nests values no deeper than this (Go's own types rarely pass 10 levels).
MAX_DEPTH = 100


class GobError(ValueError):
    """A corrupt or unsupported gob stream. ``offset`` is the byte offset in the stream."""

    def __init__(self, reason: str, offset: int | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.offset = offset
        self.message_index: int | None = None
        self.path: list[str] = []

    def __str__(self) -> str:
        where = []
        if self.offset is not None:
            where.append(f"byte {self.offset}")
        if self.message_index is not None:
            where.append(f"message {self.message_index}")
        if self.path:
            where.append("at " + "".join(self.path).lstrip("."))
        suffix = f" ({', '.join(where)})" if where else ""
        return f"corrupt gob stream: {self.reason}{suffix}"


@dataclass(frozen=True, slots=True)
class GobInterface:
    """A Go interface value: the concrete type's registered name and its decoded value."""

    type_name: str
    value: Any


@dataclass(frozen=True, slots=True)
class GobOpaque:
    """A value that Go encoded itself (GobEncoder & co.) and that has no decoding hook."""

    type_name: str
    data: bytes


@dataclass(frozen=True, slots=True)
class _WireType:
    """One type definition from the stream (or a predefined one)."""

    kind: str  # basic | struct | slice | array | map | encoder
    name: str = ""
    elem: int = 0
    key: int = 0
    length: int = 0
    fields: tuple[tuple[str, int], ...] = ()


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
# Go's time.Time counts seconds from January 1, year 1 (UTC).
_GO_UNIX_OFFSET = 62135596800


def decode_go_time(data: bytes) -> datetime:
    """Decode Go's ``time.Time.MarshalBinary`` bytes into an aware datetime.

    Layout: version byte (1 or 2), int64 seconds since year 1, int32 nanoseconds, int16 zone
    offset in minutes (-1 = UTC); version 2 adds one byte of offset seconds.
    """
    if not data or data[0] not in (1, 2):
        raise GobError(f"time.Time: unsupported encoding version {data[:1].hex() or 'none'}")
    want = 15 if data[0] == 1 else 16
    if len(data) != want:
        raise GobError(f"time.Time: {len(data)} bytes, expected {want}")
    sec, nsec, off_min = struct.unpack(">qih", data[1:15])
    off_sec = data[15] if data[0] == 2 else 0
    tz = UTC if off_min == -1 else timezone(timedelta(minutes=off_min, seconds=off_sec))
    try:
        utc = _EPOCH + timedelta(seconds=sec - _GO_UNIX_OFFSET, microseconds=nsec // 1000)
    except OverflowError as e:
        raise GobError(f"time.Time: out of range ({sec} s)") from e
    return utc.astimezone(tz)


#: Hooks for self-encoded Go types, by the type name that the stream gives them.
DEFAULT_HOOKS: dict[str, Callable[[bytes], Any]] = {
    "time.Time": decode_go_time,
}


class _Reader:
    """A bounded cursor over one gob message (positions are absolute in the stream)."""

    __slots__ = ("data", "pos", "end")

    def __init__(self, data: bytes, pos: int, end: int) -> None:
        self.data = data
        self.pos = pos
        self.end = end

    def eof(self, what: str) -> GobError:
        return GobError(f"unexpected end of message while reading {what}", self.pos)

    def uint(self) -> int:
        pos = self.pos
        if pos >= self.end:
            raise self.eof("an unsigned integer")
        b = self.data[pos]
        if b < 0x80:
            self.pos = pos + 1
            return b
        n = 256 - b  # a negated byte count
        if n > 8:
            raise GobError(f"invalid integer length byte 0x{b:02x}", pos)
        stop = pos + 1 + n
        if stop > self.end:
            raise self.eof("an unsigned integer")
        self.pos = stop
        return int.from_bytes(self.data[pos + 1 : stop], "big")

    def int(self) -> int:
        u = self.uint()
        return ~(u >> 1) if u & 1 else u >> 1

    def count(self, what: str) -> builtins.int:  # ``int`` is the method above
        """A length prefix; every counted item takes at least one byte, which bounds it."""
        start = self.pos
        n = self.uint()
        if n > self.end - self.pos:
            raise GobError(f"{what} length {n} exceeds the {self.end - self.pos} bytes left", start)
        return n

    def raw(self, n: builtins.int) -> bytes:
        pos = self.pos
        self.pos = pos + n
        return self.data[pos : pos + n]


def _float(u: int) -> float:
    # Go sends the float64 bits byte-reversed, so that small exponents compress.
    return struct.unpack(">d", u.to_bytes(8, "little"))[0]


_Dec = Callable[[_Reader], Any]


class GobDecoder:
    """Decode the top-level values of one gob stream.

    Whole stream in memory: ``for value in GobDecoder(data): ...`` (or :func:`loads_all`).
    A stream arriving in pieces (e.g. from a socket): ``values = dec.feed(chunk)`` returns the
    values completed so far and keeps the type definitions for later messages. Messages larger
    than ``max_message`` bytes are refused, so a hostile length cannot make us buffer forever.
    """

    def __init__(
        self,
        data: bytes = b"",
        hooks: dict[str, Callable[[bytes], Any]] | None = None,
        max_message: int = 1 << 30,
    ):
        self._data = bytes(data)
        self._hooks = dict(DEFAULT_HOOKS if hooks is None else hooks)
        self._types: dict[int, _WireType] = {}
        self._decs: dict[int, _Dec] = {}
        self._depth = 0
        self._max_message = max_message
        self._pending = bytearray()
        self._fed = 0  # stream offset of self._pending[0]
        self._n_msg = 0
        self._install_predefined()

    # ----- public

    def __iter__(self) -> Iterator[Any]:
        return self._messages(self._data, 0)

    def feed(self, chunk: bytes) -> list[Any]:
        """Add the next bytes of the stream; return the values of the messages now complete."""
        self._pending += chunk
        buf = self._pending
        end = 0
        while end < len(buf):
            b = buf[end]
            n = 1 if b < 0x80 else 1 + (256 - b)
            if n > 9:
                raise GobError(f"invalid integer length byte 0x{b:02x}", self._fed + end)
            if end + n > len(buf):
                break
            size = b if b < 0x80 else int.from_bytes(buf[end + 1 : end + n], "big")
            if size > self._max_message:
                raise GobError(f"message of {size} bytes is too large", self._fed + end)
            if end + n + size > len(buf):
                break
            end += n + size
        if end == 0:
            return []
        complete = bytes(buf[:end])
        base = self._fed
        del buf[:end]
        self._fed += end
        return list(self._messages(complete, base))

    @property
    def pending(self) -> int:
        """Bytes fed but not yet decoded (an incomplete message)."""
        return len(self._pending)

    def _messages(self, data: bytes, base: int) -> Iterator[Any]:
        pos = 0
        outer = _Reader(data, 0, len(data))
        while pos < len(data):
            try:
                outer.pos = pos
                size = outer.uint()
                if size == 0:
                    raise GobError("empty message", pos)
                if size > len(data) - outer.pos:
                    raise GobError(
                        f"message of {size} bytes but only {len(data) - outer.pos} left "
                        "(truncated stream?)",
                        pos,
                    )
                msg = _Reader(data, outer.pos, outer.pos + size)
                pos = msg.end
                value, is_value = self._message(msg)
            except GobError as e:
                e.message_index = self._n_msg
                if e.offset is not None:
                    e.offset += base
                raise
            except RecursionError:
                err = GobError("values nested too deeply", base + pos)
                err.message_index = self._n_msg
                raise err from None
            self._n_msg += 1
            if is_value:
                yield value

    # ----- messages

    def _message(self, r: _Reader) -> tuple[Any, bool]:
        self._depth = 0  # an earlier error may have left it raised
        start = r.pos
        tid = r.int()
        if tid < 0:
            self._define(-tid, r, start)
            if r.pos != r.end:
                raise GobError("extra data after a type definition", r.pos)
            return None, False
        value = self._top_value(tid, r, start)
        if r.pos != r.end:
            raise GobError(f"{r.end - r.pos} bytes left over after a value", r.pos)
        return value, True

    def _top_value(self, tid: int, r: _Reader, at: int) -> Any:
        dec = self._dec(tid, at)
        if self._types[tid].kind == "struct":
            return dec(r)
        # Non-struct values travel like a struct with one field: a zero delta, then the value.
        at = r.pos
        if r.uint() != 0:
            raise GobError("non-zero field delta before a single value", at)
        return dec(r)

    def _define(self, tid: int, r: _Reader, at: int) -> None:
        if tid < FIRST_USER_ID:
            raise GobError(f"type definition for reserved id {tid}", at)
        if tid in self._types:
            raise GobError(f"type id {tid} defined twice", at)
        wire = self._decs[T_WIRE_TYPE](r)
        self._types[tid] = self._wire_to_type(wire, at)

    def _wire_to_type(self, wire: dict[str, Any], at: int) -> _WireType:
        if len(wire) != 1:
            raise GobError(f"type definition with {len(wire)} kinds", at)
        ((kind, body),) = wire.items()
        common = body.get("CommonType", {})
        name = common.get("Name", "")
        if kind == "ArrayT":
            return _WireType("array", name, elem=body.get("Elem", 0), length=body.get("Len", 0))
        if kind == "SliceT":
            return _WireType("slice", name, elem=body.get("Elem", 0))
        if kind == "MapT":
            return _WireType("map", name, elem=body.get("Elem", 0), key=body.get("Key", 0))
        if kind == "StructT":
            fields = tuple((f.get("Name", ""), f.get("Id", 0)) for f in body.get("Field", []))
            return _WireType("struct", name, fields=fields)
        # GobEncoderT, BinaryMarshalerT, TextMarshalerT: the value is a byte string.
        return _WireType("encoder", name)

    # ----- decoders, built once per type id

    def _dec(self, tid: int, at: int | None = None) -> _Dec:
        dec = self._decs.get(tid)
        if dec is not None:
            return dec
        wt = self._types.get(tid)
        if wt is None:
            raise GobError(f"value of undefined type id {tid}", at)
        # A trampoline first, so that recursive types can refer to themselves.
        self._decs[tid] = lambda r: self._decs[tid](r)
        dec = self._build(wt, at)
        self._decs[tid] = dec
        return dec

    def _build(self, wt: _WireType, at: int | None) -> _Dec:
        if wt.kind == "struct":
            return self._struct_dec(wt, at)
        if wt.kind == "slice":
            return self._seq_dec(self._dec(wt.elem, at), "slice")
        if wt.kind == "array":
            return self._array_dec(self._dec(wt.elem, at), wt.length)
        if wt.kind == "map":
            return self._map_dec(self._dec(wt.key, at), self._dec(wt.elem, at))
        if wt.kind == "encoder":
            return self._encoder_dec(wt.name)
        raise GobError(f"unsupported type kind {wt.kind}", at)

    def _struct_dec(self, wt: _WireType, at: int | None) -> _Dec:
        fields = [(name, self._dec(fid, at)) for name, fid in wt.fields]
        n_fields = len(fields)
        type_name = wt.name or "struct"
        decoder = self

        def dec(r: _Reader) -> dict[str, Any]:
            decoder._depth += 1
            if decoder._depth > MAX_DEPTH:
                decoder._depth = 0
                raise GobError("values nested too deeply", r.pos)
            out: dict[str, Any] = {}
            field = -1
            while True:
                at = r.pos
                delta = r.uint()
                if delta == 0:
                    decoder._depth -= 1
                    return out
                field += delta
                if field >= n_fields:
                    raise GobError(f"field number {field} out of range for {type_name}", at)
                name, fdec = fields[field]
                try:
                    out[name] = fdec(r)
                except GobError as e:
                    e.path.insert(0, "." + name)
                    raise

        return dec

    @staticmethod
    def _seq_dec(elem: _Dec, what: str) -> _Dec:
        def dec(r: _Reader) -> list[Any]:
            n = r.count(what)
            out: list[Any] = []
            append = out.append
            for i in range(n):
                try:
                    append(elem(r))
                except GobError as e:
                    e.path.insert(0, f"[{i}]")
                    raise
            return out

        return dec

    @staticmethod
    def _array_dec(elem: _Dec, length: int) -> _Dec:
        seq = GobDecoder._seq_dec(elem, "array")

        def dec(r: _Reader) -> list[Any]:
            at = r.pos
            out = seq(r)
            if len(out) != length:
                raise GobError(f"array of {len(out)} elements, type says {length}", at)
            return out

        return dec

    @staticmethod
    def _map_dec(key: _Dec, elem: _Dec) -> _Dec:
        def dec(r: _Reader) -> dict[Any, Any]:
            n = r.count("map")
            out: dict[Any, Any] = {}
            for _ in range(n):
                k = key(r)
                try:
                    out[_hashable(k)] = elem(r)
                except GobError as e:
                    e.path.insert(0, f"[{k!r}]")
                    raise
            return out

        return dec

    def _encoder_dec(self, type_name: str) -> _Dec:
        hook = self._hooks.get(type_name)

        def dec(r: _Reader) -> Any:
            at = r.pos
            raw = r.raw(r.count("encoded value"))
            if hook is None:
                return GobOpaque(type_name, raw)
            try:
                return hook(raw)
            except GobError as e:
                e.offset = at
                raise
            except ValueError as e:
                raise GobError(f"{type_name}: {e}", at) from None

        return dec

    def _interface(self, r: _Reader) -> GobInterface | None:
        n = r.count("interface type name")
        if n == 0:
            return None  # a nil interface
        name = r.raw(n).decode("utf-8", "replace")
        # Definitions of the concrete type may come inline; each is followed by a byte count.
        while True:
            at = r.pos
            tid = r.int()
            if tid >= 0:
                break
            self._define(-tid, r, at)
            if r.pos < r.end:
                r.uint()
        r.count("interface value")  # byte count of the value, unused: we can decode it
        dec = self._dec(tid, at)
        if self._types[tid].kind == "struct":
            return GobInterface(name, dec(r))
        at = r.pos
        if r.uint() != 0:
            raise GobError("non-zero field delta before an interface value", at)
        return GobInterface(name, dec(r))

    # ----- bootstrap

    def _install_predefined(self) -> None:
        basic: dict[int, _Dec] = {
            T_BOOL: lambda r: r.uint() != 0,
            T_INT: _Reader.int,
            T_UINT: _Reader.uint,
            T_FLOAT: lambda r: _float(r.uint()),
            T_BYTES: lambda r: r.raw(r.count("byte slice")),
            T_STRING: lambda r: r.raw(r.count("string")).decode("utf-8", "replace"),
            T_COMPLEX: lambda r: complex(_float(r.uint()), _float(r.uint())),
            T_INTERFACE: self._interface,
        }
        for tid, dec in basic.items():
            self._types[tid] = _WireType("basic")
            self._decs[tid] = dec
        common = (("Name", T_STRING), ("Id", T_INT))
        boot = {
            T_COMMON_TYPE: _WireType("struct", "CommonType", fields=common),
            T_ARRAY_TYPE: _WireType(
                "struct",
                "arrayType",
                fields=(("CommonType", T_COMMON_TYPE), ("Elem", T_INT), ("Len", T_INT)),
            ),
            T_SLICE_TYPE: _WireType(
                "struct", "sliceType", fields=(("CommonType", T_COMMON_TYPE), ("Elem", T_INT))
            ),
            T_FIELD_TYPE: _WireType("struct", "fieldType", fields=common),
            T_FIELD_TYPE_SLICE: _WireType("slice", "[]fieldType", elem=T_FIELD_TYPE),
            T_STRUCT_TYPE: _WireType(
                "struct",
                "structType",
                fields=(("CommonType", T_COMMON_TYPE), ("Field", T_FIELD_TYPE_SLICE)),
            ),
            T_GOB_ENCODER_TYPE: _WireType(
                "struct", "gobEncoderType", fields=(("CommonType", T_COMMON_TYPE),)
            ),
            T_MAP_TYPE: _WireType(
                "struct",
                "mapType",
                fields=(("CommonType", T_COMMON_TYPE), ("Key", T_INT), ("Elem", T_INT)),
            ),
            T_WIRE_TYPE: _WireType(
                "struct",
                "wireType",
                fields=(
                    ("ArrayT", T_ARRAY_TYPE),
                    ("SliceT", T_SLICE_TYPE),
                    ("StructT", T_STRUCT_TYPE),
                    ("MapT", T_MAP_TYPE),
                    ("GobEncoderT", T_GOB_ENCODER_TYPE),
                    ("BinaryMarshalerT", T_GOB_ENCODER_TYPE),
                    ("TextMarshalerT", T_GOB_ENCODER_TYPE),
                ),
            ),
        }
        self._types.update(boot)
        for tid in boot:
            self._dec(tid)


def _hashable(key: Any) -> Any:
    if isinstance(key, dict):
        return tuple(sorted((k, _hashable(v)) for k, v in key.items()))
    if isinstance(key, list):
        return tuple(_hashable(v) for v in key)
    return key


def loads_all(data: bytes, hooks: dict[str, Callable[[bytes], Any]] | None = None) -> list[Any]:
    """Decode every top-level value of a gob stream; raises :class:`GobError` when corrupt."""
    return list(GobDecoder(data, hooks))
