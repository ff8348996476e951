"""The KVS gateway's REST API: objects streamed in chunks, sealed before they leave.

Every route declares its rule (`runtime.auth`): the object routes a right of the caller's API
key on the route's bucket and key (`gateway_auth`), checked before the object is looked up.

* `PUT /v1/kvs/{bucket}/{key}`: the body is the object (streamed in chunks, up to
  `max_object` bytes: 413 beyond, declared or found while streaming, nothing kept);
  `X-Kvs-Policy: ec:6+2` overrides the bucket's default policy. 201 with its version.
* `GET /v1/kvs/{bucket}/{key}`: the object, streamed; `Range: bytes=a-b` gives 206.
* `HEAD /v1/kvs/{bucket}/{key}`: size, version, policy (headers `X-Kvs-…`).
* `DELETE /v1/kvs/{bucket}/{key}`: 204.
* `GET /v1/kvs/{bucket}?prefix=&after=&limit=`: names in key order; page on with `after` =
  the response's `next_after`. A key scoped to a prefix lists only under it.
* `PUT /v1/policy/{bucket}/{key}`: re-encode one object under another policy.
* `GET|PUT /v1/policy/{bucket}`: the bucket's default policy; with `"existing": true` the
  bucket's objects are re-encoded in the background (progress in the GET; the job is stored
  and resumed by a gateway started again: kvs/gateway_reencode.py).
* `POST /v1/scrub?repair=`: find (and rebuild) missing or corrupt blobs, whole store.
"""

from __future__ import annotations

import logging
import re
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Annotated, Any

from fastapi import FastAPI, Header, HTTPException, Query, Request, Response
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, Field

from meterseal.errors import KvsError, MetersealError, ObjectNotFound
from meterseal.kvs.chunks import Piece
from meterseal.kvs.gateway_auth import (
    ADMIN,
    ADMIN_ALL,
    READ,
    READ_OR_ADMIN,
    WRITE,
    KvsAuthenticator,
    key_scope,
)
from meterseal.kvs.gateway_http import KvsMetrics, Unsatisfiable, byte_range
from meterseal.kvs.gateway_keys import KvsKeyError, check_bucket, check_object_key
from meterseal.kvs.gateway_reencode import ReencodeJob, ReencodeJobs
from meterseal.kvs.gateway_state import GatewayState, ObjectInfo, Objects
from meterseal.kvs.policy import DEFAULT_CHUNK_SIZE, Policy, parse_policy
from meterseal.runtime.auth import access
from meterseal.runtime.heap import unfilled
from meterseal.runtime.http import Problem, service_app
from meterseal.runtime.http_body import BODY_EXTENSION

NOT_FOUND = "no such object"
MAX_OBJECT_BYTES = 1 << 30  # a PUT's body beyond this is refused (413): kvs.max_object
PULL_BYTES = DEFAULT_CHUNK_SIZE  # a plain body is read in pieces of the store's chunk size
_PATH = re.compile(r"'?/(?:[^\s'():/]+/)+[^\s'():]*'?")  # an absolute file path, maybe quoted
_log = logging.getLogger(__name__)
BYTES = {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}}
MISSING: dict[int | str, dict[str, Any]] = {
    404: {"model": Problem, "description": "No such object (or a path no route takes)."}
}
READ_RESPONSES: dict[int | str, dict[str, Any]] = {
    **MISSING,
    200: {"content": BYTES, "description": "The object, streamed."},
    206: {"content": BYTES, "description": "The bytes of the Range, streamed."},
    416: {"description": "The range starts beyond the object (Content-Range: bytes */SIZE)."},
}
Scrub = Callable[[bool], Awaitable[dict[str, Any]]]


class ObjectView(BaseModel):
    """One object version as the API shows it."""

    key: str
    size: int
    version: int
    policy: str
    created_at: float


class Listing(BaseModel):
    """Objects in key order; `next_after` (when set) fetches the next page."""

    bucket: str
    prefix: str
    objects: list[ObjectView]
    next_after: str | None


class PolicyChange(BaseModel):
    """A policy (rep:N, ec:K+M, hybrid:K+M); for a bucket, whether to re-encode its objects."""

    policy: str = Field(max_length=32)
    existing: bool = False


