"""Read and write debugger dumps: this project's CBOR dumps and the Go debugger's gob dumps.

Why here: the debugger exports and imports dumps, and the diagram renderer draws them, so both
use this one reader. Two formats, told apart by their content (the file name is not trusted):

- this project's: brotli-compressed CBOR of
  ``{"format": "am-dbg-dump", "version": 1, "machines": [MachineDump.to_dict(), ...]}``,
  default file name ``am-dbg-dump.cbor.br``;
- the Go debugger's ``*.gob.br``: brotli-compressed gob of ``[]*Exportable`` where
  ``Exportable = {MsgStruct, MsgTxs, Version}`` (old and new field sets are both accepted).

Uncompressed files of either format are read too. Whatever goes wrong, the caller gets a
:class:`DumpError` with a one-line message that names the file and the problem.
"""

from __future__ import annotations

import gc
import logging
import os
import tempfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import brotli
import cbor2

from dbg.gob import GobError, GobInterface, GobOpaque, go_time_utc, loads_all
from dbg.model import (
    DbgMsgStruct,
    DbgMsgTx,
    LogEntry,
    MachineDump,
    Step,
    ns_to_time,
    time_to_ns,
)
from machines.rpc.protocol import brief, brief_error

log = logging.getLogger("dbg.dump")
_WORD_MIN, _WORD_MAX = -(1 << 63), (1 << 64) - 1

__all__ = [
    "DEFAULT_DUMP_NAME",
    "DUMP_FORMAT",
    "DumpError",
    "PendingMachine",
    "decode_dump",
    "encode_dump",
    "read_dump",
    "read_dump_lazy",
    "single_frame",
    "write_dump",
]

DEFAULT_DUMP_NAME = "am-dbg-dump.cbor.br"
DUMP_FORMAT = "am-dbg-dump"
DUMP_VERSION = 1
#: A dump never inflates past this; a "brotli bomb" stops here with an error.
MAX_RAW_SIZE = 1 << 30
# Brotli quality of written dumps: the Go tool's default, fast and about 9:1 on dumps.
BROTLI_QUALITY = 6
_CHUNK = 1 << 22


class DumpError(ValueError):
    """A dump that cannot be read: corrupt, truncated, unknown format or unreadable."""


# ----- reading


def read_dump(source: str | os.PathLike[str], timeout: float = 30.0) -> list[MachineDump]:
    """Read a dump from a path or an ``http(s)://`` URL; the format is detected from content."""
    return decode_dump(_read_bytes(source, timeout), os.fspath(source))


def read_dump_lazy(
    source: str | os.PathLike[str], timeout: float = 30.0
) -> list[MachineDump | PendingMachine]:
    """:func:`read_dump`, but a Go dump's machines come as :class:`PendingMachine`: their
    transitions are converted when first read (a debugger opens faster)."""
    data = _read_bytes(source, timeout)
    return _decode(data, os.fspath(source), lazy=True)


def _read_bytes(source: str | os.PathLike[str], timeout: float) -> bytes:
    name = os.fspath(source)
    if name.startswith(("http://", "https://")):
        import urllib.request  # only here: http.client and email cost a file read start-up time

        try:
            with urllib.request.urlopen(name, timeout=timeout) as resp:
                data = resp.read(MAX_RAW_SIZE + 1)
        except (OSError, ValueError) as e:
            raise DumpError(f"{name}: download failed: {_one_line(e)}") from None
    else:
        try:
            data = Path(name).read_bytes()
        except OSError as e:
            raise DumpError(f"{name}: cannot read: {e.strerror or _one_line(e)}") from None
    return data


def decode_dump(data: bytes, source: str = "dump") -> list[MachineDump]:
    """Decode the bytes of a dump file (either format, compressed or not)."""
    return _decode(data, source, lazy=False)  # type: ignore[return-value]  # eager: dumps only


