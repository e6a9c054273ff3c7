"""Text outputs into ``--dir`` (C.5 #20): ``tx.md``, ``clients.txt`` and ``log.md``.

Why apart from the panes: other tools (an editor, an agent, ``tail -f``) read what the
debugger shows without a terminal. The files follow the cursor, but never at a key press's
cost: the app only marks them stale; a timer renders the text a few times a second at most
(only what changed) and a worker thread writes it. A file that cannot be written is
reported once in one line and the UI keeps going.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable
from pathlib import Path

from .history import mutation_name, step_text
from .log_pane import tx_log_lines
from .session import Session

__all__ = ["OUTPUTS", "BackgroundWriter", "TextOutputs", "clients_text", "log_text", "tx_text"]

#: name of the output -> its file in --dir
OUTPUTS = {"tx": "tx.md", "clients": "clients.txt", "log": "log.md"}
DEBOUNCE = 0.3  # seconds between renders at most
LOG_EVERY = 2.0  # seconds between log.md renders while only new data arrives


def tx_text(session: Session) -> str:
    """The current transition: its address, RFC3339 time, ``[type] states`` and steps."""
    h, info = session.current, session.info
    addr = session.addr()
    if h is None or info is None or addr is None:
        return f"# {addr or 'mach://'}\n\nno transition\n"
    tx = info.tx
    when = tx.time.isoformat(timespec="microseconds") if tx.time else "-"
    called = " ".join(h.states[i] for i in info.called)
    lines = [f"# {addr}", "", when, f"[{mutation_name(tx.type)}] {called}".rstrip(), ""]
    lines += [f"- {step_text(st)}" for st in tx.steps]
    return "\n".join(lines) + "\n"


def clients_text(session: Session) -> str:
    """One line per machine (the machine list's order): id, connection, transitions."""
    out = []
    for mach_id, depth in session.tree():
        rec = session.collector.machines.get(mach_id)
        if rec is None:
            continue
        parts = [
            "  " * depth + mach_id,
            "connected" if rec.connected else "disconnected",
            f"{len(rec)} tx",
        ]
        if rec.schema.parent:
            parts.append(f"parent:{rec.schema.parent}")
        if rec.schema.tags:
            parts.append("tags:" + ",".join(rec.schema.tags))
        out.append(" ".join(parts))
    return "\n".join(out) + "\n" if out else ""


def log_text(session: Session) -> Callable[[], str]:
    """The selected machine's log (the log pane's filters and level), a heading per
    transition, the current one marked. Returns a function that renders it from a snapshot
    taken now, so that a long history is formatted off the UI's thread."""
    h = session.current
    if h is None:
        return lambda: ""
    mach, states, level = h.id, list(h.states), session.log_level
    infos, vis, cur = list(h.infos), list(session.visible()), session.index

    def render() -> str:
        out = [f"# {mach} log (level {level})", ""]
        for j in vis:
            f = infos[j]
            here = " (current)" if j == cur else ""
            out.append(f"## {f.tx.id} t{f.time_sum}{here}")
            out += tx_log_lines(f, states, level)
            out.append("")
        return "\n".join(out)

    return render


_RENDER: dict[str, Callable[[Session], str | Callable[[], str]]] = {
    "tx": tx_text,
    "clients": clients_text,
    "log": log_text,
}


def _write(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)  # readers never see half a file


class BackgroundWriter:
    """What the UI's file outputs share: a paint only marks them stale (:meth:`changed`); a
    timer's tick takes what is needed on the UI thread and hands the writing to a worker
    thread, one job at a time; a failure is an error line, notified once per distinct error."""

    error = ""  # the last error (one line), shown in the status bar
    _stale = True
    _task: asyncio.Future | None = None

    def changed(self) -> None:
        """The cursor or the data moved: look again on the next tick (cheap; per paint)."""
        self._stale = True

    def _claim(self) -> bool:
        """Whether this tick may start a job: something is stale and no job is running (the
        next tick picks the newest state up)."""
        if not self._stale or (self._task is not None and not self._task.done()):
            return False
        self._stale = False
        return True

    def _start(
        self, job: Callable[..., str], *args: object, notify: Callable[[str], None] | None
    ) -> None:
        """Run ``job(*args)`` in a worker thread; it returns an error line or ""."""
        self._task = asyncio.get_running_loop().run_in_executor(None, job, *args)
        self._task.add_done_callback(lambda f: self._done(f.result(), notify))

    def _done(self, error: str, notify: Callable[[str], None] | None) -> None:
        if error and error != self.error and notify is not None:
            notify(error)  # once per distinct error, not per frame
        self.error = error


class TextOutputs(BackgroundWriter):
    """Keeps the chosen outputs (keys of :data:`OUTPUTS`) in ``out_dir`` current."""

    def __init__(self, session: Session, out_dir: Path, which: set[str]) -> None:
        unknown = set(which) - set(OUTPUTS)
        if unknown:
            raise ValueError(f"unknown outputs {', '.join(sorted(unknown))}")
        self.session = session
        self.out_dir = out_dir
        self.which = set(which)
        self.writes = 0  # files written (for tests)
        self._written: dict[str, str] = {}
        self._log_view: tuple = ()
        self._log_size = 0
        self._log_at = 0.0

    def tick(self, notify: Callable[[str], None] | None = None) -> None:
        """Render what is stale and hand changed files to a worker thread."""
        if not self.which or not self._claim():
            return
        s = self.session
        todo: dict[str, str | Callable[[], str]] = {}
        for name in self.which:
            if name == "log":
                # the whole log only when the machine, the filters or the cursor changed, or
                # (new data alone, e.g. in tail mode) every LOG_EVERY seconds: formatting a
                # long history shares the interpreter with the UI
                h = s.current
                view = (s.mach, s.filters.mask, s.group, s.log_level, s.index)
                size = len(h.infos) if h else 0
                if "log" in self._written and view == self._log_view:
                    if size == self._log_size:
                        continue
                    if time.monotonic() - self._log_at < LOG_EVERY:
                        self._stale = True  # new data is written on a later tick
                        continue
                self._log_view, self._log_size = view, size
                self._log_at = time.monotonic()
            text = _RENDER[name](s)
            if callable(text) or self._written.get(name) != text:
                todo[name] = text
        if todo:
            self._start(self._flush, todo, notify=notify)

    def _done(self, error: str, notify: Callable[[str], None] | None) -> None:
        super()._done(error, notify)
        if error:
            self._stale = True  # tried again on a later change

    def _flush(self, todo: dict[str, str | Callable[[], str]]) -> str:
        """Render what is deferred and write the files (a worker thread); returns an error
        line or ""."""
        try:
            self.out_dir.mkdir(parents=True, exist_ok=True)
            for name, text in todo.items():
                if callable(text):
                    text = text()
                    if self._written.get(name) == text:
                        continue
                _write(self.out_dir / OUTPUTS[name], text)
                self._written[name] = text
                self.writes += 1
        except OSError as err:
            return f"cannot write into {self.out_dir}: {err.strerror or err}"
        return ""
