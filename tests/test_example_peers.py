"""The example's server and its browser program in one trio run: the browser side runs as
headless peers (trio-websocket over the real relay), exactly what ``am start --bars`` runs.
The same program in Chromium is tested in test_example_browser.py."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from contextlib import AsyncExitStack, asynccontextmanager
from functools import partial
from pathlib import Path

import pytest
import trio
from test_relay_static import get

from machines.example.browser import BrowserBar
from machines.example.config import Config
from machines.example.server import find_exception, run_server
from machines.example.trio_io import HeadlessUI, TrioHost

pytestmark = pytest.mark.timeout(60)
REPO = Path(__file__).resolve().parents[1]
#: what web/build_page.py copies from npm's pyodide, and the wheel it caches
PYODIDE_FILES = ("pyodide.mjs", "pyodide.asm.mjs", "pyodide.asm.wasm", "python_stdlib.zip",
                 "pyodide-lock.json")  # fmt: skip
CBOR2_WHEEL = "cbor2-5.9.0-py3-none-any.whl"


def config(tmp_path: Path, **kw: float) -> Config:
    return Config(
        foo_tcp_addr="127.0.0.1:0",
        foo_repl_addr="127.0.0.1:0",
        bar_repl_addr="127.0.0.1:0",
        relay_http_addr="127.0.0.1:0",
        repl_dir=str(tmp_path / "tmp"),
        **kw,
    )


async def start_peer(nursery: trio.Nursery, url: str, cfg: Config) -> tuple[BrowserBar, HeadlessUI]:
    ui = HeadlessUI()
    peer = BrowserBar(TrioHost(nursery, url.replace("http://", "ws://")), ui, cfg)
    await peer.start()
    await peer.bar.when("Ready")
    return peer, ui


@pytest.mark.trio
async def test_messages_reach_the_server_and_every_other_peer(tmp_path: Path) -> None:
    lines: list[str] = []
    cfg = config(tmp_path)
    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            server = await nursery.start(run_server, cfg, None, lines.append)
            a, ui_a = await start_peer(nursery, server.url, cfg)
            b, ui_b = await start_peer(nursery, server.url, cfg)
            await server.browsers.wait_until(lambda br: len(br.ready()) == 2)
            assert "[bar] StartState" in ui_a.lines
            ui_a.type("hi there")
            await ui_b.wait_for(lambda ui: f"[{a.bar.id}] hi there" in ui.lines)
            assert f"[{a.bar.id}] hi there" in lines
            assert "[bar] hi there" in ui_a.lines
            assert not any("hi there" in line and a.bar.id in line for line in ui_a.lines)
            # an empty message is refused: nothing appended, nothing sent
            before_a, before_srv = list(ui_a.lines), list(lines)
            ui_a.type("   ")
            ui_a.type("after")
            await ui_b.wait_for(lambda ui: f"[{a.bar.id}] after" in ui.lines)
            assert ui_a.lines.count("[bar]    ") == 0
            assert [x for x in ui_a.lines if x not in before_a] == ["[bar] after"]
            assert [x for x in lines if x not in before_srv] == [f"[{a.bar.id}] after"]
            # REPL address files: the server's, and each peer's tunnel (written by the relay)
            repl_dir = Path(cfg.repl_dir)
            assert (repl_dir / "server-foo-repl.addr").read_text().startswith("127.0.0.1:")
            for peer in (a, b):
                f = repl_dir / f"repl-{peer.bar.id}.addr"
                with trio.fail_after(5):
                    while not f.exists():
                        await trio.sleep(0.05)
            nursery.cancel_scope.cancel()
    assert not list(Path(cfg.repl_dir).glob("*.addr"))


@pytest.mark.trio
async def test_hellos_and_boredom_reach_every_peer(tmp_path: Path) -> None:
    lines: list[str] = []
    cfg = config(tmp_path, foo_hello_interval=0.5, foo_bored_after=1.0)
    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            server = await nursery.start(run_server, cfg, None, lines.append)
            peers = [await start_peer(nursery, server.url, cfg) for _ in range(2)]
            for _, ui in peers:
                await ui.wait_for(lambda ui: "[server-foo] hello" in ui.lines)
            assert "[server-foo] hello" in lines
            for peer, ui in peers:
                await ui.wait_for(lambda ui: "foo is bored..." in ui.lines)
                assert peer.foo.is_active("Bored")
            assert "foo is bored..." in lines
            nursery.cancel_scope.cancel()


@pytest.mark.trio
async def test_a_tab_joining_a_bored_server_says_so_before_its_start(tmp_path: Path) -> None:
    """The reference's init order: the handler machine is set to server-foo's states (its
    BoredState runs) before Start is added on bar (spec wasm-example.md section 2, steps 7
    and 8), so a tab that joins a bored server-foo shows ``foo is bored...`` first."""
    lines: list[str] = []
    cfg = config(tmp_path, foo_hello_interval=1000, foo_bored_after=0.2)
    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            server = await nursery.start(run_server, cfg, None, lines.append)
            await server.foo.when("Bored")  # no tab yet: no hello can end it
            _, ui = await start_peer(nursery, server.url, cfg)
            assert list(ui.lines)[:2] == ["foo is bored...", "[bar] StartState"]
            nursery.cancel_scope.cancel()


@pytest.mark.trio
async def test_garbage_on_either_tunnel_closes_only_that_connection(tmp_path: Path) -> None:
    from trio_websocket import ConnectionClosed, open_websocket_url

    lines: list[str] = []
    cfg = config(tmp_path)
    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            server = await nursery.start(run_server, cfg, None, lines.append)
            a, ui_a = await start_peer(nursery, server.url, cfg)
            b, ui_b = await start_peer(nursery, server.url, cfg)
            base = server.url.replace("http://", "ws://").rstrip("/")
            for path in ("/listen/browser-bar-bad1/localhost:1", "/dial/browser-foo-bad1/x:1"):
                async with open_websocket_url(base + path) as ws:
                    await ws.send_message(b"\xff" * 64 + b"not a frame")
                    with pytest.raises(ConnectionClosed):
                        while True:  # the server may answer with an error first
                            await ws.get_message()
            assert "browser-bar-bad1" not in server.browsers.clients
            ui_a.type("still here")
            await ui_b.wait_for(lambda ui: f"[{a.bar.id}] still here" in ui.lines)
            assert f"[{a.bar.id}] still here" in lines
            nursery.cancel_scope.cancel()


def test_config_from_env_file_and_environment(tmp_path: Path) -> None:
    from machines.example.config import load

    env = tmp_path / ".env"
    env.write_text("FOO_TCP_ADDR=localhost:15000\nFOO_BORED_AFTER=3\nAM_DBG_ADDR=1\n")
    cfg = load(env, {"FOO_BORED_AFTER": "2.5"})
    assert cfg.foo_tcp_addr == "localhost:15000"  # from the file
    assert cfg.foo_bored_after == 2.5  # the environment wins
    assert cfg.foo_hello_interval == 10  # the reference's default
    assert cfg.relay_http_addr == "localhost:12733"
    assert cfg.page()["env"] == {"AM_DBG_ADDR": "1"}
    with pytest.raises(ValueError, match="FOO_HELLO_INTERVAL"):
        load(None, {"FOO_HELLO_INTERVAL": "soon"})


@pytest.mark.parametrize(
    ("var", "value"),
    [("FOO_TCP_ADDR", "bogus"), ("RELAY_HTTP_ADDR", "localhost:99999"),
     ("BAR_REPL_ADDR", "localhost"), ("AM_DBG_ADDR", "6831")],
)  # fmt: skip
def test_a_bad_address_is_one_line_naming_its_variable(
    tmp_path: Path, var: str, value: str
) -> None:
    """Caught at load, before anything listens: `am start` says which variable, exits 2 (it
    was a traceback from whichever listener read the address first)."""
    from machines.example.config import load

    with pytest.raises(ValueError, match=f"^{var}: bad address"):
        load(None, {var: value})
    assert load(None, {"AM_DBG_ADDR": "1"}).page()["env"] == {"AM_DBG_ADDR": "1"}
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AM_", "RELAY_", "FOO_"))}
    res = subprocess.run(
        [sys.executable, "-m", "cli.main", "start"],
        capture_output=True, text=True, timeout=60, check=False, cwd=tmp_path,
        env={**env, "PYTHONPATH": str(REPO), var: value},
    )  # fmt: skip
    assert res.returncode == 2, res.stderr
    line = res.stderr.strip()
    assert "\n" not in line and "Traceback" not in line, res.stderr
    assert line.startswith(f"am start: {var}: bad address {value!r}"), line
    assert not (tmp_path / "tmp").exists()  # nothing started, no address file


@pytest.mark.trio
async def test_a_previous_runs_address_files_go_once_the_server_listens(tmp_path: Path) -> None:
    """A killed run's files are removed (``am repl --dir`` would list dead machines), but only
    once this server listens: a second ``am start`` that fails on a busy port leaves the
    running one's files alone (``task start`` removed them first, and the REPL found none)."""
    import dataclasses

    from machines.example.server import StartError

    repl_dir = tmp_path / "tmp"
    repl_dir.mkdir()
    dead_tab = repl_dir / "repl-browser-bar-dead.addr"
    dead_tab.write_text("127.0.0.1:1\n")
    (repl_dir / "server-foo-repl.addr").write_text("127.0.0.1:1\n")
    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            first = await nursery.start(partial(run_server, config(tmp_path), None, print))
            assert not dead_tab.exists()
            own = (repl_dir / "server-foo-repl.addr").read_text().strip()
            assert own.endswith(f":{first.repl.addr.rsplit(':', 1)[1]}"), own
            # a tab of the running server, then a second server on the same addresses
            tab = repl_dir / "repl-browser-bar-live.addr"
            tab.write_text("127.0.0.1:2\n")
            second = dataclasses.replace(
                config(tmp_path), foo_repl_addr=first.repl.addr, relay_http_addr=first.relay.addr
            )
            with pytest.raises(BaseException) as failed:
                await nursery.start(partial(run_server, second, None, print))
            assert find_exception(failed.value, StartError) is not None, failed.value
            assert tab.exists()
            assert (repl_dir / "server-foo-repl.addr").read_text().strip() == own
            nursery.cancel_scope.cancel()


