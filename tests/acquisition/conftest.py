"""Fixtures of the acquisition tests: the bad-input corpus, shared by every transport's test."""

from __future__ import annotations

import pytest

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