def _decode(data: bytes, source: str, lazy: bool) -> list[MachineDump | PendingMachine]:
    if not data:
        raise DumpError(f"{source}: empty file, not a dump")
    try:
        raw = _unbrotli(data)
    except DumpError as e:
        # Not brotli: an uncompressed dump is fine, anything else gets the brotli error.
        if _sniff(data) is None:
            raise DumpError(f"{source}: not a dump: {e}") from None
        raw = data
    kind = _sniff(raw)
    if kind is None:
        raise DumpError(f"{source}: unknown format: neither a CBOR nor a Go gob dump")
    with _no_gc():
        if kind == "cbor":
            return list(_from_cbor(raw, source))
        return _from_gob(raw, source, lazy)


@contextmanager
def _no_gc() -> Iterator[None]:
    # A dump becomes hundreds of thousands of small acyclic objects: the cycle collector
    # would run many times for nothing (it nearly doubles the load time).
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def _unbrotli(data: bytes) -> bytes:
    dec = brotli.Decompressor()
    out = bytearray()
    try:
        out += dec.process(data, output_buffer_limit=_CHUNK)
        while not dec.can_accept_more_data():
            out += dec.process(b"", output_buffer_limit=_CHUNK)
            if len(out) > MAX_RAW_SIZE:
                raise DumpError(f"inflates past {MAX_RAW_SIZE} bytes")
    except brotli.error as e:
        raise DumpError(f"not brotli-compressed or corrupt brotli data ({e})") from None
    if not dec.is_finished():
        raise DumpError("truncated brotli data (the stream ends early)")
    return bytes(out)


def _sniff(raw: bytes) -> str | None:
    """Tell the format from the first bytes, without decoding everything."""
    if not raw:
        return None
    # Our dump is a CBOR map (major type 5: 0xa0-0xbf); a gob stream starts with a message
    # length, which is a byte < 0x80 or a negated byte count 0xf8-0xff: they never overlap.
    if 0xA0 <= raw[0] <= 0xBF:
        return "cbor"
    return "gob" if _looks_like_gob(raw) else None


def _looks_like_gob(raw: bytes) -> bool:
    # The first message of a dump defines a user type: a length that fits the data, a type id
    # of -64 or below, then a wireType field delta (1..7).
    try:
        r = _GobPeek(raw)
        size = r.uint()
        if size > len(raw) - r.pos:
            return False
        tid = r.uint()
        return tid & 1 == 1 and (tid >> 1) >= 63 and 1 <= raw[r.pos] <= 7
    except (IndexError, ValueError):
        return False


class _GobPeek:
    def __init__(self, raw: bytes) -> None:
        self.raw, self.pos = raw, 0

    def uint(self) -> int:
        b = self.raw[self.pos]
        if b < 0x80:
            self.pos += 1
            return b
        n = 256 - b
        if n > 8:
            raise ValueError("bad length")
        value = int.from_bytes(self.raw[self.pos + 1 : self.pos + 1 + n], "big")
        self.pos += 1 + n
        return value


def _from_cbor(raw: bytes, source: str) -> list[MachineDump]:
    try:
        doc = cbor2.loads(raw)
    except Exception as e:  # cbor2 raises several types for bad input; all mean "corrupt"
        raise DumpError(f"{source}: corrupt CBOR dump: {_one_line(e)}") from None
    if not isinstance(doc, dict) or doc.get("format") != DUMP_FORMAT:
        raise DumpError(f"{source}: unknown format: a CBOR document but not an {DUMP_FORMAT}")
    version = doc.get("version")
    if not isinstance(version, int) or version > DUMP_VERSION:
        raise DumpError(f"{source}: unsupported dump version {brief(version)}")
    machines = doc.get("machines")
    if not isinstance(machines, list):
        raise DumpError(f"{source}: corrupt dump: 'machines' is not a list")
    try:
        out = [MachineDump.from_dict(m, f"machines[{i}]") for i, m in enumerate(machines)]
        for m in out:
            _check_ticks(m)
    except Exception as e:  # ValueError by contract; any other failure is a corrupt file too
        raise DumpError(f"{source}: corrupt dump: {brief_error(e, 300)}") from None
    _check_unique(out, source)
    return out


def _check_ticks(m: MachineDump) -> None:
    """Clocks are machine words: a 4,000-digit tick would break every tool that prints it."""
    for tx in m.txs:
        clocks = tx.clocks
        if clocks and (min(clocks) < _WORD_MIN or max(clocks) > _WORD_MAX):
            raise ValueError(f"{m.id}: transition {brief(tx.id)}: a clock is not a 64-bit integer")


