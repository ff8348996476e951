"""The gateway's REST API on a store of memory nodes: objects, ranges, lists, policies, keys."""

from __future__ import annotations

import asyncio
import os
import random
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from meterseal.accounts.throttle import Throttle, ThrottleLimits
from meterseal.errors import KvsError
from meterseal.kvs.gateway import store_refusal
from meterseal.kvs.gateway_http import Unsatisfiable, byte_range
from meterseal.kvs.gateway_keys import KvsKeyError, Right, Scope
from meterseal.runtime.auth import UNAUTHENTICATED
from meterseal.runtime.metrics import parse_exposition
from tests.kvs.gateway_fixtures import CHUNK, Gateway, another_gateway, serve_gateway

BODY = random.Random(21).randbytes(5 * CHUNK + 123)  # six chunks, the last one short


@pytest.fixture(scope="module")
def gateway() -> Iterator[Gateway]:
    """One gateway for the module: tests use distinct keys (objects) so they never collide."""
    with serve_gateway() as served:
        yield served


def _pieces(data: bytes, size: int) -> Iterator[bytes]:
    for start in range(0, len(data), size):
        yield data[start : start + size]


def test_an_object_round_trips_streamed_in_chunks(gateway: Gateway) -> None:
    rw = gateway.client("meters-rw")
    big = random.Random(5).randbytes(600 * 1024 + 17)  # 601 chunks of 1 KiB
    gateway.store.received.clear()
    put = rw.put("/v1/kvs/meters/stream/one", content=_pieces(big, 64 * 1024))
    assert put.status_code == 201, put.text
    assert put.json()["size"] == len(big)
    # the store received the body in pieces as they arrived, never the whole object
    assert sum(gateway.store.received) == len(big)
    assert len(gateway.store.received) > 1
    assert max(gateway.store.received) < len(big)
    gateway.store.sent.clear()
    with rw.stream("GET", "/v1/kvs/meters/stream/one") as response:
        assert response.status_code == 200
        assert response.headers["content-length"] == str(len(big))
        got = b"".join(response.iter_bytes())
    assert got == big
    assert len(gateway.store.sent) == len(big) // CHUNK + 1  # one piece per chunk, as opened
    assert max(gateway.store.sent) == CHUNK
    head = rw.head("/v1/kvs/meters/stream/one")
    assert head.status_code == 200
    assert head.headers["x-kvs-size"] == str(len(big))
    assert head.headers["x-kvs-policy"] == "ec:3+2"
    assert head.headers["x-kvs-version"] == "1"


@pytest.mark.parametrize(
    ("header", "start", "end"),
    [
        ("bytes=0-0", 0, 1),
        ("bytes=1000-2100", 1000, 2101),  # across a chunk boundary
        (f"bytes={CHUNK}-", CHUNK, len(BODY)),
        ("bytes=-200", len(BODY) - 200, len(BODY)),
        ("bytes=5000-999999", 5000, len(BODY)),
    ],
)
def test_range_reads(gateway: Gateway, header: str, start: int, end: int) -> None:
    rw = gateway.client("meters-rw")
    if rw.head("/v1/kvs/meters/ranges").status_code == 404:
        assert rw.put("/v1/kvs/meters/ranges", content=BODY).status_code == 201
    response = rw.get("/v1/kvs/meters/ranges", headers={"Range": header})
    assert response.status_code == 206
    assert response.content == BODY[start:end]
    assert response.headers["content-range"] == f"bytes {start}-{end - 1}/{len(BODY)}"


def test_a_range_beyond_the_object_is_416(gateway: Gateway) -> None:
    rw = gateway.client("meters-rw")
    assert rw.put("/v1/kvs/meters/short", content=b"0123456789").status_code == 201
    response = rw.get("/v1/kvs/meters/short", headers={"Range": "bytes=10-"})
    assert response.status_code == 416
    assert response.headers["content-range"] == "bytes */10"
    assert rw.get("/v1/kvs/meters/short", headers={"Range": "bytes=2-4,6-7"}).content == (
        b"0123456789"  # several ranges: the whole object, as RFC 9110 allows
    )


