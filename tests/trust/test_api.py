"""The CAS HTTP API: a worker fetches over it; bad input is one 4xx reason, never a 500."""

from __future__ import annotations

import asyncio
from typing import Any

import cbor2
import httpx
import pytest
from fastapi import FastAPI

from meterseal.accounts.model import Role
from meterseal.errors import ConfigurationError, StorageError
from meterseal.runtime.auth import check_access, route_rules
from meterseal.runtime.http import ThreadedServer
from meterseal.trust.api import MAX_BODY, create_cas_app
from meterseal.trust.client import fetch_release, fetch_secrets
from meterseal.trust.errors import CasUnavailable, ReleaseRefused
from meterseal.trust.measurement import Measurement
from tests.accounts.people import MemoryAccounts, People
from tests.trust.conftest import World

CBOR = {"Content-Type": "application/cbor"}
SECRET = b"the-anonymization-key-0123456789"


def administered(world: World) -> tuple[FastAPI, dict[str, str]]:
    """The CAS app with an administrator's account, and the administrator's header."""
    people = People(MemoryAccounts())
    people.add("admin", Role.ADMINISTRATOR)
    return create_cas_app(world.cas, people.authenticator), people.headers("admin")


def _call(
    world: World, method: str, path: str, app: FastAPI | None = None, **kwargs: Any
) -> httpx.Response:
    """One request as an administrator in process; an exception in the app (a 500) is raised."""
    made, admin = administered(world)

    async def call() -> httpx.Response:
        transport = httpx.ASGITransport(app=app or made)
        async with httpx.AsyncClient(transport=transport, base_url="http://cas") as client:
            headers = admin | kwargs.pop("headers", {})
            return await client.request(method, path, headers=headers, **kwargs)

    return asyncio.run(call())


@pytest.fixture
def ready(world: World, worker_measurement: Measurement) -> World:
    world.cas.put_secret("anonymization-key", SECRET)
    world.cas.allow("anonymize-store", worker_measurement, ["anonymization-key"])
    return world


def test_every_route_declares_its_access(ready: World) -> None:
    app = create_cas_app(ready.cas)
    check_access(app)
    rules = {route.partition(" ")[2]: names for route, names in route_rules(app).items()}
    assert rules["/v1/nonce"] == rules["/v1/attestation"] == rules["/healthz"] == ["public"]
    assert rules["/v1/release"] == ["proven-by-body"]
    assert rules["/v1/policies"] == rules["/v1/secrets"] == ["role:administrator"]
    assert rules["/v1/log"] == ["roles:administrator|auditor"]


def test_a_worker_fetches_its_secret_over_http(
    ready: World, worker_measurement: Measurement
) -> None:
    with ThreadedServer(create_cas_app(ready.cas)) as url:
        fetched = fetch_release(
            url,
            stage="anonymize-store",
            measurement=worker_measurement,
            attester=ready.attester,
            names=["anonymization-key"],
        )
        assert fetched.secrets == {"anonymization-key": SECRET}
        assert fetched.versions == {"anonymization-key": 1}
        assert fetched.assurance == "simulated: no hardware guarantee"
        with pytest.raises(ReleaseRefused) as refused:
            fetch_secrets(
                url,
                stage="anonymize-store",
                measurement=Measurement(b"\x09" * 32),
                attester=ready.attester,
                names=["anonymization-key"],
            )
    assert refused.value.status == 403
    assert "is not allowed secret 'anonymization-key' (code modified?)" in (
        refused.value.diagnostics()
    )


def test_an_unreachable_cas_is_unavailable_not_refused(
    ready: World, worker_measurement: Measurement
) -> None:
    with ThreadedServer(create_cas_app(ready.cas)) as url:
        pass  # stopped: nothing listens there any more
    with pytest.raises(CasUnavailable, match="cannot reach the CAS"):
        fetch_secrets(
            url,
            stage="anonymize-store",
            measurement=worker_measurement,
            attester=ready.attester,
            names=["anonymization-key"],
            timeout=2,
        )


@pytest.mark.parametrize(
    ("url", "error", "says"),
    [
        ("http://op:s3cret@127.0.0.1:{port}", CasUnavailable, "is `meterseal cas serve` running"),
        ("ftp://op:s3cret@127.0.0.1:{port}", ConfigurationError, "give http(s)://HOST:PORT"),
    ],
)
def test_a_wrong_cas_url_is_one_line_without_the_password(
    ready: World, worker_measurement: Measurement, url: str, error: type[Exception], says: str
) -> None:
    with ThreadedServer(create_cas_app(ready.cas)) as served:
        pass  # stopped: nothing listens there any more
    port = served.rsplit(":", 1)[1]
    with pytest.raises(error) as raised:
        fetch_secrets(
            url.format(port=port),
            stage="anonymize-store",
            measurement=worker_measurement,
            attester=ready.attester,
            names=["anonymization-key"],
            timeout=2,
        )
    text = raised.value.diagnostics()  # type: ignore[attr-defined]
    assert says in text
    assert "op:***@127.0.0.1" in text
    assert "s3cret" not in text
    assert "\n" not in text


def _release_body(ready: World, measurement: Measurement, **override: Any) -> bytes:
    quote, _ = ready.quote(measurement)
    body = {"stage": "anonymize-store", "quote": quote, "secrets": ["anonymization-key"]}
    return cbor2.dumps(body | override)


def test_release_answers_cbor_with_the_assurance_header(
    ready: World, worker_measurement: Measurement
) -> None:
    response = _call(
        ready, "POST", "/v1/release", content=_release_body(ready, worker_measurement), headers=CBOR
    )
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/cbor"
    assert response.headers["x-meterseal-assurance"] == "simulated: no hardware guarantee"
    body = cbor2.loads(response.content)
    assert set(body["secrets"]) == {"anonymization-key"}
    assert body["measurement"] == worker_measurement.digest


