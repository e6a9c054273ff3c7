"""One conformance suite for the machine API (machines.api.MachineApi), run against a local
Machine and against a NetMach mirroring a machine over a real loopback aRPC connection."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import pytest
import trio
import trio.testing

from machines import Machine, MachineApi, Result, State, settle
from machines.rpc import connect, serve

TIMEOUT = 10
SCHEMA = {"A": State(), "B": State(), "C": State(add=["A"])}


class SourceLog:
    """Handlers of the served machine: which machine caused each BState."""

    def __init__(self) -> None:
        self.sources: list[str | None] = []

    def BState(self, e: Any) -> None:
        src = e.mutation.source
        self.sources.append(src.machine_id if src else None)


@dataclass
class Subject:
    api: MachineApi  # what the test drives: the machine itself, or its mirror
    src: Machine  # the machine that holds the state
    log: SourceLog

    async def settled(self) -> None:
        """The mirror shows every change of ``src`` (a local machine is its own state)."""
        if self.api is self.src:
            return
        await self.api.when_query(lambda clock: clock == self.src.clock())


@pytest.fixture(params=["local", "net"])
async def subject(request: pytest.FixtureRequest) -> AsyncIterator[Subject]:
    log = SourceLog()
    src = Machine(SCHEMA, id="src", handlers=log)
    if request.param == "local":
        yield Subject(src, src, log)
        return
    with trio.fail_after(TIMEOUT):
        async with serve(src, "127.0.0.1:0", push_interval=0) as mux:
            async with connect(mux.addr, id="c1") as client:
                yield Subject(client.netmach, src, log)


@pytest.mark.trio
async def test_both_are_machine_apis(subject: Subject) -> None:
    assert isinstance(subject.api, MachineApi)
    assert subject.api.state_names == subject.src.state_names
    assert set(subject.api.schema) == set(subject.src.schema)


@pytest.mark.trio
async def test_when_takes_states_as_arguments(subject: Subject) -> None:
    api = subject.api
    with trio.fail_after(TIMEOUT):
        both, gone = trio.Event(), trio.Event()
        async with trio.open_nursery() as nursery:

            async def waiter() -> None:
                await api.when("A", "B")
                both.set()
                await api.when_not("A", "B")
                gone.set()

            nursery.start_soon(waiter)
            await trio.testing.wait_all_tasks_blocked()
            assert await settle(api.add("A")) == Result.EXECUTED
            await trio.testing.wait_all_tasks_blocked()
            assert not both.is_set()  # one of two is not enough
            assert await settle(api.add("B")) == Result.EXECUTED
            await both.wait()
            await api.when(["A"], "B")  # a list and names mix
            assert await settle(api.remove(["A", "B"])) == Result.EXECUTED
            await gone.wait()
    assert api.not_active("A", "B")


QUERIES: list[Callable[[MachineApi], Any]] = [
    lambda m: m.is_active("A", "Nope"),
    lambda m: m.any_active("Nope"),
    lambda m: m.not_active(["Nope"]),
    lambda m: m.index("Nope"),
    lambda m: m.tick("Nope"),
    lambda m: m.clock(["Nope"]),
    lambda m: m.when("Nope"),
    lambda m: m.when_not("A", "Nope"),
    lambda m: m.when_ticks("Nope", 1),
    lambda m: m.switch("A", "Nope"),
    lambda m: m.is_clock({"Nope": 1}),
]


@pytest.mark.trio
@pytest.mark.parametrize("query", QUERIES)
async def test_unknown_states_raise_naming_them(subject: Subject, query: Callable) -> None:
    with pytest.raises(ValueError, match="Nope"):
        got = query(subject.api)
        if hasattr(got, "__await__"):  # a NetMach's async wait checks when awaited
            await got


@pytest.mark.trio
@pytest.mark.parametrize("mutate", ["add", "remove", "set"])
async def test_unknown_states_in_mutations_raise(subject: Subject, mutate: str) -> None:
    before = subject.src.clock()
    with trio.fail_after(TIMEOUT), pytest.raises(ValueError, match="Nope"):
        await settle(getattr(subject.api, mutate)(["A", "Nope"]))
    assert subject.src.clock() == before
    assert subject.api.has("A", ["B"]) and not subject.api.has("Nope")


@pytest.mark.trio
async def test_on_change_returns_an_unsubscribe_function(subject: Subject) -> None:
    api, seen = subject.api, []
    unsubscribe = api.on_change(lambda mach, before, after: seen.append((mach, before, after)))
    with trio.fail_after(TIMEOUT):
        await settle(api.add("C"))  # adds A too
        await subject.settled()
        assert len(seen) == 1
        mach, before, after = seen[0]
        assert mach is api and before != after
        assert after == api.time()
        unsubscribe()
        await settle(api.remove("C"))
        await subject.settled()
    assert len(seen) == 1
    unsubscribe()  # twice is harmless


@pytest.mark.trio
async def test_handlers_detach_takes_what_bind_returned(subject: Subject) -> None:
    api, calls = subject.api, []

    class Handlers:
        def AState(self, e: Any) -> None:
            calls.append(e.machine)

    gid = api.handlers_bind(Handlers())
    assert isinstance(gid, str)
    with trio.fail_after(TIMEOUT):
        await settle(api.add("A"))
        await subject.settled()
        assert calls == [api]
        api.handlers_detach(gid)
        await settle(api.remove("A"))
        await settle(api.add("A"))
        await subject.settled()
    assert calls == [api]
    with pytest.raises(ValueError, match=gid):
        api.handlers_detach(gid)


@pytest.mark.trio
async def test_a_handler_event_is_a_mutation_source(subject: Subject) -> None:
    events: list[Any] = []

    class Driver:
        def GoState(self, e: Any) -> None:
            events.append(e)

    driver = Machine({"Go": State()}, id="driver", handlers=Driver())
    driver.add("Go")
    with trio.fail_after(TIMEOUT):
        assert await settle(subject.api.add("B", source=events[0])) == Result.EXECUTED
    assert subject.log.sources == ["driver"]
