"""Tab completion: command names, machine ids, state names, argument names, options, files.

What a word completes to comes from the command's click parameters (options, which take a
value) and `commands.POSITIONALS` (what each positional argument is), so a new command gets
completion by declaring them. State names come from the mirrored machine: `add` offers the
states it could still change (inactive, or Multi), `remove` the active ones; argument names
(``--arg Msg.Msg``) are the ones the machine's REPL endpoint announced. Everything is read
from the local mirrors, never from the network, so completing never waits.
"""

from __future__ import annotations

import shlex
from collections.abc import Iterable, Iterator

import click
from prompt_toolkit.completion import CompleteEvent, Completer, Completion, PathCompleter
from prompt_toolkit.document import Document

from .commands import COMMANDS, OPTION_VALUES, POSITIONALS
from .peers import Peer
from .session import Session


def split_words(text: str) -> tuple[list[str], str]:
    """The finished words before the cursor and the word being typed ('' after a space)."""
    try:
        words = shlex.split(text)
    except ValueError:  # an open quote: complete the raw words
        words = text.split()
    if not text or text[-1].isspace():
        return words, ""
    return words[:-1], (words[-1] if words else "")


class ReplCompleter(Completer):
    def __init__(self, session: Session) -> None:
        self.session = session
        self._paths = PathCompleter(expanduser=True)

    def get_completions(self, document: Document, complete_event: CompleteEvent) -> Iterator:
        words, current = split_words(document.text_before_cursor)
        if words and POSITIONALS.get(words[0]) and self._kind(words) == "file":
            yield from self._paths.get_completions(Document(current), complete_event)
            return
        seen = set()
        for cand in self.candidates(words, current):
            if cand.startswith(current) and cand not in seen:
                seen.add(cand)
                # the trailing space ends the word, as in a shell: the next Tab completes the
                # next word
                yield Completion(cand + " ", start_position=-len(current), display=cand)

    # --- what to offer -------------------------------------------------------------------------

    def candidates(self, words: list[str], current: str) -> Iterable[str]:
        if not words:
            return list(COMMANDS)
        cmd = COMMANDS.get(words[0])
        if cmd is None:
            return []
        if current.startswith("-") and self._pending_option(cmd, words[1:]) is None:
            return [o for p in cmd.params if isinstance(p, click.Option) for o in _names(p)]
        kind = self._kind(words)
        return self._values(kind, words) if kind else []

    def _kind(self, words: list[str]) -> str | None:
        """What the word being typed is: an option's value kind or a positional's kind."""
        cmd = COMMANDS.get(words[0])
        if cmd is None:
            return None
        pending = self._pending_option(cmd, words[1:])
        if pending is not None:
            return OPTION_VALUES.get(pending.name or "")
        kinds = POSITIONALS.get(words[0], ())
        if not kinds:
            return None
        index = len(_positionals(cmd, words[1:]))
        return kinds[min(index, len(kinds) - 1)]

    @staticmethod
    def _pending_option(cmd: click.Command, words: list[str]) -> click.Option | None:
        """The option whose value is being typed: the last word is an option taking one."""
        options, pending = _options(cmd), None
        for word in words:
            if pending is not None:
                pending = None
                continue
            opt = options.get(word)
            if opt is not None and not (opt.is_flag or opt.count):
                pending = opt
        return pending

    def _values(self, kind: str, words: list[str]) -> list[str]:
        session = self.session
        connected = session.connected()
        if kind == "command":
            return list(COMMANDS)
        if kind == "mach":
            return [p.id for p in connected] + ["."]
        if kind == "any-state":
            return sorted({s for p in connected for s in p.netmach.state_names})
        cmd = COMMANDS[words[0]]
        positionals = _positionals(cmd, words[1:])
        peer = self._peer(positionals[0]) if positionals else None
        if kind == "arg":
            peers = [peer] if peer is not None else connected
            return sorted({a for p in peers for a in (p.arg_names or ())})
        if peer is None:
            return []
        net = peer.netmach
        typed = set(positionals[1:])
        names = [n for n in net.state_names if n not in typed]
        if kind == "state":
            return names
        active = set(net.active_states)
        if kind == "add-state":
            schema = net.schema
            return [n for n in names if n not in active or getattr(schema.get(n), "multi", False)]
        if kind in ("remove-state", "active-state"):
            return [n for n in names if n in active]
        if kind == "inactive-state":
            return [n for n in names if n not in active]
        return []

    def _peer(self, name: str) -> Peer | None:
        for peer in self.session.connected():
            if name in (peer.id, "."):
                return peer
        return None


def _names(opt: click.Option) -> list[str]:
    return [n for n in [*opt.opts, *opt.secondary_opts] if n.startswith("--")] or list(opt.opts)


def _options(cmd: click.Command) -> dict[str, click.Option]:
    out = {}
    for p in cmd.params:
        if isinstance(p, click.Option):
            for name in [*p.opts, *p.secondary_opts]:
                out[name] = p
    return out


def _positionals(cmd: click.Command, words: list[str]) -> list[str]:
    """The positional words among `words`, skipping options and their values."""
    options, out, skip = _options(cmd), [], False
    for word in words:
        if skip:
            skip = False
            continue
        opt = options.get(word)
        if opt is not None:
            skip = not (opt.is_flag or opt.count)
        elif not word.startswith("-"):
            out.append(word)
    return out
