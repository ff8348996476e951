"""A client of a served Manager (`meterseal jobs serve`): what `meterseal jobs --url` calls.

Each call carries the caller's credential (`Authorization: Bearer …`: a login token or an
API key of an account). A refusal raises `JobsRefused` with the server's one-line reason.
"""

from __future__ import annotations

import ssl
from typing import Any
from urllib.parse import quote

import httpx

from meterseal.errors import MetersealError


class JobsRefused(MetersealError):
    """The served Manager refused a call (credentials, rights, a job's state, the input)."""


def _reason(response: httpx.Response) -> str:
    try:
        detail = response.json().get("detail")
    except ValueError:
        detail = None
    if isinstance(detail, list):  # FastAPI's validation errors: field and message
        detail = "; ".join(
            f"{'.'.join(map(str, d.get('loc', [])))}: {d.get('msg')}" for d in detail
        )
    return f"HTTP {response.status_code}: {detail or response.reason_phrase}"


def _job_path(job_id: str) -> str:
    """A job's path, the id one escaped segment: a slash or a dot segment in an id must
    not lead the request to another job or route (the server refuses such ids anyway)."""
    return f"/v1/jobs/{quote(job_id, safe='')}"


class JobsClient:
    """Submit, list, read and cancel jobs at `url` as the holder of `credential`."""

    def __init__(
        self, url: str, credential: str, verify: ssl.SSLContext | bool = True, timeout: float = 30
    ) -> None:
        self._http = httpx.Client(
            base_url=url.rstrip("/"),
            headers={"Authorization": f"Bearer {credential}"},
            verify=verify,
            timeout=timeout,
        )

    def __enter__(self) -> JobsClient:
        return self

    def __exit__(self, *_exc: object) -> None:
        self._http.close()

    def _call(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        try:
            response = self._http.request(method, path, json=body)
        except httpx.HTTPError as exc:
            raise JobsRefused(
                f"the jobs API at {self._http.base_url} is unreachable: {exc}"
            ) from exc
        if response.status_code >= 400:
            raise JobsRefused(_reason(response))
        return response.json()

    def submit(self, asked: dict[str, Any]) -> dict[str, Any]:
        """Submit a job (the API's JobAsked fields); its view."""
        view: dict[str, Any] = self._call("POST", "/v1/jobs", asked)
        return view

    def jobs(self) -> list[dict[str, Any]]:
        """Every job's view, oldest first."""
        found: list[dict[str, Any]] = self._call("GET", "/v1/jobs")["jobs"]
        return found

    def status(self, job_id: str) -> dict[str, Any]:
        """One job's view, with the Monitor's last figures."""
        view: dict[str, Any] = self._call("GET", _job_path(job_id))
        return view

    def cancel(self, job_id: str) -> dict[str, Any]:
        """Cancel a job; its view."""
        view: dict[str, Any] = self._call("POST", f"{_job_path(job_id)}/cancel")
        return view
