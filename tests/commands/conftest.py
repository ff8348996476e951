"""Keys and a desk for the command tests."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from meterseal.commands.agent import CommandAnswerer
from meterseal.commands.desk import CommandDesk
from meterseal.commands.keys import OperatorKey, ensure_operator_key
from meterseal.commands.logfile import CommandLogFile
from meterseal.commands.verify import CommandVerifier, Signer
from meterseal.crypto.keys import MeterKey, generate_meter_key
from meterseal.crypto.suites import ED25519, P256

NOW = 1_800_000_000


@dataclass
class World:
    """An operator key, a desk with its log, and an agent serving meters M1 and M2."""

    key: OperatorKey
    desk: CommandDesk
    meters: dict[str, MeterKey]
    answerer: CommandAnswerer

    @property
    def verifier(self) -> CommandVerifier:
        return self.answerer.verifier

    def meter_signers(self) -> dict[str, Signer]:
        return {m: Signer(k.suite.signature, k.public_key()) for m, k in self.meters.items()}


@pytest.fixture(scope="session")
def _keys(tmp_path_factory: pytest.TempPathFactory) -> tuple[OperatorKey, dict[str, MeterKey]]:
    key, _ = ensure_operator_key(tmp_path_factory.mktemp("deployment"), None)
    meters = {"M1": generate_meter_key("M1", P256), "M2": generate_meter_key("M2", ED25519)}
    return key, meters


@pytest.fixture
def world(tmp_path: Path, _keys: tuple[OperatorKey, dict[str, MeterKey]]) -> World:
    key, meters = _keys
    desk = CommandDesk(key, CommandLogFile(tmp_path / "commands.log"))
    verifier = CommandVerifier(meters, {key.kid: key.signer()})
    world = World(key, desk, meters, CommandAnswerer(verifier, meters))
    desk.meter_keys = world.meter_signers()
    return world