@pytest.mark.trio
async def test_each_server_hands_its_page_its_own_config(tmp_path: Path) -> None:
    """``/config.json`` comes from the process's memory: two servers never share it."""
    import dataclasses
    import json

    from tests.test_relay_static import get

    cfg_a = config(tmp_path / "a")
    cfg_b = dataclasses.replace(config(tmp_path / "b"), env={"AM_DBG_ADDR": "1"})
    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            a = await nursery.start(partial(run_server, cfg_a, None, print, build="dev"))
            b = await nursery.start(partial(run_server, cfg_b, None, print, build="prod"))
            got_a = json.loads((await get(a.relay.addr, "/config.json"))[2])
            got_b = json.loads((await get(b.relay.addr, "/config.json"))[2])
            assert got_a == {**cfg_a.page(), "build": "dev"}
            assert got_b == {**cfg_b.page(), "build": "prod"}
            assert got_a["env"] != got_b["env"]
            nursery.cancel_scope.cancel()


@pytest.mark.trio
async def test_repl_endpoints_of_the_server_and_of_a_tab(tmp_path: Path) -> None:
    """What ``am repl --dir tmp`` does: dial each address file and mutate the machine."""
    from machines.rpc import connect

    lines: list[str] = []
    cfg = config(tmp_path)
    repl_dir = Path(cfg.repl_dir)
    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            server = await nursery.start(run_server, cfg, None, lines.append)
            a, ui_a = await start_peer(nursery, server.url, cfg)
            tab_file = repl_dir / f"repl-{a.bar.id}.addr"
            while not tab_file.exists():
                await trio.sleep(0.05)  # written by the relay when the tab's tunnel opens
            async with connect(tab_file.read_text(), id="repl-test") as repl:
                assert repl.netmach.remote_id == a.bar.id
                await repl.netmach.add("Msg", {"Msg.Msg": "via the tab's REPL"})
                await ui_a.wait_for(lambda ui: "[repl-test] via the tab's REPL" in ui.lines)
            foo_file = repl_dir / "server-foo-repl.addr"
            async with connect(foo_file.read_text(), id="repl-test") as repl:
                assert repl.netmach.remote_id == "server-foo"
                await repl.netmach.add("Msg", {"Msg.Msg": "via foo's REPL"})
                # the server prints it and, beyond the reference, every tab gets it
                await ui_a.wait_for(lambda ui: "[repl-test] via foo's REPL" in ui.lines)
            assert "[repl-test] via foo's REPL" in lines
            nursery.cancel_scope.cancel()


