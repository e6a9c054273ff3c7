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

import struct
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from types import CodeType
from typing import Any

__all__ = [
    "GobDecoder",
    "GobError",
    "GobInterface",
    "GobOpaque",
    "decode_go_time",
    "go_time_utc",
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
    off_min = struct.unpack(">h", data[13:15])[0]
    off_sec = data[15] if data[0] == 2 else 0
    tz = UTC if off_min == -1 else timezone(timedelta(minutes=off_min, seconds=off_sec))
    return go_time_utc(data).astimezone(tz)


def go_time_utc(data: bytes) -> datetime:
    """The instant of Go's ``time.Time.MarshalBinary`` bytes in UTC, to the microsecond
    (what the debugger keeps; the zone is dropped without building it)."""
    if not data or data[0] not in (1, 2) or len(data) != (15 if data[0] == 1 else 16):
        return decode_go_time(data)  # which says what is wrong
    sec, nsec = struct.unpack(">qi", data[1:13])
    try:
        return _EPOCH + timedelta(seconds=sec - _GO_UNIX_OFFSET, microseconds=nsec // 1000)
    except OverflowError as e:
        raise GobError(f"time.Time: out of range ({sec} s)") from e


#: Hooks for self-encoded Go types, by the type name that the stream gives them.
DEFAULT_HOOKS: dict[str, Callable[[bytes], Any]] = {
    "time.Time": decode_go_time,
}


def _ubig(data: bytes, pos: int, b: int) -> tuple[int, int]:
    """An unsigned integer of 1-8 bytes after its negated byte count ``b`` (at ``pos``)."""
    n = 256 - b
    if n > 8:
        raise GobError(f"invalid integer length byte 0x{b:02x}", pos)
    stop = pos + 1 + n
    if stop > len(data):
        raise GobError("unexpected end of message while reading an unsigned integer", pos)
    return int.from_bytes(data[pos + 1 : stop], "big"), stop


def _uint(data: bytes, pos: int) -> tuple[int, int]:
    b = data[pos]
    return (b, pos + 1) if b < 0x80 else _ubig(data, pos, b)


def _int(data: bytes, pos: int) -> tuple[int, int]:
    u, pos = _uint(data, pos)
    return (~(u >> 1) if u & 1 else u >> 1), pos


def _count(data: bytes, pos: int, what: str) -> tuple[int, int]:
    """A length prefix; every counted item takes at least one byte, which bounds it."""
    n, end = _uint(data, pos)
    if n > len(data) - end:
        raise GobError(f"{what} length {n} exceeds the {len(data) - end} bytes left", pos)
    return n, end


def _float(u: int) -> float:
    # Go sends the float64 bits byte-reversed, so that small exponents compress.
    return struct.unpack(">d", u.to_bytes(8, "little"))[0]


#: A decoder reads one value of its type from a message at a position, at a struct nesting
#: depth, and returns the value and the position after it.
_Dec = Callable[[bytes, int, int], tuple[Any, int]]

# ----- source code of the decoders: one Python function per type id of a stream
#
# Why generated code: a dump is millions of small fields, and the cost of decoding them in
# Python is the number of calls and attribute look-ups per field. Each type gets a function
# with its fields' integer and string reads written out in place (gob's integers are one byte
# most of the time), so a field costs a few bytecodes instead of several calls. No text of
# the stream reaches the source: field names are passed in as constants (``names_<id>``).

_INDENT = "    "


def _read_uint(var: str, ind: str) -> list[str]:
    return [
        f"{ind}b = data[pos]",
        f"{ind}if b < 128:",
        f"{ind}    {var} = b",
        f"{ind}    pos += 1",
        f"{ind}else:",
        f"{ind}    {var}, pos = _ubig(data, pos, b)",
    ]


def _read_length(what: str, ind: str) -> list[str]:
    """Lines that read a length prefix into ``n``, bounded by the bytes left (each counted
    item takes at least one byte)."""
    return [
        f"{ind}at = pos",
        *_read_uint("n", ind),
        f"{ind}if n > len(data) - pos:",
        f"{ind}    raise GobError(f'{what} length {{n}} exceeds the {{len(data) - pos}} bytes "
        "left', at)",
    ]


def _read_counted(var: str, what: str, ind: str) -> list[str]:
    return [*_read_length(what, ind), f"{ind}{var} = data[pos : pos + n]", f"{ind}pos += n"]


def _read_value(tid: int, var: str, ind: str) -> list[str]:
    """Lines that read a value of type ``tid`` into ``var`` (inline for the basic types)."""
    if tid == T_UINT:
        return _read_uint(var, ind)
    if tid == T_INT:
        return [*_read_uint(var, ind), f"{ind}{var} = ~({var} >> 1) if {var} & 1 else {var} >> 1"]
    if tid == T_BOOL:
        return [*_read_uint(var, ind), f"{ind}{var} = {var} != 0"]
    if tid == T_STRING:
        return [
            *_read_counted(var, "string", ind),
            f"{ind}{var} = {var}.decode('utf-8', 'replace')",
        ]
    if tid == T_BYTES:
        return _read_counted(var, "byte slice", ind)
    if tid == T_FLOAT:
        return [*_read_uint(var, ind), f"{ind}{var} = _float({var})"]
    return [f"{ind}{var}, pos = d_{tid}(data, pos, depth)"]


def _basic_source(tid: int) -> list[str]:
    return [f"def d_{tid}(data, pos, depth):", *_read_value(tid, "v", _INDENT), "    return v, pos"]


def _struct_source(tid: int, wt: _WireType) -> list[str]:
    # Field numbers only grow (each delta is >= 1), so the fields are tried once each, in
    # order: a struct costs one comparison per field of its type, present or not.
    lines = [
        f"def d_{tid}(data, pos, depth):",
        "    if depth >= MAX_DEPTH:",
        "        raise GobError('values nested too deeply', pos)",
        "    depth += 1",
        "    out = {}",
        "    at = pos",
        *_read_uint("delta", _INDENT),
        "    if delta == 0:",
        "        return out, pos",
        "    field = delta - 1",
    ]
    for i, (_, ftid) in enumerate(wt.fields):
        ind = _INDENT * 3
        lines += [
            f"    if field == {i}:",
            "        try:",
            *_read_value(ftid, "v", ind),
            "        except GobError as e:",
            f"            e.path.insert(0, '.' + names_{tid}[{i}])",
            "            raise",
            f"        out[names_{tid}[{i}]] = v",
            "        at = pos",
            *_read_uint("delta", _INDENT * 2),
            "        if delta == 0:",
            "            return out, pos",
            "        field += delta",
        ]
    lines.append(
        f"    raise GobError(f'field number {{field}} out of range for {{tname_{tid}}}', at)"
    )
    return lines


def _seq_source(tid: int, elem: int, what: str, length: int | None) -> list[str]:
    lines = [f"def d_{tid}(data, pos, depth):", *_read_length(what, _INDENT)]
    if length is not None:
        lines += [
            f"    if n != {length}:",
            f"        raise GobError(f'array of {{n}} elements, type says {length}', at)",
        ]
    lines += [
        "    out = []",
        "    append = out.append",
        "    i = 0",
        "    try:",
        "        for i in range(n):",
        *_read_value(elem, "v", _INDENT * 3),
        "            append(v)",
        "    except GobError as e:",
        "        e.path.insert(0, f'[{i}]')",
        "        raise",
        "    return out, pos",
    ]
    return lines


def _map_source(tid: int, key: int, elem: int, basic_key: bool) -> list[str]:
    store = "out[k] = v" if basic_key else "out[_map_key(k, at)] = v"
    return [
        f"def d_{tid}(data, pos, depth):",
        *_read_length("map", _INDENT),
        "    out = {}",
        "    for _ in range(n):",
        *_read_value(key, "k", _INDENT * 2),
        "        at = pos",
        "        try:",
        *_read_value(elem, "v", _INDENT * 3),
        "        except GobError as e:",
        "            e.path.insert(0, f'[{k!r}]')",
        "            raise",
        f"        {store}",
        "    return out, pos",
    ]


def _map_key(key: Any, at: int) -> Any:
    try:
        key = _hashable(key)
        hash(key)
    except TypeError:
        raise GobError(f"map key of an unhashable kind ({type(key).__name__})", at) from None
    return key


#: Compiled decoders by their source: the same shapes recur in every stream of a producer (and
#: the bootstrap types in all), and compiling costs more than decoding a small stream.
_COMPILED: dict[str, CodeType] = {}
_COMPILED_MAX = 1024  # a hostile stream of ever new shapes is compiled, not remembered


def _exec(lines: list[str], ns: dict[str, Any]) -> None:
    source = "\n".join(lines)
    code = _COMPILED.get(source)
    if code is None:
        code = compile(source, "<gob decoder>", "exec")
        if len(_COMPILED) < _COMPILED_MAX:
            _COMPILED[source] = code
    exec(code, ns)


#: Types whose values are always hashable map keys.
_BASIC_KEYS = frozenset((T_BOOL, T_INT, T_UINT, T_FLOAT, T_BYTES, T_STRING, T_COMPLEX))


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
        # the globals of the generated decoders: helpers, then d_<id> and their constants
        self._ns: dict[str, Any] = {
            "GobError": GobError,
            "MAX_DEPTH": MAX_DEPTH,
            "_ubig": _ubig,
            "_float": _float,
            "_map_key": _map_key,
        }
        self._new: list[int] | None = None  # ids built by the current _dec call
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
        while pos < len(data):
            body = 0  # where the message's own bytes begin, once its length is read
            try:
                try:
                    size, start = _uint(data, pos)
                except IndexError:  # a length byte 0xf8-0xff at the very end
                    raise GobError("unexpected end of stream in a message length", pos) from None
                if size == 0:
                    raise GobError("empty message", pos)
                if size > len(data) - start:
                    raise GobError(
                        f"message of {size} bytes but only {len(data) - start} left "
                        "(truncated stream?)",
                        pos,
                    )
                body, pos = start, start + size
                # One message is decoded from its own bytes: reading past them is an
                # IndexError, and offsets in errors are relative to the message.
                try:
                    value, is_value = self._message(data[start:pos])
                except IndexError:
                    raise GobError("unexpected end of message", size) from None
                except RecursionError:
                    raise GobError("values nested too deeply", 0) from None
            except GobError as e:
                e.message_index = self._n_msg
                if e.offset is not None:
                    e.offset += base + body
                raise
            self._n_msg += 1
            if is_value:
                yield value

    # ----- messages

    def _message(self, data: bytes) -> tuple[Any, bool]:
        tid, pos = _int(data, 0)
        if tid < 0:
            pos = self._define(-tid, data, pos, 0)
            if pos != len(data):
                raise GobError("extra data after a type definition", pos)
            return None, False
        value, pos = self._value(tid, data, pos, 0, 0)
        if pos != len(data):
            raise GobError(f"{len(data) - pos} bytes left over after a value", pos)
        return value, True

    def _value(self, tid: int, data: bytes, pos: int, depth: int, at: int) -> tuple[Any, int]:
        dec = self._dec(tid, at)
        if self._types[tid].kind == "struct":
            return dec(data, pos, depth)
        # Non-struct values travel like a struct with one field: a zero delta, then the value.
        delta, after = _uint(data, pos)
        if delta != 0:
            raise GobError("non-zero field delta before a single value", pos)
        return dec(data, after, depth)

    def _define(self, tid: int, data: bytes, pos: int, at: int) -> int:
        if tid < FIRST_USER_ID:
            raise GobError(f"type definition for reserved id {tid}", at)
        if tid in self._types:
            raise GobError(f"type id {tid} defined twice", at)
        wire, pos = self._decs[T_WIRE_TYPE](data, pos, 0)
        self._types[tid] = self._wire_to_type(wire, at)
        return pos

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
        outermost = self._new is None
        if outermost:
            self._new = []
        try:
            self._build(tid, at)
        except GobError:
            if outermost:  # nothing half-built stays: its decoders would call missing ones
                for t in self._new or ():
                    self._decs.pop(t, None)
                    self._ns.pop(f"d_{t}", None)
            raise
        finally:
            if outermost:
                self._new = None
        return self._decs[tid]

    def _build(self, tid: int, at: int | None) -> None:
        wt = self._types.get(tid)
        if wt is None:
            raise GobError(f"value of undefined type id {tid}", at)
        ns = self._ns
        if wt.kind == "struct":
            ns[f"names_{tid}"] = tuple(name for name, _ in wt.fields)
            ns[f"tname_{tid}"] = wt.name or "struct"
            lines, deps = _struct_source(tid, wt), [f for _, f in wt.fields]
        elif wt.kind in ("slice", "array"):
            length = wt.length if wt.kind == "array" else None
            lines, deps = _seq_source(tid, wt.elem, wt.kind, length), [wt.elem]
        elif wt.kind == "map":
            lines = _map_source(tid, wt.key, wt.elem, wt.key in _BASIC_KEYS)
            deps = [wt.key, wt.elem]
        elif wt.kind == "encoder":
            ns[f"d_{tid}"], lines, deps = self._encoder_dec(wt.name), [], []
        else:
            raise GobError(f"unsupported type kind {wt.kind}", at)
        for dep in deps:  # checked before they are written into source code as d_<id>
            if dep not in self._types:
                raise GobError(f"value of undefined type id {dep}", at)
        if lines:
            _exec(lines, ns)
        self._decs[tid] = ns[f"d_{tid}"]
        assert self._new is not None
        self._new.append(tid)
        # The decoder calls the others by name when it runs, so a type may refer to itself.
        for dep in deps:
            self._dec(dep, at)

    def _encoder_dec(self, type_name: str) -> _Dec:
        hook = self._hooks.get(type_name)

        def dec(data: bytes, pos: int, depth: int) -> tuple[Any, int]:
            at = pos
            n, pos = _count(data, pos, "encoded value")
            raw = data[pos : pos + n]
            if hook is None:
                return GobOpaque(type_name, raw), pos + n
            try:
                return hook(raw), pos + n
            except GobError as e:
                e.offset = at
                raise
            except ValueError as e:
                raise GobError(f"{type_name}: {e}", at) from None

        return dec

    def _interface(self, data: bytes, pos: int, depth: int) -> tuple[GobInterface | None, int]:
        n, pos = _count(data, pos, "interface type name")
        if n == 0:
            return None, pos  # a nil interface
        name = data[pos : pos + n].decode("utf-8", "replace")
        pos += n
        # Definitions of the concrete type may come inline; each is followed by a byte count.
        while True:
            at = pos
            tid, pos = _int(data, pos)
            if tid >= 0:
                break
            pos = self._define(-tid, data, pos, at)
            if pos < len(data):
                _, pos = _uint(data, pos)
        _, pos = _count(data, pos, "interface value")  # its byte count: we can decode it
        value, pos = self._value(tid, data, pos, depth, at)
        return GobInterface(name, value), pos

    # ----- bootstrap

    def _install_predefined(self) -> None:
        ns = self._ns
        for tid in (T_BOOL, T_INT, T_UINT, T_FLOAT, T_BYTES, T_STRING):
            _exec(_basic_source(tid), ns)
        ns[f"d_{T_COMPLEX}"] = _complex
        ns[f"d_{T_INTERFACE}"] = self._interface
        for tid in range(T_BOOL, T_INTERFACE + 1):
            self._types[tid] = _WireType("basic")
            self._decs[tid] = ns[f"d_{tid}"]
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


def _complex(data: bytes, pos: int, depth: int) -> tuple[complex, int]:
    re, pos = _uint(data, pos)
    im, pos = _uint(data, pos)
    return complex(_float(re), _float(im)), pos


def _hashable(key: Any) -> Any:
    if isinstance(key, dict):
        return tuple(sorted((k, _hashable(v)) for k, v in key.items()))
    if isinstance(key, list):
        return tuple(_hashable(v) for v in key)
    return key


def loads_all(data: bytes, hooks: dict[str, Callable[[bytes], Any]] | None = None) -> list[Any]:
    """Decode every top-level value of a gob stream; raises :class:`GobError` when corrupt."""
    return list(GobDecoder(data, hooks))
