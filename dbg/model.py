"""The telemetry and dump data model: what machines send to the debugger and what dumps hold.

Why one small module: the telemetry producer (machines), the collector (debugger), the dump
reader/writer and the diagram renderer all speak these types, so they live in one place, as
plain dataclasses with ``to_dict`` / ``from_dict`` for CBOR. The shapes follow the reference
debugger's messages (Go ``DbgMsgStruct`` / ``DbgMsgTx``), with snake_case names.

Messages
--------
- :class:`DbgMsgStruct` - the *schema message*, sent when a machine connects and whenever its
  schema changes: id, ordered state names (``states_index``: clock ``i`` belongs to state ``i``),
  the schema (name -> :class:`StateDef`), groups, parent id and machine tags.
- :class:`DbgMsgTx` - the *transition message*, one per finished transition (and one per queued
  mutation, ``is_queued=True``): the machine's clocks **after** it, what was called, steps and
  log lines.
- :class:`MachineDump` - one machine in a dump file: its schema message and its transitions.

Dict form (CBOR)
----------------
``to_dict`` gives plain ``dict``/``list``/``str``/``int``/``bool`` values with the field names
below as keys; fields at their default value are left out (like gob does), and ``from_dict``
fills them back. ``time`` is an ``int`` of nanoseconds since the Unix epoch (UTC). Unknown keys
are ignored (forward compatible); a key of the wrong type raises ``ValueError`` naming it.

Ticks: a clock value is odd when its state is active, even when inactive.

What the diagram renderer reads (the contract for producers)
------------------------------------------------------------
- **machines**: one :class:`MachineDump` each, keyed by ``DbgMsgStruct.id``.
- **states and relations**: ``DbgMsgStruct.states_index`` (order) and ``states`` (``require``,
  ``add``, ``remove`` edges; ``auto``/``multi`` flags).
- **active states**: the ``clocks`` of the machine's *last* ``DbgMsgTx`` (odd = active).
- **parent edge** (child -> parent): ``DbgMsgStruct.parent`` holds the parent machine's id.
- **tags block**: ``DbgMsgStruct.tags``.
- **rpc edge** (client -> server): the *server* machine has the tag ``rpc-server`` (clients have
  ``rpc-client``). In a transition of the server whose clocks newly activate ``HandshakeDone``
  (odd now, even in the previous transition, or absent before), a log entry in
  ``log_entries`` (or ``pre_log_entries``) of the form ``[add] <states> (<k=v> ...)`` carries
  the argument ``id=<client machine id>``; e.g. ``[add] HandshakeDone (id=rc-browser-bar)``.
  The client machine needs its own :class:`MachineDump` for a full box (otherwise it is drawn
  as a "half" box). An id cut short with a trailing ``...`` (the reference truncates long
  argument values) is matched to the one machine id that starts with the rest.
- **rpc edge** (client's machine -> source machine, without the aRPC machines): a log line
  ``[rpc:connected] <machine id>`` on the source machine, written by the aRPC server when a
  client acting for that machine completes its handshake.
- **pipe edges** (source machine -> target machine): log lines in ``log_entries`` or
  ``pre_log_entries``: ``[pipe-out:add] <State> to <machId>`` / ``[pipe-out:remove] ...`` on
  the source machine and ``[pipe-in:add] <State> from <machId>`` / ``[pipe-in:remove] ...`` on
  the target machine; the n-th ``pipe-out`` and the n-th ``pipe-in`` of the same machine pair
  and mutation type form one edge ``source.State -> target.State``. Without ``:add`` /
  ``:remove`` (``[pipe-out] <State> to <machId>``) a pipe counts as an add pipe.
  ``[pipe:gc] <machId>`` removes every pipe to and from that machine, and so does the end of
  a machine's telemetry connection (:attr:`MachineDump.gone_ns`): a process killed or a tab
  closed logs no ``[pipe:gc]``.
- **order**: transitions of all machines are replayed by ``DbgMsgTx.time`` (a transition
  without a time keeps its machine's previous one), so cross-machine log lines such as
  ``[pipe:gc]`` take effect after the lines they undo.
"""