def _from_gob(raw: bytes, source: str, lazy: bool = False) -> list[MachineDump | PendingMachine]:
    try:
        values = loads_all(raw)
    except GobError as e:
        raise DumpError(f"{source}: {_one_line(e)}") from None
    if len(values) != 1 or not isinstance(values[0], list):
        raise DumpError(f"{source}: unknown format: a gob stream but not a list of machines")
    out: list[MachineDump | PendingMachine] = []
    for i, entry in enumerate(values[0]):
        try:
            pending = _pending_from_go(entry)
            if lazy:
                out.append(pending)
            else:
                out.append(pending.convert())
                _check_ticks(out[-1])  # type: ignore[arg-type]  # a MachineDump
        except Exception as e:  # whatever a corrupt entry makes fail
            raise DumpError(
                f"{source}: corrupt Go dump: entry {i}: {brief_error(e, 300)}"
            ) from None
    _check_unique(out, source)
    return out


def _check_unique(machines: Iterable[MachineDump | PendingMachine], source: str) -> None:
    seen: set[str] = set()
    for m in machines:
        if m.id in seen:
            raise DumpError(f"{source}: corrupt dump: machine {brief(m.id)} appears twice")
        seen.add(m.id)


# ----- Go field names -> ours (model.py documents the fields)

_GO_SCHEMA = {
    "ID": "id",
    "StatesIndex": "states_index",
    "States": "states",
    "Groups": "groups",
    "GroupsOrder": "groups_order",
    "Parent": "parent",
    "Tags": "tags",
}
_GO_STATE = {
    "Auto": "auto",
    "Multi": "multi",
    "Require": "require",
    "Add": "add",
    "Remove": "remove",
    "After": "after",
    "Tags": "tags",
}
# Transition fields: Go name -> (our name, type); every value is checked before it is used.
_GO_TX = {
    "MachineID": ("machine_id", str),
    "ID": ("id", str),
    "Clocks": ("clocks", list),
    "QueueTick": ("queue_tick", int),
    "MutQueueToken": ("mut_queue_token", int),
    "MutQueueTick": ("mut_queue_tick", int),
    "Type": ("type", int),
    "CalledStates": ("called_states", list),
    "CalledStatesIdxs": ("called_states_idxs", list),
    "Queue": ("queue", int),
    "IsAuto": ("is_auto", bool),
    "Accepted": ("accepted", bool),
    "IsCheck": ("is_check", bool),
    "IsQueued": ("is_queued", bool),
    "QueueDump": ("queue_dump", list),
    "StackTrace": ("stack_trace", str),
}
_GO_TX_LISTS = (
    ("clocks", int),
    ("called_states", str),
    ("called_states_idxs", int),
    ("queue_dump", str),
)
_GO_STEP = {
    "Type": ("type", int),
    "RelType": ("rel_type", int),
    "IsFinal": ("is_final", bool),
    "IsSelf": ("is_self", bool),
    "IsEnter": ("is_enter", bool),
    "FromState": ("from_state", str),
    "FromStateIdx": ("from_state_idx", int),
    "ToState": ("to_state", str),
    "ToStateIdx": ("to_state_idx", int),
}
_GO_LOG = {"Level": ("level", int), "Text": ("text", str)}


def _rename(d: Any, names: dict[str, str], what: str) -> dict[str, Any]:
    if not isinstance(d, dict):
        raise ValueError(f"{what} is not a struct")
    return {names[k]: v for k, v in d.items() if k in names}


def _fields(d: Any, spec: dict[str, tuple[str, type]], what: str) -> dict[str, Any]:
    """The known fields of a Go struct under our names, each checked to be of its type.

    Why not ``_rename`` and ``from_dict``: a dump has hundreds of thousands of these structs,
    and building each one once, from one pass over its fields, halves the load time.
    """
    if type(d) is not dict:
        raise ValueError(f"{what} is not a struct")
    out = {}
    for key, v in d.items():
        found = spec.get(key)
        if found is None:
            continue
        name, kind = found
        if type(v) is not kind and (not isinstance(v, kind) or (kind is int and type(v) is bool)):
            raise ValueError(f"{what}.{name}: expected {kind.__name__}, got {type(v).__name__}")
        out[name] = v
    return out


