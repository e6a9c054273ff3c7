"""A runnable aRPC example (see the README's aRPC section).

    python -m machines.rpc.example serve --addr 127.0.0.1:7000      # terminal 1
    python -m machines.rpc.example client 127.0.0.1:7000 --msg hi   # terminal 2

`duplex` runs one side of the foo/bar pattern: each process serves its own machine and is a
client of the other's, and each mutates the other (the cross-process test drives two of them).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import trio
import typer

from machines import Machine, State

from . import connect, serve

SCHEMA = {
    "Exception": State(multi=True),
    "ErrOnClient": State(require=["Exception"]),
    "Msg": State(multi=True),
    "Ack": State(),
    "Done": State(),
}

app = typer.Typer(add_completion=False, no_args_is_help=True, help=__doc__.split("\n")[0])


class Printer:
    """Prints each message with its author: the mutation source recorded by the server."""

    def __init__(self, name: str) -> None:
        self.name = name

    def MsgState(self, e) -> None:  # noqa: N802 - handler names follow the state names
        author = e.mutation.source.machine_id if e.mutation.source else "local"
        print(f"{self.name}: Msg {e.args.get('msg')!r} from {author}", flush=True)
        e.machine.add("Ack")


@app.command("serve")
def serve_cmd(
    addr: str = typer.Option("127.0.0.1:7000", help="host:port to listen on"),
    id: str = typer.Option("foo", help="id of the exposed machine"),
) -> None:
    """Expose a machine; print every message a client adds."""

    async def main() -> None:
        mach = Machine(SCHEMA, id=id, handlers=Printer(id))
        async with serve(mach, addr) as mux:
            print(f"{id}: serving on {mux.addr}", flush=True)
            await trio.sleep_forever()

    from cli.listen import run_listening

    run_listening("example serve", addr, "--addr", main)


@app.command("client")
def client_cmd(
    addr: str = typer.Argument(..., help="host:port of the server"),
    id: str = typer.Option("bar", help="client id (recorded as the mutation source)"),
    msg: str = typer.Option("hello", help="message to add"),
) -> None:
    """Connect, add Msg remotely, read the mirrored clock locally."""

    async def main() -> None:
        async with connect(addr, id=id) as client:
            net = client.netmach
            print(f"{id}: mirroring {net.remote_id}: {net.state_names}", flush=True)
            result = await net.add("Msg", {"msg": msg})
            await net.when("Ack")  # answered locally from the mirrored clock
            print(f"{id}: add Msg -> {result}; clock {net.clock()}", flush=True)

    trio.run(main)


@app.command("duplex")
def duplex_cmd(
    name: Annotated[str, typer.Option(help="this side's machine id")],
    peer: Annotated[str, typer.Option(help="the other side's machine id")],
    addr_dir: Annotated[Path, typer.Option(help="directory where both sides write NAME.addr")],
    listen: Annotated[str, typer.Option(help="host:port to listen on")] = "127.0.0.1:0",
    timeout: Annotated[float, typer.Option(help="give up after this many seconds")] = 20.0,
) -> None:
    """One side of the foo/bar pattern: serve NAME, connect to PEER, mutate each other."""

    async def main() -> None:
        mach = Machine(SCHEMA, id=name, handlers=Printer(name))
        with trio.fail_after(timeout):
            async with serve(mach, listen, push_interval=0.01) as mux:
                tmp = addr_dir / f".{name}.addr.tmp"
                tmp.write_text(mux.addr)
                os.replace(tmp, addr_dir / f"{name}.addr")  # the peer never reads half a file
                peer_file = addr_dir / f"{peer}.addr"
                while not peer_file.exists():
                    await trio.sleep(0.02)  # a file appearing has no event to await
                async with connect(peer_file.read_text(), id=f"{name}-client", source=mach) as c:
                    net = c.netmach
                    result = await net.add("Msg", {"msg": f"hello from {name}"})
                    print(f"{name}: add Msg on {net.remote_id} -> {result}", flush=True)
                    await mach.when("Ack")  # the peer's message arrived here
                    await net.when("Ack")  # ours arrived there (pushed back to our mirror)
                    mach.add("Done")
                    await net.when("Done")
                    print(f"{name}: done, peer clock {net.clock(['Msg', 'Ack'])}", flush=True)
                # we said bye; keep serving until the peer has seen our Done and left too
                await mux.wait_idle()

    from cli.listen import run_listening

    run_listening("example duplex", listen, "--listen", main)


if __name__ == "__main__":
    app()
