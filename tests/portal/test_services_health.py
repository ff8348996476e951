"""The operator's Services page: real admin endpoints (runtime.lifecycle's admin app) on
port 0, one ready, one not ready, a supervisor with children, one unreachable, one that is
no meterseal endpoint; the page shows each as it is and never fails for one of them."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections import Counter
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import uvicorn
from fastapi import FastAPI
from fastapi.responses import PlainTextResponse

from meterseal.errors import ConfigurationError
from meterseal.portal.app import create_portal_app
from meterseal.portal.health import HealthProbe, Target, metric_rows, parse_targets
from meterseal.runtime.lifecycle import Event, Lifecycle, admin_app
from meterseal.runtime.metrics import ServiceMetrics
from meterseal.runtime.readiness import Readiness
from tests.billing.test_api import OPERATOR
from tests.portal.conftest import Portal
from tests.portal.test_staff import sign_in


class _Stage:
    """What admin_app reads of a stage: its name, metrics, readiness and counters (a Stage
    that admin_app never starts, runs or stops)."""

    def __init__(self, name: str, down: str | None, counters: dict[str, Any]) -> None:
        self.name = name
        self.metrics = ServiceMetrics(name)
        self.counts: Counter[str] = Counter(stored=41, duplicate=0, bad_signature=3)
        self.metrics.bridge_stages(lambda: self.counts)
        self.readiness = Readiness(lambda: down)
        self._counters = counters

    def counters(self) -> dict[str, Any]:
        return self._counters

    async def start(self) -> dict[str, str]:
        return {}

    async def run(self, stop: asyncio.Event) -> None:
        await stop.wait()

    async def stop(self) -> None:
        pass


def _serve(app: Any) -> Iterator[str]:
    config = uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert time.monotonic() < deadline, "the admin endpoint did not start"
        assert thread.is_alive()
        time.sleep(0.02)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def _admin(stage: _Stage) -> Any:
    lifecycle = Lifecycle()
    lifecycle.on(Event.START)
    lifecycle.on(Event.STARTED)
    return admin_app(stage, lifecycle)


def _refusing_port() -> socket.socket:
    """A socket bound and never listening: connections to its port are refused, and no other
    server can take the port while it is held (a closed port could be handed out again)."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    return sock


@pytest.fixture
def services() -> Iterator[dict[str, str]]:
    """Name -> URL of four endpoints and one address where nothing listens."""
    stranger = FastAPI()

    @stranger.get("/{anything:path}")
    def anything() -> PlainTextResponse:
        return PlainTextResponse("<html>hello</html>", 404)

    apps = {
        "head-end": _admin(_Stage("headend", None, {"stored": 41})),
        "router": _admin(_Stage("router", "the bus is unreachable: nats gone", {})),
        "supervisor": _admin(
            _Stage("supervisor", None, {"processes": {"receiver#0": 4242, "billing#0": 4243}})
        ),
        "stranger": stranger,
    }
    servers = [_serve(app) for app in apps.values()]
    urls = {name: next(server) for name, server in zip(apps, servers, strict=True)}
    refusing = _refusing_port()
    urls["cas"] = f"http://127.0.0.1:{refusing.getsockname()[1]}"
    try:
        yield urls
    finally:
        refusing.close()
        for server in servers:
            next(server, None)


def _with(portal: Portal, probe: HealthProbe | None) -> Portal:
    portal.app = create_portal_app(
        portal.bills, portal.people.authenticator, portal.accounts, None, health=probe
    )
    return portal


def test_the_services_page_shows_each_service_as_it_is(
    portal: Portal, services: dict[str, str]
) -> None:
    text = ", ".join(f"{name}={url}/" for name, url in services.items())
    probe = HealthProbe(parse_targets(text), timeout=5.0)
    client, _ = sign_in(_with(portal, probe), OPERATOR)
    page: httpx.Response = client.get("/portal/fleet/services")
    assert page.status_code == 200, page.text
    html = page.text
    assert "2 of 5 services ready" in html

    def row(name: str) -> str:
        start = html.index(f'data-service="{name}"')
        return html[start : html.index("</tr>", start)]

    assert "ready" in row("head-end")
    assert 'class="failed"' not in row("head-end")
    assert "meterseal_readings_stored_total{outcome=&#34;stored&#34;}</code> 41" in row("head-end")
    assert "bad_signature" in row("head-end")
    assert "not ready</strong>: the bus is unreachable: nats gone" in row("router")
    assert "<code>receiver#0</code> pid 4242" in row("supervisor")
    assert "unreachable</strong>: " in row("cas")
    assert "not a meterseal admin endpoint" in row("stranger")
    # htmx asks for the table alone (and refreshes it every REFRESH seconds).
    part = client.get("/portal/fleet/services", headers={"HX-Request": "true"})
    assert part.status_code == 200
    assert "<html" not in part.text
    assert 'hx-get="/portal/fleet/services"' in part.text
    assert "2 of 5 services ready" in part.text


def test_without_services_the_page_says_how_to_name_them(portal: Portal) -> None:
    client, _ = sign_in(_with(portal, None), OPERATOR)
    page = client.get("/portal/fleet/services")
    assert page.status_code == 200
    assert "[portal] health" in page.text
    assert "hx-get" not in page.text  # nothing to refresh
    customer = sign_in(portal, portal.customer(0)[1])[0]
    assert customer.get("/portal/fleet/services").status_code == 403


def test_targets_are_name_url_pairs() -> None:
    assert parse_targets(" a=http://h:1/ , b=https://h:2 ,") == (
        Target("a", "http://h:1"),
        Target("b", "https://h:2"),
    )
    assert parse_targets("") == ()
    bad_entries = ("a", "a=ftp://h", "=http://h:1", "a=http://h:1,a=http://h:2", "a=http://",
                   "a=http://h:port", "a=http://h:99999")  # fmt: skip
    for bad in bad_entries:
        with pytest.raises(ConfigurationError):
            parse_targets(bad)


def test_metric_rows_keep_the_non_zero_meterseal_samples_biggest_first() -> None:
    stage = _Stage("x", None, {})
    stage.metrics.acquisition.observe(0.5)
    stage.metrics.acquisition.observe(1.5)
    rows = dict(metric_rows(stage.metrics.exposition().decode()))
    assert rows['meterseal_readings_stored_total{outcome="stored"}'] == "41"
    assert rows["meterseal_acquisition_seconds"] == "2 observed, mean 1.0000 s"
    assert not any("duplicate" in name for name in rows)  # zero: left out
    assert next(iter(rows)) == 'meterseal_readings_stored_total{outcome="stored"}'


def test_a_probe_of_nothing_asks_nobody() -> None:
    assert asyncio.run(HealthProbe(()).check()) == []


def test_an_https_endpoint_is_verified_against_the_deployment_ca() -> None:
    from meterseal.runtime.http import ThreadedServer
    from meterseal.runtime.tls import client_context, server_context
    from tests.runtime.test_tls import Ca

    ca = Ca.create("test deployment CA")
    tls = server_context(ca.service("billing", ("127.0.0.1",)))
    with ThreadedServer(_admin(_Stage("billing", None, {})), tls=tls) as url:
        assert url.startswith("https://")
        target = (Target("billing", url),)
        (trusted,) = asyncio.run(HealthProbe(target, verify=client_context(ca.cert)).check())
        (stranger,) = asyncio.run(HealthProbe(target).check())  # the system's CAs only
    assert trusted.ready, trusted
    assert stranger.state == "unreachable"
    assert "CERTIFICATE_VERIFY_FAILED" in stranger.reason
