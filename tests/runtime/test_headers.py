"""Every service's answers say no cache may keep them (runtime.headers), unless a route says
otherwise."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator

from fastapi import Response
from fastapi.responses import StreamingResponse
from fastapi.testclient import TestClient

from meterseal.runtime.auth import PUBLIC, HasRole, access
from meterseal.runtime.http import service_app


def _client() -> TestClient:
    counts: Counter[str] = Counter()
    app = service_app("headers", "A test service.", counts, lambda: dict(counts))

    @app.get("/v1/bill", dependencies=[access(HasRole("customer"))])
    async def bill() -> dict[str, str]:
        return {"total": "12.00 EUR"}

    @app.get("/v1/stream", dependencies=[access(PUBLIC)])
    async def stream() -> StreamingResponse:
        def pieces() -> Iterator[bytes]:
            yield b"sealed "
            yield b"object"

        return StreamingResponse(pieces(), media_type="application/octet-stream")

    @app.get("/v1/static.css", dependencies=[access(PUBLIC)])
    async def static() -> Response:
        return Response("body {}", media_type="text/css", headers={"Cache-Control": "max-age=60"})

    return TestClient(app)


def test_answers_are_not_kept_by_any_cache() -> None:
    client = _client()
    for path in ("/healthz", "/v1/counters", "/v1/stream"):
        answer = client.get(path)
        assert answer.status_code == 200
        assert answer.headers.get_list("cache-control") == ["no-store"]
    assert client.get("/v1/stream").content == b"sealed object"
    refused = client.get("/v1/bill")  # a refusal too: it says who may not see what
    assert refused.status_code == 401
    assert refused.headers.get_list("cache-control") == ["no-store"]
    missing = client.get("/v1/nowhere")
    assert missing.headers.get_list("cache-control") == ["no-store"]


def test_a_route_that_sets_its_own_cache_control_keeps_it() -> None:
    answer = _client().get("/v1/static.css")
    assert answer.headers.get_list("cache-control") == ["max-age=60"]
