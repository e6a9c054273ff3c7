"""Static files over HTTP: the web page, Pyodide's bundle and the project's wheel.

The connection driver parses HTTP; this module only maps a path to a file inside the
directory, with the MIME types a browser insists on (``.wasm`` must be ``application/wasm``
for streaming compilation, ``.mjs`` a JavaScript type for module imports).
"""

from __future__ import annotations

import mimetypes
import os
from pathlib import Path, PurePosixPath

from websockets.datastructures import Headers
from websockets.http11 import Request, Response

from relay.connection import Connection, http_date

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


def _accepts_br(request: Request) -> bool:
    """Does ``Accept-Encoding`` take brotli (``br``, not ``br;q=0``)?"""
    for part in ",".join(request.headers.get_all("Accept-Encoding")).split(","):
        name, _, params = part.partition(";")
        if name.strip().lower() == "br":
            q = params.strip()
            try:
                return not q.startswith("q=") or float(q[2:]) > 0
            except ValueError:
                return False
    return False


def _has_br(file: Path) -> bool:
    return file.with_name(file.name + ".br").is_file()


async def serve_static(root: Path | None, conn: Connection, request: Request, path: str) -> None:
    """Answer one HTTP request (``path`` already decoded) from ``root``; 404 without one."""
    method = request.method
    if method not in ("GET", "HEAD"):
        await conn.reject(405, "method not allowed", Headers(Allow="GET, HEAD"))
        return
    file = resolve(root, path) if root is not None else None
    if file is None:
        await conn.reject(404, "not found")
        return
    body, encoding = file, None
    if root is not None and not path.endswith("/") and _accepts_br(request):
        # a precompressed sibling (``x.wasm.br``, written by the page's prod build)
        compressed = resolve(root, path + ".br")
        if compressed is not None:
            body, encoding = compressed, "br"
    try:
        f = open(body, "rb")  # closed below; a local file opens at once
    except OSError:  # removed or unreadable since it was resolved
        await conn.reject(404, "not found")
        return
    with f:
        stat = os.fstat(f.fileno())
        etag = f'"{stat.st_mtime_ns:x}-{stat.st_size:x}"'
        headers = Headers(
            [
                ("Date", http_date()),
                ("Connection", "close"),
                ("Content-Type", content_type(file)),
                ("ETag", etag),
                ("Last-Modified", http_date(stat.st_mtime)),
                # The page and wheel change while developing; revalidate (cheap with the ETag).
                ("Cache-Control", "no-cache"),
            ]
        )
        if encoding is not None:
            headers["Content-Encoding"] = encoding
        if encoding is not None or _has_br(file):
            headers["Vary"] = "Accept-Encoding"  # caches must keep both variants apart
        if_none_match = ",".join(request.headers.get_all("If-None-Match"))
        if etag in (t.strip() for t in if_none_match.split(",")):
            await conn.respond(Response(304, "Not Modified", headers))
            return
        headers["Content-Length"] = str(stat.st_size)
        await conn.respond(Response(200, "OK", headers))
        if method == "GET":
            await conn.send_file(f.fileno(), stat.st_size)