@pytest.mark.trio
async def test_the_relay_serves_the_page_and_nothing_else_of_web(tmp_path: Path) -> None:
    """Every file a built page's manifest names is served; the build scripts and the wheel
    cache in the same folder are 404."""
    web = REPO / "web"
    manifests = sorted(web.glob("build/*/manifest.json"))
    assert manifests, "the page is not built: run `task build`"
    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            server = await nursery.start(run_server, config(tmp_path), web, lambda _: None)
            addr = server.url.removeprefix("http://").rstrip("/")
            for path in ("/", "/index.html", "/main.mjs", "/config.json"):
                assert (await get(addr, path))[0] == 200, path
            for manifest in manifests:
                page = json.loads(manifest.read_bytes())
                wanted = [f"/{page['pyodide']}{name}" for name in PYODIDE_FILES]
                wanted += [f"/{p}" for p in (*page.get("wheels", ()), page.get("snapshot"),
                                              page.get("site")) if p]  # fmt: skip
                wanted.append("/" + manifest.relative_to(web).as_posix())
                for path in wanted:
                    assert (await get(addr, path, "HEAD"))[0] == 200, path
            hidden = ["/build_page.py", "/build_prod.py", "/snapshot.mjs", "/build/",
                      "/build/cache/" + CBOR2_WHEEL, "/build/dev/", "/web/index.html"]  # fmt: skip
            assert all((web / p.removeprefix("/")).exists() for p in hidden[:5]), hidden
            for path in hidden:
                assert (await get(addr, path))[0] == 404, path
            nursery.cancel_scope.cancel()


