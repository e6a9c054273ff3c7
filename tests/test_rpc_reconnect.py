"""Connection loss: fail fast while disconnected, reconnect with backoff, resync the full clock."""

from __future__ import annotations

import socket
from functools import partial

import pytest
import trio

from machines import Machine, Result, State
from machines.rpc import RpcConnectionLost, RpcNotConnected, connect, serve
from machines.rpc.client import Client
from machines.rpc.endpoint import ClientEndpoint, ServerEndpoint
from machines.rpc.server import Server

TIMEOUT = 10
SCHEMA = {
    "Exception": State(multi=True),
    "A": State(),
    "B": State(),
    "C": State(),
    "D": State(),
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.trio
async def test_client_retries_until_the_server_appears():
    addr = f"127.0.0.1:{free_port()}"
    src = Machine(SCHEMA, id="src")
    client = Client(addr, id="c1", retry_delay=0.02, retry_max_delay=0.1)
    with trio.fail_after(TIMEOUT):
        async with trio.open_nursery() as n:
            n.start_soon(client.run)
            # the lifecycle machine counts: tick 5 = Connecting's third activation
            await client.mach.when_time(["Connecting"], [5])
            assert client.attempts >= 3
            assert not client.connected and "connect failed" in client.last_error
            assert client.mach.tick("ErrNetwork") >= 2 and not client.mach.is_active("Ready")
            with pytest.raises(RpcNotConnected, match="not connected to 127.0.0.1"):
                await client.netmach.add("A")
            async with serve(src, addr):
                with trio.fail_after(5):
                    await client.mach.when("Ready")
                assert not client.mach.is_active("RetryingConn")
                assert await client.netmach.add("A") == Result.EXECUTED
                assert src.is_active("A")
                await client.aclose()
            n.cancel_scope.cancel()


@pytest.mark.trio
async def test_server_restart_fails_fast_then_reconnects_and_resyncs():
    src = Machine(SCHEMA, id="src")
    addr = f"127.0.0.1:{free_port()}"
    client = Client(addr, id="c1", retry_delay=0.02, retry_max_delay=0.2)
    net = client.netmach
    with trio.fail_after(TIMEOUT):
        async with trio.open_nursery() as n:
            async with serve(src, addr):
                n.start_soon(client.run)
                await client.wait_connected()
                await net.add("A")
            # the server is gone (listener and sessions closed)
            await client.wait_disconnected()
            t0 = trio.current_time()
            with pytest.raises(RpcNotConnected, match="c1: not connected to 127.0.0.1"):
                await net.add("B")
            assert trio.current_time() - t0 < 0.1  # fails fast, never hangs
            assert net.is_active("A")  # reads keep answering the last known clock
            # the source moves on while the client is away
            src.remove("A")
            src.add(["C", "D"])
            async with serve(src, addr):
                with trio.fail_after(5):
                    await client.wait_connected()
                assert client.connects == 2
                assert net.active_states == ["C", "D"] and net.clock() == src.clock()
                assert await net.add("B") == Result.EXECUTED
                assert net.is_active("B")
                await client.aclose()
            n.cancel_scope.cancel()


@pytest.mark.trio
async def test_call_in_flight_when_the_connection_drops_raises():
    holder = {}

    class H:
        def DState(self, e):
            holder["mux"].servers[0].close()  # drop the session before the answer goes out

    src = Machine(SCHEMA, id="src", handlers=H())
    with trio.fail_after(TIMEOUT):
        async with serve(src, "127.0.0.1:0") as mux:
            holder["mux"] = mux
            async with connect(mux.addr, id="c1", reconnect=False) as client:
                t0 = trio.current_time()
                with pytest.raises(RpcConnectionLost, match="connection to 127.0.0.1:.* lost"):
                    await client.netmach.add("D")
                assert trio.current_time() - t0 < 1
                with pytest.raises(RpcNotConnected):
                    await client.netmach.add("A")


@pytest.mark.trio
async def test_backoff_limits_attempts(jump_clock):
    """A rate over a fixed window, on a MockClock: the window is exact, whatever the load."""
    addr = f"127.0.0.1:{free_port()}"
    client = Client(addr, id="c1", retry_delay=0.05, retry_max_delay=0.4)
    with trio.fail_after(TIMEOUT):
        async with trio.open_nursery() as n:
            n.start_soon(client.run)
            await trio.sleep(1.0)
            n.cancel_scope.cancel()
    # attempts at 0, 0.05, 0.15, 0.35, 0.75 (delays 0.05, 0.1, 0.2, 0.4): not hundreds
    assert client.attempts == 5, client.attempts


@pytest.mark.trio
async def test_connect_gives_up_with_a_clear_error():
    addr = f"127.0.0.1:{free_port()}"
    with trio.fail_after(TIMEOUT):
        with pytest.raises(RpcNotConnected, match=r"no handshake with .* in 0.3s \(connect failed"):
            async with connect(addr, id="c1", ready_timeout=0.3, retry_delay=0.02):
                pass


async def _silent(stream: trio.abc.Stream) -> None:
    """A peer that accepts and reads but never answers (a wrong port, a hung process)."""
    while await stream.receive_some(65536):
        pass


@pytest.mark.trio
async def test_a_server_that_never_answers_the_hello_is_given_up_on():
    with trio.fail_after(TIMEOUT):
        async with trio.open_nursery() as n:
            listeners = await n.start(partial(trio.serve_tcp, host="127.0.0.1"), _silent, 0)
            addr = f"127.0.0.1:{listeners[0].socket.getsockname()[1]}"
            # one attempt: a one-line error naming the address, well before ready_timeout
            t0 = trio.current_time()
            with pytest.raises(RpcNotConnected) as info:
                async with connect(addr, id="c1", handshake_timeout=0.3, reconnect=False):
                    pass
            assert trio.current_time() - t0 < 5
            msg = str(info.value)
            assert f"no handshake from {addr} in 0.3 s" in msg and "\n" not in msg
            # a long-lived client (the REPL's) is listed as disconnected, with the reason, and
            # keeps retrying: every attempt is bounded
            client = Client(addr, id="c2", handshake_timeout=0.2, retry_delay=0.01)
            n.start_soon(client.run)
            await client.wait_until(lambda: client.attempts >= 3)
            assert not client.connected
            assert client.last_error == f"no handshake from {addr} in 0.2 s"
            n.cancel_scope.cancel()


@pytest.mark.trio
async def test_the_handshake_timeout_ends_with_the_handshake():
    src = Machine(SCHEMA, id="src")
    with trio.fail_after(TIMEOUT):
        async with serve(src, "127.0.0.1:0") as mux:
            async with connect(mux.addr, id="c1", handshake_timeout=0.2) as c:
                await trio.sleep(0.5)  # well past it: a handshaken session is not timed
                assert await c.netmach.add("A") == Result.EXECUTED
                assert c.connected and c.connects == 1 and c.last_error == ""


@pytest.fixture
def frozen_clock() -> trio.testing.MockClock:
    """Time moves only when the test says (a loaded machine's late wake-ups, on cue)."""
    return trio.testing.MockClock()


@pytest.mark.trio
async def test_a_handshake_noticed_after_its_deadline_still_counts(frozen_clock):
    """On a busy machine the client's task may wake after the hello's deadline with the
    handshake in hand (the answer came in time, the process got the CPU late): the session is
    handshaken and stays up, not closed as "no handshake" (the server's slot wasted)."""
    src = Machine(SCHEMA, id="src")
    to_server = trio.testing.MemorySendStream()
    from_server = trio.testing.MemoryReceiveStream()
    answers: list[bytes] = []
    server = ServerEndpoint(src, answers.append, push_interval=None)
    server.connection_made()
    client = Client(id="c1", stream=trio.StapledStream(to_server, from_server), handshake_timeout=3)
    async with trio.open_nursery() as n:
        n.start_soon(client.run)
        await trio.testing.wait_all_tasks_blocked()
        assert server.receive(to_server.get_data_nowait())  # the hello
        frozen_clock.jump(2.9)
        from_server.put_data(b"".join(answers))  # in time: the reader is woken...
        frozen_clock.jump(0.6)  # ...but runs only after the deadline has passed
        await trio.testing.wait_all_tasks_blocked()
        assert client.connected, client.last_error
        assert client.last_error == ""
        n.cancel_scope.cancel()


@pytest.mark.trio
async def test_a_hello_read_in_the_deadlines_turn_keeps_its_session(frozen_clock):
    """The server's side of the same: the hello came in time, but the server's process ran
    its reader and its handshake timer in the same turn, after the deadline. Whichever task
    runs first (trio picks), the session is handshaken and stays up."""
    src = Machine(SCHEMA, id="src")
    for _ in range(8):  # both orders of the two tasks, very likely
        server_end, client_end = trio.testing.memory_stream_pair()
        server = Server(src, handshake_timeout=10, push_interval=None)
        to_server: list[bytes] = []
        client = ClientEndpoint("c1", to_server.append)
        async with trio.open_nursery() as n:
            n.start_soon(server.serve, server_end)
            await trio.testing.wait_all_tasks_blocked()
            client.connection_made()
            frozen_clock.jump(9.9)
            await client_end.send_all(b"".join(to_server))  # the hello, in time...
            frozen_clock.jump(0.6)  # ...read only after the deadline
            await trio.testing.wait_all_tasks_blocked()
            assert not server.closed.is_set(), server.close_reason
            assert server.handshake_done.is_set()
            n.cancel_scope.cancel()