def test_a_range_of_very_long_numbers_is_read_not_refused() -> None:
    # int() refuses a decimal of over 4,300 digits: the gateway answered 500.
    far = "9" * 5000
    with pytest.raises(Unsatisfiable):
        byte_range(f"bytes={far}-", 10)
    assert byte_range(f"bytes=0-{far}", 10) == (0, 10)
    assert byte_range(f"bytes=-{far}", 10) == (0, 10)
    assert byte_range(f"bytes={'0' * 5000}3-{'0' * 5000}5", 10) == (3, 6)


def test_a_range_beyond_any_object_is_416_however_long(gateway: Gateway) -> None:
    rw = gateway.client("meters-rw")
    assert rw.put("/v1/kvs/meters/far", content=b"0123456789").status_code == 201
    response = rw.get("/v1/kvs/meters/far", headers={"Range": f"bytes={'9' * 5000}-"})
    assert response.status_code == 416


@given(size=st.integers(0, 5000), first=st.integers(0, 6000) | st.none(),
       last=st.integers(0, 6000) | st.none())  # fmt: skip
def test_byte_range_matches_slicing(size: int, first: int | None, last: int | None) -> None:
    header = f"bytes={'' if first is None else first}-{'' if last is None else last}"
    data = bytes(range(256)) * 20
    try:
        found = byte_range(header, size)
    except Unsatisfiable:
        assert (first is not None and first >= size) or (first is None and last == 0)
        return
    if found is None:
        assert (first is None and last is None) or (
            first is not None and last is not None and last < first
        )
        return
    start, end = found
    if first is None:
        assert last is not None
        assert data[:size][start:end] == data[:size][-last:]
    else:
        stop = size if last is None else last + 1
        assert data[:size][start:end] == data[:size][first:stop]


def test_a_key_for_one_bucket_cannot_read_another(gateway: Gateway) -> None:
    bills = gateway.client("bills-rw")
    assert bills.put("/v1/kvs/bills/b1", content=b"bill").status_code == 201
    meters = gateway.client("meters-rw")
    for method, path in (("GET", "/v1/kvs/bills/b1"), ("HEAD", "/v1/kvs/bills/b1"),
                         ("PUT", "/v1/kvs/bills/b1"), ("DELETE", "/v1/kvs/bills/b1"),
                         ("GET", "/v1/kvs/bills"), ("GET", "/v1/kvs/bills/absent")):  # fmt: skip
        response = meters.request(method, path, content=b"x" if method == "PUT" else None)
        assert response.status_code == 403, (method, path)
    # an object that exists and one that does not are refused alike
    assert meters.get("/v1/kvs/bills/b1").json() == meters.get("/v1/kvs/bills/absent").json()
    assert bills.get("/v1/kvs/bills/b1").content == b"bill"


def test_a_key_for_a_prefix_cannot_reach_another_prefix(gateway: Gateway) -> None:
    rw, north = gateway.client("meters-rw"), gateway.client("north-rw")
    assert north.put("/v1/kvs/meters/north/a", content=b"n").status_code == 201
    assert rw.put("/v1/kvs/meters/south/a", content=b"s").status_code == 201
    assert north.get("/v1/kvs/meters/south/a").status_code == 403
    assert north.put("/v1/kvs/meters/south/b", content=b"x").status_code == 403
    assert north.delete("/v1/kvs/meters/south/a").status_code == 403
    assert north.get("/v1/kvs/meters/nort").status_code == 403  # a prefix of the prefix
    # its lists are narrowed to its prefix, or refused when they cannot overlap
    listed = north.get("/v1/kvs/meters", params={"prefix": ""}).json()
    assert listed["prefix"] == "north/"
    assert [o["key"] for o in listed["objects"]] == ["north/a"]
    assert north.get("/v1/kvs/meters", params={"prefix": "south/"}).status_code == 403


