"""The example end to end: the page's cold start (dev against prod build) and the fan-out of a
message to many browser peers.

1. Cold start in Chromium: from navigation to bar ``Ready`` with the client of server-foo
   connected (the panel says so), in a fresh browser context each time (nothing cached), for
   the dev build against the prod build (memory snapshot, zstd); plus the bytes on the wire
   (HTTP bodies as transferred, from the DevTools protocol). Goals: prod <= 1.5 s median and
   <= 0.5x dev.
2. Scale: ``am start`` as its own process, N headless peers (the page's program in CPython;
   default 200) in this one; a client of server-foo adds ``Msg`` and the server forwards it to
   every tab. Measured: from that add to the N-th peer showing the line, and server-foo's
   process CPU per peer per message (and per peer while idle). Goal: <= 1 s at 200.

    python benchmarks/bench_example.py [--runs 5] [--bars 200] [--skip-page] [--skip-bars]

Where the prod cold start goes (the page's marks, ms since navigation; headless Chromium 156,
2 cores shared with other jobs, load average 6-7, so wide spreads):

- ``manifest`` (~0.2 s): navigation, ``main.mjs``, then ``config.json`` and both manifests in
  one round; Pyodide's loader and its 1.25 MB script are requested together (the script is
  parsed off the main thread), and the snapshot's fetch starts.
- ``wasm`` (~0.9-1.6 s): Pyodide fetches its wasm (9.6 MB, 2.9 MB zstd) and stdlib at once;
  the wasm is compiled while it arrives (``instantiateStreaming``, validation on V8's worker
  threads, functions compiled lazily later) and instantiated. This used to wait for the whole
  snapshot, because Pyodide awaits ``_loadSnapshot`` first: the page now hands it the zeroed
  heap at once and fills it meanwhile.
- ``snapshot`` (~1.0-1.9 s): the last bytes in, fetched in a worker: a fetch's chunks are
  read on the thread that made it, and the page's main thread is busy meanwhile (Pyodide's
  script, the wasm's streaming compile, the module's start); from a worker the snapshot came
  ~1 s sooner under load (2.76 against 3.82 s to Ready, median of 6 alternating). The file
  holds only the heap's non-zero pages (15.3 of 31.5 MB; 4.8 MB zstd): half to decode and
  hold, though fetching it alone took about as long as the dense 31 MB (0.74 against 0.65 s,
  median of 5). zstd instead of brotli saved ~0.3 s (Chromium decodes it several times
  faster; about the same size); serving the files uncompressed was no faster than zstd.
- ``pyodide`` (+0.15-0.25 s): restoring the heap and Pyodide's ``finalizeBootstrap``.
- ``python`` (+0.05-0.1 s): the site zip, ``web_io.main``; then Ready and connected after
  the tunnels open (+0.05-0.4 s, server-foo shares the cores).

Outside the page: a fresh context is a new window, and Chromium boots its own UI for it (the
omnibox popup's WebUI renderer, about 1 s of CPU) while the page loads; the figures include it.
(A new tab of a context kept open is no fair cold start: the page's DevTools session turns the
HTTP cache off, but the snapshot's worker is not covered by it.)

What is left is Pyodide's own boot, which the page cannot shorten: a CPU profile of a prod
cold start (DevTools' sampling profiler, load average ~5) has the main thread ~0.8 s in
native work (the wasm's streaming compile, its functions compiled lazily on first call),
~0.25 s in Emscripten's dynamic linking of the instantiated module (``receiveInstance``:
``loadDylibs``, ``updateGOT``, ``addFunction``), ~0.2 s restoring the snapshot
(``restoreSnapshot``, ``finalizeBootstrap``), and ~0.5 s idle, waiting on the compile's
worker threads and the bytes; this project's Python after the restore takes ~0.1 s, the
tunnels and handshakes ~0.1-0.15 s. Tried without gain (alternating A/B runs, 9 each, load
average ~5): compiling the wasm from the page as soon as the manifest names it
(``compileStreaming``, handed to Pyodide's ``instantiateWasm``), and calling Python through
proxies instead of source strings (no use of CPython's compiler after the restore).

Both builds must exist (``task build`` and ``task build-prod``). Every peer and Chromium share
the machine with the server: on a loaded machine the figures are upper bounds.
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run"]  # fmt: skip
READY_JS = (
    "document.getElementById('status').textContent === 'connected' && "
    "document.getElementById('bar-states').textContent.includes('Ready')"
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """``am start`` in its own process."""

    def __init__(self, cwd: Path, env: dict[str, str], *args: str) -> None:
        full = {**os.environ, "PYTHONPATH": str(ROOT), **env}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "cli.main", "start", *args],
            cwd=cwd, env=full, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )  # fmt: skip
        self.lines: list[str] = []
        self.url = ""
        opened = threading.Event()

        def read() -> None:
            for line in self.proc.stdout:  # type: ignore[union-attr]
                self.lines.append(line.rstrip())
                if m := re.match(r"^Open (\S+)", line):
                    self.url = m.group(1)
                    opened.set()
            opened.set()

        threading.Thread(target=read, daemon=True).start()
        if not opened.wait(180) or not self.url:
            raise SystemExit("am start did not start:\n" + "\n".join(self.lines[-20:]))

    def cpu(self) -> float:
        """Seconds of CPU the server process used so far (user + system)."""
        fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(10)


def env_for(**kw: object) -> dict[str, str]:
    env = {"FOO_TCP_ADDR": "127.0.0.1:0", "FOO_REPL_ADDR": "127.0.0.1:0",
           "BAR_REPL_ADDR": "127.0.0.1:0", "RELAY_HTTP_ADDR": "127.0.0.1:0",
           "FOO_BORED_AFTER": "100000", "FOO_HELLO_INTERVAL": "100000"}  # fmt: skip
    env.update({k: str(v) for k, v in kw.items()})
    return env


# --- 1. cold start ---------------------------------------------------------------------------


def cold_start(browser, url: str) -> tuple[float, int, dict]:
    """Seconds from navigation to Ready + connected, bytes received over HTTP, page marks."""
    ctx = browser.new_context()
    page = ctx.new_page()
    cdp = ctx.new_cdp_session(page)
    cdp.send("Network.enable")
    cdp.send("Network.setCacheDisabled", {"cacheDisabled": True})
    got = [0]
    cdp.on(
        "Network.loadingFinished", lambda ev: got.__setitem__(0, got[0] + ev["encodedDataLength"])
    )
    t = time.perf_counter()
    page.goto(url)
    page.wait_for_function(READY_JS, timeout=120_000, polling=10)
    took = time.perf_counter() - t
    marks = page.evaluate("window.amExample && window.amExample.marks") or {}
    # the page's session sees no worker's requests: the page counts the snapshot's bodies
    got[0] += page.evaluate("window.amExample && window.amExample.workerBytes") or 0
    ctx.close()
    return took, got[0], marks


def bench_page(runs: int) -> None:
    from playwright.sync_api import sync_playwright

    results: dict[str, list[tuple[float, int, dict]]] = {"dev": [], "prod": []}
    with tempfile.TemporaryDirectory() as tmp, sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        for kind in ("dev", "prod"):
            srv = Server(Path(tmp), env_for(), "--page", kind)
            try:
                cold_start(browser, srv.url)  # warm the OS file cache once, not measured
                for _ in range(runs):
                    results[kind].append(cold_start(browser, srv.url))
            finally:
                srv.stop()
        browser.close()
    med = {}
    for kind, rs in results.items():
        times = sorted(r[0] for r in rs)
        med[kind] = statistics.median(times)
        mb = statistics.median(r[1] for r in rs) / 1e6
        marks = rs[len(rs) // 2][2]
        print(f"cold start {kind:4}: median {med[kind]:.2f} s (min {times[0]:.2f}, "
              f"max {times[-1]:.2f}, {runs} runs), {mb:.2f} MB over HTTP; "
              f"marks (ms) {marks}")  # fmt: skip
    print(f"cold start prod/dev: {med['prod'] / med['dev']:.2f}x (goal <= 0.5x, prod <= 1.5 s)")


# --- 2. fan-out ------------------------------------------------------------------------------


def bench_bars(bars: int, messages: int) -> None:
    import trio

    from machines.example.browser import BrowserBar
    from machines.example.config import Config
    from machines.example.trio_io import HeadlessUI, TrioHost
    from machines.rpc import connect

    foo_addr = f"127.0.0.1:{free_port()}"
    with tempfile.TemporaryDirectory() as tmp:
        srv = Server(Path(tmp), env_for(FOO_TCP_ADDR=foo_addr), "--page", "dev")
        cfg = Config(bar_repl_addr="127.0.0.1:0")

        async def main() -> None:
            async with trio.open_nursery() as nursery:
                host = TrioHost(nursery, srv.url.replace("http://", "ws://"))
                uis = [HeadlessUI(keep=8) for _ in range(bars)]
                t = time.perf_counter()
                peers = [BrowserBar(host, ui, cfg) for ui in uis]
                for peer in peers:
                    nursery.start_soon(peer.start)
                with trio.fail_after(300):
                    for peer in peers:
                        await peer.bar.when("Ready")
                    while sum("aRPC connected" in x for x in srv.lines) < bars:
                        await trio.sleep(0.05)
                print(
                    f"fan-out: {bars} peers connected and Ready in {time.perf_counter() - t:.1f} s"
                )
                await trio.sleep(2)  # let the connection storm settle
                idle0, t0 = srv.cpu(), time.perf_counter()
                await trio.sleep(5)
                idle = (srv.cpu() - idle0) / (time.perf_counter() - t0)
                lat = []
                async with connect(foo_addr, id="bench") as client:
                    cpu0 = srv.cpu()
                    for i in range(messages):
                        line = f"[bench] ping {i}"
                        t = time.perf_counter()
                        await client.netmach.add("Msg", {"msg": f"ping {i}"})
                        with trio.fail_after(60):
                            for ui in uis:
                                await ui.wait_for(lambda ui, line=line: line in ui.lines)
                        lat.append(time.perf_counter() - t)
                    cpu = srv.cpu() - cpu0
                lat.sort()
                print(f"fan-out: server Msg -> all {bars} peers show it: median "
                      f"{statistics.median(lat) * 1000:.0f} ms, max {lat[-1] * 1000:.0f} ms "
                      f"({messages} messages; goal <= 1000 ms at 200)")  # fmt: skip
                print(f"fan-out: server CPU {cpu / (messages * bars) * 1e6:.0f} us per peer per "
                      f"message ({cpu:.2f} s for {messages} x {bars}); idle "
                      f"{idle / bars * 1e6:.1f} us/s per connected peer")  # fmt: skip
                nursery.cancel_scope.cancel()

        try:
            trio.run(main)
        finally:
            srv.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--bars", type=int, default=200)
    parser.add_argument("--messages", type=int, default=10)
    parser.add_argument("--skip-page", action="store_true")
    parser.add_argument("--skip-bars", action="store_true")
    args = parser.parse_args()
    print(f"bench_example: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}")
    if not args.skip_page:
        bench_page(args.runs)
    if not args.skip_bars:
        bench_bars(args.bars, args.messages)


if __name__ == "__main__":
    main()