class Reencoding(BaseModel):
    """Progress of a bucket's background re-encoding."""

    policy: str
    done: int
    total: int
    failed: int
    finished: bool


class BucketPolicy(BaseModel):
    """A bucket's default policy and its last re-encoding, if any."""

    bucket: str
    policy: str
    reencoding: Reencoding | None


def view(info: ObjectInfo) -> ObjectView:
    """The API's view of a manifest."""
    return ObjectView(
        key=info.name,
        size=info.size,
        version=info.version,
        policy=str(info.policy),
        created_at=info.created_at,
    )


def _policy(text: str) -> Policy:
    try:
        return parse_policy(text)
    except KvsError as exc:
        raise HTTPException(422, str(exc)) from None


def _names(bucket: str, key: str | None = None) -> None:
    try:
        check_bucket(bucket)
        if key is not None:
            check_object_key(key)
    except KvsKeyError as exc:
        raise HTTPException(422, str(exc)) from None


def store_refusal(exc: KvsError) -> HTTPException:
    """The answer to a store's refusal: 404 for an object gone meanwhile, else 503 (no paths)."""
    if isinstance(exc, ObjectNotFound):  # deleted between the check and the operation
        return HTTPException(404, NOT_FOUND)
    _log.warning("the store refused: %s", exc)  # whole, for the operator
    # The caller learns what failed (a policy, a node's name), not the gateway's file paths.
    return HTTPException(503, f"the store refused: {_PATH.sub('…', str(exc))}")


def create_gateway_app(
    objects: Objects,
    state: GatewayState,
    authenticator: KvsAuthenticator,
    metrics: KvsMetrics,
    *,
    scrub: Scrub | None = None,
    reencoding: ReencodeJobs | None = None,
    max_object: int = MAX_OBJECT_BYTES,
) -> FastAPI:
    """The gateway's app over `objects`, its keys and policies in `state`."""
    counts: Counter[str] = Counter()
    app = service_app(
        "meterseal KVS gateway",
        "The secure key-value store: objects sealed in the gateway, stored as ciphertext.",
        counts,
        lambda: dict(counts),
    )
    app.state.authenticator = authenticator
    jobs = reencoding or ReencodeJobs(objects, lambda: state.internal_policy)
    app.state.reencoding = jobs  # the service resumes its stored jobs at start
    _object_routes(app, objects, state, metrics, max_object)
    _list_route(app, objects, metrics)
    _policy_routes(app, objects, state, jobs)
    _scrub_route(app, scrub)
    return app


class ObjectTooLarge(MetersealError):
    """A PUT's body went beyond the gateway's object size limit (answered 413)."""


def too_large(limit: int) -> HTTPException:
    """The one answer to an object over the limit, declared or found while streaming."""
    return HTTPException(413, f"an object has at most {limit} bytes (kvs.max_object)")