from __future__ import annotations

from dataclasses import MISSING, dataclass, field, fields
from datetime import UTC, datetime, timedelta
from typing import Any

# the value types are the machine core's own: one definition of each wire number
from machines.mutation import LogLevel, MutationType
from machines.schema import Relation
from machines.transition import StepType

__all__ = [
    "DbgMsgStruct",
    "DbgMsgTx",
    "LogEntry",
    "LogLevel",
    "MachineDump",
    "MutationType",
    "Relation",
    "StateDef",
    "Step",
    "StepType",
    "ns_to_time",
    "time_to_ns",
]


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def time_to_ns(t: datetime) -> int:
    """Nanoseconds since the Unix epoch; a naive datetime is taken as UTC."""
    if t.tzinfo is None:
        t = t.replace(tzinfo=UTC)
    return (t - _EPOCH) // timedelta(microseconds=1) * 1000


def ns_to_time(ns: int) -> datetime:
    """The aware UTC datetime of nanoseconds since the Unix epoch (microsecond precision)."""
    return _EPOCH + timedelta(microseconds=ns // 1000)


# ----- checked readers for from_dict: bad dumps must fail with a message naming the field


def _get(d: dict[str, Any], key: str, kind: type | tuple[type, ...], default: Any, where: str):
    v = d.get(key, default)
    if v is default or type(v) is kind:  # the common case, checked first for speed
        return v
    if not isinstance(v, kind) or (kind is int and isinstance(v, bool)):
        raise ValueError(f"{where}.{key}: expected {_kind_name(kind)}, got {type(v).__name__}")
    return v


def _kind_name(kind: type | tuple[type, ...]) -> str:
    if isinstance(kind, tuple):
        return " or ".join(k.__name__ for k in kind)
    return kind.__name__


def _scalars(d: dict[str, Any], kinds: dict[str, type], where: str) -> dict[str, Any]:
    """The checked values of the scalar fields present in ``d`` (a fast path: it only looks at
    the keys that are there, which for most messages are few)."""
    out: dict[str, Any] = {}
    for key, v in d.items():
        kind = kinds.get(key)
        if kind is None:
            continue
        if type(v) is not kind and (
            not isinstance(v, kind) or (kind is int and isinstance(v, bool))
        ):
            raise ValueError(f"{where}.{key}: expected {kind.__name__}, got {type(v).__name__}")
        out[key] = v
    return out


_STR, _INT = frozenset((str,)), frozenset((int,))


def _str_list(d: dict[str, Any], key: str, where: str) -> list[str]:
    v = _get(d, key, list, None, where)
    if v is None:
        return []
    # the common case (every item exactly a str) in one C-level pass, then the exact rule
    if not _STR.issuperset(map(type, v)) and not all(isinstance(x, str) for x in v):
        raise ValueError(f"{where}.{key}: expected a list of strings")
    return list(v)


def _int_list(d: dict[str, Any], key: str, where: str) -> list[int]:
    v = _get(d, key, list, None, where)
    if v is None:
        return []
    if not _INT.issuperset(map(type, v)) and not all(
        isinstance(x, int) and not isinstance(x, bool) for x in v
    ):
        raise ValueError(f"{where}.{key}: expected a list of integers")
    return list(v)


def _dict(v: Any, where: str) -> dict[str, Any]:
    if not isinstance(v, dict):
        raise ValueError(f"{where}: expected a map, got {type(v).__name__}")
    return v


_PLAIN_TYPES = frozenset((str, int, bool, float, type(None)))


def _plain(v: Any) -> Any:
    # IntEnum/IntFlag -> int, so that any CBOR encoder writes a plain integer.
    t = type(v)
    if t in _PLAIN_TYPES:
        return v
    if isinstance(v, int):
        return int(v)
    if t is list:
        if all(type(x) in _PLAIN_TYPES for x in v):
            return list(v)  # a copy: the dict must not share lists with the message
        return [_plain(x) for x in v]
    return v


_DEFAULTS: dict[type, list[tuple[str, Any]]] = {}


def _defaults(cls: type) -> list[tuple[str, Any]]:
    """(field name, default) of a dataclass, computed once per class."""
    found = _DEFAULTS.get(cls)
    if found is None:
        found = []
        for f in fields(cls):
            if f.default is not MISSING:
                found.append((f.name, f.default))
            elif f.default_factory is not MISSING:
                found.append((f.name, f.default_factory()))
            else:
                found.append((f.name, MISSING))
        _DEFAULTS[cls] = found
    return found


def _compact(obj: Any) -> dict[str, Any]:
    """Fields that differ from their defaults, as plain values (nested types: see callers)."""
    out: dict[str, Any] = {}
    for name, default in _defaults(type(obj)):
        v = getattr(obj, name)
        if default is not MISSING and v == default:
            continue
        out[name] = _plain(v)
    return out


# ----- types


@dataclass(slots=True)
class StateDef:
    """One state's definition: flags and relations (lists of state names)."""

    auto: bool = False
    multi: bool = False
    require: list[str] = field(default_factory=list)
    add: list[str] = field(default_factory=list)
    remove: list[str] = field(default_factory=list)
    after: list[str] = field(default_factory=list)
    tags: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return _compact(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any], where: str = "state") -> StateDef:
        d = _dict(d, where)
        return cls(
            auto=_get(d, "auto", bool, False, where),
            multi=_get(d, "multi", bool, False, where),
            require=_str_list(d, "require", where),
            add=_str_list(d, "add", where),
            remove=_str_list(d, "remove", where),
            after=_str_list(d, "after", where),
            tags=_str_list(d, "tags", where),
        )