def test_write_only_and_read_only_keys(gateway: Gateway) -> None:
    writer, reader = gateway.client("meters-write"), gateway.client("meters-read")
    assert writer.put("/v1/kvs/meters/wo/a", content=b"w").status_code == 201
    assert writer.get("/v1/kvs/meters/wo/a").status_code == 403
    assert writer.head("/v1/kvs/meters/wo/a").status_code == 403
    assert writer.get("/v1/kvs/meters").status_code == 403
    assert reader.get("/v1/kvs/meters/wo/a").content == b"w"
    assert reader.put("/v1/kvs/meters/wo/a", content=b"r").status_code == 403
    assert reader.delete("/v1/kvs/meters/wo/a").status_code == 403
    assert writer.delete("/v1/kvs/meters/wo/a").status_code == 204
    assert reader.get("/v1/kvs/meters/wo/a").status_code == 404


def test_callers_without_a_valid_key_get_one_opaque_refusal() -> None:
    lenient = Throttle(ThrottleLimits(free_failures=1000))  # the back-off: the next test
    with serve_gateway(throttle=lenient) as gateway:
        _refused_alike(gateway)


def _refused_alike(gateway: Gateway) -> None:
    assert gateway.client("meters-rw").put("/v1/kvs/meters/secret", content=b"s").status_code == 201
    valid = gateway.keys["meters-rw"]
    bodies = set()
    wrong = [None, "Bearer kvk_0000000000000000_" + "a" * 40, f"Bearer {gateway.revoked}",
             f"Bearer {valid[:-2]}xx", "Bearer nonsense", f"Basic {valid}", "Bearer"]  # fmt: skip
    for header in wrong:
        client = gateway.client(None)
        headers = {} if header is None else {"Authorization": header}
        for method, path in (("GET", "/v1/kvs/meters/secret"), ("GET", "/v1/kvs/meters/absent"),
                             ("GET", "/v1/kvs/meters"), ("PUT", "/v1/kvs/meters/x")):  # fmt: skip
            response = client.request(method, path, headers=headers)
            assert response.status_code == 401, (header, method, path)
            bodies.add(response.text)
    assert bodies == {f'{{"detail":"{UNAUTHENTICATED}"}}'}


def test_a_source_guessing_keys_backs_off() -> None:
    with serve_gateway(throttle=Throttle(ThrottleLimits(free_failures=3))) as gateway:
        guesser = gateway.client(None)
        bad = {"Authorization": "Bearer kvk_0000000000000000_" + "b" * 40}
        codes = [guesser.get("/v1/kvs/meters/x", headers=bad).status_code for _ in range(5)]
        assert codes[:3] == [401, 401, 401]
        assert codes[-1] == 429
        # the source waits, whatever key it sends next
        assert gateway.client("meters-rw").get("/v1/kvs/meters/x").status_code == 429


def test_lists_page_in_key_order(gateway: Gateway) -> None:
    rw = gateway.client("meters-rw")
    names = [f"list/{n:03d}" for n in random.Random(3).sample(range(100), 9)]
    for name in names:
        assert rw.put(f"/v1/kvs/meters/{name}", content=name.encode()).status_code == 201
    seen, after = [], ""
    while True:
        page = rw.get("/v1/kvs/meters", params={"prefix": "list/", "after": after, "limit": 4})
        assert page.status_code == 200
        body = page.json()
        seen += [o["key"] for o in body["objects"]]
        if body["next_after"] is None:
            break
        after = body["next_after"]
    assert seen == sorted(names)


