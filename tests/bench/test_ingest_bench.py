"""bench ingest on a tiny fleet: every packet made durable, figures and plot produced."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from rich.console import Console

from meterseal.bench.ingest import TARGET_SHARE, plot_ingest, result_table, run_suite
from meterseal.bench.timing import Machine
from meterseal.crypto.suites import P256
from tests.acquisition.test_mqtt import URL as MQTT_URL
from tests.acquisition.test_mqtt import _probe as probe_mqtt
from tests.services import require_service


@pytest.mark.parametrize("transport", ["tcp", "inproc", "mqtt"])
def test_ingest_bench_stores_every_packet_and_plots(transport: str, tmp_path: Path) -> None:
    if transport == "mqtt":
        require_service("Mosquitto", MQTT_URL, probe_mqtt)
    console = Console(file=io.StringIO())
    result = run_suite(
        console,
        P256,
        store_kind="sqlite",
        transport=transport,
        meters=8,
        readings=12,
        open_workers=1,
        batch_size=32,
        connections=3,
    )
    assert result.packets == result.stored == 96
    assert result.bound_per_s > 0
    assert result.end_to_end_per_s > 0
    assert result.latency_p50 is not None
    assert result.latency_p99 is not None
    assert result.latency_p50 <= result.latency_p99
    table = result_table([result], Machine.probe(None))
    assert table.rows[0][:4] == ("p256", "sqlite", transport, "96")
    assert table.rows[0][-1] in ("PASS", "FAIL")  # p256 carries the target
    assert table.verdict is not None
    assert table.verdict.met == (result.ratio >= TARGET_SHARE)
    path = plot_ingest([result], tmp_path / "ingest.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_ingest_bench_refuses_transports_it_does_not_measure() -> None:
    with pytest.raises(ValueError, match="measures tcp, mqtt, inproc, not carrier-pigeon"):
        run_suite(
            Console(file=io.StringIO()),
            P256,
            store_kind="sqlite",
            transport="carrier-pigeon",
            meters=1,
            readings=1,
            open_workers=1,
        )
