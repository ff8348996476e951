"""What an anonymous source can make the CAS keep: nonces per source and in all, logged refusals."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import cbor2
import httpx
import pytest

from meterseal.runtime.http import ThreadedServer
from meterseal.trust import api
from meterseal.trust.api import create_cas_app
from meterseal.trust.cas import Cas, ReleaseRequest, decode_entry
from meterseal.trust.channel import EphemeralKey
from meterseal.trust.errors import ReleaseRefused
from meterseal.trust.limits import CAS_FULL, SOURCE_FULL, CasLimits, TooManyNonces
from meterseal.trust.measurement import Measurement
from tests.trust.conftest import World

FLOOD, OTHER = "192.0.2.7", "198.51.100.9"  # documentation addresses, as source keys
GARBAGE = ReleaseRequest("open-verify", b"not a quote", ("headend-keys",))


def _limited(world: World, **caps: Any) -> Cas:
    """`world`'s CAS with other caps (the same state, clock and platform)."""
    world.cas = Cas(
        world.cas.state,
        world.cas.vault,
        world.cas.verifiers.values(),
        clock=world.clock,
        limits=CasLimits(**caps),
    )
    return world.cas


def _refused_entries(world: World) -> list[dict[str, Any]]:
    entries = [decode_entry(r.entry) for r in world.cas.state.log_rows()]
    return [e for e in entries if e["outcome"] == "refused"]


def test_a_source_beyond_its_nonce_cap_is_refused_while_another_gets_one(
    world: World, worker_measurement: Measurement
) -> None:
    cas = _limited(world, max_nonces_per_source=3)
    cas.put_secret("headend-keys", b"the head-end keys")
    cas.allow("open-verify", worker_measurement, ["headend-keys"])
    held = [cas.issue_nonce(FLOOD).nonce for _ in range(3)]
    for _ in range(5):
        with pytest.raises(TooManyNonces) as refused:
            cas.issue_nonce(FLOOD)
        assert (refused.value.status, refused.value.counter) == (429, SOURCE_FULL)
        assert refused.value.retry_after >= 1
    assert "this source holds 3 unused ones" in refused.value.reason
    assert cas.issue_nonce(OTHER).nonce not in held  # another source is not starved
    # A nonce a quote used frees its place: the worker behind FLOOD attests again.
    key = EphemeralKey.generate()
    quote = world.attester.quote(worker_measurement, held[0], key.public_bytes)
    assert cas.release(ReleaseRequest("open-verify", quote, ("headend-keys",)), FLOOD).secrets
    assert cas.issue_nonce(FLOOD).nonce
    with pytest.raises(TooManyNonces):
        cas.issue_nonce(FLOOD)


def test_all_sources_together_are_capped(world: World) -> None:
    cas = _limited(world, max_nonces_per_source=2, max_nonces=5)
    for n in range(5):
        cas.issue_nonce(f"10.0.0.{n}")
    with pytest.raises(TooManyNonces) as refused:
        cas.issue_nonce("10.0.0.9")
    assert refused.value.counter == CAS_FULL
    assert "all sources hold 5 unused ones" in refused.value.reason


def test_expired_nonces_neither_count_nor_accumulate(world: World) -> None:
    cas = _limited(world, max_nonces_per_source=3)
    issued: list[bytes] = []
    for _ in range(6):  # six windows of a source asking for twice its cap
        got = 0
        for _ in range(6):
            try:
                issued.append(cas.issue_nonce(FLOOD).nonce)
                got += 1
            except TooManyNonces:
                pass
        assert got == 3  # the last window's unused nonces no longer count against it
        stored = sum(cas.state.nonce(n) is not None for n in issued)
        assert stored <= 2 * 3  # this window's and the last one's (kept to say "expired")
        world.clock.now += cas.nonce_ttl + 1
    assert len(issued) == 18


def test_anonymous_refusals_beyond_the_budget_are_refused_but_not_logged(
    world: World, worker_measurement: Measurement
) -> None:
    cas = _limited(world, logged_refusals_per_source=4, logged_refusal_rate_per_source=0.0)
    cas.put_secret("headend-keys", b"the head-end keys")
    outcomes = []
    for _ in range(50):
        with pytest.raises(ReleaseRefused, match=r"quote refused \(format\)") as refused:
            cas.release(GARBAGE, FLOOD)
        outcomes.append(refused.value.logged)
    assert outcomes == [True] * 4 + [False] * 46
    assert len(_refused_entries(world)) == 4
    # Another source's refusal is still recorded, and so is a refusal that moved a nonce
    # (a quote that verifies, refused by the policy), whatever its source's budget.
    with pytest.raises(ReleaseRefused) as refused:
        cas.release(GARBAGE, OTHER)
    assert refused.value.logged
    quote, _ = world.quote(worker_measurement)
    with pytest.raises(ReleaseRefused, match="not allowed") as refused:
        cas.release(ReleaseRequest("open-verify", quote, ("headend-keys",)), FLOOD)
    assert refused.value.logged
    assert len(_refused_entries(world)) == 6
    with pytest.raises(ReleaseRefused, match="nonce already refused") as refused:  # a replay
        cas.release(ReleaseRequest("open-verify", quote, ("headend-keys",)), FLOOD)
    assert not refused.value.logged


