"""Trust fixtures: a simulated platform in a directory, a fake clock, a CAS over memory state."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from meterseal.trust.attestation import (
    SimulatedAttester,
    SimulatedVerifier,
    init_simulated_platform,
)
from meterseal.trust.cas import Cas
from meterseal.trust.channel import EphemeralKey
from meterseal.trust.measurement import Measurement, measure
from meterseal.trust.sealing import init_sealing_secret
from meterseal.trust.state import CasState, MemoryCasState
from meterseal.trust.vault import Vault, init_master_key
from tests.storage.databases import db_url, postgres_url  # noqa: F401 - fixtures

T0 = 1_800_000_000.0


@dataclass
class Clock:
    """A clock the test moves by hand."""

    now: float = T0

    def __call__(self) -> float:
        return self.now


def platform(directory: Path) -> Path:
    """`directory` with a CAS master key and a simulated platform (attestation, sealing)."""
    init_master_key(directory)
    init_simulated_platform(directory)
    init_sealing_secret(directory)
    return directory


@pytest.fixture
def platform_dir(tmp_path: Path) -> Path:
    """A deployment directory holding the CAS master key and the simulated platform keys."""
    return platform(tmp_path / "deployment")


@pytest.fixture(scope="session")
def worker_measurement() -> Measurement:
    """A real measurement (of the trust package) standing in for a stage's."""
    return measure(["meterseal.trust"], {"stage": "test"})


@dataclass
class World:
    """A CAS core, the platform's attester, and a fake clock."""

    cas: Cas
    attester: SimulatedAttester
    clock: Clock
    directory: Path

    def quote(
        self, measurement: Measurement, key: EphemeralKey | None = None
    ) -> tuple[bytes, EphemeralKey]:
        """A fresh nonce from the CAS, quoted for `measurement` with an ephemeral key."""
        key = key or EphemeralKey.generate()
        nonce = self.cas.issue_nonce().nonce
        return self.attester.quote(measurement, nonce, key.public_bytes), key


def make_world(directory: Path, state: CasState) -> World:
    """A CAS over `state` accepting the simulated platform of `directory`."""
    clock = Clock()
    cas = Cas(
        state,
        Vault.from_deployment(directory),
        [SimulatedVerifier.from_deployment(directory)],
        clock=clock,
    )
    return World(cas, SimulatedAttester.from_deployment(directory), clock, directory)


@pytest.fixture
def world(platform_dir: Path) -> World:
    """A CAS over in-memory state."""
    return make_world(platform_dir, MemoryCasState())
