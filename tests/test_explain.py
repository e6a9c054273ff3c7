"""Why a mutation was canceled (`machines.explain`): what the REPL shows after ``Canceled``."""

from __future__ import annotations

from machines import Machine, Result, State
from machines.explain import mutate_explained
from machines.mutation import MutationType

ADD, REMOVE, SET = MutationType.ADD, MutationType.REMOVE, MutationType.SET

SCHEMA = {
    "Foo": State(require=["Bar"]),
    "Bar": State(),
    "Baz": State(remove=["Bar"]),
    "Keep": State(),
    "Msg": State(multi=True),
    "Boom": State(),
}


class Handlers:
    def MsgEnter(self, e) -> bool:  # noqa: N802
        return bool(e.args.get("msg"))

    def BoomEnter(self, e) -> None:  # noqa: N802
        raise ValueError("boom")

    def KeepExit(self, e) -> bool:  # noqa: N802
        return False


def test_each_kind_of_cancel_has_its_reason() -> None:
    m = Machine(SCHEMA, id="m", handlers=Handlers())
    assert mutate_explained(m, ADD, "Msg") == (Result.CANCELED, "by MsgEnter")
    assert mutate_explained(m, ADD, "Foo") == (Result.CANCELED, "Foo requires Bar")
    assert mutate_explained(m, ADD, ["Bar", "Baz"]) == (Result.CANCELED, "Bar is removed by Baz")
    assert mutate_explained(m, ADD, "Boom") == (
        Result.CANCELED,
        "by BoomEnter, which raised ValueError: boom",
    )
    m.add("Keep")
    assert mutate_explained(m, REMOVE, "Keep") == (Result.CANCELED, "by KeepExit")
    assert m.is_active("Keep")
    # accepted ones have none, and the watch is gone after each call
    assert mutate_explained(m, ADD, "Msg", {"msg": "hi"}) == (Result.EXECUTED, "")
    assert mutate_explained(m, SET, ["Bar", "Keep"]) == (Result.EXECUTED, "")
    assert m.tracers == []
    m.dispose()
    assert mutate_explained(m, ADD, "Bar") == (Result.CANCELED, "the machine is disposed")


def test_what_the_handlers_queue_is_not_the_calls_reason() -> None:
    """A handler's mutations run in the same call, after the called one: a canceled one of
    them neither makes the call canceled nor gives it a reason."""

    class Chain(Handlers):
        def BarState(self, e) -> None:  # noqa: N802
            e.machine.add("Msg")  # queued; then refused by MsgEnter (no msg)

        def BooState(self, e) -> None:  # noqa: N802
            e.machine.add("Foo")  # queued; refused (Foo requires Bar)

    m = Machine({**SCHEMA, "Boo": State()}, id="m", handlers=Chain())
    assert mutate_explained(m, ADD, "Bar") == (Result.EXECUTED, "")
    assert m.is_active("Bar") and not m.is_active("Msg")
    m.remove("Bar")
    assert mutate_explained(m, ADD, "Boo") == (Result.EXECUTED, "")
    assert m.is_active("Boo") and not m.is_active("Foo")


def test_the_demo_shows_why_a_mutation_was_canceled() -> None:
    import subprocess
    import sys
    from pathlib import Path

    repo = Path(__file__).resolve().parents[1]
    out = subprocess.run(
        [sys.executable, "-m", "cli.main", "demo"],
        cwd=repo,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    at = next(i for i, ln in enumerate(lines) if ln.startswith("add Water while Sealed"))
    assert "-> canceled" in lines[at]
    assert lines[at + 1].strip().startswith("why: by WetEnter")
