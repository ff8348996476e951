"""Signed commands carried out on an emulated DLMS meter: only what the verifier admits acts."""

from __future__ import annotations

import asyncio
import dataclasses
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from meterseal.agent.dlms_commands import Carried, carry_out, read_counters, write_counters
from meterseal.agent.dlms_driver import DlmsDriver, DlmsSecrets, open_dlms
from meterseal.agent.dlms_emulator import DlmsMeterLine, Transport
from meterseal.agent.dlms_meter import DlmsMeterApp
from meterseal.agent.driver import LoadState, MeterTarget
from meterseal.agent.nbr_driver import NbrDriver, open_nbr
from meterseal.agent.nbr_emulator import MeterLine
from meterseal.agent.nbr_meter import EmulatedMeter
from meterseal.commands.agent import CommandAnswerer
from meterseal.commands.desk import CommandDesk
from meterseal.commands.keys import SCHEME, ensure_operator_key
from meterseal.commands.lifecycle import CommandState
from meterseal.commands.logfile import CommandLogFile
from meterseal.commands.model import Action, Command, Outcome, encode_command, sign_command
from meterseal.commands.verify import CommandVerifier, Signer
from meterseal.crypto.keys import generate_meter_key, kid_of, public_bytes
from meterseal.crypto.suites import P256
from meterseal.meter.load import Fleet
from tests.conftest import NOW

T = int(NOW.timestamp())
SERIAL = "50000001"


def test_commands_act_on_the_meter_only_when_admitted(tmp_path: Path) -> None:
    meter = EmulatedMeter(SERIAL, 0, Fleet(7), lambda: T)
    key, _ = ensure_operator_key(tmp_path, None)
    meter_key = generate_meter_key("M1", P256)
    desk = CommandDesk(
        key,
        CommandLogFile(tmp_path / "commands.log"),
        {"M1": Signer(meter_key.suite.signature, meter_key.public_key())},
    )
    answerer = CommandAnswerer(CommandVerifier(["M1"], {key.kid: key.signer()}), {"M1": meter_key})
    other = ec.generate_private_key(ec.SECP256R1())
    disconnect = desk.issue("M1", Action.DISCONNECT, T)
    forged = sign_command(
        dataclasses.replace(disconnect.command, counter=99), other, key.kid, SCHEME
    )
    stranger = sign_command(
        disconnect.command, other, kid_of(public_bytes(other.public_key())), SCHEME
    )
    foreign = sign_command(
        Command("M9", Action.DISCONNECT, 1, T, T + 60), key.private_key, key.kid, SCHEME
    )
    late = desk.issue("M1", Action.DISCONNECT, T - 1000, ttl=10)

    async def run() -> list[Carried]:
        line = DlmsMeterLine(DlmsMeterApp(meter, b"secret"), Transport.HDLC)
        host, port = await line.start()
        driver = await open_dlms(
            MeterTarget(f"{host}:{port}", SERIAL, timeout=3), DlmsSecrets(b"secret"), hdlc=True
        )
        try:
            refused = [
                await carry_out(answerer, driver, SERIAL, signed, T)
                for signed in (forged, stranger, foreign, encode_command(disconnect.command),
                               late.signed)
            ]  # fmt: skip
            assert meter.load_connected is True  # nothing refused reached the relay
            done = await carry_out(answerer, driver, SERIAL, disconnect.signed, T)
            assert meter.load_connected is False
            again = await carry_out(answerer, driver, SERIAL, disconnect.signed, T)
            reconnect = desk.issue("M1", Action.CONNECT, T)
            back = await carry_out(answerer, driver, SERIAL, reconnect.signed, T)
            read = desk.issue("M1", Action.READ, T)
            values = await carry_out(answerer, driver, SERIAL, read.signed, T)
            return [*refused, done, again, back, values]
        finally:
            await driver.close()
            await line.stop()

    carried = asyncio.run(run())
    assert [(c.outcome, c.reason) for c in carried] == [
        (Outcome.REFUSED, "bad signature"),
        (Outcome.REFUSED, "unknown signer"),
        (Outcome.REFUSED, "foreign meter"),
        (Outcome.REFUSED, "unsigned"),
        (Outcome.REFUSED, "expired"),
        (Outcome.DONE, ""),
        (Outcome.REFUSED, "replayed"),
        (Outcome.DONE, ""),
        (Outcome.DONE, ""),
    ]
    assert meter.load_connected is True
    assert answerer.verifier.counts["accepted"] == 3
    assert carried[2].result is None  # another meter's command: nothing to sign for it
    # The head-end logs the results of what it issued; the log then checks out whole.
    for index in (4, 5, 7, 8):
        result = carried[index].result
        assert result is not None
        desk.record(result, T)
    report = desk.report()
    assert report.holds, report.problems
    states = {t.command.id: t.state for t in report.commands.values()}
    assert states == {
        "M1#1": CommandState.DONE,
        "M1#2": CommandState.REFUSED,
        "M1#3": CommandState.DONE,
        "M1#4": CommandState.DONE,
    }
    (read,) = [t for t in report.commands.values() if t.command.id == "M1#4"]
    assert read.result is not None
    assert dict(read.result.values)["1.0.1.8.0.255"] == meter.register_wh(T)
    write_counters(tmp_path / "agent" / "counters.json", answerer.verifier.last_counters)
    assert read_counters(tmp_path / "agent" / "counters.json") == {"M1": 4}


