"""The agent carries out a signed command: the verifier first, then the driver, then a result.

Nothing reaches the meter unless `CommandAnswerer.admit` accepted the command (operator
signature, this agent's meter, not expired, counter above the last one). The agent then checks
that the meter on the line is the one the command names (its serial), acts through the
driver's `MeterControl` (the DLMS disconnect control 0.0.96.3.10.255 and clock; the NBR 14522
driver's relay and clock codes alike) and signs what the meter reports afterwards: a relay
that did not move is `failed`, not `done`. A driver error is `failed` with its skip reason.
"""

from __future__ import annotations

import dataclasses
import functools
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from meterseal.agent.dlms_driver import DlmsSecrets, open_dlms
from meterseal.agent.driver import (
    DriverFactory,
    LoadReader,
    LoadState,
    MeterControl,
    MeterDriver,
    MeterTarget,
)
from meterseal.agent.runner import AgentMeter
from meterseal.commands.agent import CommandAnswerer
from meterseal.commands.desk import CommandDesk
from meterseal.commands.model import (
    COMMAND_TYPE,
    RESULT_TYPE,
    Action,
    Command,
    Outcome,
    decode_command,
    decode_result,
    digest,
    open_typed,
)
from meterseal.commands.verify import CommandVerifier, Refusal, Signer
from meterseal.errors import MeterDriverError
from meterseal.meter.provisioning import ProvisionedMeter
from meterseal.runtime import durable
from meterseal.runtime.durable import write_durably


@dataclass(frozen=True, slots=True)
class Carried:
    """What became of one signed command: its signed result (None if unattributable)."""

    command: Command | None
    outcome: Outcome
    reason: str
    result: bytes | None
    file: str = ""  # the outbox file it came in, if it came in one


async def carry_out(
    answerer: CommandAnswerer,
    driver: MeterDriver,
    serial: str,
    signed: bytes,
    now: int,
    counters: Path | None = None,
    deliver: Callable[[bytes], object] | None = None,
) -> Carried:
    """Verify `signed`, act on the meter behind `driver` (serial `serial`), sign the result.

    With `counters`, an acting marker (`acting_marker`) and then the raised counter reach the
    disk before the meter acts, and the marker is cleared only once `deliver` (if given) has
    kept the result (every signed result, a refusal's too, goes to `deliver`). A crash in
    between leaves the marker: the next pass answers the command `interrupted` with the relay
    state read back, instead of refusing it as replayed (which would contradict what the
    meter did) or carrying it out again.
    """
    marker = None if counters is None else acting_marker(counters, signed)
    if marker is not None and marker.exists():
        return await _interrupted(answerer, driver, signed, now, marker, deliver)
    admission = answerer.admit(signed, now)
    if admission.command is None:
        reason = (admission.refusal or Refusal.MALFORMED).value
        if admission.result is not None and deliver is not None:
            deliver(admission.result)
        return Carried(None, Outcome.REFUSED, reason, admission.result)
    command = admission.command
    if counters is not None and marker is not None:
        write_durably(marker, signed)
        write_counters(counters, answerer.verifier.last_counters)
    try:
        if (await driver.identify()).serial != serial:
            raise MeterDriverError(f"the meter on the line is not {serial}")
        outcome, reason, values = await _act(driver, command)
    except MeterDriverError as exc:
        outcome, reason, values = Outcome.FAILED, exc.skip, ()
    result = answerer.answer(signed, command, outcome, reason, now, values)
    _delivered(result, deliver, marker)
    return Carried(command, outcome, reason, result)


ACTING = "acting"  # a command's marker: admitted, its result not kept yet
INTERRUPTED = "interrupted"  # the reason of a command a crash cut off (its start)


def acting_marker(counters: Path, signed: bytes) -> Path:
    """The marker of `signed` while the agent acts on it (beside the counters file)."""
    return counters.parent / f"{counters.stem}.{ACTING}" / f"{digest(signed).hex()}.cose"


def _delivered(
    result: bytes, deliver: Callable[[bytes], object] | None, marker: Path | None
) -> None:
    if deliver is not None:
        deliver(result)
    if marker is not None and marker.exists():
        durable.remove_durably(marker)


async def _interrupted(
    answerer: CommandAnswerer,
    driver: MeterDriver,
    signed: bytes,
    now: int,
    marker: Path,
    deliver: Callable[[bytes], object] | None,
) -> Carried:
    """The answer to a command a crash cut off after it was admitted: `failed`, reason
    `interrupted`, and the relay state read back where the driver can read it. The marker
    holds these very bytes only because the verifier admitted them, so they are not checked
    again (their counter is spent: a check would call them replayed)."""
    command = decode_command(open_typed(signed, COMMAND_TYPE).body.payload)
    reason = f"{INTERRUPTED}: the agent stopped while acting"
    values: tuple[tuple[str, int], ...] = ()
    if command.action in (Action.CONNECT, Action.DISCONNECT):
        if isinstance(driver, LoadReader):
            try:
                state = await driver.read_load()
            except MeterDriverError as exc:
                reason += f"; the relay could not be read back ({exc.skip})"
            else:
                reason += f"; the relay reads back {state.value}"
                values = (("load connected", int(state is LoadState.CONNECTED)),)
        else:
            reason += "; the driver cannot read the relay back"
    result = answerer.answer(signed, command, Outcome.FAILED, reason, now, values)
    _delivered(result, deliver, marker)
    return Carried(command, Outcome.FAILED, reason, result)