def _object_routes(
    app: FastAPI, objects: Objects, state: GatewayState, metrics: KvsMetrics, max_object: int
) -> None:
    @app.put(
        "/v1/kvs/{bucket}/{key:path}",
        status_code=201,
        dependencies=[access(WRITE)],
        responses={
            **MISSING,
            413: {"model": Problem, "description": "The object is over the size limit."},
        },
    )
    async def put_object(
        bucket: str,
        key: str,
        request: Request,
        policy: Annotated[str | None, Header(alias="X-Kvs-Policy", max_length=32)] = None,
    ) -> ObjectView:
        _names(bucket, key)
        declared = request.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > max_object:  # refused before a byte is read
            metrics.count("put", "refused")
            raise too_large(max_object)
        try:
            chosen = _policy(policy) if policy else await state.bucket_policy(bucket)
            await state.note_bucket(bucket)
        except KvsError as exc:
            raise store_refusal(exc) from None

        inbound = metrics.bytes.labels("in")  # looked up once, not per piece

        async def body() -> AsyncIterator[bytes]:
            received = 0
            async for piece in request.stream():
                received += len(piece)
                if received > max_object:  # a chunked body: the store discards what it wrote
                    raise ObjectTooLarge(f"over {max_object} bytes")
                inbound.inc(len(piece))
                yield piece

        length = int(declared) if declared.isdigit() else None
        extension = request.scope.get("extensions", {}).get(BODY_EXTENSION, {})
        read_into = extension.get("read_into")
        source: AsyncIterator[Piece] = body()
        if length is not None and read_into is not None:
            source = _pulled(read_into, length, inbound)

        with metrics.timed("put"):
            try:
                info = await objects.put(bucket, key, source, chosen, length)
            except ObjectTooLarge:
                metrics.count("put", "refused")
                raise too_large(max_object) from None
            except KvsError as exc:
                metrics.count("put", "failed")
                raise store_refusal(exc) from None
        metrics.count("put", "ok")
        return view(info)

    @app.get(
        "/v1/kvs/{bucket}/{key:path}",
        dependencies=[access(READ)],
        response_class=Response,
        responses=READ_RESPONSES,
    )
    async def get_object(
        bucket: str, key: str, range_: Annotated[str | None, Header(alias="Range")] = None
    ) -> Response:
        _names(bucket, key)
        info = await _head(objects, metrics, "get", bucket, key)
        headers = _headers(info)
        try:
            wanted = byte_range(range_, info.size)
        except Unsatisfiable:
            metrics.count("get", "refused")
            return Response(status_code=416, headers={"Content-Range": f"bytes */{info.size}"})
        start, end = wanted or (0, info.size)
        if wanted is not None:
            headers["Content-Range"] = f"bytes {start}-{end - 1}/{info.size}"
        headers["Content-Length"] = str(end - start)
        return StreamingResponse(
            _stream(objects, metrics, bucket, key, start, end),
            status_code=206 if wanted is not None else 200,
            headers=headers,
            media_type="application/octet-stream",
        )

    @app.head(
        "/v1/kvs/{bucket}/{key:path}",
        dependencies=[access(READ)],
        response_class=Response,
        responses={**MISSING, 200: {"description": "X-Kvs-Size, X-Kvs-Version, X-Kvs-Policy"}},
    )
    async def head_object(bucket: str, key: str) -> Response:
        _names(bucket, key)
        info = await _head(objects, metrics, "head", bucket, key)
        headers = {**_headers(info), "Content-Length": str(info.size)}
        metrics.count("head", "ok")
        return Response(status_code=200, headers=headers)

    @app.delete(
        "/v1/kvs/{bucket}/{key:path}",
        status_code=204,
        dependencies=[access(WRITE)],
        response_class=Response,
        responses=MISSING,
    )
    async def delete_object(bucket: str, key: str) -> Response:
        _names(bucket, key)
        try:
            existed = await objects.delete(bucket, key)
        except KvsError as exc:
            metrics.count("delete", "failed")
            raise store_refusal(exc) from None
        if not existed:
            metrics.count("delete", "missing")
            raise HTTPException(404, NOT_FOUND)
        metrics.count("delete", "ok")
        return Response(status_code=204)


async def _pulled(
    read_into: Callable[[memoryview], Awaitable[int]], length: int, inbound: Any
) -> AsyncIterator[Piece]:
    """A body of `length` bytes read by the server straight into buffers of the store's
    chunk size (one copy from the socket, not joined again); ClientDisconnect when short."""
    left = length
    while left:
        buffer = memoryview(unfilled(min(left, PULL_BYTES)))  # only bytes read are used
        got = await read_into(buffer)
        inbound.inc(got)
        if got < len(buffer):  # the body ended early: the store refuses the short object
            yield buffer[:got]
            return
        left -= got
        yield buffer


async def _head(
    objects: Objects, metrics: KvsMetrics, op: str, bucket: str, key: str
) -> ObjectInfo:
    try:
        info = await objects.head(bucket, key)
    except KvsError as exc:
        metrics.count(op, "failed")
        raise store_refusal(exc) from None
    if info is None:
        metrics.count(op, "missing")
        raise HTTPException(404, NOT_FOUND)
    return info


def _headers(info: ObjectInfo) -> dict[str, str]:
    return {
        "Accept-Ranges": "bytes",
        "ETag": f'"{info.content_id}-{info.version}"',
        "X-Kvs-Version": str(info.version),
        "X-Kvs-Policy": str(info.policy),
        "X-Kvs-Size": str(info.size),
    }


