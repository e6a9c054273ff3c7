"""The relay's web server: files with the MIME types browsers insist on, nothing outside the
directory, and 404 everywhere without a static dir (spec A.5 scenarios 2 and 3)."""

from __future__ import annotations

import http.client
from functools import partial
from pathlib import Path

import pytest
import trio
from websockets.sync.client import connect

from relay import RelayConfig, open_relay

TIMEOUT = 20


def _get(addr: str, path: str, method: str = "GET", headers: dict | None = None):
    host, port = addr.rsplit(":", 1)
    conn = http.client.HTTPConnection(host, int(port), timeout=5)
    try:
        conn.request(method, path, headers=headers or {})
        response = conn.getresponse()
        # Header names are case-insensitive: compare them lower-cased.
        headers = {k.lower(): v for k, v in response.getheaders()}
        return response.status, headers, response.read()
    finally:
        conn.close()


async def get(addr: str, path: str, method: str = "GET", headers: dict | None = None):
    return await trio.to_thread.run_sync(partial(_get, addr, path, method, headers))


@pytest.fixture
def site(tmp_path: Path) -> Path:
    root = tmp_path / "site"
    (root / "sub").mkdir(parents=True)
    (root / "index.html").write_text("<h1>page</h1>")
    (root / "main.wasm").write_bytes(b"\0asm\1\0\0\0")
    (root / "boot.mjs").write_text("export {}")
    (root / "sub" / "index.html").write_text("sub")
    (root / "with space.txt").write_text("spaced")
    (tmp_path / "secret.txt").write_text("secret")
    (root / "link").symlink_to(tmp_path / "secret.txt")
    return root


@pytest.mark.trio
async def test_serves_files_with_mime_types(site: Path) -> None:
    with trio.fail_after(TIMEOUT):
        async with open_relay(RelayConfig(listen_addr="127.0.0.1:0", static_dir=site)) as relay:
            status, headers, body = await get(relay.addr, "/")
            assert (status, body) == (200, b"<h1>page</h1>")
            assert headers["content-type"].startswith("text/html")
            status, headers, body = await get(relay.addr, "/main.wasm")
            assert status == 200 and headers["content-type"] == "application/wasm"
            assert body == b"\0asm\1\0\0\0"
            _, headers, _ = await get(relay.addr, "/boot.mjs")
            assert headers["content-type"] == "text/javascript"
            assert (await get(relay.addr, "/sub/"))[2] == b"sub"
            assert (await get(relay.addr, "/with%20space.txt?v=1"))[2] == b"spaced"
            status, headers, body = await get(relay.addr, "/main.wasm", "HEAD")
            assert status == 200 and body == b"" and headers["content-length"] == "8"
            etag = headers["etag"]
            status, _, _ = await get(relay.addr, "/main.wasm", headers={"If-None-Match": etag})
            assert status == 304
            assert (await get(relay.addr, "/missing.js"))[0] == 404
            assert (await get(relay.addr, "/main.wasm", "POST"))[0] == 405


@pytest.mark.trio
async def test_nothing_outside_the_directory(site: Path) -> None:
    with trio.fail_after(TIMEOUT):
        async with open_relay(RelayConfig(listen_addr="127.0.0.1:0", static_dir=site)) as relay:
            for path in ("/../secret.txt", "/sub/../../secret.txt", "/%2e%2e/secret.txt", "/link"):
                status, _, body = await get(relay.addr, path)
                assert status == 404, path
                assert b"secret" not in body


@pytest.mark.trio
async def test_without_static_dir_everything_is_404_but_tunnels_work() -> None:
    config = RelayConfig(listen_addr="127.0.0.1:0", allow=("127.0.0.1:0",))
    with trio.fail_after(TIMEOUT):
        async with open_relay(config) as relay:
            assert (await get(relay.addr, "/"))[0] == 404
            assert (await get(relay.addr, "/index.html"))[0] == 404
            url = f"ws://{relay.addr}/listen/m1/127.0.0.1:0"
            conn = await trio.to_thread.run_sync(partial(connect, url, legacy=True))
            await trio.to_thread.run_sync(conn.close)