def _ask(world: World, calls: list[tuple[str, str, str]]) -> list[httpx.Response]:
    """Each (source address, method, path) in order against one app, in process."""
    app = create_cas_app(world.cas)

    async def run() -> list[httpx.Response]:
        answers = []
        for host, method, path in calls:
            transport = httpx.ASGITransport(app=app, client=(host, 40000))
            async with httpx.AsyncClient(transport=transport, base_url="http://cas") as client:
                answers.append(await client.request(method, path))
        return answers

    return asyncio.run(run())


def test_over_http_a_flooding_source_gets_429_and_is_counted(world: World) -> None:
    _limited(world, max_nonces_per_source=2)
    answers = _ask(
        world,
        [(FLOOD, "POST", "/v1/nonce")] * 5
        + [(OTHER, "POST", "/v1/nonce"), (OTHER, "GET", "/v1/counters")],
    )
    assert [a.status_code for a in answers[:6]] == [200, 200, 429, 429, 429, 200]
    assert "this source holds 2 unused ones" in answers[2].json()["detail"]
    assert int(answers[2].headers["Retry-After"]) >= 1
    counts = answers[-1].json()["cas"]
    assert (counts["nonces"], counts[SOURCE_FULL]) == (3, 3)


def test_over_http_unlogged_refusals_are_counted_and_summed_up_in_one_line(
    world: World, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(api, "REFUSAL_LOG_INTERVAL", 0.5)
    _limited(world, logged_refusals_per_source=2, logged_refusal_rate_per_source=0.0)
    caplog.set_level(logging.WARNING, api.log.name)
    body = cbor2.dumps({"stage": "open-verify", "quote": b"\x00", "secrets": ["headend-keys"]})
    cbor = {"Content-Type": "application/cbor"}
    with ThreadedServer(create_cas_app(world.cas)) as url, httpx.Client(base_url=url) as client:
        statuses = [client.post("/v1/release", content=body, headers=cbor) for _ in range(30)]
        counts = client.get("/v1/counters").json()["cas"]
        deadline = time.monotonic() + 20  # the summary comes at the end of its interval
        while sum(_summed(caplog)) < 28 and time.monotonic() < deadline:
            time.sleep(0.05)
    assert [s.status_code for s in statuses] == [403] * 30
    assert "quote refused (format)" in statuses[-1].json()["detail"]
    assert (counts["refused"], counts["refused_unlogged"]) == (30, 28)
    assert len(_refused_entries(world)) == 2
    # Summed up per interval, never one line per refusal.
    assert sum(_summed(caplog)) == 28
    assert len(_summed(caplog)) < 28


def _summed(caplog: pytest.LogCaptureFixture) -> list[int]:
    """Refusals each summary line of the CAS counts (busiest source: this host)."""
    lines = [r.getMessage() for r in caplog.records if "refused_unlogged" in r.getMessage()]
    assert all("busiest source 127.0.0.1" in line for line in lines)
    return [int(line.split(" refused ")[1].split()[0]) for line in lines]


def test_refusals_noted_before_the_server_stops_are_still_summed_up(
    world: World, caplog: pytest.LogCaptureFixture
) -> None:
    # The summary comes at the end of its 10 s interval: a server stopped within it (Ctrl-C,
    # SIGTERM, a restart) must still say what it refused, as every other server's does.
    _limited(world, max_nonces_per_source=1)
    caplog.set_level(logging.WARNING, api.log.name)
    with ThreadedServer(create_cas_app(world.cas)) as url, httpx.Client(base_url=url) as client:
        statuses = [client.post("/v1/nonce").status_code for _ in range(3)]
    assert statuses == [200, 429, 429]
    lines = [r.getMessage() for r in caplog.records if SOURCE_FULL in r.getMessage()]
    assert len(lines) == 1, lines
    assert lines[0].startswith("meterseal CAS refused 2 requests in 10 s")
