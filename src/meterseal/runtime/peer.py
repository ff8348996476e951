"""Who is at the other end of a mutual TLS connection, for the app's authenticator.

`with_peer_certificates` turns the verified client certificate `HttpServer` put in the
request's scope (`runtime.tls.tls_scope`) into an `Identity`: ``service:NAME`` with the role
``service``, NAME taken from the certificate's ``urn:meterseal:service:`` name (a meter's
or a broker's certificate from the same CA names no service, and identifies nobody).
`FromService(names)` is the rule a route declares to admit only those services.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable
from dataclasses import dataclass

from cryptography import x509
from fastapi import Request

from meterseal.crypto.certs import service_of
from meterseal.runtime.auth import Authenticator, Identity, anonymous

SERVICE_ROLE = "service"


@functools.lru_cache(maxsize=256)
def _service_in(pem: str) -> str | None:
    return service_of(x509.load_pem_x509_certificate(pem.encode()))


def peer_identity(request: Request) -> Identity | None:
    """The service whose verified client certificate made this request, if any."""
    tls = request.scope.get("extensions", {}).get("tls") or {}
    chain = tls.get("client_cert_chain") or []
    service = _service_in(chain[0]) if chain else None
    if service is None:
        return None
    return Identity(f"service:{service}", frozenset({SERVICE_ROLE}))


def with_peer_certificates(inner: Authenticator = anonymous) -> Authenticator:
    """An authenticator that knows services by their client certificate, else asks `inner`."""

    async def authenticate(request: Request) -> Identity:
        return peer_identity(request) or await inner(request)

    authenticate.peer_certificates = True  # type: ignore[attr-defined]
    return authenticate


@dataclass(frozen=True)
class FromService:
    """Lets through only the named services (by their client certificate: mutual TLS)."""

    services: frozenset[str]

    @classmethod
    def of(cls, names: Iterable[str]) -> FromService:
        """A rule admitting `names`."""
        return cls(frozenset(names))

    @property
    def name(self) -> str:
        """service:NAME,... for the route table."""
        return "service:" + ",".join(sorted(self.services))

    def allows(self, identity: Identity, request: Request) -> bool:
        """The caller is one of the services, proven by its client certificate."""
        subjects = {f"service:{s}" for s in self.services}
        return SERVICE_ROLE in identity.roles and identity.subject in subjects
