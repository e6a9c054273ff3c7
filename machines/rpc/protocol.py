"""aRPC wire protocol, sans-IO (no sockets, no trio, no asyncio; runs under Pyodide).

Like h11 or wsproto, the connection objects here only turn bytes into events and method calls into
bytes: `receive_data(bytes) -> list[event]` and `data_to_send() -> bytes`. The trio drivers
(server.py, client.py) and the browser's WebSocket glue move the bytes. Keeping I/O out means the
same diff, checksum and validation code runs on both ends and in the browser, and can be tested and
fuzzed without a network.

Wire format [port of the Go rpc2/gob transport]: every message is one frame, a big-endian u32
length followed by one CBOR item (only `cbor2.dumps`/`loads`, so the pure-Python cbor2 5.x in the
browser and the Rust cbor2 6.x interoperate). Items are positional arrays to keep a mutation round
trip under 40 bytes:

    notification   [0, method, *params]
    request        [1, seq, method, *params]      seq >= 1, allocated by the caller
    response       [2, seq, *body]
    error          [3, seq, message]              seq 0 = complaint about a notification

Clock diff (`*diff` below): `queue_tick_delta, machine_tick_delta, checksum, idx, delta, idx, delta,
...`; checksum = (sum of the receiver's ticks after applying + queue tick + machine tick) mod 256.

Methods, client -> server: `h` hello (call), `a`/`r`/`s` add/remove/set (call, response
`[result, *diff]`), `A` add without sync (notification), `y` full sync (call, response
`[time, queue_tick, machine_tick]`), `x` bye (notification). Server -> client: `u` clock push
(notification, `*diff`), `p` payload (notification), `S` schema change (notification, hello body).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeGuard

import cbor2

from .. import framing

PROTOCOL_VERSION = 1
DEFAULT_MAX_FRAME = 1 << 20  # 1 MiB
HEADER = framing.HEADER

NOTIFY, REQUEST, RESPONSE, ERROR = 0, 1, 2, 3

# client -> server
M_HELLO = "h"
M_ADD = "a"
M_REMOVE = "r"
M_SET = "s"
M_ADD_NS = "A"
M_SYNC = "y"
M_BYE = "x"
# server -> client
M_UPDATE = "u"
M_UPDATES = "U"  # per-mutation mode: one entry per source mutation
M_PAYLOAD = "p"
M_SCHEMA = "S"

# MutationType values of the core (Add=0, Remove=1, Set=2)
MUT_ADD, MUT_REMOVE, MUT_SET = 0, 1, 2
MUTATION_METHODS = {M_ADD: MUT_ADD, M_REMOVE: MUT_REMOVE, M_SET: MUT_SET, M_ADD_NS: MUT_ADD}
_METHOD_OF_TYPE = {MUT_ADD: M_ADD, MUT_REMOVE: M_REMOVE, MUT_SET: M_SET}

_SCHEMA_LISTS = ("require", "add", "remove", "after", "tags")
_SCHEMA_FLAGS = ("auto", "multi")


class ProtocolError(Exception):
    """The byte stream cannot be trusted any more: the connection must close."""


class RemoteError(Exception):
    """The peer answered a call with an error message."""


class VersionMismatch(RemoteError):
    """The peers speak different protocol versions."""


# --- framing ---------------------------------------------------------------------------------


def encode_frame(item: Any, max_frame: int = DEFAULT_MAX_FRAME) -> bytes:
    """One aRPC frame (`machines.framing`); refuses items the peer would refuse anyway."""
    return framing.encode_frame(item, max_frame)


class FrameReader(framing.FrameReader):
    """`machines.framing`'s reader with aRPC's frame limit; bad framing raises ProtocolError."""

    def __init__(self, max_frame: int = DEFAULT_MAX_FRAME) -> None:
        super().__init__(max_frame, ProtocolError)


# --- schema ----------------------------------------------------------------------------------


def schema_to_wire(schema: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """`{name: State | dict}` to plain CBOR-able dicts, only the non-empty fields."""
    out: dict[str, dict[str, Any]] = {}
    for name, state in schema.items():
        get = state.get if isinstance(state, Mapping) else lambda k, s=state: getattr(s, k, None)
        entry: dict[str, Any] = {}
        for flag in _SCHEMA_FLAGS:
            if get(flag):
                entry[flag] = True
        for key in _SCHEMA_LISTS:
            val = get(key)
            if val:
                entry[key] = [val] if isinstance(val, str) else list(val)
        out[str(name)] = entry
    return out


def schema_hash(wire: Mapping[str, Mapping[str, Any]] | None) -> str:
    """Order-independent hash of relations and flags; names order travels separately."""
    if not wire:
        return ""
    canon = [
        [name]
        + [bool(wire[name].get(f)) for f in _SCHEMA_FLAGS]
        + [sorted(wire[name].get(k) or []) for k in _SCHEMA_LISTS]
        for name in sorted(wire)
    ]
    return hashlib.sha256(cbor2.dumps(canon)).hexdigest()[:12]


def _check_wire_schema(schema: Any) -> dict[str, dict[str, Any]]:
    if not isinstance(schema, dict):
        raise ValueError("schema must be a map")
    for name, entry in schema.items():
        if not isinstance(name, str) or not isinstance(entry, dict):
            raise ValueError("schema entries must be {name: map}")
        for key in _SCHEMA_LISTS:
            if key in entry and not _is_str_list(entry[key]):
                raise ValueError(f"schema {name}.{key} must be a list of names")
    return schema


# --- options and exports ---------------------------------------------------------------------


@dataclass
class SyncOptions:
    """What part of the source a client mirrors (selective sync)."""

    allowed: list[str] | None = None  # None = all states
    skipped: list[str] | None = None
    no_schema: bool = False  # only tracked states, client-bound indexes, no relations
    shallow: bool = False  # 0/1-flip clocks instead of real ticks
    mutations: bool = False  # one diff per source mutation, not one per push (never shallow)

    def to_wire(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if self.allowed is not None:
            out["al"] = list(self.allowed)
        if self.skipped:
            out["sk"] = list(self.skipped)
        if self.no_schema:
            out["ns"] = True
        if self.shallow:
            out["sh"] = True
        if self.mutations:
            out["sm"] = True
        return out


@dataclass
class SourceExport:
    """What the server driver reads from its source machine to answer a hello or a schema change."""

    id: str
    names: list[str]
    time: list[int]
    queue_tick: int
    machine_tick: int
    schema: dict[str, dict[str, Any]] | None = None  # wire form (schema_to_wire)


# --- events ----------------------------------------------------------------------------------


@dataclass
class HelloReceived:
    seq: int
    client_id: str
    source_id: str  # machine the client acts for: recorded as the mutation source
    options: SyncOptions
    schema_hash: str


@dataclass(slots=True)  # one per round trip
class MutationRequested:
    seq: int  # 0 for a no-sync add (no response expected)
    mutation_type: int
    states: list[str]
    args: dict[str, Any] | None
    source: tuple[str, str, int] | None  # (machine_id, tx_id, mach_time) override, else hello's


@dataclass
class SyncRequested:
    seq: int


@dataclass
class ByeReceived:
    pass


@dataclass
class PeerError:
    """The peer complained about something we sent, without a call to attach it to."""

    message: str


@dataclass
class HandshakeDone:
    source_id: str
    names: list[str]
    schema: dict[str, dict[str, Any]] | None  # None if the client's own schema matched
    states_count: int


@dataclass(slots=True)  # one per round trip
class ClockChanged:
    """The mirrored clock moved; `full` when replaced wholesale (hello, sync, schema change)."""

    before: list[int]
    after: list[int]
    queue_tick: int
    machine_tick: int
    full: bool = False
    mutation: tuple[int | None, list[str]] | None = None  # per-mutation mode: (type, called)


@dataclass(slots=True)  # one per round trip
class MutationDone:
    seq: int
    result: int


@dataclass
class SyncDone:
    seq: int


@dataclass
class CallFailed:
    seq: int
    message: str
    method: str


@dataclass
class PayloadReceived:
    name: str
    data: Any
    source: str
    token: str


@dataclass
class SchemaChanged:
    names: list[str]
    schema: dict[str, dict[str, Any]] | None


# --- helpers ---------------------------------------------------------------------------------


def brief_error(err: BaseException | str, limit: int = 120) -> str:
    try:
        text = " ".join(str(err).split()) or type(err).__name__
    except Exception:  # str() of an exception may format an untrusted value and fail
        text = type(err).__name__
    return text if len(text) <= limit else text[:limit] + "..."


def input_error(err: Exception) -> ProtocolError:
    """A failure the peer's input caused, as the one-line ProtocolError that ends the link."""
    return ProtocolError(f"cannot handle the input: {type(err).__name__}: {brief_error(err)}")


