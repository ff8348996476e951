"""`meterseal agent emulate` and `meterseal agent run` end to end, with a head-end serving."""

from __future__ import annotations

from pathlib import Path

import pytest

from meterseal.storage import Store
from tests.agent.served import METERS, TWO_READ, agent_run, emulated_and_served
from tests.command_line import invoke


@pytest.mark.slow
@pytest.mark.parametrize("sealed", [False, True], ids=["nbr14522", "nbr14522-sealed"])
def test_the_agent_reads_emulated_meters_into_a_serving_head_end(
    site: tuple[Path, str], tmp_path: Path, sealed: bool
) -> None:
    deployment, url = site
    meter_list = tmp_path / "meters.txt"
    keys = tmp_path / "link-keys"
    variant = ["--sealed", str(keys)] if sealed else []
    emulate = ["emulate", "--meters", str(METERS), "--faults", "timeout",
               "--write-meters", str(meter_list), *variant]  # fmt: skip
    protocol = ["--protocol", "nbr14522-sealed", "--link-keys", str(keys)] if sealed else []
    with emulated_and_served(deployment, url, emulate, METERS) as served:
        assert served.meters[0].startswith("meter MTR-000001 20000001 127.0.0.1:")
        assert served.meters[-1].endswith("fault timeout")
        # The sealed link has no WAIT signal: a meter's first answer (the load model's first
        # month in a fresh process) must come within the timeout itself. The plain link's
        # WAITs keep a working meter alive, but a loaded machine can still hold the emulator
        # or the agent's loop (sealing another meter's day) past 1 s: 5 s, which only the
        # silent meter spends in full.
        timeout = "8" if sealed else "5"
        result = agent_run(
            deployment,
            meter_list,
            served.target,
            "--timeout",
            timeout,
            "--attempts",
            "1",
            *protocol,
        )
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())
    assert TWO_READ in text
    assert "skipped: timeout 1" in text
    assert "MTR-000003 (20000003): meter 20000003" in text
    assert "bill this period with: meterseal bill --from" in text
    with Store.open(url) as store:
        assert store.counters().get("stored") == 192


def test_a_meter_list_line_must_have_three_fields(site: tuple[Path, str], tmp_path: Path) -> None:
    deployment, _ = site
    meter_list = tmp_path / "meters.txt"
    meter_list.write_text("MTR-000001 20000001\n")
    result = invoke(["agent", "run", "-d", str(deployment), "--meters-file", str(meter_list)])
    assert result.exit_code == 2
    assert "meter list line 1" in " ".join(result.output.split())


def test_emulated_meters_on_pseudo_terminals_print_their_device_paths() -> None:
    result = invoke(["agent", "emulate", "--pty", "--meters", "2", "--duration", "0.2"])
    assert result.exit_code == 0, result.output
    assert "emulated NBR 14522 meters: software, no meter hardware" in result.output
    assert "MTR-000002 (emulated): 0 commands" in result.output
    lines = [line for line in result.output.splitlines() if line.startswith("meter ")]
    assert [line.split()[1:3] for line in lines] == [
        ["MTR-000001", "20000001"],
        ["MTR-000002", "20000002"],
    ]
    assert all(line.split()[3].startswith("/dev/") for line in lines)
    refused = invoke(["agent", "emulate", "--pty", "--sealed", "keys", "--duration", "0.1"])
    assert refused.exit_code == 2
    assert "the sealed variant runs on TCP" in " ".join(refused.output.split())


def test_a_single_meter_needs_address_serial_and_id_together(site: tuple[Path, str]) -> None:
    deployment, _ = site
    result = invoke(["agent", "run", "-d", str(deployment), "--address", "/dev/ttyUSB0"])
    assert result.exit_code == 2
    assert "--address, --serial and --meter-id go together" in " ".join(result.output.split())


@pytest.mark.slow
def test_the_agent_reads_one_meter_named_on_the_command_line_through_its_serial_device(
    site: tuple[Path, str],
) -> None:
    # docs/meters.md: `agent run --address DEVICE --serial S --meter-id ID --tz ZONE`
    deployment, url = site
    zone = "America/Sao_Paulo"
    emulate = ["emulate", "--pty", "--meters", "1", "--tz", zone]
    with emulated_and_served(deployment, url, emulate) as served:
        _, meter_id, serial, device, *_ = served.meters[0].split()
        assert device.startswith("/dev/")
        result = invoke(
            ["agent", "run", "-d", str(deployment), "--address", device, "--serial", serial,
             "--meter-id", meter_id, "--tz", zone, "--target", served.target,
             "--days", "1", "--timeout", "8"]
        )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "meters read 1, readings sealed 96, accepted 96" in " ".join(result.output.split())
    with Store.open(url) as store:
        assert store.counters().get("stored") == 96


@pytest.mark.slow
def test_a_run_whose_readings_the_head_end_did_not_take_fails(
    site: tuple[Path, str], tmp_path: Path
) -> None:
    deployment, _ = site
    elsewhere = f"sqlite:///{tmp_path / 'no-meters.db'}"  # a head-end that knows no meter
    Store.open(elsewhere).close()
    with emulated_and_served(deployment, elsewhere, ["emulate", "--meters", "1"]) as served:
        _, meter_id, serial, address, *_ = served.meters[0].split()
        result = invoke(
            ["agent", "run", "-d", str(deployment), "--address", address, "--serial", serial,
             "--meter-id", meter_id, "--target", served.target, "--days", "1",
             "--timeout", "8"]
        )  # fmt: skip
    text = " ".join(result.output.split())
    assert "readings sealed 96, accepted 0, rejected 96" in text
    assert result.exit_code == 1, result.output
    assert "96 sealed readings were not stored by the head-end" in text


