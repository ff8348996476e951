"""The gateway's object size limit: one 413 whether the size is declared or found streaming."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.kvs.gateway_fixtures import CHUNK, Gateway, serve_gateway

LIMIT = 3 * CHUNK + 100
REFUSAL = {"detail": f"an object has at most {LIMIT} bytes (kvs.max_object)"}


@pytest.fixture(scope="module")
def gateway() -> Iterator[Gateway]:
    """A gateway over memory nodes taking objects of at most LIMIT bytes."""
    with serve_gateway(max_object=LIMIT) as served:
        yield served


def _blobs(gateway: Gateway) -> int:
    return sum(len(node.blobs) for node in gateway.nodes)


def _refused(gateway: Gateway) -> float:
    value = gateway.registry.get_sample_value(
        "meterseal_kvs_requests_total", {"op": "put", "outcome": "refused"}
    )
    return value or 0.0


def test_an_object_of_the_limit_is_taken(gateway: Gateway) -> None:
    rw = gateway.client("meters-rw")
    assert rw.put("/v1/kvs/meters/limits/full", content=b"x" * LIMIT).status_code == 201
    assert rw.get("/v1/kvs/meters/limits/full").content == b"x" * LIMIT


def test_a_declared_size_over_the_limit_is_refused_before_the_body(gateway: Gateway) -> None:
    rw = gateway.client("meters-rw")
    assert rw.put("/v1/kvs/meters/limits/seed", content=b"s").status_code == 201
    blobs, refused = _blobs(gateway), _refused(gateway)
    response = rw.put("/v1/kvs/meters/limits/big", content=b"x" * (LIMIT + 1))
    assert response.status_code == 413
    assert response.json() == REFUSAL
    assert rw.head("/v1/kvs/meters/limits/big").status_code == 404
    assert _blobs(gateway) == blobs
    assert _refused(gateway) == refused + 1


def test_a_streamed_body_over_the_limit_is_refused_and_nothing_is_kept(gateway: Gateway) -> None:
    rw = gateway.client("meters-rw")
    assert rw.put("/v1/kvs/meters/limits/seed", content=b"s").status_code == 201
    blobs = _blobs(gateway)

    def chunked() -> Iterator[bytes]:  # no Content-Length: the size shows only while streaming
        for _ in range(8):
            yield b"y" * CHUNK

    response = rw.put("/v1/kvs/meters/limits/streamed", content=chunked())
    assert response.status_code == 413
    assert response.json() == REFUSAL
    assert rw.head("/v1/kvs/meters/limits/streamed").status_code == 404
    assert _blobs(gateway) == blobs  # the chunks sealed and stored before the limit went again
