"""The relay serves the prod build's precompressed files: ``x.br`` for ``x`` with
``Content-Encoding: br`` to clients that accept brotli, the plain file to the others."""

from __future__ import annotations

from pathlib import Path

import brotli
import pytest
import trio

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
