"""Static files over HTTP: the web page, Pyodide's bundle and the project's wheel.

The connection driver parses HTTP; this module only maps a path to a file inside the
directory, with the MIME types a browser insists on (``.wasm`` must be ``application/wasm``
for streaming compilation, ``.mjs`` a JavaScript type for module imports).
"""

from __future__ import annotations

import hashlib
import mimetypes
import os
from collections.abc import Mapping, Sequence
from fnmatch import fnmatchcase
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


def resolve(root: Path, url_path: str, only: Sequence[str] = ()) -> Path | None:
    """The file for ``url_path`` inside ``root``, or None (missing, outside the root, a
    name starting with a dot, or, when ``only`` is given, matching none of its patterns).

    Dot names are never served: a folder served whole (``am relay --static-dir .``) would
    otherwise hand out its ``.env`` and ``.git``."""
    if "\x00" in url_path or "\\" in url_path:
        return None
    parts = [p for p in PurePosixPath(url_path).parts if p not in ("/", "", ".")]
    if any(p.startswith(".") for p in parts):  # ``..`` too
        return None
    path = root.joinpath(*parts)
    if path.is_dir():
        path = path / "index.html"
        parts.append("index.html")
    if only and not any(_matches(parts, pattern) for pattern in only):
        return None
    try:
        real = path.resolve(strict=True)
        real.relative_to(root.resolve())  # symlinks must not lead out of the directory
    except (OSError, ValueError):
        return None
    return real if real.is_file() else None


def _matches(parts: list[str], pattern: str) -> bool:
    """Does the relative path ``parts`` match ``pattern`` segment by segment (``*`` never
    crosses a ``/``, unlike ``fnmatch`` on the whole path)?"""
    wanted = pattern.split("/")
    return len(wanted) == len(parts) and all(map(fnmatchcase, parts, wanted))


#: precompressed siblings, best first: ``x.zst`` decodes several times faster than ``x.br``
#: at about the same size (the browser's decode is on the page's critical path)
ENCODINGS = (("zstd", ".zst"), ("br", ".br"))


def _accepted(request: Request) -> set[str]:
    """The content codings ``Accept-Encoding`` takes (``q=0`` refuses one)."""
    taken = set()
    for part in ",".join(request.headers.get_all("Accept-Encoding")).split(","):
        name, _, params = part.partition(";")
        q = params.strip()
        try:
            if not q.startswith("q=") or float(q[2:]) > 0:
                taken.add(name.strip().lower())
        except ValueError:
            pass
    return taken


def _has_sibling(file: Path) -> bool:
    return any(file.with_name(file.name + suffix).is_file() for _, suffix in ENCODINGS)


def _headers(kind: Path, etag: str, modified: float | None = None) -> Headers:
    headers = Headers(
        [
            ("Date", http_date()),
            ("Connection", "close"),
            ("Content-Type", content_type(kind)),
            ("ETag", etag),
            # The page and wheel change while developing; revalidate (cheap with the ETag).
            ("Cache-Control", "no-cache"),
        ]
    )
    if modified is not None:
        headers["Last-Modified"] = http_date(modified)
    return headers


def _not_modified(request: Request, etag: str) -> bool:
    if_none_match = ",".join(request.headers.get_all("If-None-Match"))
    return etag in (t.strip() for t in if_none_match.split(","))


async def serve_static(
    root: Path | None,
    conn: Connection,
    request: Request,
    path: str,
    documents: Mapping[str, bytes] | None = None,
    only: Sequence[str] = (),
) -> None:
    """Answer one HTTP request (``path`` already decoded) from ``documents``, then ``root``
    (only the files matching ``only``, when given).

    404 when neither has it.
    """
    method = request.method
    if method not in ("GET", "HEAD"):
        await conn.reject(405, "method not allowed", Headers(Allow="GET, HEAD"))
        return
    if documents and (document := documents.get(path)) is not None:
        etag = f'"{hashlib.blake2b(document, digest_size=8).hexdigest()}"'
        headers = _headers(Path(path), etag)
        if _not_modified(request, etag):
            await conn.respond(Response(304, "Not Modified", headers))
            return
        headers["Content-Length"] = str(len(document))
        await conn.respond(Response(200, "OK", headers, document if method == "GET" else b""))
        return
    file = resolve(root, path, only) if root is not None else None
    if file is None:
        await conn.reject(404, "not found")
        return
    body, encoding = file, None
    if root is not None and not path.endswith("/"):
        # a precompressed sibling (``x.wasm.zst``, ``x.wasm.br``, written by the page's prod
        # build): served as the encoding of a file that passed ``only``, so not checked
        # against it
        taken = _accepted(request)
        for name, suffix in ENCODINGS:
            if name in taken and (compressed := resolve(root, path + suffix)) is not None:
                body, encoding = compressed, name
                break
    try:
        f = open(body, "rb")  # closed below; a local file opens at once
    except OSError:  # removed or unreadable since it was resolved
        await conn.reject(404, "not found")
        return
    with f:
        stat = os.fstat(f.fileno())
        etag = f'"{stat.st_mtime_ns:x}-{stat.st_size:x}"'
        headers = _headers(file, etag, stat.st_mtime)
        if encoding is not None:
            headers["Content-Encoding"] = encoding
        if encoding is not None or _has_sibling(file):
            headers["Vary"] = "Accept-Encoding"  # caches must keep both variants apart
        if _not_modified(request, etag):
            await conn.respond(Response(304, "Not Modified", headers))
            return
        headers["Content-Length"] = str(stat.st_size)
        await conn.respond(Response(200, "OK", headers))
        if method == "GET":
            await conn.send_file(f.fileno(), stat.st_size)
