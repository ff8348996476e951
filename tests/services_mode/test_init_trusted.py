"""`meterseal init DIR`, then the commands it prints: the CAS and trusted mode start and store.

Real processes on NATS: `cas serve` and `serve --mode trusted` run as `init` printed them,
with DIR/meterseal.toml (only the ports, the NATS URL and the stream prefix are this test's
own), and no other set-up than provisioning and registering a fleet. The attestation backend
is the simulated one.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import shlex
import urllib.request
from pathlib import Path

import pytest

from meterseal.acquisition.tcp import TcpLink
from meterseal.bench.served import Served
from meterseal.crypto.suites import P256
from meterseal.demo import register
from meterseal.deployment import load_deployment
from meterseal.meter.faults import FaultPlan
from meterseal.meter.profiles import INTERVAL
from meterseal.meter.provisioning import provision
from meterseal.meter.simulator import run_fleet
from meterseal.meter.workload import Workload, seal_workload
from meterseal.storage import Store
from tests.command_line import invoke
from tests.services_mode.conftest import Fleet, wait_stored

pytestmark = pytest.mark.services


def _printed(output: str, start: str) -> list[str]:
    """The arguments of the printed next command that starts with `start` (without `meterseal`)."""
    (line,) = [x.strip() for x in output.splitlines() if x.strip().startswith(start)]
    return shlex.split(line)[1:]


def _with(args: list[str], option: str, value: str) -> list[str]:
    """`args` with `option`'s value replaced (or the option added)."""
    if option in args:
        args = list(args)
        args[args.index(option) + 1] = value
        return args
    return [*args, option, value]


def test_init_then_the_printed_commands_serve_trusted_mode(
    nats_url: str, prefix: str, tmp_path: Path
) -> None:
    directory = tmp_path / "north"
    result = invoke(["init", str(directory)], env={"COLUMNS": "400"})
    assert result.exit_code == 0, result.output
    config = ["--config", str(directory / "meterseal.toml")]
    cas_args = _with(_printed(result.output, "meterseal cas serve"), "--listen", "127.0.0.1:0")
    store_url = f"sqlite:///{directory / 'meterseal.db'}"  # the file's relative store
    now = dt.datetime.now(dt.UTC)
    deployment = load_deployment(directory)
    meters = provision(deployment.ca_key, deployment.ca_cert, 4, P256, now=now, workers=1)
    with Store.open(store_url) as store:
        register(store, deployment, meters)
    start = (int(now.timestamp()) // INTERVAL - 12) * INTERVAL
    work = Workload(meters, deployment.headend.public(), start, 12, FaultPlan())
    fleet = Fleet(directory, deployment, meters, seal_workload(work, now=now), store_url, now)

    cas = Served([*config, *cas_args], ready="cas")
    served = None
    try:
        cas.wait_ready(120)
        serve_args = _printed(result.output, "meterseal serve --mode trusted")
        for option, value in (
            ("--cas", cas.endpoint("cas")),
            ("--prefix", prefix),
            ("--nats", nats_url),
            ("--tcp", "127.0.0.1:0"),
        ):
            serve_args = _with(serve_args, option, value)
        served = Served([*config, *serve_args], ready="supervisor")
        served.wait_ready(180)
        host, port = served.endpoint("tcp").rsplit(":", 1)
        report = asyncio.run(run_fleet(fleet.wire, TcpLink(host, int(port)), concurrency=4))
        stored = wait_stored(fleet)
        admin = served.endpoints[("", "admin")]
        with urllib.request.urlopen(f"{admin}/readyz", timeout=5) as response:
            readiness = json.loads(response.read())
    finally:
        code = served.stop() if served else 0
        cas.stop()
    assert code == 0, "\n".join(served.lines[-30:] if served else [])
    assert report.unacknowledged == 0
    assert stored == fleet.packets
    assert readiness == {"state": "ready", "reason": None}