#: Ticks, seqs and times are machine words; a peer's 4,000-digit CBOR bignum is not a tick
#: (and would make every later f-string or repr() raise).
INT_MIN, INT_MAX = -(1 << 63), (1 << 64) - 1
#: Longest id (client, source, machine) or schema hash accepted from a peer.
MAX_ID = 256


def brief(value: Any, limit: int = 60) -> str:
    """A one-line, bounded, never-raising description of an untrusted value for messages.

    ``repr()`` of a peer's value can be megabytes long, nest thousands of levels deep, or raise
    (ints over 4,300 digits); this walks at most a few items and never formats a huge int.
    """
    out: list[str] = []
    budget = [limit + 1]

    def put(text: str) -> bool:
        out.append(text[: budget[0]])
        budget[0] -= len(text)
        return budget[0] > 0

    def walk(v: Any, depth: int) -> bool:
        if type(v) is int:
            if INT_MIN <= v <= INT_MAX:
                return put(str(v))
            return put(f"<int of {v.bit_length()} bits>")
        if isinstance(v, str | bytes):
            return put(repr(v[: budget[0] + 2]))
        if isinstance(v, list | tuple | dict):
            if depth > 3:
                return put("[...]" if not isinstance(v, dict) else "{...}")
            opened, closed = ("{", "}") if isinstance(v, dict) else ("[", "]")
            if not put(opened):
                return False
            items = list(v.items())[:8] if isinstance(v, dict) else list(v[:8])
            for i, item in enumerate(items):
                if i and not put(", "):
                    return False
                if isinstance(v, dict):
                    if not (walk(item[0], depth + 1) and put(": ") and walk(item[1], depth + 1)):
                        return False
                elif not walk(item, depth + 1):
                    return False
            if len(v) > 8 and not put(", ..."):
                return False
            return put(closed)
        if v is None or isinstance(v, bool | float):
            return put(repr(v))
        return put(f"<{type(v).__name__}>")

    walk(value, 0)
    text = " ".join("".join(out).split())
    return text if len(text) <= limit else text[:limit] + "..."


