"""The HTTP receiver of readings over TLS: meters verify the head-end against the deployment CA."""

from __future__ import annotations

import asyncio
import os

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from meterseal.acquisition.anonymize import Anonymizer
from meterseal.acquisition.http import HttpLink, HttpReceiver
from meterseal.acquisition.ingest import Ack, Ingest
from meterseal.acquisition.memory import MemorySink
from meterseal.acquisition.stages import TrustedStages
from meterseal.crypto import certs
from meterseal.runtime.tls import TlsIdentity, client_context, server_context
from tests.acquisition.conftest import p256_packets
from tests.conftest import NOW, World

T = NOW.timestamp()


def _identity(world: World) -> TlsIdentity:
    key = ec.generate_private_key(ec.SECP256R1())
    cert = certs.issue_service_certificate(
        world.ca_key, world.ca_cert, "receiver", key.public_key(), hosts=["127.0.0.1"], now=NOW,
        rng=os.urandom,
    )  # fmt: skip
    return TlsIdentity((cert,), key)


def test_meters_send_over_tls_and_plain_or_unverified_clients_are_refused(world: World) -> None:
    async def scenario() -> None:
        sink = MemorySink()
        stages = TrustedStages(world.headend, world.registry, Anonymizer(b"h" * 32))
        ingest = Ingest(stages, sink, clock=lambda: T)
        tls = server_context(_identity(world))
        receiver = HttpReceiver(ingest, tls=tls)
        await ingest.start()
        port = await receiver.start()
        url = receiver.url("127.0.0.1", port)
        try:
            assert url.startswith("https://")
            good = p256_packets(world, range(200, 205))
            async with HttpLink(url, verify=client_context(world.ca_cert)) as link:
                assert await link.exchange("m", good, 5) == [Ack.ACCEPTED] * 5
            plain = url.replace("https://", "http://")
            async with HttpLink(plain) as link:
                with pytest.raises(ConnectionError, match="HTTP connection failed"):
                    await link.exchange("m", good[:1], 5)
            _, other_ca = certs.create_ca("another CA", now=NOW, rng=os.urandom)
            async with HttpLink(url, verify=client_context(other_ca)) as link:
                with pytest.raises(ConnectionError, match="CERTIFICATE_VERIFY_FAILED"):
                    await link.exchange("m", good[:1], 5)
        finally:
            await receiver.stop()
            await ingest.stop()
        assert len(sink.originals) == 5

    asyncio.run(scenario())
