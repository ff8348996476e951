"""The operator's view of the other services: each one's `/readyz`, `/metrics` and counters.

Every meterseal process serves an admin endpoint (runtime.lifecycle: `/readyz`, `/metrics`,
`/v1/counters`). The deployment's configuration names the ones the portal shows (`[portal]
health = "head-end=http://127.0.0.1:7481, router=http://…"`, or `bills serve --health`); the
page asks each of them at once, with a short timeout, and shows what it said: ready, not ready
with its reason, or unreachable with why. An endpoint that answers nonsense is shown so, never
raised: one service down must not take the operator's page down with it. A supervisor's
counters list its child processes, which the page lists under it. An https endpoint (a trusted
worker's, with a key the CAS released) is verified against the deployment's CA.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import math
import ssl
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Annotated, Any, Protocol
from urllib.parse import urlsplit

import httpx
from fastapi import FastAPI, Header, Request
from fastapi.responses import Response

from meterseal.errors import ConfigurationError
from meterseal.runtime.auth import Rule, access

TIMEOUT = 2.0  # seconds per request: a hung service is "unreachable", not a hung page
METRICS_SHOWN = 16  # samples listed per service (the biggest first)
REFRESH = 15  # seconds between the page's partial refreshes (htmx)
# htmx marks its requests so; the route then answers the table alone.
HxRequest = Annotated[str | None, Header(alias="HX-Request", max_length=8)]


@dataclass(frozen=True)
class Target:
    """One service's admin endpoint: its name and base URL."""

    name: str
    url: str


@dataclass(frozen=True)
class ServiceHealth:
    """What one service said, or why it said nothing."""

    name: str
    url: str
    state: str  # "ready", "not ready" or "unreachable"
    reason: str  # why not ready or unreachable; "" when ready
    metrics: tuple[tuple[str, str], ...] = ()  # (sample, value) as shown
    children: tuple[tuple[str, int], ...] = ()  # a supervisor's processes: (label, pid)
    problem: str = ""  # the metrics or counters could not be read: why

    @property
    def ready(self) -> bool:
        """Whether its /readyz said ready."""
        return self.state == "ready"


def parse_targets(text: str) -> tuple[Target, ...]:
    """Targets from "NAME=URL, NAME=URL" (http or https base URLs); ConfigurationError naming
    the entry that is not one."""
    targets: list[Target] = []
    for entry in (e.strip() for e in text.split(",")):
        if not entry:
            continue
        name, _, url = (part.strip() for part in entry.partition("="))
        parts = urlsplit(url)
        try:
            parts.port  # noqa: B018 - raises ValueError for a port that is not one
        except ValueError:
            parts = urlsplit("")
        if not name or parts.scheme not in ("http", "https") or not parts.hostname:
            raise ConfigurationError(
                f"service health entry {entry!r}: NAME=URL with an http(s) URL of the "
                "service's admin endpoint, e.g. head-end=http://127.0.0.1:7481"
            )
        if any(t.name == name for t in targets):
            raise ConfigurationError(f"service health: {name!r} is named twice")
        targets.append(Target(name, url.rstrip("/")))
    return tuple(targets)


def _number(value: float) -> str:
    if math.isnan(value) or math.isinf(value):
        return str(value)
    return f"{value:,.0f}" if value == int(value) else f"{value:,.3f}"


def metric_rows(text: str, limit: int = METRICS_SHOWN) -> tuple[tuple[str, str], ...]:
    """The meterseal counters and gauges of an exposition, non-zero, biggest first; each
    histogram as its count and mean."""
    from prometheus_client.parser import text_string_to_metric_families

    rows: list[tuple[float, str, str]] = []
    for family in text_string_to_metric_families(text):
        if not family.name.startswith("meterseal_"):
            continue
        if family.type == "histogram":
            count = sum(s.value for s in family.samples if s.name.endswith("_count"))
            total = sum(s.value for s in family.samples if s.name.endswith("_sum"))
            if count:
                mean = f"{_number(count)} observed, mean {total / count:.4f} s"
                rows.append((count, family.name, mean))
            continue
        if family.type not in ("counter", "gauge"):
            continue
        for sample in family.samples:
            if sample.name.endswith("_created") or not sample.value:
                continue
            labels = ",".join(f'{k}="{v}"' for k, v in sorted(sample.labels.items()))
            name = f"{sample.name}{{{labels}}}" if labels else sample.name
            rows.append((sample.value, name, _number(sample.value)))
    rows.sort(key=lambda r: (-r[0], r[1]))
    return tuple((name, shown) for _, name, shown in rows[:limit])