def _power_cut(result: bytes) -> None:
    """The agent's process dies after the meter acted, before the result is kept."""
    raise SystemError("power cut before the result was written")


@pytest.mark.parametrize("protocol", ["dlms", "nbr14522"])
def test_a_crash_between_acting_and_the_result_is_answered_interrupted_with_the_relay(
    tmp_path: Path, protocol: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    meter = EmulatedMeter(SERIAL, 0, Fleet(7), lambda: T)
    key, _ = ensure_operator_key(tmp_path, None)
    meter_key = generate_meter_key("M1", P256)
    desk = CommandDesk(
        key,
        CommandLogFile(tmp_path / "commands.log"),
        {"M1": Signer(meter_key.suite.signature, meter_key.public_key())},
    )
    disconnect = desk.issue("M1", Action.DISCONNECT, T)
    counters = tmp_path / "agent" / "counters.json"
    acted: list[LoadState] = []
    driver_class: Any = DlmsDriver if protocol == "dlms" else NbrDriver
    real_set_load = driver_class.set_load

    async def counted(self: Any, state: LoadState) -> LoadState:
        acted.append(state)
        return await real_set_load(self, state)  # type: ignore[no-any-return]

    monkeypatch.setattr(driver_class, "set_load", counted)

    def agent() -> CommandAnswerer:  # a fresh agent process, with the counters on disk
        verifier = CommandVerifier(["M1"], {key.kid: key.signer()}, read_counters(counters))
        return CommandAnswerer(verifier, {"M1": meter_key})

    async def run() -> tuple[Carried, Carried, list[bytes]]:
        if protocol == "dlms":
            line: Any = DlmsMeterLine(DlmsMeterApp(meter, b"secret"), Transport.HDLC)
        else:
            line = MeterLine(meter=meter)
        host, port = await line.start()
        target = MeterTarget(f"{host}:{port}", SERIAL, timeout=3)

        async def opened() -> Any:
            if protocol == "dlms":
                return await open_dlms(target, DlmsSecrets(b"secret"), hdlc=True)
            return await open_nbr(target, attempts=2)

        kept: list[bytes] = []
        try:
            driver = await opened()
            try:
                with pytest.raises(SystemError):
                    await carry_out(
                        agent(), driver, SERIAL, disconnect.signed, T, counters, _power_cut
                    )
            finally:
                await driver.close()
            assert meter.load_connected is False  # the meter acted; its result was lost
            driver = await opened()  # the restarted agent
            try:
                after = await carry_out(
                    agent(), driver, SERIAL, disconnect.signed, T, counters, kept.append
                )
                again = await carry_out(
                    agent(), driver, SERIAL, disconnect.signed, T, counters, kept.append
                )
            finally:
                await driver.close()
        finally:
            await line.stop()
        return after, again, kept

    after, again, kept = asyncio.run(run())
    assert acted == [LoadState.DISCONNECTED]  # once, never again after the restart
    assert (after.outcome, after.reason) == (
        Outcome.FAILED,
        "interrupted: the agent stopped while acting; the relay reads back disconnected",
    )
    assert list((tmp_path / "agent" / "counters.acting").iterdir()) == []  # marker cleared
    # Only once the interrupted answer is kept does a copy count as a replay.
    assert (again.outcome, again.reason) == (Outcome.REFUSED, "replayed")
    assert len(kept) == 2
    recorded = desk.record(kept[0], T)
    assert (recorded.appended, recorded.tracked.state) == (True, CommandState.FAILED)
    result = recorded.tracked.result
    assert result is not None
    assert result.reason.startswith("interrupted")
    assert dict(result.values) == {"load connected": 0}
    assert desk.record(kept[1], T).note == "a replayed copy, refused by the agent"
    assert desk.report().holds


class _Crashing:
    """A driver whose process dies (an exception that is no driver error) before it acts."""

    async def identify(self) -> object:
        raise SystemError("power cut")


def test_a_command_admitted_before_a_crash_is_not_carried_out_again(tmp_path: Path) -> None:
    key, _ = ensure_operator_key(tmp_path, None)
    meter_key = generate_meter_key("M1", P256)
    desk = CommandDesk(key, CommandLogFile(tmp_path / "commands.log"))
    disconnect = desk.issue("M1", Action.DISCONNECT, T)
    counters = tmp_path / "agent" / "counters.json"

    def agent() -> CommandAnswerer:  # a fresh agent process, with the counters on disk
        verifier = CommandVerifier(["M1"], {key.kid: key.signer()}, read_counters(counters))
        return CommandAnswerer(verifier, {"M1": meter_key})

    crashing: Any = _Crashing()
    with pytest.raises(SystemError):
        asyncio.run(carry_out(agent(), crashing, SERIAL, disconnect.signed, T, counters))
    # A driver that cannot read the relay back: the answer says so, and nothing acts again.
    again = asyncio.run(carry_out(agent(), crashing, SERIAL, disconnect.signed, T, counters))
    assert (again.outcome, again.reason) == (
        Outcome.FAILED,
        "interrupted: the agent stopped while acting; the driver cannot read the relay back",
    )
