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
import urllib.request
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import brotli
import cbor2

from dbg.gob import GobError, GobInterface, GobOpaque, decode_go_time, loads_all
from dbg.model import DbgMsgStruct, DbgMsgTx, MachineDump, time_to_ns
from machines.rpc.protocol import brief, brief_error

log = logging.getLogger("dbg.dump")
_WORD_MIN, _WORD_MAX = -(1 << 63), (1 << 64) - 1

__all__ = [
    "DEFAULT_DUMP_NAME",
    "DUMP_FORMAT",
    "DumpError",
    "decode_dump",
    "encode_dump",
    "read_dump",
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
    name = os.fspath(source)
    if name.startswith(("http://", "https://")):
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
    return decode_dump(data, name)


def decode_dump(data: bytes, source: str = "dump") -> list[MachineDump]:
    """Decode the bytes of a dump file (either format, compressed or not)."""
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
        return _from_cbor(raw, source) if kind == "cbor" else _from_gob(raw, source)


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


def _from_gob(raw: bytes, source: str) -> list[MachineDump]:
    try:
        values = loads_all(raw)
    except GobError as e:
        raise DumpError(f"{source}: {_one_line(e)}") from None
    if len(values) != 1 or not isinstance(values[0], list):
        raise DumpError(f"{source}: unknown format: a gob stream but not a list of machines")
    out = []
    for i, entry in enumerate(values[0]):
        try:
            out.append(_machine_from_go(entry))
            _check_ticks(out[-1])
        except Exception as e:  # whatever a corrupt entry makes fail
            raise DumpError(
                f"{source}: corrupt Go dump: entry {i}: {brief_error(e, 300)}"
            ) from None
    _check_unique(out, source)
    return out


def _check_unique(machines: list[MachineDump], source: str) -> None:
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
_GO_TX = {
    "MachineID": "machine_id",
    "ID": "id",
    "Clocks": "clocks",
    "QueueTick": "queue_tick",
    "MutQueueToken": "mut_queue_token",
    "MutQueueTick": "mut_queue_tick",
    "Type": "type",
    "CalledStates": "called_states",
    "CalledStatesIdxs": "called_states_idxs",
    "Queue": "queue",
    "IsAuto": "is_auto",
    "Accepted": "accepted",
    "IsCheck": "is_check",
    "IsQueued": "is_queued",
    "Args": "args",
    "QueueDump": "queue_dump",
    "StackTrace": "stack_trace",
}
_GO_STEP = {
    "Type": "type",
    "RelType": "rel_type",
    "IsFinal": "is_final",
    "IsSelf": "is_self",
    "IsEnter": "is_enter",
    "FromState": "from_state",
    "FromStateIdx": "from_state_idx",
    "ToState": "to_state",
    "ToStateIdx": "to_state_idx",
}
_GO_LOG = {"Level": "level", "Text": "text"}


def _rename(d: Any, names: dict[str, str], what: str) -> dict[str, Any]:
    if not isinstance(d, dict):
        raise ValueError(f"{what} is not a struct")
    return {names[k]: v for k, v in d.items() if k in names}


def _machine_from_go(entry: Any) -> MachineDump:
    if not isinstance(entry, dict) or not isinstance(entry.get("MsgStruct"), dict):
        raise ValueError("no MsgStruct")
    s = _rename(entry["MsgStruct"], _GO_SCHEMA, "MsgStruct")
    states = s.get("states", {})
    if not isinstance(states, dict):
        raise ValueError("MsgStruct.States is not a map")
    s["states"] = {k: _rename(v, _GO_STATE, f"state {k}") for k, v in states.items()}
    schema = DbgMsgStruct.from_dict(s)
    index = {name: i for i, name in enumerate(schema.states_index)}
    txs = []
    for i, raw_tx in enumerate(entry.get("MsgTxs") or []):
        txs.append(DbgMsgTx.from_dict(_tx_from_go(raw_tx, index), f"MsgTxs[{i}]"))
    version = entry.get("Version", "")
    return MachineDump(schema, txs, version if isinstance(version, str) else "")


def _tx_from_go(raw: Any, index: dict[str, int]) -> dict[str, Any]:
    tx = _rename(raw, _GO_TX, "tx")
    t = raw.get("Time")
    if isinstance(t, GobOpaque):  # time.Time travels as its MarshalBinary bytes
        tx["time"] = time_to_ns(decode_go_time(t.data))
    elif t is not None and not isinstance(t, GobOpaque):
        tx["time"] = time_to_ns(t) if hasattr(t, "tzinfo") else t
    steps = []
    for st in raw.get("Steps") or []:
        step = _rename(st, _GO_STEP, "step")
        data = st.get("Data")
        # Older dumps carry the relation in the deprecated interface field Data.
        if isinstance(data, GobInterface) and isinstance(data.value, int):
            step.setdefault("rel_type", data.value)
        # gob omits zero ints, so a missing index is "unknown": resolve it from the name.
        for side in ("from", "to"):
            name = step.get(f"{side}_state", "")
            if f"{side}_state_idx" not in step:
                step[f"{side}_state_idx"] = index.get(name, -1) if name else -1
        steps.append(step)
    tx["steps"] = steps
    for key, go_key in (("log_entries", "LogEntries"), ("pre_log_entries", "PreLogEntries")):
        tx[key] = [_rename(e, _GO_LOG, "log entry") for e in raw.get(go_key) or []]
    return tx


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
    out = type(m)(m.schema, [], m.version).to_dict()  # a failure here is not a record's
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