@dataclass(slots=True)
class LogEntry:
    """One machine log line with its level (see :class:`LogLevel`)."""

    level: int = 0
    text: str = ""

    def to_dict(self) -> dict[str, Any]:
        return _compact(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any], where: str = "log") -> LogEntry:
        return cls(**_scalars(_dict(d, where), _LOG_KINDS, where))


@dataclass(slots=True)
class Step:
    """One resolution step of a transition.

    ``type`` is a :class:`StepType` bit set; ``rel_type`` a :class:`Relation` for relation
    steps. A side without a state has an empty name and index -1.
    """

    type: int = 0
    rel_type: int = 0
    is_final: bool = False
    is_self: bool = False
    is_enter: bool = False
    from_state: str = ""
    from_state_idx: int = -1
    to_state: str = ""
    to_state_idx: int = -1

    def to_dict(self) -> dict[str, Any]:
        return _compact(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any], where: str = "step") -> Step:
        return cls(**_scalars(_dict(d, where), _STEP_KINDS, where))


@dataclass(slots=True)
class DbgMsgStruct:
    """The schema message of one machine (Go ``DbgMsgStruct``).

    ``groups`` maps a group name to indexes into ``states_index``; ``groups_order`` is their
    display order; ``parent`` is the parent machine's id ("" for a root); ``tags`` are machine
    tags such as ``rpc-client``, ``rpc-server``, ``rpc-mux``, ``relay`` or ``key:value``.
    """

    id: str
    states_index: list[str] = field(default_factory=list)
    states: dict[str, StateDef] = field(default_factory=dict)
    groups: dict[str, list[int]] = field(default_factory=dict)
    groups_order: list[str] = field(default_factory=list)
    parent: str = ""
    tags: list[str] = field(default_factory=list)
    #: telemetry only: transitions may carry their id as a number, the id being this prefix
    #: and the number as 8 hex digits (saves the producer formatting and sending a string)
    tx_id_prefix: str = ""

    def to_dict(self) -> dict[str, Any]:
        out = _compact(self)
        out["id"] = self.id
        if self.states:
            out["states"] = {k: v.to_dict() for k, v in self.states.items()}
        if self.groups:
            out["groups"] = {k: [int(i) for i in v] for k, v in self.groups.items()}
        return out

    @classmethod
    def from_dict(cls, d: dict[str, Any], where: str = "schema") -> DbgMsgStruct:
        d = _dict(d, where)
        mid = _get(d, "id", str, None, where)
        if not mid:
            raise ValueError(f"{where}.id: missing machine id")
        where = f"schema {mid!r}"
        states = _dict(d.get("states", {}), f"{where}.states")
        groups = _dict(d.get("groups", {}), f"{where}.groups")
        return cls(
            id=mid,
            states_index=_str_list(d, "states_index", where),
            states={
                str(k): StateDef.from_dict(v, f"{where}.states[{k!r}]") for k, v in states.items()
            },
            groups={str(k): _int_list(groups, k, f"{where}.groups") for k in groups},
            groups_order=_str_list(d, "groups_order", where),
            parent=_get(d, "parent", str, "", where),
            tags=_str_list(d, "tags", where),
            tx_id_prefix=_get(d, "tx_id_prefix", str, "", where),
        )