def _is_int(val: Any) -> TypeGuard[int]:
    return type(val) is int and INT_MIN <= val <= INT_MAX  # bool is an int subclass; refuse it


def _all_ints(vals: list[Any]) -> TypeGuard[list[int]]:
    """`_is_int` of every item, in C loops (a clock or diff is checked per frame)."""
    return not vals or (
        {*map(type, vals)} == {int} and INT_MIN <= min(vals) and max(vals) <= INT_MAX
    )


def _plain(val: Any, depth: int = 0) -> bool:
    """Whether a peer's free-form value (mutation args, payloads) holds only machine-word ints
    and nests at most 32 levels: what handlers, logs and telemetry can format safely."""
    if type(val) is int:
        return INT_MIN <= val <= INT_MAX
    if isinstance(val, list | tuple):
        return depth < 32 and all(_plain(v, depth + 1) for v in val)
    if isinstance(val, dict):
        return depth < 32 and all(
            _plain(k, depth + 1) and _plain(v, depth + 1) for k, v in val.items()
        )
    return True


def _is_id(val: Any) -> TypeGuard[str]:
    return isinstance(val, str) and 0 < len(val) <= MAX_ID


def _is_str_list(val: Any) -> TypeGuard[list[str]]:
    return isinstance(val, list) and all(isinstance(v, str) for v in val)


def checksum(time: Iterable[int], queue_tick: int, machine_tick: int) -> int:
    return (sum(time) + queue_tick + machine_tick) % 256


class _BadRequest(Exception):
    """A well-formed frame with bad contents: answered with an error response."""