def _children(counters: Any) -> tuple[tuple[str, int], ...]:
    processes = counters.get("processes") if isinstance(counters, dict) else None
    if not isinstance(processes, dict):
        return ()
    return tuple(sorted((str(k), int(v)) for k, v in processes.items() if isinstance(v, int)))


def _why(exc: Exception) -> str:
    if isinstance(exc, httpx.HTTPStatusError):
        return f"HTTP {exc.response.status_code}"
    if isinstance(exc, httpx.TimeoutException):
        return f"no answer within the timeout ({type(exc).__name__})"
    text = str(exc) or type(exc).__name__
    return text if len(text) <= 200 else text[:200] + "…"


class HealthProbe:
    """Asks the named services how they are, all at once."""

    def __init__(
        self,
        targets: Sequence[Target],
        timeout: float = TIMEOUT,
        verify: ssl.SSLContext | bool = True,
    ) -> None:
        self.targets = tuple(targets)
        self.timeout = timeout
        self.verify = verify  # https endpoints: a trusted worker's chains to the deployment CA

    async def check(self) -> list[ServiceHealth]:
        """Each target's health, in the configured order."""
        if not self.targets:
            return []
        async with httpx.AsyncClient(
            timeout=self.timeout, follow_redirects=False, verify=self.verify
        ) as client:
            return list(await asyncio.gather(*(self._one(client, t) for t in self.targets)))

    async def _one(self, client: httpx.AsyncClient, target: Target) -> ServiceHealth:
        try:
            return await self._ask(client, target)
        except Exception as exc:  # whatever went wrong, the page shows it and goes on
            return ServiceHealth(target.name, target.url, "unreachable", _why(exc))

    async def _ask(self, client: httpx.AsyncClient, target: Target) -> ServiceHealth:
        try:
            answer = await client.get(f"{target.url}/readyz")
        except (httpx.HTTPError, OSError) as exc:
            return ServiceHealth(target.name, target.url, "unreachable", _why(exc))
        state, reason = "not ready", ""
        try:
            body = answer.json()
            said = body.get("reason") if isinstance(body, dict) else None
        except ValueError:
            said = None
        if answer.status_code == 200:
            state = "ready"
        elif answer.status_code == 503:
            reason = str(said or "it gave no reason")
        else:
            reason = f"/readyz answered HTTP {answer.status_code}: not a meterseal admin endpoint?"
        metrics: tuple[tuple[str, str], ...] = ()
        children: tuple[tuple[str, int], ...] = ()
        problems = []
        try:
            scraped = await client.get(f"{target.url}/metrics")
            scraped.raise_for_status()
            metrics = metric_rows(scraped.text)
        except (httpx.HTTPError, OSError, ValueError) as exc:
            problems.append(f"metrics: {_why(exc)}")
        try:
            counted = await client.get(f"{target.url}/v1/counters")
            if counted.status_code == 200:
                children = _children(counted.json())
        except (httpx.HTTPError, OSError, ValueError) as exc:
            problems.append(f"counters: {_why(exc)}")
        return ServiceHealth(
            target.name, target.url, state, reason, metrics, children, "; ".join(problems)
        )


class _Render(Protocol):
    def __call__(
        self, request: Request, name: str, status: int = 200, **context: object
    ) -> Response: ...


def add_health_routes(
    app: FastAPI,
    render: _Render,
    probe: HealthProbe | None,
    rule: Rule,
    clock: Callable[[], float],
) -> None:
    """Add `/portal/fleet/services`: the page, or (asked by htmx) the table alone."""

    @app.get("/portal/fleet/services", include_in_schema=False, dependencies=[access(rule)])
    async def services(
        request: Request,
        hx_request: Annotated[str | None, Header(alias="HX-Request", max_length=8)] = None,
    ) -> Response:
        found = await probe.check() if probe is not None else []
        name = "staff/services_part.html" if hx_request == "true" else "staff/services.html"
        configured = probe is not None and bool(probe.targets)
        asked = dt.datetime.fromtimestamp(clock(), dt.UTC)
        return render(
            request, name, services=found, configured=configured, refresh=REFRESH, asked=asked
        )