def test_an_objects_policy_changes_and_its_content_stays(gateway: Gateway) -> None:
    rw = gateway.client("meters-rw")
    assert (
        rw.put("/v1/kvs/meters/hot", content=BODY, headers={"X-Kvs-Policy": "rep:3"}).json()[
            "policy"
        ]
        == "rep:3"
    )
    changed = rw.put("/v1/policy/meters/hot", json={"policy": "hybrid:3+2"})
    assert changed.status_code == 200, changed.text
    assert changed.json()["policy"] == "hybrid:3+2"
    assert changed.json()["version"] == 2
    assert rw.get("/v1/kvs/meters/hot").content == BODY
    assert rw.put("/v1/policy/meters/hot", json={"policy": "rep:x"}).status_code == 422
    assert rw.put("/v1/policy/meters/absent", json={"policy": "rep:2"}).status_code == 404
    assert (
        gateway.client("meters-read")
        .put("/v1/policy/meters/hot", json={"policy": "rep:2"})
        .status_code
        == 403
    )


def test_a_bucket_default_changes_by_admin_and_reencodes_existing_objects(
    gateway: Gateway,
) -> None:
    bills = gateway.client("bills-rw")
    for n in range(3):
        assert bills.put(f"/v1/kvs/bills/old/{n}", content=BODY[: 100 * n]).status_code == 201
    assert bills.put("/v1/policy/bills", json={"policy": "rep:2"}).status_code == 403
    admin = gateway.client("all-admin")
    response = admin.put("/v1/policy/bills", json={"policy": "rep:2", "existing": True})
    assert response.status_code == 200, response.text
    deadline = time.monotonic() + 30
    while True:
        shown = bills.get("/v1/policy/bills").json()
        if shown["reencoding"]["finished"] or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert shown["policy"] == "rep:2"
    assert shown["reencoding"]["failed"] == 0
    assert shown["reencoding"]["done"] == shown["reencoding"]["total"] >= 3
    assert bills.put("/v1/kvs/bills/new", content=b"n").json()["policy"] == "rep:2"
    listed = bills.get("/v1/kvs/bills", params={"prefix": "old/"}).json()["objects"]
    assert {o["policy"] for o in listed} == {"rep:2"}
    for n in range(3):
        assert bills.get(f"/v1/kvs/bills/old/{n}").content == BODY[: 100 * n]
    # an admin key of one bucket sets that bucket's default, no other
    meters_admin = gateway.client("meters-admin")
    assert meters_admin.put("/v1/policy/meters", json={"policy": "ec:3+2"}).status_code == 200
    assert meters_admin.put("/v1/policy/bills", json={"policy": "rep:1"}).status_code == 403


def test_a_write_without_enough_healthy_nodes_is_refused_clearly(gateway: Gateway) -> None:
    rw = gateway.client("meters-rw")
    gateway.nodes[0].up = False
    try:
        response = rw.put("/v1/kvs/meters/ec", content=BODY, headers={"X-Kvs-Policy": "ec:4+2"})
    finally:
        gateway.nodes[0].up = True
    assert response.status_code == 503
    assert "ec:4+2" in response.json()["detail"] or "node" in response.json()["detail"]
    assert rw.head("/v1/kvs/meters/ec").status_code == 404


def test_a_refusal_names_no_file_of_the_gateway() -> None:
    path = "/srv/kvs/node-3"
    error = KvsError(f"node node-3 ({path}): [Errno 28] No space left: '{path}/ab/x'")
    detail = store_refusal(error).detail
    assert "/srv" not in detail
    assert "node node-3" in detail
    assert "No space left" in detail


def test_metrics_count_requests_and_bytes(gateway: Gateway) -> None:
    rw = gateway.client("meters-rw")
    before = parse_exposition(_scrape(gateway))
    assert rw.put("/v1/kvs/meters/metered", content=b"m" * 300).status_code == 201
    assert rw.get("/v1/kvs/meters/metered").content == b"m" * 300
    after = parse_exposition(_scrape(gateway))
    put, got = (
        "meterseal_kvs_requests_total{op=put,outcome=ok}",
        "meterseal_kvs_bytes_total{direction=out}",
    )
    assert after[put] == before.get(put, 0) + 1
    assert after[got] >= before.get(got, 0) + 300