async def _act(
    driver: MeterDriver, command: Command
) -> tuple[Outcome, str, tuple[tuple[str, int], ...]]:
    if command.action is Action.READ:
        registers = await driver.read_registers()
        return Outcome.DONE, "", (("1.0.1.8.0.255", registers.active_import_wh),
                                  ("clock", registers.read_at))  # fmt: skip
    if not isinstance(driver, MeterControl):
        return Outcome.FAILED, "the driver cannot act on this meter", ()
    if command.action is Action.SET_CLOCK:
        assert command.argument is not None  # decode_command insists
        after = await driver.set_clock(command.argument)
        ok = abs(after - command.argument) <= 2
        return (
            (Outcome.DONE if ok else Outcome.FAILED),
            "" if ok else "clock not set",
            (("clock", after),),
        )
    wanted = LoadState.DISCONNECTED if command.action is Action.DISCONNECT else LoadState.CONNECTED
    state = await driver.set_load(wanted)
    if state is not wanted:
        return Outcome.FAILED, f"the relay reports {state.value}", ()
    return Outcome.DONE, "", (("load connected", int(state is LoadState.CONNECTED)),)


def read_counters(path: Path) -> dict[str, int]:
    """The agent's last accepted counter per meter (empty if the file is new)."""
    if not path.exists():
        return {}
    data = json.loads(path.read_text())
    return {str(k): int(v) for k, v in data.items()}


def write_counters(path: Path, counters: dict[str, int]) -> None:
    """Keep the agent's counters durably: never half a file, not lost by a power cut once
    this returns (write_durably)."""
    write_durably(path, json.dumps(counters, sort_keys=True).encode())


async def carry_out_here(
    desk: CommandDesk,
    signed: bytes,
    meter: ProvisionedMeter,
    target: MeterTarget,
    secrets: DlmsSecrets,
    counters: Path,
    *,
    hdlc: bool,
    now: int,
) -> Carried:
    """An agent in this process: carry `signed` out on the DLMS meter at `target` with
    `meter`'s key, keep the agent's counters in `counters`, log the result at the desk."""
    meter_id = meter.key.meter_id
    verifier = CommandVerifier(
        [meter_id], {desk.key.kid: desk.key.signer()}, read_counters(counters)
    )
    answerer = CommandAnswerer(verifier, {meter_id: meter.key})
    driver = await open_dlms(target, secrets, hdlc=hdlc)
    try:
        carried = await carry_out(
            answerer, driver, target.serial, signed, now, counters, lambda r: desk.record(r, now)
        )
    finally:
        await driver.close()
    return carried


RESULTS = "results"  # the outbox's subdirectory the agent leaves signed results in


def result_name(command_file: Path, signed: bytes) -> str:
    """The result file of a command file: its name and the command's digest, so a command
    answered before a crash is known again by what it is, not by a name anyone may reuse."""
    return f"{command_file.stem}.{digest(signed)[:8].hex()}.cose"


async def carry_out_outbox(
    outbox: Path,
    meters: Sequence[AgentMeter],
    open_driver: DriverFactory,
    signers: Mapping[bytes, Signer],
    counters: Path,
    now: int,
) -> list[Carried]:
    """Carry out the commands waiting in `outbox` for `meters` (files METER-COUNTER.cose, oldest
    counter first), leave each signed result in OUTBOX/results and remove the command.

    The result is on disk (written whole, synced, renamed, directory synced) before the
    command leaves the outbox: a crash in between leaves both, and the next pass, finding the
    command's result already there, only removes the command (the meter acts once, the
    head-end gets one answer). A meter whose driver cannot be opened keeps its commands.
    """
    by_id = {m.meter_id: m for m in meters}
    verifier = CommandVerifier(by_id, signers, read_counters(counters))
    answerer = CommandAnswerer(verifier, {m.meter_id: m.meter.key for m in meters})
    waiting = sorted(outbox.glob("*.cose"), key=_order)
    results = outbox / RESULTS
    done: list[Carried] = []
    for meter in meters:
        pending = []
        for path in (p for p in waiting if _order(p)[0] == meter.meter_id):
            before = _answered_before(path, results, counters)
            if before is None:
                pending.append(path)
            else:
                done.append(before)
        if not pending:
            continue
        try:
            driver = await open_driver(meter.target)
        except MeterDriverError:
            continue
        try:
            for path in pending:
                signed = path.read_bytes()
                keep = results / result_name(path, signed)
                carried = await carry_out(
                    answerer, driver, meter.target.serial, signed, now, counters,
                    functools.partial(write_durably, keep),
                )  # fmt: skip
                durable.remove_durably(path)
                done.append(dataclasses.replace(carried, file=path.name))
        finally:
            await driver.close()
    return done


def _answered_before(command_file: Path, results: Path, counters: Path) -> Carried | None:
    """What a pass that crashed before removing `command_file` answered, as its result there
    says (the command is removed now, and not carried out again); None if nothing."""
    signed = command_file.read_bytes()
    kept = results / result_name(command_file, signed)
    if not kept.exists():
        return None
    result = decode_result(open_typed(kept.read_bytes(), RESULT_TYPE).body.payload)
    command = decode_command(open_typed(signed, COMMAND_TYPE).body.payload)
    marker = acting_marker(counters, signed)
    if marker.exists():  # the crash came after the result was kept, before the marker went
        durable.remove_durably(marker)
    durable.remove_durably(command_file)
    return Carried(command, result.outcome, "answered before a restart", None, command_file.name)


def _order(path: Path) -> tuple[str, int]:
    meter, _, counter = path.stem.rpartition("-")
    return (meter, int(counter)) if counter.isdigit() else (path.stem, 0)
