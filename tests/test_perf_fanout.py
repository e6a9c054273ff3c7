"""Fan-out of clock pushes: shared encoding checked against per-client encoding, coalescing.

A source's servers share a hub (machines.rpc.core.SourceHub): one clock snapshot per change and
one encoded frame per (client's clock, new clock). The sans-IO test replays random source
changes, coalesced pushes and mutation answers on connections of every option set, once with
``push_shared`` and once with the plain ``push``, and requires the same bytes on every wire.
The network tests check that clients end at the exact clock and that idle pushers hold no timer.
"""

from __future__ import annotations

import random

import pytest
import trio

from machines import Machine, State
from machines.rpc import connect, serve
from machines.rpc import protocol as p
from machines.rpc.core import SourceHub
from machines.rpc.server import Server

NAMES = ["Exception", "A", "B", "C", "D", "ErrOnClient"]


class Source:
    """A stand-in for a source machine's exported clock."""

    def __init__(self) -> None:
        self.names = list(NAMES)
        self.time = [0] * len(NAMES)
        self.q = 1
        self.m = 0

    def export(self) -> p.SourceExport:
        return p.SourceExport("src", self.names, list(self.time), self.q, self.m, None)

    def tick(self, *names: str, by: int = 1) -> None:
        for n in names:
            self.time[self.names.index(n)] += by
        self.q += 1


def handshake(src: Source, **kw):
    cli = p.ClientConnection("c1", **kw)
    srv = p.ServerConnection()
    cli.hello()
    (hello,) = srv.receive_data(cli.data_to_send())
    srv.accept_hello(hello.seq, src.export())
    return cli, srv, cli.receive_data(srv.data_to_send())


OPTION_SETS = [
    {},
    {},
    {},
    {"allowed": ["A", "B", "C"]},
    {"skipped": ["B"]},
    {"shallow": True},
    {"no_schema": True, "allowed": ["B", "D"]},
    {"sync_mutations": True},
    {"allowed": ["Exception", "A", "B", "C", "D", "ErrOnClient"]},  # all: shares frames
]


def _opts(o: dict) -> p.SyncOptions:
    return p.SyncOptions(
        o.get("allowed"),
        o.get("skipped"),
        o.get("no_schema", False),
        o.get("shallow", False),
        o.get("sync_mutations", False),
    )


class _Clock:
    """What the hub reads from a source."""

    def __init__(self, src: Source) -> None:
        self.src = src

    def time(self) -> list[int]:
        return list(self.src.time)

    @property
    def queue_tick(self) -> int:
        return self.src.q

    @property
    def machine_tick(self) -> int:
        return self.src.m


@pytest.mark.parametrize("seed", [1, 2, 3, 4, 5])
def test_shared_push_sends_the_bytes_of_a_plain_push(seed):
    rnd = random.Random(seed)
    src = Source()
    hub = SourceHub(_Clock(src))
    shared = [handshake(src, options=_opts(o)) for o in OPTION_SETS]
    plain = [handshake(src, options=_opts(o)) for o in OPTION_SETS]
    encodings = 0
    for step in range(400):
        if rnd.random() < 0.7:
            src.tick(*rnd.sample(src.names, rnd.randint(1, 3)), by=rnd.choice([1, 1, 2]))
            hub.invalidate()  # what the source's tracer does on a transition
        if rnd.random() < 0.1:
            src.q += 1  # a canceled mutation: only the queue tick moves
            hub.invalidate()
        before = len(hub.frames)
        for (cli_s, srv_s, _), (cli_p, srv_p, _) in zip(shared, plain, strict=True):
            r = rnd.random()
            if r < 0.1:  # a mutation answer carries a diff and moves the baseline
                for cli, srv in ((cli_s, srv_s), (cli_p, srv_p)):
                    cli.mutate(0, [cli.mirror.names[-1]])
                    (req,) = srv.receive_data(cli.data_to_send())
                    srv.respond_mutation(req.seq, 0, list(src.time), src.q, src.m)
            elif r < 0.6:  # pushed this round; the others are coalesced into a later one
                got = srv_s.push_shared(hub.snapshot(), hub.frames)
                want = srv_p.push(list(src.time), src.q, src.m)
                assert got == want, step
            data_s, data_p = srv_s.data_to_send(), srv_p.data_to_send()
            assert data_s == data_p, (step, srv_s.options)
            cli_s.receive_data(data_s)
            cli_p.receive_data(data_p)
        encodings += len(hub.frames) - before if len(hub.frames) >= before else len(hub.frames)
    for (cli_s, srv_s, _), (cli_p, srv_p, _) in zip(shared, plain, strict=True):
        srv_s.push_shared(hub.snapshot(), hub.frames)
        srv_p.push(list(src.time), src.q, src.m)
        data = srv_s.data_to_send()
        assert data == srv_p.data_to_send()
        cli_s.receive_data(data)
        cli_p.receive_data(data)
        assert cli_s.mirror.time == cli_p.mirror.time
        assert cli_s.syncs == 0  # every checksum agreed
    for cli, _, _ in shared[:3]:
        assert cli.mirror.time == src.time
    # the plain clients at one clock got one encoding: far fewer than their pushes
    pushes = sum(srv.pushes for _, srv, _ in shared[:3] + shared[-1:])
    assert encodings < pushes