@dataclass(slots=True)
class DbgMsgTx:
    """One transition (or queued mutation) of a machine (Go ``DbgMsgTx``).

    - ``clocks``: the machine's ticks **after** the transition, in ``states_index`` order.
    - ``id``: transition id; queued-mutation records use ``"<lastTxId>-<n>"``.
    - ``queue_tick``, ``mut_queue_token``, ``mut_queue_tick``: queue bookkeeping, linking a
      queued record to the transition that later ran it.
    - ``type``: a :class:`MutationType`; ``called_states`` (names, older producers) or
      ``called_states_idxs`` (indexes into ``states_index``) - use :meth:`called`.
    - ``steps``, ``log_entries`` (logged during the transition), ``pre_log_entries`` (logged
      between the previous transition and this one).
    - ``queue``: queue length at the start; ``time``: wall-clock time, stamped by the receiver.
    - ``is_auto``, ``accepted`` (False = canceled), ``is_check`` (a ``Can*`` dry run),
      ``is_queued`` (a "mutation queued" record).
    - ``args``: logged mutation arguments; ``queue_dump``, ``stack_trace``: debugging aids.
    - ``source_machine_id``, ``source_tx_id``, ``source_mach_time``: the machine and transition
      that caused this mutation (a pipe, an aRPC client), "" / 0 for local calls.
    """

    machine_id: str = ""
    id: str = ""
    clocks: list[int] = field(default_factory=list)
    queue_tick: int = 0
    mut_queue_token: int = 0
    mut_queue_tick: int = 0
    type: int = 0
    called_states: list[str] = field(default_factory=list)
    called_states_idxs: list[int] = field(default_factory=list)
    steps: list[Step] = field(default_factory=list)
    log_entries: list[LogEntry] = field(default_factory=list)
    pre_log_entries: list[LogEntry] = field(default_factory=list)
    queue: int = 0
    time: datetime | None = None
    is_auto: bool = False
    accepted: bool = False
    is_check: bool = False
    is_queued: bool = False
    args: dict[str, str] = field(default_factory=dict)
    queue_dump: list[str] = field(default_factory=list)
    stack_trace: str = ""
    source_machine_id: str = ""
    source_tx_id: str = ""
    source_mach_time: int = 0

    def time_sum(self) -> int:
        """The machine time: the sum of all clocks ("t123" in the tools)."""
        return sum(self.clocks)

    def called(self, states_index: list[str]) -> list[str]:
        """Names of the called states, from whichever of the two fields is filled."""
        if self.called_states:
            return list(self.called_states)
        n = len(states_index)
        return [states_index[i] for i in self.called_states_idxs if 0 <= i < n]

    def active(self, states_index: list[str]) -> list[str]:
        """Names of the states active after this transition (odd clocks)."""
        return [name for name, tick in zip(states_index, self.clocks, strict=False) if tick % 2]

    def to_dict(self) -> dict[str, Any]:
        out = _compact(self)
        for key in ("steps", "log_entries", "pre_log_entries"):
            items = getattr(self, key)
            if items:
                out[key] = [x.to_dict() for x in items]
        if self.time is not None:
            out["time"] = time_to_ns(self.time)
        return out

    @classmethod
    def from_dict(cls, d: dict[str, Any], where: str = "tx") -> DbgMsgTx:
        d = _dict(d, where)
        time_ns = _get(d, "time", int, None, where)
        args = _dict(d.get("args", {}), f"{where}.args")

        kw = _scalars(d, _TX_KINDS, where)
        if time_ns is not None:
            kw["time"] = ns_to_time(time_ns)
        for key, kind in _TX_ITEMS:
            if key in d:  # most transitions have no log lines: no empty list to check
                raw = _get(d, key, list, [], where)
                kw[key] = [kind.from_dict(x, f"{where}.{key}[{i}]") for i, x in enumerate(raw)]
        return cls(
            clocks=_int_list(d, "clocks", where),
            called_states=_str_list(d, "called_states", where),
            called_states_idxs=_int_list(d, "called_states_idxs", where),
            args={str(k): str(v) for k, v in args.items()},
            queue_dump=_str_list(d, "queue_dump", where),
            **kw,
        )