@pytest.mark.parametrize(
    ("body", "headers", "status", "detail"),
    [
        (b"\xa1", CBOR, 400, "not one CBOR item"),
        (cbor2.dumps([1, 2, 3]), CBOR, 400, "map of stage, quote and secrets"),
        (cbor2.dumps({"stage": 1, "quote": b"", "secrets": []}), CBOR, 400, "text string"),
        (cbor2.dumps({"stage": "s", "quote": b"", "secrets": "x"}), CBOR, 400, "array of text"),
        (cbor2.dumps({"stage": "s", "quote": b"q", "secrets": ["x"]}), CBOR, 403, "quote refused"),
        (b"{}", {"Content-Type": "application/json"}, 415, "application/cbor"),
        (b"\x00" * (MAX_BODY + 1), CBOR, 413, "body over"),
    ],
)
def test_bad_release_bodies_get_one_reason(
    ready: World, body: bytes, headers: dict[str, str], status: int, detail: str
) -> None:
    response = _call(ready, "POST", "/v1/release", content=body, headers=headers)
    assert response.status_code == status, response.text
    assert detail in response.json()["detail"]


def test_refusals_are_403_with_the_cas_reason(
    ready: World, worker_measurement: Measurement
) -> None:
    body = _release_body(ready, worker_measurement, stage="NOT A STAGE")
    response = _call(ready, "POST", "/v1/release", content=body, headers=CBOR)
    assert (response.status_code, response.json()["detail"][:11]) == (400, "stage names")
    body = _release_body(ready, Measurement(b"\x07" * 32))
    response = _call(ready, "POST", "/v1/release", content=body, headers=CBOR)
    assert response.status_code == 403
    assert "(code modified?)" in response.json()["detail"]


@pytest.mark.parametrize(
    "path", ["/v1/log?limit=0", "/v1/log?after=-2", "/v1/log?limit=x", "/v1/log?limit=5000"]
)
def test_bad_parameters_are_422(ready: World, path: str) -> None:
    assert _call(ready, "GET", path).status_code == 422


def test_views_show_metadata_never_values(ready: World, worker_measurement: Measurement) -> None:
    nonce = _call(ready, "POST", "/v1/nonce").json()
    assert len(bytes.fromhex(nonce["nonce"])) == 32
    assert nonce["ttl"] == 60.0
    secrets = _call(ready, "GET", "/v1/secrets")
    assert secrets.json()["secrets"][0] | {"updated_at": ""} == {
        "name": "anonymization-key",
        "latest_version": 1,
        "versions": 1,
        "updated_at": "",
        "revoked_through": 0,
    }
    policies = _call(ready, "GET", "/v1/policies").json()
    assert policies["rules"][0]["measurement"] == worker_measurement.hex
    assert policies["revoked"] == []
    log = _call(ready, "GET", "/v1/log?verify=true").json()
    assert (log["size"], log["verified"], log["problems"]) == (2, True, [])
    assert [e["event"] for e in log["entries"]] == ["secret-added", "policy-added"]
    assert _call(ready, "GET", "/v1/log?after=0").json()["entries"][0]["seq"] == 1
    attestation = _call(ready, "GET", "/v1/attestation").json()
    assert attestation == {"backends": {"simulated": "simulated: no hardware guarantee"}}
    for path in ("/v1/secrets", "/v1/policies", "/v1/log", "/v1/counters", "/openapi.json"):
        response = _call(ready, "GET", path)
        assert response.status_code == 200
        assert SECRET.decode() not in response.text


def test_an_unreachable_store_is_503(
    ready: World, worker_measurement: Measurement, monkeypatch: pytest.MonkeyPatch
) -> None:
    def down(*_args: object) -> None:
        raise StorageError("storage failed: connection refused")

    app = administered(ready)[0]
    body = _release_body(ready, worker_measurement)
    for name in ("secret_infos", "add_nonce", "nonce"):
        monkeypatch.setattr(ready.cas.state, name, down)
    assert _call(ready, "GET", "/v1/secrets", app).status_code == 503
    assert _call(ready, "POST", "/v1/nonce", app).status_code == 503
    response = _call(ready, "POST", "/v1/release", app, content=body, headers=CBOR)
    assert response.json() == {"detail": "the store is unavailable; retry later"}
    assert response.status_code == 503
    assert _call(ready, "GET", "/v1/counters", app).json()["cas"]["store_unavailable"] == 3


def test_each_role_reads_only_what_the_cas_gives_it(ready: World) -> None:
    people = People(MemoryAccounts())
    people.add("admin", Role.ADMINISTRATOR)
    people.add("ann", Role.AUDITOR)
    people.add("ops", Role.OPERATOR)
    people.add("cust", Role.CUSTOMER, customer_id="CUST-1")
    app = create_cas_app(ready.cas, people.authenticator)
    expected = {
        "/v1/policies": {None: 401, "admin": 200, "ann": 403, "ops": 403, "cust": 403},
        "/v1/secrets": {None: 401, "admin": 200, "ann": 403, "ops": 403, "cust": 403},
        "/v1/log": {None: 401, "admin": 200, "ann": 200, "ops": 403, "cust": 403},
        "/v1/attestation": {None: 200, "admin": 200, "ann": 200, "ops": 200, "cust": 200},
    }

    async def status(method: str, path: str, who: str | None) -> int:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://cas") as client:
            response = await client.request(method, path, headers=people.headers(who))
            return response.status_code

    for path, statuses in expected.items():
        for who, wanted in statuses.items():
            assert asyncio.run(status("GET", path, who)) == wanted, (path, who)
    assert asyncio.run(status("POST", "/v1/nonce", None)) == 200
