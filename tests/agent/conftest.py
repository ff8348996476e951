"""The deployment the agent's command-line tests run against."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from meterseal.crypto.suites import P256
from meterseal.demo import register
from meterseal.deployment import init_deployment
from meterseal.meter.provisioning import provision, save_fleet
from meterseal.storage import Store
from tests.agent.served import METERS


@pytest.fixture
def site(tmp_path: Path) -> tuple[Path, str]:
    """A deployment with three p256 meters registered in a SQLite store."""
    now = dt.datetime.now(dt.UTC)
    deployment = init_deployment(tmp_path / "deployment", now=now)
    meters = provision(deployment.ca_key, deployment.ca_cert, METERS, P256, now=now, workers=1)
    save_fleet(tmp_path / "deployment" / "fleet-p256.cbor", meters, None)
    url = f"sqlite:///{tmp_path / 'meterseal.db'}"
    with Store.open(url) as store:
        register(store, deployment, meters)
    return tmp_path / "deployment", url
