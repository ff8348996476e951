"""`meterseal simulate`: a real period, a bounded wait for the head-end, and honest counts."""

from __future__ import annotations

import datetime as dt
import io
import socket
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest
from rich.console import Console

from meterseal import simulation
from meterseal.acquisition.ingest import Ack
from meterseal.acquisition.records import AcceptedReading
from meterseal.crypto import packet
from meterseal.crypto.registry import MeterRegistry
from meterseal.crypto.suites import P256
from meterseal.demo import register
from meterseal.deployment import Deployment, init_deployment
from meterseal.errors import ConfigurationError
from meterseal.meter.provisioning import ProvisionedMeter, provision, register_fleet, save_fleet
from meterseal.simulation import HeadEndUnreachable, SimulationPlan, simulation_period
from meterseal.storage import Store
from tests.command_line import invoke

NOW = dt.datetime(2026, 11, 10, 15, 7, tzinfo=dt.UTC)


def _utc(year: int, month: int, day: int, hour: int = 0) -> int:
    return int(dt.datetime(year, month, day, hour, tzinfo=dt.UTC).timestamp())


def test_without_from_the_period_is_the_whole_days_before_today() -> None:
    # What `bill --days 3` bills by default: not the last 72 hours up to now.
    assert simulation_period(None, 3, NOW) == (_utc(2026, 11, 7), 3 * 96)
    assert simulation_period(None, 0.25, NOW) == (_utc(2026, 11, 9, 18), 24)


def test_bill_without_from_bills_the_days_simulate_sends_without_it() -> None:
    from meterseal.cli_billing_parts import period_option

    for days in (1, 30):
        while True:  # both read the clock: should midnight pass between them, ask again
            before = dt.datetime.now(dt.UTC)
            start, intervals = simulation_period(None, days, before)
            billed = period_option(None, days)
            if dt.datetime.now(dt.UTC).date() == before.date():
                break
        assert (billed.start, billed.slots) == (start, intervals)


def test_from_names_the_first_day_of_a_real_month() -> None:
    early_november = dt.datetime(2026, 11, 5, tzinfo=dt.UTC)
    assert simulation_period(dt.date(2026, 10, 1), 30, early_november) == (_utc(2026, 10, 1), 2880)


def test_a_period_that_ends_after_now_is_refused() -> None:
    with pytest.raises(ConfigurationError, match="ends 2026-11-11 00:00 UTC, after now"):
        simulation_period(dt.date(2026, 11, 8), 3, NOW)


def test_a_period_older_than_a_head_end_accepts_is_refused_with_the_first_day_that_is_not() -> None:
    with pytest.raises(ConfigurationError, match=r"\(40 days\): choose --from 2026-10-02 or later"):
        simulation_period(dt.date(2026, 9, 30), 30, NOW)


def test_less_than_one_reading_is_refused() -> None:
    with pytest.raises(ConfigurationError, match="less than one 15-minute reading"):
        simulation_period(None, 0.001, NOW)


@dataclass
class Site:
    """A deployment with a registered fleet in a SQLite store."""

    directory: Path
    deployment: Deployment
    meters: list[ProvisionedMeter]
    store_url: str


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Site:
    """Two p256 meters, registered; the fleet file where `simulate` looks by default."""
    root = tmp_path_factory.mktemp("site")
    now = dt.datetime.now(dt.UTC)
    deployment = init_deployment(root / "deployment", now=now)
    meters = provision(deployment.ca_key, deployment.ca_cert, 2, P256, now=now, workers=1)
    save_fleet(root / "deployment" / "fleet-p256.cbor", meters, None)
    url = f"sqlite:///{root / 'meterseal.db'}"
    with Store.open(url) as store:
        register(store, deployment, meters)
    return Site(root / "deployment", deployment, meters, url)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_no_head_end_listening_is_one_clear_error_after_the_wait(site: Site) -> None:
    target = f"127.0.0.1:{_free_port()}"
    result = invoke(
        [
            "simulate",
            "-d",
            str(site.directory),
            "--target",
            target,
            "--days",
            "0.25",
            "--wait",
            "0.3",
        ]
    )
    assert result.exit_code == 2, result.output
    assert f"no head-end answers at {target} (tcp) after 0.3 s (Connection refused)" in (
        result.output
    )


