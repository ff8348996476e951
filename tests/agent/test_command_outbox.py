"""The agent's outbox: a result is on disk before its command leaves; a crash acts once."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Any

import pytest

from meterseal.agent.dlms_commands import RESULTS, Carried, carry_out_outbox
from meterseal.agent.driver import LoadState, MeterDriver, MeterIdentity, MeterTarget
from meterseal.agent.runner import AgentMeter
from meterseal.commands.desk import CommandDesk
from meterseal.commands.keys import OperatorKey, ensure_operator_key
from meterseal.commands.lifecycle import CommandState
from meterseal.commands.logfile import CommandLogFile
from meterseal.commands.model import Action, Outcome
from meterseal.crypto import certs
from meterseal.crypto.suites import P256
from meterseal.meter.provisioning import ProvisionedMeter, provision
from meterseal.runtime import durable
from tests.conftest import NOW

T = int(NOW.timestamp())
SERIAL = "70000001"


class _Relay:
    """A meter's relay behind a driver: how often it was switched, and its state."""

    def __init__(self, crash_after_switching: bool = False) -> None:
        self.switched = 0
        self.state = LoadState.CONNECTED
        self.crash_after_switching = crash_after_switching

    async def identify(self) -> MeterIdentity:
        return MeterIdentity(SERIAL, "test")

    async def set_load(self, state: LoadState) -> LoadState:
        self.switched += 1
        self.state = state
        if self.crash_after_switching:  # the relay moved; the agent dies before its result
            self.crash_after_switching = False
            raise SystemError("power cut after the relay moved")
        return state

    async def read_load(self) -> LoadState:
        return self.state

    async def set_clock(self, unix_seconds: int) -> int:
        return unix_seconds

    async def close(self) -> None:
        pass


@pytest.fixture(scope="module")
def meter() -> ProvisionedMeter:
    ca_key, ca_cert = certs.create_ca("outbox CA", now=NOW, rng=os.urandom)
    (made,) = provision(ca_key, ca_cert, 1, P256, now=NOW, prefix="OUT", workers=1)
    return made


def _site(tmp_path: Path) -> tuple[OperatorKey, CommandDesk]:
    key, _ = ensure_operator_key(tmp_path, None)
    desk = CommandDesk(key, CommandLogFile(tmp_path / "commands.log"), outbox=tmp_path / "outbox")
    return key, desk


def _pass(
    tmp_path: Path, key: OperatorKey, meter: ProvisionedMeter, relay: _Relay
) -> list[Carried]:
    """One agent pass over the outbox, as a fresh process: counters from disk."""

    async def opened(target: MeterTarget) -> MeterDriver:
        driver: Any = relay
        return driver  # type: ignore[no-any-return]

    agent = [AgentMeter(MeterTarget("nowhere:1", SERIAL), meter)]
    return asyncio.run(
        carry_out_outbox(
            tmp_path / "outbox", agent, opened, {key.kid: key.signer()},
            tmp_path / "agent" / "counters.json", T,
        )
    )  # fmt: skip


def test_a_crash_after_the_result_and_before_the_command_leaves_acts_once(
    tmp_path: Path, meter: ProvisionedMeter, monkeypatch: pytest.MonkeyPatch
) -> None:
    key, desk = _site(tmp_path)
    meter_id = meter.key.meter_id
    desk.issue(meter_id, Action.DISCONNECT, T)
    relay = _Relay()
    real_remove = durable.remove_durably

    def power_cut(_path: Path) -> None:
        raise SystemError("power cut before the command left the outbox")

    monkeypatch.setattr(durable, "remove_durably", power_cut)
    with pytest.raises(SystemError):
        _pass(tmp_path, key, meter, relay)
    assert relay.switched == 1
    assert (tmp_path / "outbox" / f"{meter_id}-1.cose").exists()  # both the command...
    (kept,) = (tmp_path / "outbox" / RESULTS).glob("*.cose")  # ...and its result survived
    monkeypatch.setattr(durable, "remove_durably", real_remove)

    # The restarted agent finds the command answered: it removes it and does not act again
    # (nor write a "replayed" refusal over the "done" the meter really did).
    (noted,) = _pass(tmp_path, key, meter, relay)
    assert (noted.outcome, noted.reason) == (Outcome.DONE, "answered before a restart")
    assert relay.switched == 1
    assert list((tmp_path / "outbox").glob("*.cose")) == []
    assert list((tmp_path / "outbox" / RESULTS).glob("*.cose")) == [kept]

    # The head-end gets the result twice (the results directory copied twice): logged once.
    first = desk.record(kept.read_bytes(), T)
    again = desk.record(kept.read_bytes(), T)
    assert (first.appended, first.tracked.state) == (True, CommandState.DONE)
    assert (again.appended, again.note) == (False, "already logged")
    assert [e.kind for e in desk.log.entries()] == ["command", "result"]