class _Conn:
    """Framing, outbox and call bookkeeping shared by both ends."""

    def __init__(self, max_frame: int = DEFAULT_MAX_FRAME) -> None:
        self.max_frame = max_frame
        self._reader = FrameReader(max_frame)
        self._out = bytearray()
        self._seq = 0
        self._pending: dict[int, str] = {}  # seq -> method of our in-flight calls
        self.frames_in = 0
        self.frames_out = 0

    @property
    def pending_bytes(self) -> int:
        return self._reader.pending

    @property
    def wants_send(self) -> bool:
        """Whether `data_to_send()` has anything (a driver can skip a send step)."""
        return bool(self._out)

    def data_to_send(self) -> bytes:
        if not self._out:  # a driver's send loop ends on this: no copy, no clear
            return b""
        data = bytes(self._out)
        self._out.clear()
        return data

    def receive_data(self, data: bytes | bytearray) -> list[Any]:
        """Events of the complete frames in `data`.

        Raises ProtocolError (after queueing an error frame that tells the peer why) when the
        stream cannot be trusted any more; any other failure caused by the input is turned into
        one, so a driver that catches ProtocolError holds against every input.
        """
        events: list[Any] = []
        try:
            for item in self._reader.feed(data):
                self.frames_in += 1
                # the envelope (module docstring), checked inline: it runs for every frame
                if type(item) is not list or len(item) < 2 or type(item[0]) is not int:
                    raise ProtocolError(f"not an aRPC frame: {brief(item)}")
                kind = item[0]
                if kind == NOTIFY:
                    seq, method = 0, item[1]
                elif NOTIFY < kind <= ERROR:  # REQUEST, RESPONSE or ERROR
                    seq = item[1]
                    if type(seq) is not int or not 0 <= seq < 1 << 32:
                        raise ProtocolError(f"bad sequence number {brief(seq, 40)}")
                    if kind == REQUEST:
                        if seq == 0:
                            raise ProtocolError(f"bad sequence number {brief(seq, 40)}")
                        if len(item) < 3:
                            raise ProtocolError("request without a method")
                        method = item[2]
                    elif kind == ERROR and seq == 0:
                        msg = item[2] if len(item) > 2 and isinstance(item[2], str) else "?"
                        events.append(PeerError(brief_error(msg, 300)))
                        continue
                    else:
                        call = self._pending.pop(seq, None)
                        if call is None:
                            raise ProtocolError(f"response to unknown call {seq}")
                        if kind == ERROR:
                            msg = item[2] if len(item) > 2 and isinstance(item[2], str) else "error"
                            self._on_error(seq, call, msg, events)
                        else:
                            self._on_response(seq, call, item[2:], events)
                        continue
                else:
                    raise ProtocolError(f"unknown frame kind {brief(kind, 40)}")
                if type(method) is not str:
                    self._error(seq, f"bad method {brief(method, 40)}")
                    continue
                try:
                    self._on_request(seq, method, item[2 if kind == NOTIFY else 3 :], events)
                except _BadRequest as err:
                    self._error(seq, str(err))
        except ProtocolError as err:
            self.complain(str(err))
            raise
        except Exception as err:  # a check we missed: the peer's bytes, not our bug to crash on
            perr = input_error(err)
            self.complain(str(perr))
            raise perr from None
        return events

    def complain(self, message: str) -> None:
        """Queue an error frame without a call (seq 0): why the link is about to end."""
        try:
            self._emit([ERROR, 0, message])
        except ValueError:
            pass

    # outgoing
    def _emit(self, item: list[Any]) -> None:
        self._out += framing.encode_frame(item, self.max_frame)
        self.frames_out += 1

    def _call(self, method: str, *params: Any) -> int:
        self._seq = self._seq % 0xFFFF + 1  # small seqs keep frames short
        while self._seq in self._pending:
            self._seq = self._seq % 0xFFFF + 1
        self._emit([REQUEST, self._seq, method, *params])
        self._pending[self._seq] = method
        return self._seq

    def _notify(self, method: str, *params: Any) -> None:
        self._emit([NOTIFY, method, *params])

    def _respond(self, seq: int, *body: Any) -> None:
        self._emit([RESPONSE, seq, *body])

    def _error(self, seq: int, message: str) -> None:
        self._emit([ERROR, seq, message])

    # hooks
    def _on_request(self, seq: int, method: str, params: list[Any], events: list[Any]) -> None:
        raise _BadRequest(f"unknown method {brief(method, 40)}")

    def _on_response(self, seq: int, method: str, body: list[Any], events: list[Any]) -> None:
        pass

    def _on_error(self, seq: int, method: str, message: str, events: list[Any]) -> None:
        events.append(CallFailed(seq, brief_error(message, 300), method))


# --- server side -----------------------------------------------------------------------------


