"""TLS and mutual TLS on the runtime's HTTP server, with certificates from a deployment CA."""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import os
import ssl
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from fastapi import FastAPI, Request

from meterseal.crypto import certs
from meterseal.runtime.auth import PUBLIC, Identity, access
from meterseal.runtime.http import HttpServer, ServerLimits, ThreadedServer, service_app
from meterseal.runtime.http_body import BODY_EXTENSION
from meterseal.runtime.peer import FromService
from meterseal.runtime.tls import TlsIdentity, client_context, server_context

NOW = dt.datetime.now(dt.UTC)
ANYONE = access(PUBLIC)


@dataclass(frozen=True)
class Ca:
    """A CA that issues service certificates."""

    key: ec.EllipticCurvePrivateKey
    cert: x509.Certificate

    @classmethod
    def create(cls, name: str) -> Ca:
        """A fresh CA."""
        return cls(*certs.create_ca(name, now=NOW, rng=os.urandom))

    def service(self, name: str, hosts: tuple[str, ...] = ()) -> TlsIdentity:
        """A service identity, a server one too when `hosts` are given."""
        key = ec.generate_private_key(ec.SECP256R1())
        cert = certs.issue_service_certificate(
            self.key, self.cert, name, key.public_key(), hosts=hosts, now=NOW, rng=os.urandom
        )
        return TlsIdentity((cert,), key)


@pytest.fixture(scope="module")
def ca() -> Ca:
    return Ca.create("test deployment CA")


@pytest.fixture(scope="module")
def server_identity(ca: Ca) -> TlsIdentity:
    return ca.service("cas", ("127.0.0.1", "localhost"))


def _app() -> FastAPI:
    counts: Counter[str] = Counter()
    app = service_app("tls test", "A TLS test service.", counts, lambda: {})

    @app.get("/whoami")
    async def whoami(request: Request, identity: Identity = ANYONE) -> dict[str, Any]:
        tls = request.scope["extensions"]["tls"]
        return {"subject": identity.subject, "version": tls["tls_version"]}

    @app.get("/for-open-verify", dependencies=[access(FromService.of(["open-verify"]))])
    async def for_open_verify() -> dict[str, str]:
        return {"hello": "open-verify"}

    return app


@pytest.fixture(scope="module")
def mtls_url(ca: Ca, server_identity: TlsIdentity) -> Iterator[str]:
    tls = server_context(server_identity, ca.cert, require_client=True)
    with ThreadedServer(_app(), tls=tls) as url:
        yield url


@pytest.fixture(scope="module")
def optional_url(ca: Ca, server_identity: TlsIdentity) -> Iterator[str]:
    with ThreadedServer(_app(), tls=server_context(server_identity, ca.cert)) as url:
        yield url


def _get(url: str, verify: ssl.SSLContext, path: str = "/whoami") -> httpx.Response:
    with httpx.Client(verify=verify, timeout=10) as client:
        return client.get(url + path)


def test_mutual_tls_with_the_deployment_ca_names_the_calling_service(ca: Ca, mtls_url: str) -> None:
    assert mtls_url.startswith("https://127.0.0.1:")
    verify = client_context(ca.cert, ca.service("open-verify"))
    answer = _get(mtls_url, verify).json()
    assert answer == {"subject": "service:open-verify", "version": "TLSv1.3"}
    assert _get(mtls_url, verify, "/for-open-verify").json() == {"hello": "open-verify"}
    # another service of the same CA is known, and refused by the rule
    assert (
        _get(
            mtls_url, client_context(ca.cert, ca.service("billing")), "/for-open-verify"
        ).status_code
        == 403
    )


def test_a_server_of_another_ca_is_refused_by_the_client(ca: Ca) -> None:
    other = Ca.create("another CA")
    tls = server_context(other.service("cas", ("127.0.0.1",)))
    with (
        ThreadedServer(_app(), tls=tls) as url,
        pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"),
    ):
        _get(url, client_context(ca.cert, ca.service("open-verify")))


def test_a_server_certificate_for_another_host_is_refused(ca: Ca) -> None:
    tls = server_context(ca.service("cas", ("db.example",)))
    with (
        ThreadedServer(_app(), tls=tls) as url,
        pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"),
    ):
        _get(url, client_context(ca.cert))


@pytest.mark.parametrize("client", ["none", "other CA"])
def test_mutual_tls_refuses_a_client_without_a_certificate_of_the_ca(
    ca: Ca, mtls_url: str, client: str
) -> None:
    identity = None if client == "none" else Ca.create("another CA").service("open-verify")
    with pytest.raises(httpx.TransportError):
        _get(mtls_url, client_context(ca.cert, identity))