@pytest.mark.trio
async def test_a_peer_serves_several_repls_at_once(tmp_path: Path) -> None:
    """A REPL that comes while another is connected is served too (each over its own listen
    tunnel of the peer's REPL id, on the same address), not left without a handshake."""
    from machines.rpc.client import connect

    cfg = config(tmp_path)
    with trio.fail_after(40):
        async with trio.open_nursery() as nursery:
            server = await nursery.start(run_server, cfg, None, lambda _: None)
            peer, _ = await start_peer(nursery, server.url, cfg)
            path = Path(cfg.repl_dir) / f"repl-{peer.bar.id}.addr"
            while not path.exists():
                await trio.sleep(0.05)
            addr = path.read_text()
            async with AsyncExitStack() as stack:
                clients = []
                for n in range(3):  # each connects while the ones before stay connected
                    c = await stack.enter_async_context(connect(addr, id=f"r{n}", ready_timeout=5))
                    clients.append(c)
                assert [c.netmach.remote_id for c in clients] == [peer.bar.id] * 3
                assert peer.repl_serving == 3
                before = peer.bar.tick("Msg")
                await clients[2].netmach.add("Msg", {"Msg.Msg": "from r2"})
                assert peer.bar.tick("Msg") > before
                while clients[0].netmach.tick("Msg") <= before:  # pushed to the others
                    await trio.sleep(0.02)
            assert path.read_text() == addr
            # all gone: one tunnel waits for the next REPL, and stays (no two keepers that
            # replace each other's tunnel at the relay)
            while peer.repl_serving or peer.repl_waiting != 1:
                await trio.sleep(0.02)

            def repl_tunnels() -> list:
                return [t for t in server.relay.tunnels if t.request.id == f"repl-{peer.bar.id}"]

            while len(repl_tunnels()) != 1:
                await trio.sleep(0.02)
            idle = repl_tunnels()
            await trio.sleep(1)
            assert repl_tunnels() == idle and peer.repl_waiting == 1
            async with connect(addr, id="again", ready_timeout=5) as c:
                assert c.netmach.remote_id == peer.bar.id
            nursery.cancel_scope.cancel()


