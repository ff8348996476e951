"""Fixtures of the acquisition tests: the bad-input corpus and sealed good packets, shared by
every transport's test."""

from __future__ import annotations

import os

import pytest

from meterseal.crypto import packet
from meterseal.crypto.suites import P256
from meterseal.model import Reading
from tests.acquisition.corpus import BadPacket, CorpusDeployment, build_corpus, corpus_deployment
from tests.conftest import NOW, World


@pytest.fixture(scope="module")
def deployment(world: World) -> CorpusDeployment:
    """The corpus's own meters and registry (world.registry is left untouched)."""
    return corpus_deployment(world, now=NOW)


@pytest.fixture(scope="module")
def corpus(deployment: CorpusDeployment) -> list[BadPacket]:
    """The bad packets, built once per module."""
    return build_corpus(deployment, now=NOW)


def p256_packets(world: World, counters: range, energy: int = 7) -> list[bytes]:
    """Sealed readings of the world's P-256 meter, one per counter, for the quarter-hour
    before NOW."""
    key = world.meters["p256"]
    return [
        packet.seal(
            Reading(key.meter_id, c, int(NOW.timestamp()) - 900, 900, energy),
            key,
            world.headend.public(),
            P256,
            now=NOW,
            rng=os.urandom,
        )
        for c in counters
    ]