def test_a_plain_http_client_is_refused_on_a_tls_port(mtls_url: str) -> None:
    plain = mtls_url.replace("https://", "http://")
    with httpx.Client(timeout=10) as client, pytest.raises(httpx.TransportError):
        client.get(plain + "/healthz")


def test_optional_client_certificates_leave_callers_without_one_anonymous(
    ca: Ca, optional_url: str
) -> None:
    verify = client_context(ca.cert)
    assert _get(optional_url, verify).json()["subject"] is None
    assert _get(optional_url, verify, "/for-open-verify").status_code == 401
    with_cert = client_context(ca.cert, ca.service("open-verify"))
    assert _get(optional_url, with_cert, "/for-open-verify").status_code == 200


def test_a_client_certificate_that_names_no_service_identifies_nobody(
    ca: Ca, optional_url: str
) -> None:
    # e.g. an MQTT head-end's certificate from the same CA: valid TLS, but no service name
    key = ec.generate_private_key(ec.SECP256R1())
    cert = certs.issue_tls_certificate(
        ca.key, ca.cert, "open-verify", key.public_key(), client=True, now=NOW, rng=os.urandom
    )
    verify = client_context(ca.cert, TlsIdentity((cert,), key))
    assert _get(optional_url, verify).json()["subject"] is None
    assert _get(optional_url, verify, "/for-open-verify").status_code == 401


def test_a_tls_identity_round_trips_through_its_pem(ca: Ca, server_identity: TlsIdentity) -> None:
    again = TlsIdentity.from_pem(server_identity.pem())
    assert again.chain == server_identity.chain
    assert certs.service_of(again.certificate) == "cas"


async def _closed(reader: asyncio.StreamReader) -> bytes:
    """What the server sent before closing (a reset counts as nothing)."""
    try:
        return await asyncio.wait_for(reader.read(), 60)
    except ConnectionResetError:
        return b""


def test_a_silent_tls_client_is_capped_before_its_handshake_and_closed(
    ca: Ca, server_identity: TlsIdentity
) -> None:
    async def scenario() -> None:
        limits = ServerLimits(max_per_source=2, head_timeout=0.5)
        server = HttpServer(_app(), limits, tls=server_context(server_identity, ca.cert))
        port = await server.start()
        try:
            silent = [await asyncio.open_connection("127.0.0.1", port) for _ in range(2)]
            assert server.gate is not None
            while server.gate.held("127.0.0.1") < 2:  # accepted: held by the caps, no hello
                await asyncio.sleep(0.01)
            third, _ = await asyncio.open_connection("127.0.0.1", port)
            assert await _closed(third) == b""  # over the cap: reset before any handshake
            for reader, _ in silent:  # no hello within the head timeout: closed
                assert await _closed(reader) == b""
            assert server.counts["tls_handshake_failed"] == 2
            assert server.counts["refused_source_full"] == 1
            assert server.gate.held("127.0.0.1") == 0
            verify = client_context(ca.cert, ca.service("open-verify"))
            async with httpx.AsyncClient(verify=verify, timeout=10) as client:
                answer = await client.get(f"https://127.0.0.1:{port}/whoami")
            assert answer.json()["subject"] == "service:open-verify"
        finally:
            await server.stop()

    asyncio.run(scenario())


def test_a_body_pulled_into_the_apps_buffers_arrives_whole_over_tls(
    ca: Ca, server_identity: TlsIdentity
) -> None:
    counts: Counter[str] = Counter()
    app = service_app("pulls", "A test service.", counts, lambda: dict(counts))

    @app.put("/digest", dependencies=[ANYONE])
    async def digest(request: Request) -> dict[str, Any]:
        read_into = request.scope["extensions"][BODY_EXTENSION]["read_into"]
        sha, size = hashlib.sha256(), 0
        while True:  # views of an odd size: their ends fall inside TLS records
            view = memoryview(bytearray(1_000_003))
            got = await read_into(view)
            sha.update(view[:got])
            size += got
            if got < len(view):
                return {"size": size, "sha256": sha.hexdigest()}

    body = os.urandom(3 * 1024 * 1024 + 5)
    with (
        ThreadedServer(app, tls=server_context(server_identity, ca.cert)) as url,
        httpx.Client(verify=client_context(ca.cert), timeout=30) as client,
    ):
        for _ in range(2):  # the second on the same connection
            answer = client.put(url + "/digest", content=body)
            assert answer.json() == {"size": len(body), "sha256": hashlib.sha256(body).hexdigest()}