async def _stream(
    objects: Objects, metrics: KvsMetrics, bucket: str, key: str, start: int, end: int
) -> AsyncIterator[bytes]:
    """The object's bytes; the GET is counted once its last byte went (ok), when the store
    failed mid-stream (failed: the client sees a short body) or the client left (aborted)."""
    started, outcome, outbound = time.perf_counter(), "aborted", metrics.bytes.labels("out")
    try:
        async for piece in objects.get(bucket, key, start, end):
            outbound.inc(len(piece))
            yield piece
        outcome = "ok"
    except Exception:
        outcome = "failed"  # the headers went: the connection is cut short of Content-Length
        raise
    finally:
        metrics.count("get", outcome)
        metrics.seconds.labels("get").observe(time.perf_counter() - started)


def _list_route(app: FastAPI, objects: Objects, metrics: KvsMetrics) -> None:
    @app.get("/v1/kvs/{bucket}", dependencies=[access(READ)], responses=MISSING)
    async def list_objects(
        bucket: str,
        request: Request,
        prefix: Annotated[str, Query(max_length=1024)] = "",
        after: Annotated[str, Query(max_length=1024)] = "",
        limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    ) -> Listing:
        _names(bucket)
        scope = key_scope(request)
        narrowed = None if scope is None else scope.listing_prefix(bucket, prefix)
        if narrowed is None:  # the rule checked it: unreachable unless the scope changed
            raise HTTPException(403, "not allowed")
        with metrics.timed("list"):
            try:
                found = await objects.list(bucket, narrowed, after, limit)
            except KvsError as exc:
                metrics.count("list", "failed")
                raise store_refusal(exc) from None
        metrics.count("list", "ok")
        return Listing(
            bucket=bucket,
            prefix=narrowed,
            objects=[view(i) for i in found.objects],
            next_after=found.next_after,
        )


def _policy_routes(app: FastAPI, objects: Objects, state: GatewayState, jobs: ReencodeJobs) -> None:
    @app.put("/v1/policy/{bucket}/{key:path}", dependencies=[access(WRITE)], responses=MISSING)
    async def object_policy(bucket: str, key: str, change: PolicyChange) -> ObjectView:
        _names(bucket, key)
        policy = _policy(change.policy)
        if await objects.head(bucket, key) is None:
            raise HTTPException(404, NOT_FOUND)
        try:
            return view(await objects.set_policy(bucket, key, policy))
        except KvsError as exc:
            raise store_refusal(exc) from None

    @app.get("/v1/policy/{bucket}", dependencies=[access(READ_OR_ADMIN)], responses=MISSING)
    async def get_bucket_policy(bucket: str) -> BucketPolicy:
        _names(bucket)
        try:
            policy, job = await state.bucket_policy(bucket), await jobs.get(bucket)
        except KvsError as exc:
            raise store_refusal(exc) from None
        return BucketPolicy(bucket=bucket, policy=str(policy), reencoding=_progress(job))

    @app.put("/v1/policy/{bucket}", dependencies=[access(ADMIN)], responses=MISSING)
    async def put_bucket_policy(bucket: str, change: PolicyChange) -> BucketPolicy:
        _names(bucket)
        policy = _policy(change.policy)
        try:
            await state.set_bucket_policy(bucket, policy)
        except KvsError as exc:
            raise store_refusal(exc) from None
        try:
            job = await jobs.start(bucket, policy) if change.existing else await jobs.get(bucket)
        except KvsError as exc:
            raise store_refusal(exc) from None
        return BucketPolicy(bucket=bucket, policy=str(policy), reencoding=_progress(job))


def _progress(job: ReencodeJob | None) -> Reencoding | None:
    if job is None:
        return None
    counts = {"done": job.done, "total": job.total, "failed": job.failed}
    return Reencoding(policy=job.policy, finished=job.finished, **counts)


def _scrub_route(app: FastAPI, scrub: Scrub | None) -> None:
    @app.post("/v1/scrub", dependencies=[access(ADMIN_ALL)], responses=MISSING)
    async def run_scrub(repair: Annotated[bool, Query()] = False) -> dict[str, Any]:
        if scrub is None:
            raise HTTPException(503, "this gateway's store cannot scrub")
        try:
            return await scrub(repair)
        except KvsError as exc:
            raise store_refusal(exc) from None
