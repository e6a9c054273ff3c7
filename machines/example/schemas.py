"""The example's schemas (spec: Shared, Foo, Bar) and its one argument, ``Msg``.

Both machines share the basic states, the StateSource error state and a multi ``Msg``; foo
gets ``Bored`` (a message ends boredom), bar ``SubmitMsg`` (Enter in the page's input).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from machines import State, merge
from machines.states import BASIC

#: What every machine exposed over aRPC carries (the reference's ``pkg/rpc/states``).
STATE_SOURCE: dict[str, State] = {"ErrOnClient": State(require=["Exception"])}

SHARED: dict[str, State] = merge(BASIC, STATE_SOURCE, {"Msg": State(multi=True)})

FOO: dict[str, State] = merge(
    SHARED, {"Bored": State(), "Msg": State(multi=True, remove=["Bored"])}
)
"""server-foo, and the browser's handler machine ``browser-foo-<sess>``."""

BAR: dict[str, State] = merge(SHARED, {"SubmitMsg": State(multi=True)})
"""browser-bar-<sess>."""

#: The argument key of ``Msg`` (the reference's typed arg, logged as ``msg``).
MSG = "msg"
#: The same argument as a REPL sends it (``--arg Msg.Msg --val hi``).
REPL_MSG = "Msg.Msg"
#: What the REPL endpoints translate (and announce, for completion): REPL name -> arg key.
REPL_ARGS = {REPL_MSG: MSG}


def msg_args(text: str) -> dict[str, Any]:
    return {MSG: text}


def msg_of(args: Mapping[str, Any] | None) -> str:
    """The message text of ``Msg``'s args ("" when missing or not a string)."""
    if not args:
        return ""
    value = args.get(MSG, args.get(REPL_MSG, ""))
    return value if isinstance(value, str) else ""


def author_of(e: Any, local: str) -> str:
    """Who wrote a message: the machine that caused the mutation, else ``local``."""
    source = getattr(e.mutation, "source", None) if e.mutation is not None else None
    return source.machine_id if source is not None and source.machine_id else local