@pytest.mark.slow
def test_the_walkthrough_reads_meters_of_its_own_into_a_head_end_that_holds_the_fleets_day(
    site: tuple[Path, str], tmp_path: Path
) -> None:
    # docs/meters.md's walkthrough after the tutorial: the head-end already holds the
    # provisioned fleet's readings (`meterseal simulate`), so the agent's meters are its own.
    deployment, url = site
    agent_fleet, meter_list = tmp_path / "fleet-agent.cbor", tmp_path / "meters.txt"
    made = invoke(["meters", "provision", "3", "--prefix", "AGT", "--regions", "1",
                   "-d", str(deployment), "--out", str(agent_fleet)])  # fmt: skip
    assert made.exit_code == 0, made.output
    registered = invoke(["meters", "register", str(agent_fleet), "-d", str(deployment),
                         "--store", url])  # fmt: skip
    assert "3 meters registered" in registered.output, registered.output
    emulate = ["emulate", "--meters", "3", "--prefix", "AGT", "--faults", "timeout",
               "--write-meters", str(meter_list)]  # fmt: skip
    with emulated_and_served(deployment, url, emulate, 3) as served:
        assert served.meters[0].startswith("meter AGT-000001 20000001 127.0.0.1:")
        fed = invoke(["simulate", "-d", str(deployment), "--target", served.target,
                      "--days", "1", "--store", url])  # fmt: skip
        assert fed.exit_code == 0, fed.output
        result = agent_run(deployment, meter_list, served.target, "--fleet", str(agent_fleet),
                           "--store", url, "--timeout", "5", "--attempts", "1")  # fmt: skip
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())
    assert TWO_READ in text
    assert "skipped: timeout 1" in text
    with Store.open(url) as store:
        assert store.counters().get("stored") == 3 * 96 + 192


@pytest.mark.slow
def test_readings_the_head_end_already_holds_are_named_and_no_rerun_is_offered(
    site: tuple[Path, str], tmp_path: Path
) -> None:
    # The operator journey's failure: the agent reads the fleet's own meters over the day the
    # simulator already sent, and the head-end refuses every reading.
    deployment, url = site
    meter_list = tmp_path / "meters.txt"
    emulate = ["emulate", "--meters", "2", "--write-meters", str(meter_list)]
    with emulated_and_served(deployment, url, emulate, 2) as served:
        fed = invoke(["simulate", "-d", str(deployment), "--target", served.target,
                      "--days", "1", "--store", url])  # fmt: skip
        assert fed.exit_code == 0, fed.output
        result = agent_run(deployment, meter_list, served.target, "--store", url,
                           "--timeout", "8")  # fmt: skip
    text = " ".join(result.output.split())
    assert result.exit_code == 1, result.output
    assert "readings sealed 192, accepted 0, rejected 192" in text
    assert "the head-end's reasons: replayed_counter 192" in text
    assert "the head-end already holds these or newer readings of those meters" in text
    assert "run the pass again" not in text


def test_the_spools_keep_comes_from_the_file_the_variable_or_the_flag_within_the_window(
    site: tuple[Path, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from meterseal import simulation
    from meterseal.agent import runner
    from meterseal.agent.spool import KEEP_SECONDS, ReadingSpool

    kept: list[int] = []

    async def a_pass(*_: object, spool: ReadingSpool, **__: object) -> runner.AgentPass:
        kept.append(spool.keep_seconds)
        done = runner.AgentPass()
        done.report.unspooled.update(stale=3, future=2)
        done.report.future_days_pruned = 1
        return done

    async def listening(*_: object) -> None:
        return None

    monkeypatch.setattr(runner, "run_pass", a_pass)  # the meters and the head-end: not here
    monkeypatch.setattr(simulation, "wait_for_listener", listening)
    deployment, _ = site
    config = tmp_path / "meterseal.toml"
    config.write_text("[agent]\nspool_keep_seconds = 86400\n")
    command = ["agent", "run", "-d", str(deployment), "--address", "127.0.0.1:9",
               "--serial", "20000001", "--meter-id", "MTR-000001"]  # fmt: skip
    for args, env in [
        (command, {"MS_CONFIG": str(config)}),
        (command, {"MS_CONFIG": str(config), "MS_AGENT_SPOOL_KEEP_SECONDS": "7200"}),
        ([*command, "--spool-keep-seconds", "3600"], {"MS_CONFIG": str(config)}),
        (command, {"MS_CONFIG": "none"}),
    ]:
        done = invoke(args, env=env)
        assert done.exit_code == 0, done.output
        text = " ".join(done.output.split())
        assert "not spooled: future 2, stale 3; spool days dated ahead pruned: 1" in text
    assert kept == [86_400, 7_200, 3_600, KEEP_SECONDS]
    config.write_text(f"[agent]\nspool_keep_seconds = {KEEP_SECONDS + 1}\n")
    for args, env in [
        ([*command, "--spool-keep-seconds", "0"], {"MS_CONFIG": "none"}),
        (command, {"MS_CONFIG": str(config)}),  # past the head-end's window
    ]:
        refused = invoke(args, env=env)
        assert refused.exit_code == 2, refused.output
        assert "--spool-keep-seconds" in refused.output
    assert len(kept) == 4