@pytest.mark.trio
async def test_documents_are_served_from_memory_ahead_of_the_directory(site: Path) -> None:
    """A process's run-time data (the example's ``/config.json``) is never a shared file."""
    (site / "config.json").write_text('{"from": "disk"}')
    docs = {"/config.json": b'{"from": "memory"}'}
    config = RelayConfig(listen_addr="127.0.0.1:0", static_dir=site, documents=docs)
    with trio.fail_after(TIMEOUT):
        async with open_relay(config) as relay:
            status, headers, body = await get(relay.addr, "/config.json")
            assert (status, body) == (200, b'{"from": "memory"}')
            assert headers["content-type"] == "application/json"
            assert headers["cache-control"] == "no-cache"
            again = {"If-None-Match": headers["etag"]}
            assert (await get(relay.addr, "/config.json", headers=again))[0] == 304
            status, headers, body = await get(relay.addr, "/config.json", method="HEAD")
            assert (status, body, headers["content-length"]) == (200, b"", "18")
            assert (await get(relay.addr, "/index.html"))[2] == b"<h1>page</h1>"  # disk still


def test_document_paths_must_be_absolute() -> None:
    with pytest.raises(ValueError, match="must start with '/'"):
        RelayConfig(documents={"config.json": b"{}"})


@pytest.mark.trio
async def test_static_only_serves_the_listed_files_and_404s_the_rest(site: Path) -> None:
    (site / "build.py").write_text("secret build script")
    (site / "sub" / "deep").mkdir()
    (site / "sub" / "deep" / "x.wasm").write_bytes(b"deep")
    (site / "sub" / "x.wasm").write_bytes(b"shallow")
    (site / "sub" / "x.wasm.br").write_bytes(b"shallow, compressed")
    only = ("index.html", "boot.mjs", "sub/*.wasm")
    config = RelayConfig(listen_addr="127.0.0.1:0", static_dir=site, static_only=only)
    with trio.fail_after(TIMEOUT):
        async with open_relay(config) as relay:
            assert (await get(relay.addr, "/"))[:3:2] == (200, b"<h1>page</h1>")
            assert (await get(relay.addr, "/./index.html"))[0] == 200
            assert (await get(relay.addr, "/boot.mjs"))[0] == 200
            assert (await get(relay.addr, "/sub/x.wasm"))[2] == b"shallow"
            # the listed file's precompressed sibling is its encoding, not another file
            status, headers, body = await get(
                relay.addr, "/sub/x.wasm", headers={"Accept-Encoding": "br"}
            )
            assert (status, headers["content-encoding"], body) == (
                200,
                "br",
                b"shallow, compressed",
            )
            # `*` stays within one segment; what is not listed is 404, as if it were not there
            for path in ("/build.py", "/main.wasm", "/sub/", "/sub/index.html",
                         "/sub/deep/x.wasm", "/sub/x.wasm.br", "/with%20space.txt"):  # fmt: skip
                assert (await get(relay.addr, path))[0] == 404, path


def test_static_only_takes_relative_paths_inside_the_directory(site: Path) -> None:
    for bad in ("/index.html", "../secret.txt", "sub/../../x"):
        with pytest.raises(ValueError, match="static paths must be relative"):
            RelayConfig(static_dir=site, static_only=(bad,))


@pytest.mark.trio
async def test_dot_names_are_never_served(site: Path) -> None:
    """A folder served whole must not hand out its secrets (``.env``, ``.git``)."""
    (site / ".env").write_text("TOKEN=secret")
    (site / ".git").mkdir()
    (site / ".git" / "config").write_text("[remote]")
    (site / "sub" / ".hidden.js").write_text("hidden")
    with trio.fail_after(TIMEOUT):
        async with open_relay(RelayConfig(listen_addr="127.0.0.1:0", static_dir=site)) as relay:
            for path in ("/.env", "/.git/config", "/sub/.hidden.js", "/.git/", "/%2Eenv"):
                assert (await get(relay.addr, path))[0] == 404, path
            assert (await get(relay.addr, "/sub/"))[:3:2] == (200, b"sub")
