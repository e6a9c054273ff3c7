"""``--output-call-log`` (C.3, C.5 #20): the handlers each machine executed, as code to read.

Why code: a transition's handlers read best as what the machine did, in order: the
negotiation handlers (``FooEnter``, ``BarExit``...) as the condition they are, the final ones
(``FooState``, ``BarFoo``...) as the body that ran because it held. The reference writes Go;
this project is Python, so each file is Python (it compiles; nothing runs it)::

    # t12 [add] Foo  (tx m1-0000000c)
    if h0.BarExit(e) and h0.FooEnter(e) and h0.AnyEnter(e):
        h0.BarFoo(e)
        h0.FooState(e)
        h1.FooState(e)

    # t14 [add] Foo  (tx m1-0000000e) canceled
    if h0.BarExit(e) and h0.FooEnter(e):  # canceled by FooEnter
        pass

``hN`` is the machine's handler group N+1 (``handlers=`` is group 1, then each
``handlers_bind``), ``e`` the transition's event. Every 100 lines a comment says which states
were active; after 5000 calls the log goes on in a new file named after the machine time it
starts at. Files: ``call-log/<machine>/init.py`` (what the names mean, the states), ``0.py``,
then ``<t>.py``.

What is read: the machine's ``[handler:<group>] <name>`` and ``[cancel] ... by <name>`` log
lines, which a machine sends at log level 3 (``AM_LOG=3``, the ops level): without them the
log stays empty. As with the other outputs, the app only marks it stale; a timer takes the new
transitions, and a worker thread formats and appends them.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from dbg.model import DbgMsgTx

from .history import mutation_name
from .outputs import BackgroundWriter
from .session import Session

__all__ = ["CallLogOutputs", "MachineCallLog", "tx_block"]

DIR = "call-log"
#: a comment with the active states every this many lines
SEPARATOR_EVERY = 100
#: a new file after this many calls
ROTATE_CALLS = 5000
_WIDTH = 96  # a negotiation condition longer than this goes one call a line

_HANDLER = re.compile(r"\[handler:([^\]]+)\] (\S+)$")
_CANCEL = re.compile(r"\[cancel\] .* by (\S+)$")


def _group_name(group: str) -> str:
    """``1`` -> ``h0`` (as the reference counts); any other id -> an identifier."""
    if group.isdigit() and int(group) > 0:
        return f"h{int(group) - 1}"
    return "h_" + re.sub(r"\W", "_", group)


def _negotiation(name: str) -> bool:
    return name.endswith(("Enter", "Exit"))


def tx_block(tx: DbgMsgTx, states: list[str]) -> tuple[list[str], int]:
    """The lines of one transition's executed handlers (a trailing blank line) and how
    many calls they hold; ([], 0) when it executed none."""
    calls: list[tuple[str, str]] = []
    canceled_by = ""
    for entry in tx.log_entries:
        if m := _HANDLER.match(entry.text):
            calls.append((_group_name(m.group(1)), m.group(2)))
        elif m := _CANCEL.match(entry.text):
            canceled_by = m.group(1)
    if not calls:
        return [], 0
    called = " ".join(tx.called(states))
    mark = "" if tx.accepted or tx.is_queued else " canceled"
    lines = [f"# t{tx.time_sum()} [{mutation_name(tx.type)}] {called}  (tx {tx.id}){mark}"]
    neg = [f"{h}.{name}(e)" for h, name in calls if _negotiation(name)]
    final = [f"{h}.{name}(e)" for h, name in calls if not _negotiation(name)]
    if not neg:
        lines += final
    else:
        why = f"  # canceled by {canceled_by}" if canceled_by else ""
        one = f"if {' and '.join(neg)}:"
        if len(one) <= _WIDTH:
            lines.append(one + why)
        else:  # one negotiation call a line, grouped in parentheses
            lines.append("if (")
            lines += [f"    {'and ' if k else ''}{c}" for k, c in enumerate(neg)]
            lines.append(f"):{why}")
        lines += [f"    {c}" for c in final] or ["    pass"]
    lines.append("")
    return lines, len(calls)


@dataclass
class MachineCallLog:
    """One machine's call log: which file it is in, and how far it got."""

    folder: Path
    states: list[str]
    done: int = 0  # transitions written (counted from the first ever received)
    file: str = "0.py"
    calls: int = 0  # calls in the current file
    lines: int = 0  # lines since the last active-states comment
    started: bool = False
    #: files written by this run: the first write replaces what an earlier run left
    opened: set[str] = field(default_factory=set)

    def feed(self, txs: list[DbgMsgTx]) -> dict[str, list[str]]:
        """The lines to append, per file, for these new transitions."""
        out: dict[str, list[str]] = {}
        if not self.started:
            self.started = True
            out["init.py"] = _init_lines(self.folder.name, self.states)
        for tx in txs:
            block, n = tx_block(tx, self.states)
            if not n:
                continue
            if self.calls >= ROTATE_CALLS:
                self.file, self.calls, self.lines = f"{tx.time_sum()}.py", 0, 0
            if self.lines >= SEPARATOR_EVERY:
                active = ", ".join(tx.active(self.states)) or "-"
                block = [f"# ---- t{tx.time_sum()} active: {active} ----", "", *block]
                self.lines = 0
            out.setdefault(self.file, []).extend(block)
            self.calls += n
            self.lines += len(block)
        return out