def _check_items(items: list[Any], kind: type, what: str) -> None:
    if not items or set(map(type, items)) == {kind}:  # the common case, in one C-level pass
        return
    if not all(isinstance(x, kind) and not (kind is int and type(x) is bool) for x in items):
        raise ValueError(f"{what}: expected a list of {'integers' if kind is int else 'strings'}")


def _structs(d: dict[str, Any], key: str, what: str) -> list[Any]:
    items = d.get(key)
    if not items:
        return []
    if type(items) is not list:
        raise ValueError(f"{what}.{key}: expected a list, got {type(items).__name__}")
    return items


@dataclass(slots=True)
class PendingMachine:
    """A machine of a Go dump whose transitions are still the decoded Go structs.

    Why: converting and checking every transition is half of reading a dump, and a debugger
    shows one machine at a time; :meth:`parse` converts one transition when it is first read
    (``dbg.collector.MachineRecord`` does that). A transition that fails the checks then
    costs only itself (it is skipped and counted, like a malformed live one), where the eager
    :meth:`convert` fails the whole dump.
    """

    schema: DbgMsgStruct
    raw: list[Any]
    version: str = ""
    _index: dict[str, int] | None = None

    @property
    def id(self) -> str:
        return self.schema.id

    def parse(self, raw_tx: Any) -> DbgMsgTx:
        """One transition, checked as :func:`read_dump` checks them (``ValueError``)."""
        if self._index is None:
            self._index = {name: i for i, name in enumerate(self.schema.states_index)}
        tx = _tx_from_go(raw_tx, self._index, self.schema.id)
        clocks = tx.clocks
        if clocks and (min(clocks) < _WORD_MIN or max(clocks) > _WORD_MAX):
            raise ValueError(f"transition {brief(tx.id)}: a clock is not a 64-bit integer")
        return tx

    @staticmethod
    def clocks(raw_tx: Any) -> list[int]:
        """The clocks after a transition, unconverted ([] when it has none)."""
        clocks = raw_tx.get("Clocks") if type(raw_tx) is dict else None
        return clocks if type(clocks) is list else []

    def convert(self) -> MachineDump:
        """Every transition converted (the first bad one raises ``ValueError``)."""
        self._index = {name: i for i, name in enumerate(self.schema.states_index)}
        txs = [_tx_from_go(t, self._index, f"MsgTxs[{i}]") for i, t in enumerate(self.raw)]
        return MachineDump(self.schema, txs, self.version)


def _machine_from_go(entry: Any) -> MachineDump:
    return _pending_from_go(entry).convert()


def _pending_from_go(entry: Any) -> PendingMachine:
    if not isinstance(entry, dict) or not isinstance(entry.get("MsgStruct"), dict):
        raise ValueError("no MsgStruct")
    s = _rename(entry["MsgStruct"], _GO_SCHEMA, "MsgStruct")
    states = s.get("states", {})
    if not isinstance(states, dict):
        raise ValueError("MsgStruct.States is not a map")
    s["states"] = {k: _rename(v, _GO_STATE, f"state {k}") for k, v in states.items()}
    schema = DbgMsgStruct.from_dict(s)
    version = entry.get("Version", "")
    raw = _structs(entry, "MsgTxs", "entry")
    return PendingMachine(schema, raw, version if isinstance(version, str) else "")


