"""A machine's log: leveled lines to a logger, kept on the transition for the debugger."""

from __future__ import annotations

import sys
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from .mutation import LogLevel
from .transition import Transition

__all__ = ["Logging"]

_LOG_ARG_KEYS = ("name", "id", "port", "addr", "err", "path", "url", "uri")


class Logging:
    """Logging of :class:`machines.Machine` (a mixin)."""

    if TYPE_CHECKING:  # provided by Machine
        id: str
        transition: Transition | None
        _disposed: bool
        _log_level: int
        _logger: Callable[[int, str], None]
        _pre_log: list[tuple[int, str]]

        def _observers_changed(self) -> None: ...

    @property
    def log_level(self) -> int:
        return self._log_level

    @log_level.setter
    def log_level(self, level: int) -> None:
        self._log_level = int(level)
        self._observers_changed()

    def set_logger(
        self,
        logger: Callable[[int, str], None] | None,
        level: int | None = None,
    ) -> None:
        """Route log lines to ``logger(level, text)`` (``None``: stderr)."""
        self._logger = logger or _default_logger(self.id)
        if level is not None:
            self._log_level = int(level)
            self._observers_changed()

    def log(self, text: str) -> None:
        """An external log line (level 1)."""
        self._log(LogLevel.EXTERNAL, f"[exter] {text}")

    def log_graph(self, text: str) -> None:
        """A line about links between machines (pipes, RPC), as ``[pipe-out:add] A to m2``;
        the debugger's diagrams are drawn from these (level 3, ops)."""
        self._log(LogLevel.OPS, text)

    def _log(self, level: int, text: str) -> None:
        if level > self._log_level or self._disposed:
            return
        tx = self.transition
        if tx is not None:
            # Transition.log_entries as levels and texts, without a property call per line
            # (see Transition._rare)
            rare = tx._rare
            if rare is None:
                tx._rare = [[level], [text], None, None]
            elif rare[0] is None:
                rare[0], rare[1] = [level], [text]
            else:
                rare[0].append(level)
                rare[1].append(text)
        elif not self._pre_log or self._pre_log[-1][1] != text:
            self._pre_log.append((level, text))
            del self._pre_log[:-100]
        self._logger(level, text)

    def _log_mutation(self, tx: Transition) -> None:
        mut = tx.mutation
        tag = f"{mut.type}:auto" if mut.auto else str(mut.type)
        if mut.check:
            tag += ":check"
        level = LogLevel.DECISIONS if mut.auto else LogLevel.OPS
        args = _format_args(mut.args)
        self._log(level, f"[{tag}] {' '.join(mut.called)}{args}")
        if mut.source is not None:
            s = mut.source
            self._log(LogLevel.OPS, f"[source] {s.machine_id}/{s.tx_id}/{s.mach_time}")


def _silent(level: int, text: str) -> None:
    return None


def _default_logger(mach_id: str) -> Callable[[int, str], None]:
    prefix = f"[{mach_id[:5]}] "

    def write(level: int, text: str) -> None:
        print(prefix + text, file=sys.stderr)

    return write


def _format_args(args: Mapping[str, Any]) -> str:
    picked = []
    for k in sorted(args):
        if k in _LOG_ARG_KEYS:
            v = str(args[k])
            picked.append(f"{k}={v if len(v) <= 20 else v[:17] + '...'}")
    return f" ({' '.join(picked)})" if picked else ""
