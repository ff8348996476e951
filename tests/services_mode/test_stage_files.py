"""Each stage of services mode runs from a directory holding only its own files.

`meterseal keys stage NAME --out DIR` copies them (what a Kubernetes Secret or a host running
that stage alone is given); the stages built on those directories store a fleet end to end,
and a stage missing one of its files does not start and names it.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from meterseal.errors import ConfigurationError
from meterseal.services.bus import MemoryBus
from meterseal.services.catalog import SERVICES, ServiceOptions, make_stage
from meterseal.services.keys import STAGE_FILES, DeploymentKeys
from meterseal.storage import Store
from tests.command_line import invoke
from tests.services_mode.conftest import Fleet, make_fleet
from tests.services_mode.test_pipeline import settle


def _stage_dirs(fleet: Fleet, root: Path) -> dict[str, Path]:
    dirs = {}
    for stage in SERVICES:
        out = root / stage
        result = invoke(["keys", "stage", stage, "-d", str(fleet.directory), "--out", str(out)])
        assert result.exit_code == 0, result.output
        dirs[stage] = out
    return dirs


def test_each_stage_gets_its_own_files_and_no_other(tmp_path: Path) -> None:
    fleet = make_fleet(tmp_path, f"sqlite:///{tmp_path / 'store.db'}", 1, 1)
    dirs = _stage_dirs(fleet, tmp_path / "stages")
    for stage, out in dirs.items():
        held = {p.name for p in out.iterdir()}
        assert held == set(STAGE_FILES[stage]), stage
        assert all(p.stat().st_mode & 0o777 == 0o600 for p in out.iterdir())
    assert dirs["receiver"].exists()
    given = {p.name for d in dirs.values() for p in d.iterdir()}
    assert "ca.key.pem" not in given
    assert "metrology.key.pem" not in given
    refused = invoke(["keys", "stage", "router", "-d", str(fleet.directory), "--out", "x"])
    assert refused.exit_code == 2
    secrets = DeploymentKeys(dirs["open-verify"]).secrets("open-verify")
    assert secrets.headend is not None
    assert (
        secrets.stage_key
        == DeploymentKeys(dirs["anonymize-store"]).secrets("anonymize-store").need_stage_key()
    )  # the one key of the bus between them
    assert secrets.billing_key is None
    assert secrets.anonymization_key is None


@pytest.mark.parametrize(
    ("stage", "removed"),
    [
        ("open-verify", "stage-link.key"),
        ("open-verify", "headend-p256.key.pem"),
        ("open-verify", "ca.cert.pem"),
        ("anonymize-store", "anonymization.key"),
        ("billing", "billing.key.pem"),
    ],
)
def test_a_stage_missing_one_of_its_files_does_not_start_and_names_it(
    tmp_path: Path, stage: str, removed: str
) -> None:
    fleet = make_fleet(tmp_path, f"sqlite:///{tmp_path / 'store.db'}", 1, 1)
    out = _stage_dirs(fleet, tmp_path / "stages")[stage]
    (out / removed).unlink()
    with pytest.raises(ConfigurationError, match=rf"{stage} stage cannot start: {removed} missing"):
        DeploymentKeys(out).secrets(stage)


def test_the_stages_store_a_fleet_each_from_its_own_directory(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'store.db'}"
    fleet = make_fleet(tmp_path, url, 3, 8)
    dirs = _stage_dirs(fleet, tmp_path / "stages")
    bus = MemoryBus()

    async def scenario(store: Store) -> None:
        from meterseal.acquisition.headend import HeadEndSettings
        from meterseal.acquisition.tcp import TcpLink
        from meterseal.meter.simulator import run_fleet
        from meterseal.services.frontends import ReceiverService

        receiver = make_stage(
            "receiver",
            ServiceOptions(dirs["receiver"], url, receivers=HeadEndSettings(tcp="127.0.0.1:0")),
            bus,
            None,
        )
        assert isinstance(receiver, ReceiverService)
        workers = [
            make_stage(name, ServiceOptions(dirs[name], url), bus, store)
            for name in ("open-verify", "anonymize-store", "billing")
        ]
        host, port = (await receiver.start())["tcp"].rsplit(":", 1)
        for worker in workers:
            await worker.start()
        stop = asyncio.Event()
        tasks = [asyncio.create_task(w.run(stop)) for w in workers]
        try:
            report = await run_fleet(fleet.wire, TcpLink(host, int(port)), concurrency=8)
            await settle(store)
        finally:
            stop.set()
            await asyncio.gather(*tasks)
            await receiver.stop()
        assert report.unacknowledged == 0

    with Store.open(url) as store:
        asyncio.run(scenario(store))
        assert store.counters()["stored"] == fleet.packets