class _FakeHost:
    """Tunnels that a test opens, feeds and closes by hand (no relay); ``fail`` refuses."""

    def __init__(self, nursery: trio.Nursery) -> None:
        self.nursery = nursery
        self.fail = False
        self.open_now: list[_FakeSocket] = []
        self.most_idle = 0  # the most tunnels ever open at once with no REPL yet

    @asynccontextmanager
    async def open(self, path: str):
        await trio.sleep(0.01)
        if self.fail:
            raise ConnectionError("refused")
        sock = _FakeSocket()
        self.open_now.append(sock)
        self.most_idle = max(self.most_idle, len(self.idle()))
        try:
            yield sock
        finally:
            self.open_now.remove(sock)

    def idle(self) -> list[_FakeSocket]:
        return [s for s in self.open_now if not s.got]

    def spawn(self, fn, *args) -> None:
        self.nursery.start_soon(fn, *args)

    async def sleep(self, seconds: float) -> None:
        await trio.sleep(seconds)

    def call_later(self, delay: float, fn) -> None:
        raise AssertionError("not used")


class _FakeSocket:
    def __init__(self) -> None:
        self.send_ch, self.recv_ch = trio.open_memory_channel[bytes | None](10)
        self.got = False

    def send(self, data: bytes) -> None:
        pass

    async def receive(self) -> bytes | None:
        data = await self.recv_ch.receive()
        self.got = True
        return data


@pytest.mark.trio
async def test_repl_keepers_never_wait_twice_even_when_tunnels_fail(tmp_path: Path) -> None:
    """A REPL comes: a second tunnel waits for the next. That tunnel fails to open while the
    first REPL leaves: still one waiting tunnel at most (two would replace each other at the
    relay forever), and exactly one once the relay takes tunnels again."""

    async def session(sock, first=None) -> None:
        while await sock.receive() is not None:
            pass

    async def until(cond) -> None:
        while not cond():
            await trio.sleep(0.01)

    with trio.fail_after(20):
        async with trio.open_nursery() as nursery:
            host = _FakeHost(nursery)
            peer = BrowserBar(host, HeadlessUI(), config(tmp_path))
            peer._serve = lambda *a, **kw: session  # the sessions are not under test
            nursery.start_soon(peer._keep_repl)
            await until(lambda: len(host.idle()) == 1)
            first = host.idle()[0]
            await first.send_ch.send(b"a REPL's handshake")
            await until(lambda: len(host.idle()) == 1 and peer.repl_serving == 1)
            host.fail = True
            await host.idle()[0].send_ch.send(None)  # the relay dropped the waiting tunnel
            await first.send_ch.send(None)  # and the REPL leaves
            await until(lambda: not host.open_now)
            await trio.sleep(1)  # retries, refused
            host.fail = False
            await until(lambda: len(host.idle()) == 1)
            await trio.sleep(1)
            assert len(host.open_now) == 1 and peer.repl_waiting == 1
            assert host.most_idle == 1
            nursery.cancel_scope.cancel()