# Scalar fields and their types, for the checked fast path of from_dict.
_TX_ITEMS = (("steps", Step), ("log_entries", LogEntry), ("pre_log_entries", LogEntry))
_LOG_KINDS = {"level": int, "text": str}
_STEP_KINDS = {
    "type": int,
    "rel_type": int,
    "is_final": bool,
    "is_self": bool,
    "is_enter": bool,
    "from_state": str,
    "from_state_idx": int,
    "to_state": str,
    "to_state_idx": int,
}
_TX_KINDS = {
    "machine_id": str,
    "id": str,
    "queue_tick": int,
    "mut_queue_token": int,
    "mut_queue_tick": int,
    "type": int,
    "queue": int,
    "is_auto": bool,
    "accepted": bool,
    "is_check": bool,
    "is_queued": bool,
    "stack_trace": str,
    "source_machine_id": str,
    "source_tx_id": str,
    "source_mach_time": int,
}


@dataclass(slots=True)
class MachineDump:
    """One machine of a dump: its schema message and its transitions, oldest first.

    ``version`` is the version of the tool that wrote it ("" when unknown). ``gone_ns`` is
    when its telemetry connection ended while the debugger listened (ns since the Unix epoch;
    0 = still connected, or unknown): the machine vanished then, and so did its pipes.
    """

    schema: DbgMsgStruct
    txs: list[DbgMsgTx] = field(default_factory=list)
    version: str = ""
    gone_ns: int = 0

    @property
    def id(self) -> str:
        return self.schema.id

    def latest_clocks(self) -> list[int]:
        """Clocks after the last transition (all zero when there is none)."""
        if self.txs and self.txs[-1].clocks:
            return list(self.txs[-1].clocks)
        return [0] * len(self.schema.states_index)

    def active_states(self) -> list[str]:
        """States active at the end of the dump, in ``states_index`` order."""
        index = self.schema.states_index
        return [n for n, t in zip(index, self.latest_clocks(), strict=False) if t % 2]

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"schema": self.schema.to_dict(), "txs": []}
        out["txs"] = [tx.to_dict() for tx in self.txs]
        if self.version:
            out["version"] = self.version
        if self.gone_ns:
            out["gone_ns"] = self.gone_ns
        return out

    @classmethod
    def from_dict(cls, d: dict[str, Any], where: str = "machine") -> MachineDump:
        d = _dict(d, where)
        schema = DbgMsgStruct.from_dict(d.get("schema"), f"{where}.schema")  # type: ignore[arg-type]  # checked there
        where = f"machine {schema.id!r}"
        txs = _get(d, "txs", list, [], where)
        return cls(
            schema=schema,
            txs=[DbgMsgTx.from_dict(t, f"{where}.txs[{i}]") for i, t in enumerate(txs)],
            version=_get(d, "version", str, "", where),
            gone_ns=_get(d, "gone_ns", int, 0, where),
        )