def test_a_get_whose_store_fails_mid_stream_counts_as_failed_not_ok(
    gateway: Gateway, monkeypatch: pytest.MonkeyPatch
) -> None:
    rw = gateway.client("meters-rw")
    assert rw.put("/v1/kvs/meters/cut-short", content=BODY).status_code == 201
    real = gateway.store.get

    async def failing(*args: Any, **kwargs: Any) -> AsyncIterator[bytes]:
        async for piece in real(*args, **kwargs):
            yield piece
            raise KvsError("node node-2: lost between two chunks")

    monkeypatch.setattr(gateway.store, "get", failing)
    before = parse_exposition(_scrape(gateway))
    with pytest.raises(httpx.TransportError):  # headers sent: the body is cut short
        rw.get("/v1/kvs/meters/cut-short")
    after = parse_exposition(_scrape(gateway))
    ok, failed = (f"meterseal_kvs_requests_total{{op=get,outcome={o}}}" for o in ("ok", "failed"))
    assert after.get(ok, 0) == before.get(ok, 0)
    assert after[failed] == before.get(failed, 0) + 1
    monkeypatch.undo()
    assert rw.get("/v1/kvs/meters/cut-short").content == BODY
    for _ in range(500):  # counted after the last byte went, which the client may see first
        if parse_exposition(_scrape(gateway)).get(ok, 0) > before.get(ok, 0):
            break
        time.sleep(0.01)
    assert parse_exposition(_scrape(gateway))[ok] == before.get(ok, 0) + 1


def _scrape(gateway: Gateway) -> str:
    from prometheus_client import generate_latest

    return generate_latest(gateway.registry).decode()


def test_bad_names_and_policies_are_refused(gateway: Gateway) -> None:
    rw = gateway.client("meters-rw")
    bad = rw.put("/v1/kvs/meters/p", content=b"x", headers={"X-Kvs-Policy": "raid5"})
    assert bad.status_code == 422
    assert "rep:N" in bad.json()["detail"]
    assert rw.put("/v1/kvs/meters/", content=b"x").status_code in (403, 404, 422)


def test_scrub_finds_and_repairs_a_lost_and_a_corrupted_blob(gateway: Gateway) -> None:
    rw, admin = gateway.client("meters-rw"), gateway.client("all-admin")
    assert rw.put("/v1/kvs/meters/scrubbed", content=BODY).status_code == 201
    assert rw.put("/v1/kvs/meters/scrubbed", content=BODY).status_code == 201  # version 2
    clean = admin.post("/v1/scrub", params={"repair": "false"})
    assert clean.status_code == 200, clean.text
    assert clean.json()["healthy"]
    assert clean.json()["buckets"] >= 2  # meters and the gateway's own
    # damage two blobs the object's current manifest names (a node may also hold blobs of
    # the replaced version or of the key table, which this count is not about)
    store = gateway.store
    manifest = asyncio.run(store.load(store.keys("meters"), "scrubbed"))
    assert manifest is not None
    named = {(blob.node, blob.blob_id) for blob in manifest.blobs()}
    victim = next(node for node in gateway.nodes if {(node.name, b) for b in node.blobs} & named)
    lost, bent = [b for b in victim.blobs if (victim.name, b) in named][:2]
    del victim.blobs[lost]
    victim.blobs[bent] = b"x" + victim.blobs[bent][1:]
    found = admin.post("/v1/scrub", params={"repair": "true"}).json()
    assert found["missing"] + found["corrupt"] == 2
    assert found["repaired"] == 2
    assert admin.post("/v1/scrub").json()["healthy"]
    assert rw.get("/v1/kvs/meters/scrubbed").content == BODY
    assert rw.post("/v1/scrub").status_code == 403  # only an admin key over every bucket
    assert gateway.client("meters-admin").post("/v1/scrub").status_code == 403