def test_a_crash_after_the_relay_moved_and_before_the_result_is_logged_interrupted(
    tmp_path: Path, meter: ProvisionedMeter
) -> None:
    key, desk = _site(tmp_path)
    meter_id = meter.key.meter_id
    desk.issue(meter_id, Action.DISCONNECT, T)
    relay = _Relay(crash_after_switching=True)
    with pytest.raises(SystemError):
        _pass(tmp_path, key, meter, relay)
    assert list((tmp_path / "outbox" / RESULTS).glob("*.cose")) == []  # no result was kept
    (after,) = _pass(tmp_path, key, meter, relay)  # the restarted agent
    assert relay.switched == 1
    assert (after.outcome, after.reason) == (
        Outcome.FAILED,
        "interrupted: the agent stopped while acting; the relay reads back disconnected",
    )
    assert list((tmp_path / "outbox").glob("*.cose")) == []
    assert list((tmp_path / "agent" / "counters.acting").iterdir()) == []
    (kept,) = (tmp_path / "outbox" / RESULTS).glob("*.cose")
    recorded = desk.record(kept.read_bytes(), T)  # what `command record` logs
    assert (recorded.appended, recorded.tracked.state) == (True, CommandState.FAILED)
    assert recorded.tracked.result is not None
    assert dict(recorded.tracked.result.values) == {"load connected": 0}
    assert desk.report().holds


def test_a_replayed_copy_after_a_restart_is_refused_and_not_logged_as_an_answer(
    tmp_path: Path, meter: ProvisionedMeter
) -> None:
    key, desk = _site(tmp_path)
    meter_id = meter.key.meter_id
    issued = desk.issue(meter_id, Action.DISCONNECT, T)
    relay = _Relay()
    (done,) = _pass(tmp_path, key, meter, relay)
    assert done.outcome is Outcome.DONE
    for result in (tmp_path / "outbox" / RESULTS).glob("*.cose"):
        assert desk.record(result.read_bytes(), T).appended
        result.unlink()
    # Someone puts the signed command back; a new agent process reads its counters from disk.
    (tmp_path / "outbox" / f"{meter_id}-1.cose").write_bytes(issued.signed)
    (replayed,) = _pass(tmp_path, key, meter, relay)
    assert (replayed.outcome, replayed.reason) == (Outcome.REFUSED, "replayed")
    assert relay.switched == 1
    (refusal,) = (tmp_path / "outbox" / RESULTS).glob("*.cose")
    recorded = desk.record(refusal.read_bytes(), T)
    assert (recorded.appended, recorded.tracked.state) == (False, CommandState.DONE)
    assert recorded.note == "a replayed copy, refused by the agent"
    assert desk.report().holds


def test_the_result_is_synced_before_the_command_is_removed(
    tmp_path: Path, meter: ProvisionedMeter, monkeypatch: pytest.MonkeyPatch
) -> None:
    key, desk = _site(tmp_path)
    desk.issue(meter.key.meter_id, Action.DISCONNECT, T)
    events: list[str] = []
    real_fsync, real_replace, real_unlink = os.fsync, os.replace, Path.unlink

    def fsync(fd: int) -> None:
        events.append(f"fsync {os.readlink(f'/proc/self/fd/{fd}')}")
        real_fsync(fd)

    def replace(source: Any, target: Any) -> None:
        events.append(f"rename {target}")
        real_replace(source, target)

    def unlink(path: Path, missing_ok: bool = False) -> None:
        events.append(f"unlink {path}")
        real_unlink(path, missing_ok)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "replace", replace)
    monkeypatch.setattr(Path, "unlink", unlink)
    _pass(tmp_path, key, meter, _Relay())
    results = tmp_path / "outbox" / RESULTS
    command = tmp_path / "outbox" / f"{meter.key.meter_id}-1.cose"
    at = {what: i for i, what in enumerate(events)}
    result = next(e for e in events if e.startswith(f"rename {results}/"))
    synced_result = next(
        i for i, e in enumerate(events) if e.startswith(f"fsync {results}/") and "tmp" in e
    )
    synced_directory = max(i for i, e in enumerate(events) if e == f"fsync {results}")
    assert synced_result < at[result] < synced_directory < at[f"unlink {command}"]
    assert events[-1] == f"fsync {tmp_path / 'outbox'}"  # the removal is durable too