def _init_lines(mach: str, states: list[str]) -> list[str]:
    return [
        f'"""Call log of {mach}: the handlers its transitions executed, as Python calls',
        "(am dbg --output-call-log). 0.py, then <t>.py every "
        f"{ROTATE_CALLS} calls (t: the machine time it starts at).",
        "",
        "hN: the machine's handler group N+1 (handlers=, then each handlers_bind); e: the",
        "transition's event. Negotiation handlers (Enter, Exit) are the condition, the final",
        "ones (State, End, FooBar) its body; '# canceled by' names the one that refused.",
        '"""',
        "",
        f"states = {states!r}",
        "",
    ]


class CallLogOutputs(BackgroundWriter):
    """Keeps ``--dir/call-log/<machine>/`` appended with every machine's new transitions."""

    def __init__(self, session: Session, out_dir: Path) -> None:
        self.session = session
        self.root = out_dir / DIR
        self.logs: dict[str, MachineCallLog] = {}
        self._records: dict[str, object] = {}

    def tick(self, notify: Callable[[str], None] | None = None) -> None:
        if not self._claim():
            return
        work: list[tuple[MachineCallLog, list[DbgMsgTx]]] = []
        with self.session.lock:  # reads (parses) what arrived; ingest waits meanwhile
            for mach_id, rec in list(self.session.collector.machines.items()):
                log = self.logs.get(mach_id)
                if log is None or self._records.get(mach_id) is not rec:
                    if log is None:
                        folder = self.root / _safe(mach_id)
                        log = self.logs[mach_id] = MachineCallLog(folder, [])
                    log.done = 0  # a new record (clean-on-connect, a restart): from its start
                    self._records[mach_id] = rec
                log.states = list(rec.schema.states_index)
                txs = rec.txs
                start = max(0, log.done - rec.dropped)  # trimmed by --max-mem: what is left
                if start < len(txs):
                    work.append((log, txs[start:]))
                    log.done = rec.dropped + len(txs)
        if work:
            self._start(self._flush, work, notify=notify)

    def _flush(self, work: list[tuple[MachineCallLog, list[DbgMsgTx]]]) -> str:
        try:
            for log, txs in work:
                for name, lines in log.feed(txs).items():
                    if not log.opened:  # an earlier run's files would read as this one's
                        log.folder.mkdir(parents=True, exist_ok=True)
                        for old in log.folder.glob("*.py"):
                            old.unlink()
                    mode = "a" if name in log.opened else "w"
                    log.opened.add(name)
                    with open(log.folder / name, mode, encoding="utf-8") as f:
                        f.write("\n".join(lines) + "\n")
        except OSError as err:
            return f"call log: {err.strerror or err}: {getattr(err, 'filename', '')}"
        return ""


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name)
