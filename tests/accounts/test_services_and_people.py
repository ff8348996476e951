"""A service known by its client certificate (mutual TLS) is not a person: it reads no data."""

from __future__ import annotations

import asyncio
import os

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from starlette.requests import Request

from meterseal.accounts.model import Role
from meterseal.billing.api import CUSTOMER_DATA
from meterseal.crypto import certs
from meterseal.runtime.auth import Authenticator, Identity
from meterseal.runtime.peer import with_peer_certificates
from tests.accounts.people import MemoryAccounts, People
from tests.conftest import NOW


def _request(chain: list[str], headers: dict[str, str]) -> Request:
    scope = {
        "type": "http",
        "method": "GET",
        "path": "/v1/bills/x",
        "headers": [(k.lower().encode(), v.encode()) for k, v in headers.items()],
        "client": ("127.0.0.1", 40000),
        "extensions": {"tls": {"client_cert_chain": chain}},
    }
    return Request(scope)


async def _identify(authenticate: Authenticator, request: Request) -> Identity:
    return await authenticate(request)


def test_a_service_certificate_gives_a_service_no_customer_s_data() -> None:
    people = People(MemoryAccounts())
    people.add("ann", Role.AUDITOR)
    authenticate = with_peer_certificates(people.authenticator)
    ca_key, ca_cert = certs.create_ca("test CA", now=NOW, rng=os.urandom)
    key = ec.generate_private_key(ec.SECP256R1())
    cert = certs.issue_service_certificate(
        ca_key, ca_cert, "billing", key.public_key(), now=NOW, rng=os.urandom
    )
    pem = cert.public_bytes(serialization.Encoding.PEM).decode()
    service = asyncio.run(_identify(authenticate, _request([pem], {})))
    assert service.subject == "service:billing"
    assert not CUSTOMER_DATA.allows(service, _request([pem], {}))
    # Without a certificate the account's token decides, as without TLS.
    person = asyncio.run(_identify(authenticate, _request([], people.headers("ann"))))
    assert (person.subject, CUSTOMER_DATA.allows(person, _request([], {}))) == ("ann", True)