def test_a_key_made_elsewhere_works_at_once_and_a_revoked_one_stops(gateway: Gateway) -> None:
    keys = another_gateway(gateway)  # `meterseal kvs keys add`, in another process
    table, new = asyncio.run(keys.key_table()).add(
        Scope("meters", "late/", frozenset((Right.READ, Right.WRITE))), "late", 3.0, os.urandom
    )
    asyncio.run(keys.save_keys(table))
    late = httpx.Client(base_url=gateway.url, headers={"Authorization": f"Bearer {new.secret}"})
    gateway.clients.append(late)
    assert late.put("/v1/kvs/meters/late/a", content=b"late").status_code == 201
    asyncio.run(keys.save_keys(table.revoke(new.key.key_id, 4.0)))
    deadline = time.monotonic() + 10  # the table's lifetime in the serving gateway: 2 s
    while late.get("/v1/kvs/meters/late/a").status_code == 200:
        assert time.monotonic() < deadline
        time.sleep(0.1)
    assert late.get("/v1/kvs/meters/late/a").status_code == 401


def test_no_key_reaches_the_gateways_own_bucket(gateway: Gateway) -> None:
    everything = gateway.client("all-rw")  # read and write on every bucket
    assert everything.put("/v1/kvs/other/x", content=b"x").status_code == 201
    for method, path in (("GET", "/v1/kvs/_kvs/keys"), ("HEAD", "/v1/kvs/_kvs/keys"),
                         ("PUT", "/v1/kvs/_kvs/keys"), ("DELETE", "/v1/kvs/_kvs/buckets"),
                         ("GET", "/v1/kvs/_kvs"), ("PUT", "/v1/policy/_kvs/keys")):  # fmt: skip
        response = everything.request(method, path, content=b"{}" if method == "PUT" else None)
        assert response.status_code == 422, (method, path)
    assert asyncio.run(gateway.state.key_table()).keys  # the table is still there, unchanged


@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    size=st.integers(0, 4 * CHUNK + 7),
    policy=st.sampled_from(["rep:2", "ec:3+2", "hybrid:3+2"]),
    first=st.integers(0, 5 * CHUNK),
    length=st.integers(1, 3 * CHUNK),
)
def test_any_object_round_trips_whole_and_by_range_under_every_policy(
    gateway: Gateway, size: int, policy: str, first: int, length: int
) -> None:
    rw = gateway.client("meters-rw")
    data = random.Random(size).randbytes(size)
    name = f"/v1/kvs/meters/any/{policy}/{size}"
    put = rw.put(name, content=_pieces(data, 333), headers={"X-Kvs-Policy": policy})
    assert put.status_code == 201, put.text
    assert rw.get(name).content == data
    ranged = rw.get(name, headers={"Range": f"bytes={first}-{first + length - 1}"})
    if first >= size:
        assert ranged.status_code == 416
    else:
        assert ranged.status_code == 206
        assert ranged.content == data[first : first + length]


def test_a_key_table_changed_meanwhile_is_never_overwritten(gateway: Gateway) -> None:
    first, second = another_gateway(gateway), another_gateway(gateway)  # two `kvs keys` runs
    scope = Scope("meters", "race/", frozenset((Right.READ,)))
    table_1 = asyncio.run(first.key_table())
    table_2 = asyncio.run(second.key_table())
    added, _ = table_1.add(scope, "one", 5.0, os.urandom)
    asyncio.run(first.save_keys(added))
    also_added, _ = table_2.add(scope, "two", 6.0, os.urandom)
    with pytest.raises(KvsKeyError, match="changed since it was read"):
        asyncio.run(second.save_keys(also_added))
    again = asyncio.run(second.key_table())  # read afresh: the first change is there
    assert {k.label for k in again.keys.values()} >= {"one"}
    done, _ = again.add(scope, "two", 7.0, os.urandom)
    asyncio.run(second.save_keys(done))
    assert {"one", "two"} <= {k.label for k in asyncio.run(first.key_table(True)).keys.values()}
