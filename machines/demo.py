"""A short, printed tour of the machine API (``am demo``)."""

from __future__ import annotations

import trio

from . import Machine, Result, State
from .explain import mutate_explained
from .mutation import MutationType
from .states import basic_schema

SCHEMA = basic_schema(
    {
        "Dry": State(remove=["Water"]),
        "Water": State(add=["Wet"], remove=["Dry"]),
        "Wet": State(require=["Water"]),
        "Msg": State(multi=True),
        "Sealed": State(),
    }
)


class Handlers:
    """Code is bound to states, not transitions."""

    def WetEnter(self, e) -> bool:
        # negotiation: refuse getting wet while sealed
        return not e.machine.is_active("Sealed")

    def WetState(self, e) -> None:
        print("    WetState: it got wet; queueing a message")
        print(f"    add from a handler is queued, result: {e.machine.add('Msg', {'text': 'wet'})}")

    def MsgState(self, e) -> None:
        print(f"    MsgState: {e.args.get('text')!r}")


def run() -> None:
    m = Machine(SCHEMA, id="demo", handlers=Handlers())

    def show(what: str, result: object = None) -> None:
        res = f" -> {result}" if result is not None else ""
        print(f"{what:<34}{res:<14} {m.string()}")

    show("new machine")
    show("add Start", m.add("Start"))
    show("add Dry", m.add("Dry"))
    show("add Water (removes Dry, adds Wet)", m.add("Water"))
    show("add Msg (multi: ticks by 2)", m.add("Msg", {"text": "hi"}))
    show("set Sealed", m.set(["Start", "Sealed"]))
    result, why = mutate_explained(m, MutationType.ADD, "Water")
    show("add Water while Sealed", result)
    print(f"    why: {why} (machines.explain.mutate_explained)")
    print(f"{'clock':<34}{'':<14} {m.clock(['Water', 'Wet', 'Msg'])}")
    show("add Ready (requires Start)", m.add("Ready"))
    show("unknown state", _try(lambda: m.add("Nope")))

    async def waiting() -> None:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_later_remove_sealed, m)
            await m.when("Wet")
            show("await when('Wet') under trio")

    trio.run(waiting)
    assert m.is_active("Water", "Wet") and m.add("Dry") == Result.EXECUTED
    show("add Dry", Result.EXECUTED)


async def _later_remove_sealed(m: Machine) -> None:
    await trio.sleep(0.01)
    m.remove("Sealed")
    m.add("Water")


def _try(fn) -> str:
    try:
        fn()
    except ValueError as err:
        return f"ValueError: {err}"
    return "no error"


if __name__ == "__main__":
    run()
