"""A client of the KVS gateway's REST API (the CLI's `kvs put|get|ls|…`, benches, programs).

Uploads and downloads stream: a file is sent in pieces as it is read and written as it
arrives, so neither side holds a large object whole. A refusal raises `GatewayError` with
the gateway's status and reason.
"""

from __future__ import annotations

import ssl
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any
from urllib.parse import quote

import httpx

from meterseal.errors import ConfigurationError, MetersealError

PIECE = 1024 * 1024  # bytes read from a file per piece of an upload
Progress = Callable[[int], None]


class GatewayError(MetersealError):
    """The gateway refused a request or could not be reached."""

    def __init__(self, message: str, status: int = 0) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class Stat:
    """An object's size, version and policy as HEAD reports them."""

    size: int
    version: int
    policy: str


def _path(bucket: str, key: str = "") -> str:
    return f"/v1/kvs/{quote(bucket, safe='')}" + (f"/{quote(key, safe='/')}" if key else "")


def _checked(response: httpx.Response) -> httpx.Response:
    if response.status_code < 400:
        return response
    if not response.is_stream_consumed:
        response.read()
    try:
        detail = response.json().get("detail")
    except ValueError:
        detail = None
    reason = detail if isinstance(detail, str) else f"HTTP {response.status_code}"
    raise GatewayError(
        f"the gateway answered {response.status_code}: {reason}", response.status_code
    )


class GatewayClient:
    """Requests to one gateway with one API key."""

    def __init__(
        self,
        url: str,
        api_key: str,
        *,
        verify: ssl.SSLContext | bool = True,
        timeout: float = 60.0,
    ) -> None:
        if not (api_key.isascii() and api_key.isprintable()):
            # A header cannot carry it (httpx would fail with a traceback): e.g. the docs'
            # placeholder `kvk_…` pasted as it stands.
            raise ConfigurationError(
                "the API key is not one: give the kvk_… key exactly as `meterseal kvs keys add` "
                "printed it"
            )
        headers = {"Authorization": f"Bearer {api_key}"}
        self.url = url.rstrip("/")
        self.http = httpx.Client(base_url=self.url, headers=headers, verify=verify, timeout=timeout)

    def __enter__(self) -> GatewayClient:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.http.close()

    def _send(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            return _checked(self.http.request(method, path, **kwargs))
        except httpx.HTTPError as exc:
            raise GatewayError(f"cannot reach the gateway at {self.url}: {exc}") from exc

    def put(
        self,
        bucket: str,
        key: str,
        source: IO[bytes] | bytes,
        policy: str | None = None,
        progress: Progress | None = None,
    ) -> dict[str, Any]:
        """Store `source` (bytes or a binary file, streamed) as `key`; the new version."""
        headers = {"Content-Type": "application/octet-stream"}
        if policy:
            headers["X-Kvs-Policy"] = policy
        body = source if isinstance(source, bytes) else _pieces(source, progress)
        response = self._send("PUT", _path(bucket, key), content=body, headers=headers)
        result: dict[str, Any] = response.json()
        return result

    def get(
        self,
        bucket: str,
        key: str,
        sink: IO[bytes],
        byte_range: tuple[int, int | None] | None = None,
        progress: Progress | None = None,
    ) -> int:
        """Write the object (or bytes [a, b] inclusive of `byte_range`) to `sink`; bytes written."""
        headers = {}
        if byte_range is not None:
            first, last = byte_range
            headers["Range"] = f"bytes={first}-{'' if last is None else last}"
        written = 0
        try:
            with self.http.stream("GET", _path(bucket, key), headers=headers) as response:
                _checked(response)
                for piece in response.iter_bytes():
                    sink.write(piece)
                    written += len(piece)
                    if progress is not None:
                        progress(len(piece))
        except httpx.HTTPError as exc:
            raise GatewayError(f"reading {bucket}/{key} from {self.url} failed: {exc}") from exc
        return written

    def read(
        self, bucket: str, key: str, byte_range: tuple[int, int | None] | None = None
    ) -> bytes:
        """The object's bytes (small objects)."""
        import io

        sink = io.BytesIO()
        self.get(bucket, key, sink, byte_range)
        return sink.getvalue()

    def stat(self, bucket: str, key: str) -> Stat:
        """The object's size, version and policy (HEAD)."""
        headers = self._send("HEAD", _path(bucket, key)).headers
        return Stat(
            int(headers["X-Kvs-Size"]), int(headers["X-Kvs-Version"]), headers["X-Kvs-Policy"]
        )

    def delete(self, bucket: str, key: str) -> None:
        """Delete the object."""
        self._send("DELETE", _path(bucket, key))

    def list_page(
        self, bucket: str, prefix: str = "", after: str = "", limit: int = 100
    ) -> dict[str, Any]:
        """One page of the bucket's objects under `prefix`, after `after`, in key order."""
        params: dict[str, str | int] = {"prefix": prefix, "after": after, "limit": limit}
        page: dict[str, Any] = self._send("GET", _path(bucket), params=params).json()
        return page

    def list_all(self, bucket: str, prefix: str = "", page: int = 100) -> Iterator[dict[str, Any]]:
        """Every object under `prefix`, in key order, page by page."""
        after = ""
        while True:
            listing = self.list_page(bucket, prefix, after, page)
            yield from listing["objects"]
            if not listing["next_after"]:
                return
            after = listing["next_after"]

    def set_policy(self, bucket: str, key: str, policy: str) -> dict[str, Any]:
        """Re-encode one object under `policy`; its new version."""
        path = f"/v1/policy/{quote(bucket, safe='')}/{quote(key, safe='/')}"
        result: dict[str, Any] = self._send("PUT", path, json={"policy": policy}).json()
        return result

    def bucket_policy(
        self, bucket: str, policy: str | None = None, existing: bool = False
    ) -> dict[str, Any]:
        """The bucket's default policy; set it first when `policy` is given."""
        path = f"/v1/policy/{quote(bucket, safe='')}"
        if policy is None:
            result: dict[str, Any] = self._send("GET", path).json()
        else:
            body = {"policy": policy, "existing": existing}
            result = self._send("PUT", path, json=body).json()
        return result

    def scrub(self, repair: bool = False) -> dict[str, Any]:
        """Scrub the whole store (an admin key over every bucket); the report."""
        params = {"repair": "true" if repair else "false"}
        result: dict[str, Any] = self._send("POST", "/v1/scrub", params=params, timeout=None).json()
        return result


def _pieces(source: IO[bytes], progress: Progress | None) -> Iterator[bytes]:
    while piece := source.read(PIECE):
        if progress is not None:
            progress(len(piece))
        yield piece


def open_source(path: Path) -> IO[bytes]:
    """`path` opened for an upload ('-' is standard input)."""
    import sys

    return sys.stdin.buffer if str(path) == "-" else path.open("rb")