@dataclass
class BusLikeHeadEnd:
    """A services-mode head-end in miniature: ACCEPTED on receipt, the store decides later."""

    site: Site
    registry: MeterRegistry

    async def exchange(self, meter_id: str, packets: Sequence[bytes], timeout: float) -> list[Ack]:
        """Open and store the packets (the stages' work), but ack them as the bus would."""
        now = dt.datetime.now(dt.UTC)
        readings = []
        for data in packets:
            r = packet.open(data, self.site.deployment.headend, self.registry, now=now).reading
            readings.append(
                AcceptedReading(
                    r.meter_id,
                    r.counter,
                    r.timestamp,
                    r.interval,
                    r.energy_wh,
                    "p256",
                    data,
                    int(now.timestamp()),
                    now.timestamp(),
                    "R01",
                    b"p" * 16,
                )
            )
        with Store.open(self.site.store_url) as store:
            store.save_batch(readings, [])  # a counter stored before: refused as replayed
        return [Ack.ACCEPTED] * len(packets)


class Unanswering:
    """A head-end that went away after the simulator found it."""

    async def exchange(self, meter_id: str, packets: Sequence[bytes], timeout: float) -> list[Ack]:
        """Fail as a refused connection does."""
        raise ConnectionRefusedError(111, "Connection refused")


@pytest.fixture
def listener() -> Iterator[str]:
    """An address that accepts connections (so the simulator's wait ends at once)."""
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        yield f"127.0.0.1:{server.getsockname()[1]}"


def _simulate(site: Site, plan: SimulationPlan) -> tuple[simulation.SimulationOutcome, str]:
    out = io.StringIO()
    console = Console(file=out, width=200)
    outcome = simulation.simulate(console, site.deployment, site.meters, plan)
    return outcome, out.getvalue()


def test_what_the_store_refused_after_the_receiver_accepted_it_is_reported(
    site: Site, listener: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    registry = MeterRegistry(site.deployment.ca_cert)
    register_fleet(registry, site.meters)
    fake = BusLikeHeadEnd(site, registry)
    monkeypatch.setattr(simulation, "link_for", lambda *_a, **_k: fake)
    start, intervals = simulation_period(None, 0.5, dt.datetime.now(dt.UTC))
    plan = SimulationPlan("tcp", listener, start, intervals, store=site.store_url, wait=5)

    first, shown = _simulate(site, plan)
    assert first.report.acks["accepted"] == 96
    assert "the store kept 96 readings (0 duplicates) and refused 0: none" in shown
    assert "warning" not in shown
    assert "accepted by the receiver" not in shown

    # The same period again: the receiver accepts every packet, the store refuses every one.
    again, shown = _simulate(site, plan)
    assert again.report.acks["accepted"] == 96
    assert again.refused_after_ack == 96
    assert "warning: the store already holds readings of 2 of these meters in this period" in shown
    assert "the store kept 0 readings (0 duplicates) and refused 96: replayed_counter 96" in shown
    assert (
        "accepted by the receiver: 96, of which the store then refused 96 (replayed_counter 96)"
    ) in shown


def test_a_head_end_that_stops_answering_ends_the_run_with_what_was_not_acknowledged(
    site: Site, listener: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(simulation, "link_for", lambda *_a, **_k: Unanswering())
    start, intervals = simulation_period(None, 0.25, dt.datetime.now(dt.UTC))
    plan = SimulationPlan("tcp", listener, start, intervals, wait=0.5)
    with pytest.raises(HeadEndUnreachable, match=r"48 of 48 packets unacknowledged"):
        _simulate(site, plan)


def test_packets_the_store_has_not_counted_yet_are_not_called_refused() -> None:
    # Services mode, stages still working when the wait ended: 288 accepted, 96 counted,
    # none refused. The 192 are not counted yet, not refused (with no reason to give).
    from collections import Counter

    from meterseal.meter.simulator import SimulationReport

    report = SimulationReport()
    report.acks["accepted"] = 288
    outcome = simulation.SimulationOutcome(
        report, 288, Counter({"stored": 96, "duplicate": 0}), settled=False
    )
    lines = simulation.store_lines(outcome)
    assert lines[0] == "the store kept 96 readings (0 duplicates) and refused 0: none"
    assert not any("then refused" in line for line in lines), lines
    assert "the store had counted 96 of the 288 answered packets" in lines[-1]