class ServerConnection(_Conn):
    """One client's session on the server: validation, tracked states and the diff baseline."""

    def __init__(self, max_frame: int = DEFAULT_MAX_FRAME) -> None:
        super().__init__(max_frame)
        self.client_id: str | None = None
        self.source_id: str | None = None  # who the client acts for
        self.options = SyncOptions()
        self.handshaken = False
        self._hello: HelloReceived | None = None
        self._names: list[str] = []
        self._positions: list[int | None] = []  # client position -> source index if tracked
        self._to_source: list[int] = []  # client position -> source index (for mutations)
        self._sent: list[int] = []  # the clock the client holds now
        self._sent_q = 0
        self._sent_m = 0
        self._log: list[list[Any]] = []  # per-mutation mode: entries not sent yet
        self._rec: tuple[list[int], int, int] = ([], 0, 0)  # the clock after the last entry
        self._plain = False  # the client holds the source's whole clock (frames can be shared)
        self.pushes = 0
        #: the shared clock (core.Snapshot) this client was last brought to, if it was
        self.pushed_at: Any = None

    # requests
    def _on_request(self, seq: int, method: str, params: list[Any], events: list[Any]) -> None:
        if method == M_HELLO:
            if seq == 0:
                raise _BadRequest("hello must be a call")
            events.append(self._parse_hello(seq, params))
            return
        if method == M_BYE:
            events.append(ByeReceived())
            return
        if not self.handshaken:
            raise _BadRequest(f"handshake required before {brief(method, 40)}")
        if method in MUTATION_METHODS:
            if (method == M_ADD_NS) != (seq == 0):
                raise _BadRequest(f"method {brief(method, 40)} called the wrong way")
            events.append(self._parse_mutation(seq, method, params))
        elif method == M_SYNC:
            if seq == 0:
                raise _BadRequest("sync must be a call")
            events.append(SyncRequested(seq))
        else:
            raise _BadRequest(f"unknown method {brief(method, 40)}")

    def _parse_hello(self, seq: int, params: list[Any]) -> HelloReceived:
        if self.handshaken or self._hello is not None:
            raise _BadRequest("hello already received")
        if len(params) != 1 or not isinstance(params[0], dict):
            raise _BadRequest("hello needs one map")
        body = params[0]
        version = body.get("v")
        if version != PROTOCOL_VERSION:
            raise _BadRequest(
                f"protocol version mismatch: client speaks {brief(version, 40)}, "
                f"server speaks {PROTOCOL_VERSION}"
            )
        cid = body.get("id")
        if not _is_id(cid):
            raise _BadRequest(f"hello needs a client id of 1 to {MAX_ID} characters")
        src = body.get("src", cid)
        hsh = body.get("hash", "")
        if not _is_id(src) or not isinstance(hsh, str) or len(hsh) > MAX_ID:
            raise _BadRequest("hello: bad source id or schema hash")
        allowed, skipped = body.get("al"), body.get("sk")
        if (allowed is not None and not _is_str_list(allowed)) or (
            skipped is not None and not _is_str_list(skipped)
        ):
            raise _BadRequest("hello: allowed/skipped must be lists of names")
        muts = bool(body.get("sm"))
        opts = SyncOptions(
            allowed, skipped, bool(body.get("ns")), bool(body.get("sh")) and not muts
        )
        opts.mutations = muts
        self._hello = HelloReceived(seq, cid, src, opts, hsh)
        return self._hello

    def _parse_mutation(self, seq: int, method: str, params: list[Any]) -> MutationRequested:
        if not params or not isinstance(params[0], list) or not params[0]:
            raise _BadRequest("mutation needs a non-empty list of state indexes")
        names, to_source, all_names = [], self._to_source, self._names
        for idx in params[0]:
            if type(idx) is not int or not 0 <= idx < len(to_source):  # in range: a machine word
                raise _BadRequest(
                    f"unknown state index {brief(idx, 20)} "
                    f"(the client knows {len(to_source)} states)"
                )
            names.append(all_names[to_source[idx]])
        args = params[1] if len(params) > 1 else None
        if args is not None and (
            not isinstance(args, dict) or not all(isinstance(k, str) for k in args)
        ):
            raise _BadRequest("mutation args must be a map with string keys")
        if args is not None and not _plain(args):
            raise _BadRequest("mutation args: integers must fit 64 bits, nesting 32 levels")
        src = params[2] if len(params) > 2 else None
        if src is not None:
            if (
                not isinstance(src, list)
                or len(src) != 3
                or not _is_id(src[0])
                or not isinstance(src[1], str)
                or len(src[1]) > MAX_ID
                or not _is_int(src[2])
            ):
                raise _BadRequest("mutation source must be [machine_id, tx_id, mach_time]")
            src = (src[0], src[1], src[2])
        if len(params) > 3:
            raise _BadRequest("too many mutation params")
        return MutationRequested(seq, MUTATION_METHODS[method], names, args, src)

    # answers (called by the driver)
    def accept_hello(self, seq: int, export: SourceExport) -> None:
        """Answer the hello: names, the client's view of the clock, the schema if hashes differ."""
        hello = self._hello
        if hello is None or hello.seq != seq:
            raise ValueError(f"no hello {seq} to accept")
        self.client_id, self.source_id, self.options = (
            hello.client_id,
            hello.source_id,
            hello.options,
        )
        self._setup(export)
        self.handshaken = True
        self._respond(seq, self._hello_body(export, hello.schema_hash))

    def reject_hello(self, seq: int, message: str) -> None:
        self._hello = None
        self._error(seq, message)

    def _setup(self, export: SourceExport) -> None:
        names = list(export.names)
        tracked = [
            i
            for i, n in enumerate(names)
            if (self.options.allowed is None or n in self.options.allowed)
            and not (self.options.skipped and n in self.options.skipped)
        ]
        self._names = names
        opts = self.options
        self._plain = not (opts.no_schema or opts.shallow or opts.mutations or opts.skipped) and (
            opts.allowed is None or set(opts.allowed) >= set(names)
        )
        if self.options.no_schema:
            self._positions = list(tracked)
            self._to_source = list(tracked)
        else:
            tset = set(tracked)
            self._positions = [i if i in tset else None for i in range(len(names))]
            self._to_source = list(range(len(names)))
        self._reset(export.time, export.queue_tick, export.machine_tick)

    def _reset(self, time: Sequence[int], q: int, m: int) -> None:
        self.pushed_at = None
        self._sent = []
        self._sent = self._view(time)
        self._sent_q, self._sent_m = q, m
        self._log = []
        self._rec = (self._sent, q, m)

    def _hello_body(self, export: SourceExport, client_hash: str) -> dict[str, Any]:
        if self.options.no_schema:
            names = [self._names[i] for i in self._to_source]
        else:
            names = self._names
        body: dict[str, Any] = {
            "id": export.id,
            "names": names,
            "time": list(self._sent),
            "q": export.queue_tick,
            "m": export.machine_tick,
            "n": len(export.names),
        }
        if not self.options.no_schema and export.schema is not None:
            if not client_hash or client_hash != schema_hash(export.schema):
                body["schema"] = export.schema
        return body

    def _view(self, time: Sequence[int]) -> list[int]:
        """The clock as this client must hold it (filtered, zeroed, or shallow)."""
        if self._plain and len(time) == len(self._positions):
            return list(time)  # the whole clock, as is
        shallow = self.options.shallow
        view = []
        for pos, src in enumerate(self._positions):
            if src is None or src >= len(time):
                view.append(0)
            elif shallow:
                prev = self._sent[pos] if self._sent else 0
                view.append(prev if prev % 2 == time[src] % 2 else prev + 1)
            else:
                view.append(time[src])
        return view

    def _diff(self, time: Sequence[int], q: int, m: int) -> list[int] | None:
        # the whole clock as is (a plain client) without a call: a diff per round trip
        view = list(time) if self._plain and len(time) == len(self._positions) else self._view(time)
        pairs: list[int] = []
        sent = self._sent  # as long as the view (no zip: its strict check costs a round trip)
        for pos, new in enumerate(view):
            if sent[pos] != new:
                pairs += (pos, new - sent[pos])
        if not pairs and q == self._sent_q and m == self._sent_m:
            return None
        diff = [q - self._sent_q, m - self._sent_m, checksum(view, q, m), *pairs]
        self._sent, self._sent_q, self._sent_m = view, q, m
        self.pushed_at = None
        return diff

    def record(
        self, mutation_type: int | None, called: Iterable[str], time: Sequence[int], q: int, m: int
    ) -> None:
        """Per-mutation mode: note one source transition (call from the source's tracer)."""
        if not (self.handshaken and self.options.mutations):
            return
        view = self._view(time)
        prev, pq, pm = self._rec
        pairs: list[int] = []
        for pos, (old, new) in enumerate(zip(prev, view, strict=True)):
            if old != new:
                pairs += (pos, new - old)
        if not pairs and q == pq and m == pm:
            return
        index = {n: i for i, n in enumerate(self._names)}
        tracked = {src: pos for pos, src in enumerate(self._positions) if src is not None}
        called_pos = [tracked[index[n]] for n in called if index.get(n) in tracked]
        self._log.append([mutation_type, called_pos, q - pq, m - pm, checksum(view, q, m), *pairs])
        self._rec = (view, q, m)

    def _entries(self, time: Sequence[int], q: int, m: int) -> list[list[Any]]:
        """Recorded entries plus a catch-up entry for anything not recorded; empties the log."""
        self.record(None, (), time, q, m)
        entries, self._log = self._log, []
        self._sent, self._sent_q, self._sent_m = self._rec
        return entries

    def respond_mutation(self, seq: int, result: int, time: Sequence[int], q: int, m: int) -> None:
        """Reply with the result and the diff since the last frame; it becomes the new baseline."""
        if self.options.mutations:
            self._respond(seq, int(result), self._entries(time, q, m))
            return
        diff = self._diff(time, q, m) or [0, 0, checksum(self._sent, q, m)]
        self._rec = (self._sent, self._sent_q, self._sent_m)
        self._emit([RESPONSE, seq, int(result), *diff])

    def respond_error(self, seq: int, message: str) -> None:
        self._error(seq, message)

    def respond_sync(self, seq: int, time: Sequence[int], q: int, m: int) -> None:
        """Full clock, filtered like the hello; resets the baseline so diffs stay consistent."""
        self._reset(time, q, m)
        self._respond(seq, list(self._sent), q, m)

    def push(self, time: Sequence[int], q: int, m: int) -> bool:
        """Queue a clock push if anything changed since the last frame; True if one was queued."""
        if not self.handshaken:
            return False
        if self.options.mutations:
            entries = self._entries(time, q, m)
            if not entries:
                return False
            self._notify(M_UPDATES, *entries)
            self.pushes += 1
            return True
        diff = self._diff(time, q, m)
        if diff is None:
            return False
        self._rec = (self._sent, self._sent_q, self._sent_m)
        self._notify(M_UPDATE, *diff)
        self.pushes += 1
        return True

    def push_shared(self, snap: Any, frames: dict[tuple[Any, Any], bytes]) -> bool:
        """`push` to a clock shared by many connections (`snap`, a core.Snapshot). A client
        that holds the whole clock and was last pushed the shared clock `at` gets the frame
        cached in `frames` under `(at, snap)`: one encoding for every client at the same clock.
        The bytes are exactly those `push` would queue."""
        at = self.pushed_at
        if at is snap or not self.handshaken:
            return False
        if at is None or not self._plain:
            pushed = self.push(snap.time, snap.q, snap.m)
            self.pushed_at = snap
            return pushed
        frame = frames.get((at, snap))
        if frame is None:
            diff = self._diff(snap.time, snap.q, snap.m)
            self.pushed_at = snap
            if diff is None:
                return False
            frame = frames[(at, snap)] = encode_frame([NOTIFY, M_UPDATE, *diff], self.max_frame)
        else:
            self._sent, self._sent_q, self._sent_m = snap.time, snap.q, snap.m
            self.pushed_at = snap
        self._rec = (self._sent, self._sent_q, self._sent_m)
        self._out += frame
        self.frames_out += 1
        self.pushes += 1
        return True

    def send_payload(self, name: str, data: Any, source: str = "", token: str = "") -> None:
        self._notify(M_PAYLOAD, name, data, source, token)

    def schema_changed(self, export: SourceExport) -> None:
        """The source's schema changed: resend names, schema and the full clock."""
        if not self.handshaken:
            return
        self._setup(export)
        self._notify(M_SCHEMA, self._hello_body(export, ""))

    def bye(self) -> None:
        self._notify(M_BYE)


