"""Static files over ASGI: the web page, Pyodide's bundle and the project's wheel.

The server (hypercorn) parses HTTP; this module only maps a path to a file inside the
directory, with the MIME types a browser insists on (``.wasm`` must be ``application/wasm``
for streaming compilation, ``.mjs`` a JavaScript type for module imports).
"""

from __future__ import annotations

import logging
import mimetypes
from email.utils import formatdate
from pathlib import Path, PurePosixPath
from typing import Any

import trio

log = logging.getLogger("relay")
_CHUNK = 1 << 18
_TYPES = {
    ".wasm": "application/wasm",
    ".mjs": "text/javascript",
    ".js": "text/javascript",
    ".json": "application/json",
    ".html": "text/html; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
    ".whl": "application/zip",
    ".zip": "application/zip",
    ".py": "text/x-python; charset=utf-8",
    ".txt": "text/plain; charset=utf-8",
}


def content_type(path: Path) -> str:
    known = _TYPES.get(path.suffix.lower())
    if known:
        return known
    guessed, _ = mimetypes.guess_type(path.name)
    return guessed or "application/octet-stream"


def resolve(root: Path, url_path: str) -> Path | None:
    """The file for ``url_path`` inside ``root``, or None (missing, or outside the root)."""
    if "\x00" in url_path or "\\" in url_path:
        return None
    parts = [p for p in PurePosixPath(url_path).parts if p not in ("/", "", ".")]
    if any(p == ".." for p in parts):
        return None
    path = root.joinpath(*parts)
    if path.is_dir():
        path = path / "index.html"
    try:
        real = path.resolve(strict=True)
        real.relative_to(root.resolve())  # symlinks must not lead out of the directory
    except (OSError, ValueError):
        return None
    return real if real.is_file() else None


async def _plain(send: Any, status: int, text: str, extra: list | None = None) -> None:
    body = (text + "\n").encode()
    headers = [
        (b"content-type", b"text/plain; charset=utf-8"),
        (b"content-length", str(len(body)).encode()),
        *(extra or []),
    ]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def serve_static(root: Path | None, scope: dict[str, Any], send: Any) -> None:
    """Answer one HTTP request from ``root`` (404 for everything when there is none)."""
    method = scope["method"]
    if method not in ("GET", "HEAD"):
        await _plain(send, 405, "method not allowed", [(b"allow", b"GET, HEAD")])
        return
    path = resolve(root, scope["path"]) if root is not None else None
    if path is None:
        await _plain(send, 404, "not found")
        return
    try:
        stat = path.stat()
    except OSError:  # removed or unreadable since it was resolved
        await _plain(send, 404, "not found")
        return
    etag = f'"{stat.st_mtime_ns:x}-{stat.st_size:x}"'.encode()
    headers = [
        (b"content-type", content_type(path).encode()),
        (b"etag", etag),
        (b"last-modified", formatdate(stat.st_mtime, usegmt=True).encode()),
        # The page and wheel change while developing; revalidate (cheap with the ETag).
        (b"cache-control", b"no-cache"),
    ]
    if_none_match = dict(scope["headers"]).get(b"if-none-match")
    if if_none_match is not None and etag in [t.strip() for t in if_none_match.split(b",")]:
        await send({"type": "http.response.start", "status": 304, "headers": headers})
        await send({"type": "http.response.body", "body": b""})
        return
    headers.append((b"content-length", str(stat.st_size).encode()))
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    if method == "HEAD":
        await send({"type": "http.response.body", "body": b""})
        return
    try:
        async with await trio.open_file(path, "rb") as f:
            while chunk := await f.read(_CHUNK):
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
    except OSError as err:
        # Headers are out; all that is left is to end the response (the client sees it short).
        log.warning("static file %s: %s", path, err)
    await send({"type": "http.response.body", "body": b""})
