"""The supervisor: its process plans (restarted where they listened) and its readiness."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from meterseal.acquisition.headend import HeadEndSettings
from meterseal.services.catalog import ServiceOptions
from meterseal.services.cli import service_app
from meterseal.services.supervisor import STORE_VARIABLE, ProcessPlan, Supervisor, plan_processes


def _options(tcp: str, http: str | None) -> ServiceOptions:
    receivers = HeadEndSettings(tcp=tcp, http=http)
    return ServiceOptions(Path("deployment"), "sqlite:///store.db", receivers=receivers)


def _option(argv: tuple[str, ...], option: str) -> str:
    return argv[argv.index(option) + 1]


def test_only_the_receiver_listens() -> None:
    plans = plan_processes(_options("127.0.0.1:0", "127.0.0.1:0"), 2)
    assert [p.label for p in plans] == [
        "receiver",
        "open-verify#0",
        "open-verify#1",
        "anonymize-store#0",
        "anonymize-store#1",
        "billing",
    ]
    assert _option(plans[0].argv, "--tcp") == _option(plans[0].argv, "--http") == "127.0.0.1:0"
    for plan in plans[1:]:
        assert _option(plan.argv, "--tcp") == _option(plan.argv, "--http") == "off"


def test_a_restart_listens_where_the_first_start_bound() -> None:
    receiver, worker = plan_processes(_options("127.0.0.1:0", "127.0.0.1:0"), 1)[:2]
    reported = {
        "tcp": "127.0.0.1:40001",
        "http": "http://127.0.0.1:40002",
        "admin": "http://127.0.0.1:40003",
    }
    pinned = receiver.pinned(reported)
    assert _option(pinned.argv, "--tcp") == "127.0.0.1:40001"
    assert _option(pinned.argv, "--http") == "127.0.0.1:40002"
    assert "--admin" not in pinned.argv  # the admin endpoint may move: it is found by its line
    assert pinned.pinned(reported) == pinned
    assert worker.pinned({"admin": "http://127.0.0.1:40004"}) == worker
    off = plan_processes(_options("127.0.0.1:0", None), 1)[0]
    assert _option(off.pinned({"tcp": "127.0.0.1:40001"}).argv, "--http") == "off"


def _plan(label: str, script: str) -> ProcessPlan:
    return ProcessPlan(label, label, (sys.executable, "-c", script))


READY_THEN = "import sys, time; print('ready {0}', flush=True); time.sleep({1}); sys.exit({2})"


def test_readiness_reflects_the_children_and_a_crash_loop_is_not_ready() -> None:
    async def scenario() -> list[str | None]:
        steady = _plan("steady", READY_THEN.format("steady", 60, 0))
        # Ready at once, then dies at its first "message": what a wrong stage key did.
        crashy = _plan("crashy", READY_THEN.format("crashy", 0.3, 1))
        supervisor = Supervisor([steady, crashy], announce=lambda _line: None)
        seen: list[str | None] = []
        await supervisor.start()
        seen.append(supervisor.not_ready())  # both said ready: ready
        stop = asyncio.Event()
        watcher = asyncio.create_task(supervisor.run(stop))
        for _ in range(100):  # until the crashy child has died at least once
            await asyncio.sleep(0.1)
            if supervisor.counts["exited"]:
                break
        for _ in range(30):  # and through its restarts, whenever it is asked
            await asyncio.sleep(0.1)
            seen.append(supervisor.not_ready())
        seen.append(await supervisor.readiness.reason())
        stop.set()
        await watcher
        await supervisor.stop(grace=2)
        return seen

    seen = asyncio.run(scenario())
    assert seen[0] is None
    assert all(reason is not None and reason.startswith("crashy ") for reason in seen[1:]), seen
    assert any("exited" in str(reason) and "last exit code 1" in str(reason) for reason in seen)


def test_a_child_that_is_not_running_or_still_starting_is_not_ready() -> None:
    async def scenario() -> tuple[str | None, str | None]:
        slow = _plan("slow", "import time; time.sleep(60)")  # never says ready
        supervisor = Supervisor([slow], announce=lambda _line: None)
        before = supervisor.not_ready()
        await supervisor._spawn(supervisor.children["slow"])
        starting = supervisor.not_ready()
        await supervisor.stop(grace=2)
        return before, starting

    before, starting = asyncio.run(scenario())
    assert before == "slow is not running"
    assert starting == "slow is starting (not ready yet)"


def test_children_get_the_deployment_s_names_not_its_secrets() -> None:
    receivers = HeadEndSettings(tcp="127.0.0.1:0", mqtt="mqtts://broker", mqtt_prefix="t/north")
    options = ServiceOptions(
        Path("deployment"),
        "sqlite:///store.db",
        prefix="north_",
        receivers=receivers,
        passphrase=b"s3cret",
        passphrase_env="NORTH_PASSPHRASE",
    )
    receiver, worker = plan_processes(options, 1)[:2]
    for plan in (receiver, worker):
        assert _option(plan.argv, "--prefix") == "north_"
        assert _option(plan.argv, "--passphrase-env") == "NORTH_PASSPHRASE"
        assert "s3cret" not in " ".join(plan.argv)
    assert _option(receiver.argv, "--mqtt-prefix") == "t/north"
    assert _option(worker.argv, "--mqtt") == "off"


def test_no_child_command_line_carries_a_password(monkeypatch: pytest.MonkeyPatch) -> None:
    # `ps` shows every user a process's command line; only its user sees its environment.
    store = "postgresql+psycopg://meterseal:db-pw-1@db:5432/meterseal"
    nats = "nats://svc:bus-pw-2@nats:4222"
    mqtt = "mqtts://headend:mqtt-pw-3@broker:8883"
    receivers = HeadEndSettings(tcp="127.0.0.1:0", mqtt=mqtt)
    options = ServiceOptions(
        Path("deployment"), store, nats_url=nats, cas_url="http://cas:7490", receivers=receivers
    )
    plans = plan_processes(options, 2)
    seen: list[str] = []

    def run_service(name: str, given: ServiceOptions, *, admin: str | None) -> int:
        from meterseal.services.nats_bus import nats_url

        seen.append(f"{name} {given.store_url} {given.nats_url or nats_url()}")
        seen.append(f"{name} mqtt {given.receivers.mqtt}")
        return 0

    monkeypatch.setattr("meterseal.services.catalog.run_service", run_service)
    for plan in plans:
        shown = " ".join(plan.argv)
        assert "db-pw-1" not in shown
        assert "bus-pw-2" not in shown
        assert "mqtt-pw-3" not in shown
        assert "--store" not in plan.argv
        assert "--nats" not in plan.argv
        # What the child does with its command line and environment: the same URLs.
        env = plan.environment({})
        monkeypatch.setenv(STORE_VARIABLE, env[STORE_VARIABLE])
        monkeypatch.setenv("MS_NATS_URL", env["MS_NATS_URL"])
        if "MS_SERVICE_MQTT" in env:
            monkeypatch.setenv("MS_SERVICE_MQTT", env["MS_SERVICE_MQTT"])
        else:
            monkeypatch.delenv("MS_SERVICE_MQTT", raising=False)
        result = CliRunner().invoke(service_app, list(plan.argv[3:]))
        assert result.exit_code == 0, result.output
    assert seen == [
        line
        for plan in plans
        for line in (
            f"{plan.service} {store} {nats}",
            f"{plan.service} mqtt {mqtt if plan.service == 'receiver' else None}",
        )
    ]
