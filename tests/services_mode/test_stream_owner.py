"""Two deployments on one NATS: serve refuses the other's streams before starting a service."""

from __future__ import annotations

import asyncio
import datetime as dt
from pathlib import Path

from meterseal.deployment import init_deployment
from meterseal.services.catalog import ServiceOptions, connect_bus
from tests.command_line import invoke


def _deployment(directory: Path) -> Path:
    init_deployment(directory, now=dt.datetime.now(dt.UTC))
    return directory


def test_serve_stops_before_starting_services_on_another_deployment_s_streams(
    tmp_path: Path, nats_url: str, prefix: str
) -> None:
    async def attach(directory: Path) -> None:  # what a's serve does first
        options = ServiceOptions(directory, "sqlite://", nats_url=nats_url, prefix=prefix)
        bus = await connect_bus(options)
        await bus.close()

    asyncio.run(attach(_deployment(tmp_path / "a" / "my-utility")))
    b = _deployment(tmp_path / "b" / "my-utility")
    store = f"sqlite:///{tmp_path / 'b.db'}"
    args = ["serve", "--mode", "services", "-d", str(b), "--store", store, "--tcp", "off"]
    result = invoke([*args, "--nats", nats_url, "--prefix", prefix])
    assert result.exit_code != 0, result.output
    assert f"{prefix.upper()}MS_PACKETS belongs to another deployment" in result.stderr
    assert f"meterseal service streams --prefix {prefix} --delete" in result.stderr
    assert "processes" not in result.stdout  # no child was started
