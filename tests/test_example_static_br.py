"""The relay serves the prod build's precompressed files: ``x.zst`` (``Content-Encoding:
zstd``) or ``x.br`` (``br``) for ``x``, the best the client accepts, else the plain file."""

from __future__ import annotations

from pathlib import Path

import brotli
import pytest
import trio
import zstandard

from relay import RelayConfig, open_relay
from tests.test_relay_static import get


@pytest.mark.trio
async def test_precompressed_brotli_siblings(tmp_path: Path) -> None:
    data = b"\0asm" + bytes(range(256)) * 64
    (tmp_path / "a.wasm").write_bytes(data)
    (tmp_path / "a.wasm.br").write_bytes(brotli.compress(data))
    (tmp_path / "plain.js").write_text("export {}")
    with trio.fail_after(20):
        async with open_relay(RelayConfig(listen_addr="127.0.0.1:0", static_dir=tmp_path)) as r:
            br = {"Accept-Encoding": "gzip, deflate, br, zstd"}
            status, headers, body = await get(r.addr, "/a.wasm", headers=br)
            assert status == 200 and headers["content-encoding"] == "br"
            assert headers["content-type"] == "application/wasm"
            assert headers["vary"] == "Accept-Encoding"
            assert brotli.decompress(body) == data and len(body) < len(data)
            for refuse in ({}, {"Accept-Encoding": "gzip"}, {"Accept-Encoding": "br;q=0"}):
                status, headers, body = await get(r.addr, "/a.wasm", headers=refuse)
                assert status == 200 and "content-encoding" not in headers and body == data
            status, headers, body = await get(r.addr, "/plain.js", headers=br)
            assert "content-encoding" not in headers and "vary" not in headers


@pytest.mark.trio
async def test_zstd_first_then_brotli(tmp_path: Path) -> None:
    """zstd decodes several times faster than brotli: it wins when both are accepted."""
    data = b"\0asm" + bytes(range(256)) * 64
    (tmp_path / "a.wasm").write_bytes(data)
    (tmp_path / "a.wasm.br").write_bytes(brotli.compress(data))
    (tmp_path / "a.wasm.zst").write_bytes(zstandard.ZstdCompressor().compress(data))
    with trio.fail_after(20):
        async with open_relay(RelayConfig(listen_addr="127.0.0.1:0", static_dir=tmp_path)) as r:
            chromium = {"Accept-Encoding": "gzip, deflate, br, zstd"}
            status, headers, body = await get(r.addr, "/a.wasm", headers=chromium)
            assert status == 200 and headers["content-encoding"] == "zstd"
            assert headers["vary"] == "Accept-Encoding"
            assert zstandard.ZstdDecompressor().decompress(body) == data
            for accept, want in (("br, zstd;q=0", "br"), ("br", "br"), ("zstd", "zstd")):
                _, headers, _ = await get(r.addr, "/a.wasm", headers={"Accept-Encoding": accept})
                assert headers["content-encoding"] == want, accept
            _, headers, body = await get(r.addr, "/a.wasm", headers={"Accept-Encoding": "gzip"})
            assert "content-encoding" not in headers and body == data