# --- client side -----------------------------------------------------------------------------


@dataclass
class _Mirror:
    names: list[str] = field(default_factory=list)
    time: list[int] = field(default_factory=list)
    queue_tick: int = 0
    machine_tick: int = 0


class ClientConnection(_Conn):
    """The client's end: the handshake, mutation calls and the mirrored clock with its checks."""

    version = PROTOCOL_VERSION  # what this end speaks; sent in the hello

    def __init__(
        self,
        client_id: str,
        source_id: str | None = None,
        options: SyncOptions | None = None,
        schema: Mapping[str, Any] | None = None,
        max_frame: int = DEFAULT_MAX_FRAME,
    ) -> None:
        super().__init__(max_frame)
        self.client_id = client_id
        self.source_id = source_id or client_id
        self.options = options or SyncOptions()
        self.schema = schema_to_wire(schema) if schema is not None else None
        self.mirror = _Mirror()
        self.remote_id: str | None = None
        self.handshaken = False
        self.syncing = False  # a full sync is in flight: diffs before its answer are stale
        self.syncs = 0
        self.pushes_in = 0

    def hello(self) -> int:
        body = {"v": self.version, "id": self.client_id, **self.options.to_wire()}
        if self.source_id != self.client_id:
            body["src"] = self.source_id
        if self.schema:
            body["hash"] = schema_hash(self.schema)
        return self._call(M_HELLO, body)

    def _mutation_params(
        self, states: Iterable[str], args: Mapping[str, Any] | None, source: Any
    ) -> list[Any]:
        names, indexes = self.mirror.names, []
        for s in states:
            try:
                indexes.append(names.index(s))
            except ValueError:
                raise ValueError(
                    f"state {s!r} is not defined for {self.remote_id} (via {self.client_id})"
                ) from None
        if not indexes:
            raise ValueError("no states to mutate")
        params: list[Any] = [indexes]
        if args is not None or source is not None:
            params.append(dict(args) if args is not None else None)
        if source is not None:
            params.append(list(source))
        return params

    def mutate(
        self,
        mutation_type: int,
        states: Iterable[str],
        args: Mapping[str, Any] | None = None,
        source: tuple[str, str, int] | None = None,
    ) -> int:
        """Queue a mutation call; returns its seq (a MutationDone or CallFailed event follows)."""
        if not self.handshaken:
            raise RuntimeError("not handshaken")
        params = self._mutation_params(states, args, source)
        return self._call(_METHOD_OF_TYPE[mutation_type], *params)

    def add_ns(
        self,
        states: Iterable[str],
        args: Mapping[str, Any] | None = None,
        source: tuple[str, str, int] | None = None,
    ) -> None:
        """Fire-and-forget add: no response, the clock catches up with later pushes or sync()."""
        if not self.handshaken:
            raise RuntimeError("not handshaken")
        self._notify(M_ADD_NS, *self._mutation_params(states, args, source))

    def sync(self) -> int | None:
        """Ask for the full clock (skipped if one is already in flight)."""
        if self.syncing:
            return None
        self.syncing = True
        self.syncs += 1
        return self._call(M_SYNC)

    def bye(self) -> None:
        self._notify(M_BYE)

    # inbound
    def _on_request(self, seq: int, method: str, params: list[Any], events: list[Any]) -> None:
        if seq != 0:
            raise _BadRequest(f"unknown method {brief(method, 40)}")  # the server only notifies
        if not self.handshaken:
            raise _BadRequest(f"{brief(method, 40)} before the handshake")
        if method == M_UPDATE:
            self.pushes_in += 1
            self._apply_diff(params, events)
        elif method == M_UPDATES:
            self.pushes_in += 1
            self._apply_entries(params, events)
        elif method == M_PAYLOAD:
            if len(params) != 4 or not isinstance(params[0], str):
                raise _BadRequest("payload needs [name, data, source, token]")
            src, token = params[2], params[3]
            if not isinstance(src, str) or not isinstance(token, str) or not _plain(params[1]):
                raise _BadRequest("payload: source and token must be strings")
            events.append(PayloadReceived(params[0], params[1], src, token))
        elif method == M_SCHEMA:
            if len(params) != 1:
                raise _BadRequest("schema change needs one map")
            try:
                self._apply_hello(params[0], events)
            except ValueError as err:
                raise _BadRequest(f"bad schema change: {err}") from None
            events.append(SchemaChanged(list(self.mirror.names), self.schema))
        elif method == M_BYE:
            events.append(ByeReceived())
        else:
            raise _BadRequest(f"unknown method {brief(method, 40)}")

    def _on_response(self, seq: int, method: str, body: list[Any], events: list[Any]) -> None:
        if method == M_HELLO:
            if len(body) != 1:
                raise ProtocolError("bad hello response")
            try:
                self._apply_hello(body[0], events, first=True)
            except ValueError as err:
                raise ProtocolError(f"bad hello response: {err}") from None
        elif method == M_SYNC:
            self.syncing = False
            if (
                len(body) != 3
                or not isinstance(body[0], list)
                or not _all_ints(body[0])
                or len(body[0]) != len(self.mirror.time)
                or not _is_int(body[1])
                or not _is_int(body[2])
            ):
                raise ProtocolError("bad sync response: wrong clock length or types")
            before = list(self.mirror.time)
            self.mirror.time = list(body[0])
            self.mirror.queue_tick, self.mirror.machine_tick = body[1], body[2]
            events.append(ClockChanged(before, list(self.mirror.time), body[1], body[2], True))
            events.append(SyncDone(seq))
        else:  # mutation
            if not body or not _is_int(body[0]):
                raise ProtocolError("bad mutation response")
            if self.options.mutations:
                self._apply_entries(body[1] if len(body) == 2 else None, events)
            else:
                self._apply_diff(body[1:], events)
            events.append(MutationDone(seq, body[0]))

    def _on_error(self, seq: int, method: str, message: str, events: list[Any]) -> None:
        if method == M_SYNC:
            self.syncing = False
        super()._on_error(seq, method, message, events)

    def _apply_hello(self, body: Any, events: list[Any], first: bool = False) -> None:
        if not isinstance(body, dict):
            raise ValueError("not a map")
        names, time = body.get("names"), body.get("time")
        rid, q, m = body.get("id"), body.get("q"), body.get("m")
        if not _is_str_list(names) or not names:
            raise ValueError("state names missing")
        if not isinstance(time, list) or len(time) != len(names):
            raise ValueError("clock length differs from the names")
        if not _all_ints(time) or not _is_int(q) or not _is_int(m):
            raise ValueError("ticks must be integers")
        if not _is_id(rid):
            raise ValueError("source id missing or too long")
        schema = body.get("schema")
        if schema is not None:
            self.schema = _check_wire_schema(schema)
        elif self.options.no_schema:
            self.schema = None
        before = list(self.mirror.time) if self.mirror.names == names else [0] * len(names)
        self.mirror = _Mirror(list(names), list(time), q, m)
        self.remote_id = rid
        self.syncing = False  # the hello carries a full clock
        self.handshaken = True
        if first:
            n = body.get("n", len(names))
            events.append(HandshakeDone(rid, list(names), schema, n if _is_int(n) else len(names)))
        events.append(ClockChanged(before, list(time), q, m, full=True))

    def _apply_entries(self, entries: Any, events: list[Any]) -> None:
        """Per-mutation mode: `[type, called, *diff]` entries, each relative to the previous."""
        if self.syncing:
            return
        if not isinstance(entries, list):
            self.sync()
            return
        names = self.mirror.names
        for entry in entries:
            if (
                not isinstance(entry, list)
                or len(entry) < 5
                or not (entry[0] is None or _is_int(entry[0]))
                or not isinstance(entry[1], list)
                or not all(_is_int(i) and 0 <= i < len(names) for i in entry[1])
            ):
                self.sync()
                return
            mutation = (entry[0], [names[i] for i in entry[1]])
            if not self._apply_diff(entry[2:], events, mutation):
                return

    def _apply_diff(
        self, diff: list[Any], events: list[Any], mutation: tuple | None = None
    ) -> bool:
        if self.syncing:
            return False  # relative to a baseline the coming sync replaces
        mir = self.mirror
        ok = len(diff) >= 3 and len(diff) % 2 == 1 and _all_ints(diff)
        if ok:
            after = list(mir.time)
            for i in range(3, len(diff), 2):
                idx = diff[i]
                if not 0 <= idx < len(after):
                    ok = False
                    break
                after[idx] += diff[i + 1]
        if ok:
            q, m = mir.queue_tick + diff[0], mir.machine_tick + diff[1]
            ok = checksum(after, q, m) == diff[2]
        if not ok:
            self.sync()  # never guess: refetch the whole clock
            return False
        before, changed = mir.time, diff[0] or diff[1] or after != mir.time
        mir.time, mir.queue_tick, mir.machine_tick = after, q, m
        if changed:  # shares `after` with the mirror: its lists are replaced, never edited
            events.append(ClockChanged(before, after, q, m, mutation=mutation))
        return True
