"""The worker side of secret release: nonce → ephemeral key → quote → release → decrypt.

`fetch_secrets(cas_url, stage=…, measurement=…, attester=…, names=…)` returns the secrets
by name, or raises a `TrustError` whose `diagnostics()` says why: `ReleaseRefused` with the
CAS's reason (e.g. "measurement 3fa2… (stage open-verify) is not allowed secret
'headend-keys' (code modified?)"), `CasUnavailable` when the CAS cannot be reached, or
`AttestationError` when this machine cannot produce a quote.

Over ``https://`` the CAS is verified against `verify` (the deployment CA's client context,
`runtime.tls.client_context`). TLS hides which secrets a worker asks for; the secrets
themselves are protected by the attested key whatever the transport.

The ephemeral X25519 key lives only in this call: secrets are encrypted to it by the CAS,
and nothing else can decrypt them, not even someone who recorded the exchange.
"""

from __future__ import annotations

import ssl
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import cbor2
import httpx

from meterseal.errors import ConfigurationError
from meterseal.runtime.address import hide_password
from meterseal.trust.attestation import Attester
from meterseal.trust.channel import EphemeralKey, release_info
from meterseal.trust.errors import CasUnavailable, ReleaseRefused, TrustError
from meterseal.trust.measurement import Measurement

CBOR = "application/cbor"


def _reason(response: httpx.Response) -> str:
    try:
        detail = response.json().get("detail")
    except ValueError:
        detail = None
    return detail if isinstance(detail, str) else f"HTTP {response.status_code}"


def _checked(response: httpx.Response) -> httpx.Response:
    status = response.status_code
    if status >= 500 or status == 429:
        raise CasUnavailable(f"the CAS at {response.url} answered {status}: {_reason(response)}")
    if status >= 400:
        raise ReleaseRefused(_reason(response), status=status)
    return response


def _decode(response: httpx.Response) -> Any:
    try:
        return cbor2.loads(response.content)
    except (cbor2.CBORDecodeError, ValueError) as exc:
        raise TrustError(f"the CAS sent an unreadable release: {exc}") from None


@dataclass(frozen=True)
class Fetched:
    """Released secrets with their versions and the CAS's assurance label."""

    secrets: dict[str, bytes] = field(repr=False)
    versions: dict[str, int]
    assurance: str


def fetch_secrets(
    cas_url: str,
    *,
    stage: str,
    measurement: Measurement,
    attester: Attester,
    names: Sequence[str],
    timeout: float = 10.0,
    verify: ssl.SSLContext | None = None,
) -> dict[str, bytes]:
    """Attest to the CAS at `cas_url` and return the released secrets `names` (all or none)."""
    return fetch_release(
        cas_url,
        stage=stage,
        measurement=measurement,
        attester=attester,
        names=names,
        timeout=timeout,
        verify=verify,
    ).secrets


def fetch_release(
    cas_url: str,
    *,
    stage: str,
    measurement: Measurement,
    attester: Attester,
    names: Sequence[str],
    timeout: float = 10.0,
    verify: ssl.SSLContext | None = None,
) -> Fetched:
    """`fetch_secrets`, also telling each secret's version and the attestation's assurance."""
    key = EphemeralKey.generate()
    try:
        with httpx.Client(
            base_url=cas_url.rstrip("/"), timeout=timeout, verify=verify or True
        ) as client:
            issued = _checked(client.post("/v1/nonce")).json()
            nonce = bytes.fromhex(issued["nonce"])
            quote = attester.quote(measurement, nonce, key.public_bytes)
            body = cbor2.dumps({"stage": stage, "quote": quote, "secrets": list(names)})
            response = _checked(
                client.post(
                    "/v1/release", content=body, headers={"Content-Type": CBOR, "Accept": CBOR}
                )
            )
    except (httpx.InvalidURL, httpx.UnsupportedProtocol) as exc:
        raise ConfigurationError(
            f"the CAS URL {hide_password(cas_url)!r} is not usable ({exc}); give http(s)://HOST:PORT"
        ) from None
    except httpx.HTTPError as exc:
        raise CasUnavailable(
            f"cannot reach the CAS at {hide_password(cas_url)}: {exc or type(exc).__name__} "
            "(is `meterseal cas serve` running there?)"
        ) from exc
    except (KeyError, ValueError, TypeError) as exc:
        raise TrustError(
            f"the CAS at {hide_password(cas_url)} sent an unexpected nonce: {exc}"
        ) from None
    return _open(_decode(response), key, measurement, nonce, names)


def _open(
    release: Any,
    key: EphemeralKey,
    measurement: Measurement,
    nonce: bytes,
    names: Sequence[str],
) -> Fetched:
    secrets = release.get("secrets") if isinstance(release, dict) else None
    if not isinstance(secrets, dict) or set(secrets) != set(names):
        raise TrustError("the CAS released other secrets than those asked for")
    values, versions = {}, {}
    for name in names:
        item = secrets[name]
        version = item.get("version") if isinstance(item, dict) else None
        sealed = item.get("sealed") if isinstance(item, dict) else None
        if type(version) is not int or not isinstance(sealed, bytes):
            raise TrustError(f"the CAS sent a malformed secret {name!r}")
        values[name] = key.decrypt(sealed, release_info(name, version, measurement, nonce))
        versions[name] = version
    assurance = release.get("assurance")
    return Fetched(values, versions, assurance if isinstance(assurance, str) else "unknown")