def test_shared_frames_are_one_object_for_clients_at_one_clock():
    src = Source()
    hub = SourceHub(_Clock(src))
    conns = [handshake(src)[:2] for _ in range(5)]
    for _, srv in conns:  # the first push after the handshake is each client's own
        assert not srv.push_shared(hub.snapshot(), hub.frames)
    src.tick("B")
    hub.invalidate()
    snap = hub.snapshot()
    for _, srv in conns:
        assert srv.push_shared(snap, hub.frames)
        assert not srv.push_shared(snap, hub.frames)  # already there
    assert len(hub.frames) == 1
    frame = next(iter(hub.frames.values()))
    for cli, srv in conns:
        assert srv.data_to_send() == frame
        assert cli.receive_data(frame) and cli.mirror.time == src.time


SCHEMA = {
    "A": State(remove=["B"]),
    "B": State(remove=["A"]),
    "C": State(multi=True),
    "D": State(require=["A"]),
}


@pytest.mark.trio
@pytest.mark.parametrize("slow", [False, True])
async def test_many_clients_end_at_the_exact_clock_with_coalesced_pushes(slow, monkeypatch):
    """`slow`: as on a loaded machine, where one slow write paces a pusher for long: the
    clients tracking only B and D (last changed at step 280 with this seed) hold their final
    ticks well before the push with the final queue tick, which their pushers pace for 0.5 s."""
    if slow:
        due = Server._push_due

        def slow_due(self: Server) -> float:
            if self.conn.options.allowed == ["B", "D"] and self.conn._sent_q >= 285:
                return max(due(self), self._written + 0.5)
            return due(self)

        monkeypatch.setattr(Server, "_push_due", slow_due)
    src = Machine(SCHEMA, id="fan-src")
    rnd = random.Random(7)
    n_clients, steps = 30, 300
    with trio.fail_after(60):
        async with serve(src, "127.0.0.1:0", push_interval=0) as mux:
            async with trio.open_nursery() as nursery:
                clients = []

                async def client(i: int) -> None:
                    opts = OPTION_SETS[i % len(OPTION_SETS)]
                    opts = {k: v for k, v in opts.items() if k != "sync_mutations"}
                    async with connect(mux.addr, id=f"f{i}", **opts) as c:
                        clients.append(c)
                        await trio.sleep_forever()

                for i in range(n_clients):
                    nursery.start_soon(client, i)
                await mux.wait_clients(n_clients)
                for _ in range(steps):
                    getattr(src, rnd.choice(["add", "remove"]))(rnd.choice(list(SCHEMA)))
                    await trio.lowlevel.checkpoint()
                want, want_q, want_m = src.clock(), src.queue_tick, src.machine_tick

                def tracked(c, name: str) -> bool:
                    o = c.options
                    return (o.allowed is None or name in o.allowed) and name not in (
                        o.skipped or ()
                    )

                def arrived(c) -> bool:
                    """The client holds the exact clock: the queue and machine ticks (every
                    push carries them) and every tracked tick (its parity when shallow).
                    Tracked ticks alone are not enough: a client that tracks none of the last
                    changed states has them early, while its pusher still paces the push with
                    the last queue tick (sleeping until it is due: a timer, not idle yet)."""
                    mirror = c.conn.mirror
                    if (mirror.queue_tick, mirror.machine_tick) != (want_q, want_m):
                        return False
                    for name in c.netmach.state_names:
                        if tracked(c, name):
                            tick, goal = c.netmach.tick(name), want[name]
                            if (tick % 2 != goal % 2) if c.options.shallow else tick != goal:
                                return False
                    return True

                while not all(arrived(c) for c in clients):
                    await trio.sleep(0.01)
                assert all(c.conn.syncs == 0 for c in clients)  # every checksum agreed
                pushes = sum(s.pushes for s in mux.servers)
                assert pushes < n_clients * steps // 2  # coalesced
                # idle: every client has everything, so every pusher waits for a change
                # without a timer (a pusher still writing is runnable: waited for below)
                hub = mux.servers[0]._hub
                await trio.testing.wait_all_tasks_blocked()
                assert len(hub._idle) == n_clients
                assert all(s._hub is hub for s in mux.servers)
                nursery.cancel_scope.cancel()


@pytest.mark.trio
@pytest.mark.parametrize("interval", [0, 0.05])
async def test_a_change_in_the_handshakes_turn_is_pushed(interval):
    """The source changes right after the hello was answered, before the pusher task first
    runs (here: in an `on_handshake` callback; in an app: any task of the same scheduling
    turn). The pusher is registered idle at the handshake itself, so that change wakes it and
    the client gets it without waiting for another change."""
    src = Machine(SCHEMA, id="hs-src")

    def factory(mux, sid: str) -> Server:
        server = Server(src, id=f"rs-{sid}", parent=mux.mach, push_interval=interval)
        server.on_handshake.append(lambda: src.add("C"))
        return server

    with trio.fail_after(10):
        async with serve(src, factory=factory) as mux, connect(mux.addr, id="hs") as c:
            await c.netmach.when("C")
            assert c.conn.mirror.queue_tick == src.queue_tick
            server = mux.servers[0]
            await trio.testing.wait_all_tasks_blocked()
            assert server in server._hub._idle  # and waits for the next change without a timer
