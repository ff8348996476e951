"""Trusted mode: the stages are attested workers that get their keys from the CAS at start.

Real processes: `meterseal cas serve` and `meterseal serve --mode trusted` (supervisor and
services) on NATS. The CAS is provisioned as an operator would (its keys, the deployment's
secrets, one policy per stage for this checkout's measurements). The attestation backend is
the simulated one: the protocol is real, the hardware guarantee is not.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from meterseal.acquisition.tcp import TcpLink
from meterseal.bench.served import Served
from meterseal.errors import ConfigurationError
from meterseal.meter.simulator import run_fleet
from meterseal.services.trusted_setup import provision_cas
from meterseal.storage import Store
from meterseal.trust.cas import Cas, decode_entry
from meterseal.trust.cas_store import CasStore
from meterseal.trust.measurement import stage_measurement
from meterseal.trust.vault import Vault
from tests.services_mode.conftest import Fleet, make_fleet, wait_stored

pytestmark = pytest.mark.services


def _cas(fleet: Fleet) -> Served:
    provision_cas(fleet.directory, fleet.store_url)
    served = Served(
        ["cas", "serve", "-d", str(fleet.directory), "--store", fleet.store_url,
         "--listen", "127.0.0.1:0"],
        ready="cas",
    )  # fmt: skip
    served.wait_ready(120)
    return served


def _trusted(fleet: Fleet, cas_url: str, nats_url: str, prefix: str) -> Served:
    args = ["serve", "--mode", "trusted", "-d", str(fleet.directory), "--store", fleet.store_url]
    args += ["--cas", cas_url, "--nats", nats_url, "--prefix", prefix, "--tcp", "127.0.0.1:0"]
    return Served(args, ready="supervisor")


def _log(fleet: Fleet) -> list[dict[str, object]]:
    with Store.open(fleet.store_url) as store:
        return [decode_entry(row.entry) for row in CasStore(store).log_rows()]


def test_attested_workers_get_their_keys_and_store_the_stream(
    nats_url: str, prefix: str, tmp_path: Path
) -> None:
    fleet = make_fleet(tmp_path, f"sqlite:///{tmp_path / 'store.db'}", 8, 24)
    cas = _cas(fleet)
    served = _trusted(fleet, cas.endpoint("cas"), nats_url, prefix)
    try:
        served.wait_ready(180)
        host, port = served.endpoint("tcp").rsplit(":", 1)
        report = asyncio.run(run_fleet(fleet.wire, TcpLink(host, int(port)), concurrency=8))
        stored = wait_stored(fleet)
        # Every service exposes Prometheus metrics: packets, rejections, latency, queue depth.
        (storing,) = served.admins("anonymize-store")
        stored_metrics = served.scrape(storing)
        (verifying,) = served.admins("open-verify")
        verify_metrics = served.scrape(verifying)
        receiver_metrics = served.scrape(served.admins("receiver")[0])
    finally:
        code = served.stop()
        cas.stop()
    assert code == 0, "\n".join(served.lines[-30:])
    assert report.unacknowledged == 0
    assert stored == fleet.packets
    assert stored_metrics["meterseal_acquisition_seconds_count"] == fleet.packets
    assert stored_metrics["meterseal_worker_events_total{kind=stored}"] == fleet.packets
    assert stored_metrics["meterseal_readings_stored_total{outcome=stored}"] == fleet.packets
    assert not any(k.startswith("meterseal_rejections_total") for k in stored_metrics)
    assert verify_metrics["meterseal_worker_events_total{kind=packets}"] == fleet.packets
    assert "meterseal_queue_depth{queue=MS_PACKETS}" in verify_metrics, sorted(verify_metrics)
    assert receiver_metrics["meterseal_packets_total{outcome=published}"] == fleet.packets
    releases = [e for e in _log(fleet) if e["outcome"] == "released"]
    # Each trusted stage was released exactly its own secrets, once (one process each).
    granted = {str(e["stage"]): sorted(name for name, _ in e["secrets"]) for e in releases}  # type: ignore[attr-defined]
    assert granted == {
        "open-verify": ["headend-keys", "stage-key"],
        "anonymize-store": ["anonymization-key", "stage-key"],
        "billing": ["billing-key"],
    }


def test_a_revoked_stage_gets_nothing_and_the_deployment_does_not_start(
    nats_url: str, prefix: str, tmp_path: Path
) -> None:
    fleet = make_fleet(tmp_path, f"sqlite:///{tmp_path / 'store.db'}", 1, 1)
    cas = _cas(fleet)
    with Store.open(fleet.store_url) as store:
        Cas(CasStore(store), Vault.from_deployment(fleet.directory), []).revoke(
            stage_measurement("open-verify"), "test: compromised build"
        )
    served = _trusted(fleet, cas.endpoint("cas"), nats_url, prefix)
    try:
        with pytest.raises(ConfigurationError):
            served.wait_ready(180)
    finally:
        served.stop()
        cas.stop()
    output = "\n".join(served.lines)
    assert "open-verify#0 exited with 2 before it was ready" in output
    assert "revoked" in output  # the CAS's reason reaches the operator
    refused = [e for e in _log(fleet) if e["outcome"] == "refused"]
    assert [e["stage"] for e in refused] == ["open-verify"]