def _tx_from_go(raw: Any, index: dict[str, int], what: str) -> DbgMsgTx:
    kw = _fields(raw, _GO_TX, what)
    for key, kind in _GO_TX_LISTS:
        if key in kw:
            _check_items(kw[key], kind, f"{what}.{key}")
    t = raw.get("Time")
    if type(t) is GobOpaque:  # time.Time travels as its MarshalBinary bytes
        kw["time"] = go_time_utc(t.data)
    elif t is not None:
        if hasattr(t, "tzinfo"):  # a datetime, from a time.Time hook
            t = time_to_ns(t)
        if type(t) is not int:
            raise ValueError(f"{what}.time: expected int, got {type(t).__name__}")
        kw["time"] = ns_to_time(t)
    args = raw.get("Args")
    if args:
        if type(args) is not dict:
            raise ValueError(f"{what}.args: expected a map, got {type(args).__name__}")
        kw["args"] = {str(k): str(v) for k, v in args.items()}
    steps = []
    for i, st in enumerate(_structs(raw, "Steps", what)):
        step = _fields(st, _GO_STEP, f"{what}.steps[{i}]")
        data = st.get("Data")
        # Older dumps carry the relation in the deprecated interface field Data.
        if type(data) is GobInterface and isinstance(data.value, int):
            step.setdefault("rel_type", data.value)
        # gob omits zero ints, so a missing index is "unknown": resolve it from the name.
        if "from_state_idx" not in step:
            name = step.get("from_state")
            step["from_state_idx"] = index.get(name, -1) if name else -1
        if "to_state_idx" not in step:
            name = step.get("to_state")
            step["to_state_idx"] = index.get(name, -1) if name else -1
        steps.append(Step(**step))
    kw["steps"] = steps
    for key, go_key in (("log_entries", "LogEntries"), ("pre_log_entries", "PreLogEntries")):
        kw[key] = [
            LogEntry(**_fields(e, _GO_LOG, f"{what}.{key}[{i}]"))
            for i, e in enumerate(_structs(raw, go_key, what))
        ]
    return DbgMsgTx(**kw)


# ----- writing


def encode_dump(machines: Iterable[MachineDump]) -> bytes:
    """The bytes of a dump file in this project's format (brotli-compressed CBOR)."""
    machines = list(machines)
    with _no_gc():
        try:
            raw = _encode(m.to_dict() for m in machines)
        except Exception:  # one bad record must not cost the dump: find it, skip it
            raw = _encode(_checked_dict(m) for m in machines)
    return brotli.compress(raw, quality=BROTLI_QUALITY)


def _encode(machines: Iterable[dict[str, Any]]) -> bytes:
    doc = {"format": DUMP_FORMAT, "version": DUMP_VERSION, "machines": list(machines)}
    return cbor2.dumps(doc)


def _checked_dict(m: MachineDump) -> dict[str, Any]:
    """The slow path of encode_dump: each transition encoded on its own, failures skipped."""
    out = type(m)(m.schema, [], m.version, m.gone_ns).to_dict()  # a failure here is not a record's
    txs, skipped = [], 0
    for tx in m.txs:
        try:
            d = tx.to_dict()
            cbor2.dumps(d)
        except Exception:
            skipped += 1
            continue
        txs.append(d)
    if skipped:
        log.warning("dump: %s: skipped %d transition(s) that cannot be encoded", m.id, skipped)
    out["txs"] = txs
    return out


def single_frame(machines: Iterable[MachineDump], at: datetime) -> list[MachineDump]:
    """A cross-machine snapshot ("Single Frame" export): per machine only its first
    transition at or after the human time ``at``; a machine whose history ended before
    ``at`` keeps its last transition (its state then), one without transitions stays empty.
    Times are compared in UTC; a transition without a time counts as before everything. A
    machine gone by ``at`` stays gone."""
    at = at if at.tzinfo is not None else at.replace(tzinfo=UTC)
    at_ns = time_to_ns(at)
    out = []
    for m in machines:
        pick = next((tx for tx in m.txs if tx.time is not None and _utc(tx.time) >= at), None)
        if pick is None and m.txs:
            pick = m.txs[-1]
        gone = m.gone_ns if m.gone_ns and m.gone_ns <= at_ns else 0
        out.append(MachineDump(m.schema, [pick] if pick is not None else [], m.version, gone))
    return out


def _utc(t: datetime) -> datetime:
    return t if t.tzinfo is not None else t.replace(tzinfo=UTC)


def write_dump(path: str | os.PathLike[str], machines: Iterable[MachineDump]) -> Path:
    """Write a dump atomically (a temporary file renamed into place): never a partial file."""
    target = Path(path)
    data = encode_dump(machines)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent or Path("."))
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.chmod(tmp, 0o644)  # mkstemp makes 0600; a dump is an ordinary file
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return target


def _one_line(e: BaseException) -> str:
    return " ".join(str(e).split()) or type(e).__name__
