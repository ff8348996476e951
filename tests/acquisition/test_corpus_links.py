"""The bad-input corpus over HTTP and MQTT: the same verdicts as over TCP, good traffic kept."""

from __future__ import annotations

import asyncio

import pytest

from meterseal.acquisition.http import HttpLink, HttpReceiver
from meterseal.acquisition.ingest import Ack, Ingest
from meterseal.acquisition.memory import MemorySink
from meterseal.acquisition.mqtt import MqttLimits, MqttLink, MqttReceiver
from tests.acquisition.corpus import (
    BadPacket,
    CorpusDeployment,
    good_packets,
    run_corpus,
)
from tests.acquisition.test_mqtt import URL as MQTT_URL
from tests.acquisition.test_mqtt import _probe as probe_mqtt
from tests.acquisition.test_mqtt import mqtt_names
from tests.conftest import NOW
from tests.services import require_service

T = NOW.timestamp()


def _check(run_bad: dict[str, Ack], corpus: list[BadPacket], late: list[Ack]) -> None:
    assert run_bad == {bad.label: Ack.REJECTED for bad in corpus}
    assert late == [Ack.ACCEPTED] * 3  # still serving afterwards


@pytest.mark.parametrize("chunk", [None, 4])
def test_corpus_over_http(
    deployment: CorpusDeployment, corpus: list[BadPacket], chunk: int | None
) -> None:
    async def scenario() -> None:
        sink = MemorySink()
        ingest = Ingest(deployment.stages(), sink, clock=lambda: T)
        await ingest.start()
        receiver = HttpReceiver(ingest)
        port = await receiver.start()
        link = HttpLink(f"http://127.0.0.1:{port}")
        try:
            good = good_packets(deployment, range(1, len(corpus) + 2), now=NOW)
            run = await run_corpus(
                link, ingest, sink, deployment, corpus, good, now=NOW, chunk=chunk
            )
            after = good_packets(deployment, range(100, 103), now=NOW)
            late = await link.exchange(deployment.meters["good"].meter_id, after, 10)
        finally:
            await link.aclose()
            await receiver.stop()
            await ingest.stop()
        _check(run.bad_acks, corpus, late)
        assert receiver.counts["oversized_frame"] == receiver.counts["malformed_batch"] == 0

    asyncio.run(scenario())


def test_corpus_over_mqtt(
    deployment: CorpusDeployment, corpus: list[BadPacket], unique_name: str
) -> None:
    require_service("Mosquitto", MQTT_URL, probe_mqtt)
    names = mqtt_names(unique_name)

    async def scenario() -> None:
        sink = MemorySink()
        ingest = Ingest(deployment.stages(), sink, clock=lambda: T)
        await ingest.start()
        receiver = MqttReceiver(
            ingest,
            MQTT_URL,
            limits=MqttLimits(session_expiry=60),
            client_id=names.client_id,
            group=names.group,
            prefix=names.prefix,
        )
        await receiver.start()
        link = MqttLink(MQTT_URL, prefix=names.prefix)
        try:
            good = good_packets(deployment, range(1, len(corpus) + 2), now=NOW)
            run = await run_corpus(link, ingest, sink, deployment, corpus, good, now=NOW)
            after = good_packets(deployment, range(100, 103), now=NOW)
            late = await link.exchange(deployment.meters["good"].meter_id, after, 10)
        finally:
            await link.close()
            await receiver.stop()
            await ingest.stop()
        _check(run.bad_acks, corpus, late)

    asyncio.run(scenario())
