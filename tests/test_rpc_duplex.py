"""Two real OS processes, each a server of its machine and a client of the other's (foo/bar)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import trio

REPO = Path(__file__).resolve().parents[1]
EXAMPLE = [sys.executable, "-m", "machines.rpc.example"]


@pytest.mark.trio
async def test_full_duplex_across_two_processes(tmp_path):
    outputs = {}

    async def side(name, peer):
        cmd = [*EXAMPLE, "duplex", "--name", name, "--peer", peer, "--addr-dir", str(tmp_path)]
        proc = await trio.run_process(
            cmd + ["--timeout", "15"],
            cwd=REPO,
            capture_stdout=True,
            capture_stderr=True,
            check=False,
        )
        outputs[name] = (proc.returncode, proc.stdout.decode(), proc.stderr.decode())

    with trio.fail_after(30):
        async with trio.open_nursery() as n:
            n.start_soon(side, "foo", "bar")
            n.start_soon(side, "bar", "foo")
    for name, peer in (("foo", "bar"), ("bar", "foo")):
        code, out, err = outputs[name]
        assert code == 0, err[-2000:]
        # the peer's mutation ran here, with the peer's machine recorded as its source
        assert f"{name}: Msg 'hello from {peer}' from {peer}" in out
        # our mutation ran there, and the peer's reaction came back as clock pushes
        assert f"{name}: add Msg on {peer} -> executed" in out
        assert f"{name}: done, peer clock {{'Msg': 1, 'Ack': 1}}" in out


@pytest.mark.trio
async def test_readme_example_server_and_client():
    with trio.fail_after(30):
        server = await trio.lowlevel.open_process(
            [*EXAMPLE, "serve", "--addr", "127.0.0.1:0"], cwd=REPO, stdout=subprocess.PIPE
        )
        try:
            line = b""
            while not line.endswith(b"\n"):
                line += await server.stdout.receive_some(1)
            addr = line.decode().split("serving on ")[1].strip()
            client = await trio.run_process(
                [*EXAMPLE, "client", addr, "--msg", "hi"], cwd=REPO, capture_stdout=True
            )
            out = client.stdout.decode()
            assert "bar: mirroring foo:" in out
            assert "bar: add Msg -> executed; clock {" in out and "'Ack': 1" in out
            served = await server.stdout.receive_some(4096)
            assert b"foo: Msg 'hi' from bar" in served
        finally:
            server.kill()
            await server.wait()
