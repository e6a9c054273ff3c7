"""How the REPL prints: results as ``=> ...`` lines, errors as ``err> ...`` lines.

Scripts and tests read these prefixes, so every line of a multi-line answer carries one. At the
interactive prompt the lines go through prompt_toolkit, which prints them above the prompt
while it is shown (a machine appearing while you type does not garble the line).
"""

from __future__ import annotations

import sys
from typing import TextIO

RESULT = "=> "
ERROR = "err> "


class Output:
    """Plain text to a stream: one-shot commands, scripts, piped input."""

    def __init__(self, stream: TextIO | None = None) -> None:
        self._stream = stream

    def _write(self, prefix: str, text: str, kind: str) -> None:
        stream = self._stream or sys.stdout
        for line in text.splitlines() or [""]:
            stream.write(f"{prefix}{line}\n")
        stream.flush()

    def result(self, text: str) -> None:
        self._write(RESULT, text, "result")

    def error(self, text: str) -> None:
        self._write(ERROR, text, "error")

    def notice(self, text: str) -> None:
        """Something that happened by itself (a machine appeared); only shown interactively."""

    def warning(self, text: str) -> None:
        """A problem outside any command (a malformed ``.addr`` file): an ``err>`` line on
        stderr, so stdout holds only the command's answer and the exit code only its outcome."""
        sys.stderr.write(f"{ERROR}{text}\n")
        sys.stderr.flush()


class PromptOutput(Output):
    """Coloured lines printed above a running prompt: grey ``=>``, red errors."""

    def _write(self, prefix: str, text: str, kind: str) -> None:
        from prompt_toolkit import print_formatted_text
        from prompt_toolkit.formatted_text import FormattedText

        style = "ansired" if kind == "error" else ""
        fragments: list[tuple[str, str]] = []
        for line in text.splitlines() or [""]:
            fragments.append(("ansired" if kind == "error" else "ansibrightblack", prefix))
            fragments.append((style, line + "\n"))
        print_formatted_text(FormattedText(fragments), end="")

    def notice(self, text: str) -> None:
        self._write(RESULT, text, "notice")

    def warning(self, text: str) -> None:
        self._write(ERROR, text, "error")
