"""An administrator's client of the CAS's HTTP API: policies, secrets' names, rotation, revocation.

Each call carries the administrator's own credential (`Authorization: Bearer …`: a login
token or an API key of the deployment's accounts), so the CAS's route rules decide as for
any administrator. `CasRefused` carries the CAS's reason and status; `CasUnavailable` is an
unreachable CAS or one answering 5xx/429. Over ``https://`` the CAS is verified against
`verify` (the deployment CA's client context).
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import httpx

from meterseal.runtime.address import hide_password
from meterseal.trust.errors import CasUnavailable, TrustError


class CasRefused(TrustError):
    """The CAS refused an administrator's request; `reason` is its one line."""

    def __init__(self, reason: str, status: int) -> None:
        super().__init__(f"the CAS refused: {reason} (HTTP {status})")
        self.reason = reason
        self.status = status


@dataclass(frozen=True)
class Rotated:
    """A secret and a version: the new one of a rotation, the last withdrawn of a revocation."""

    name: str
    version: int


@dataclass(frozen=True)
class RevokedMeasurement:
    """A revocation's outcome: new or not, and the (secret, version) pairs it received."""

    measurement: str
    new: bool
    received: tuple[tuple[str, int], ...]


def _reason(response: httpx.Response) -> str:
    try:
        detail = response.json().get("detail")
    except ValueError:
        detail = None
    return detail if isinstance(detail, str) else f"HTTP {response.status_code}"


@dataclass(frozen=True)
class CasAdmin:
    """The CAS at `url`, as an administrator."""

    url: str
    verify: ssl.SSLContext | None = None
    timeout: float = 10.0

    def _call(self, method: str, path: str, credential: str, body: Any = None) -> Any:
        shown = hide_password(self.url)
        try:
            with httpx.Client(
                base_url=self.url.rstrip("/"), timeout=self.timeout, verify=self.verify or True
            ) as client:
                response = client.request(
                    method, path, json=body, headers={"Authorization": f"Bearer {credential}"}
                )
        except (httpx.InvalidURL, httpx.UnsupportedProtocol) as exc:
            raise CasUnavailable(f"the CAS URL {shown!r} is not usable ({exc})") from None
        except httpx.HTTPError as exc:
            raise CasUnavailable(
                f"cannot reach the CAS at {shown}: {exc or type(exc).__name__}"
            ) from None
        status = response.status_code
        if status >= 500 or status == 429:
            raise CasUnavailable(f"the CAS at {shown} answered {status}: {_reason(response)}")
        if status >= 400:
            raise CasRefused(_reason(response), status)
        try:
            return response.json()
        except ValueError:
            raise TrustError(f"the CAS at {shown} sent no JSON") from None

    def policies(self, credential: str) -> dict[str, Any]:
        """`GET /v1/policies`: {"rules": [...], "revoked": [...]}."""
        return dict(self._call("GET", "/v1/policies", credential))

    def secrets(self, credential: str) -> list[dict[str, Any]]:
        """`GET /v1/secrets`: each secret's name, latest version, versions, updated (no value)."""
        return list(self._call("GET", "/v1/secrets", credential)["secrets"])

    def rotate(self, credential: str, name: str) -> Rotated:
        """`POST /v1/secrets/NAME/rotate`: the secret's new version."""
        answer = self._call("POST", f"/v1/secrets/{quote(name, safe='')}/rotate", credential)
        return Rotated(str(answer["name"]), int(answer["version"]))

    def revoke_secret(self, credential: str, name: str, reason: str) -> Rotated:
        """`POST /v1/secrets/NAME/revoke`: the version it is withdrawn through."""
        path = f"/v1/secrets/{quote(name, safe='')}/revoke"
        answer = self._call("POST", path, credential, {"reason": reason})
        return Rotated(str(answer["name"]), int(answer["version"]))

    def revoke(self, credential: str, measurement: str, reason: str) -> RevokedMeasurement:
        """`POST /v1/measurements/HEX/revoke`: new or not, and what it had received."""
        path = f"/v1/measurements/{quote(measurement, safe='')}/revoke"
        answer = self._call("POST", path, credential, {"reason": reason})
        received = tuple((str(n), int(v)) for n, v in answer["received"])
        return RevokedMeasurement(str(answer["measurement"]), bool(answer["new"]), received)
