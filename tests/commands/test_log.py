"""The command log: issue, answer, expire; the check names an edited, removed or forged entry."""

from __future__ import annotations

import dataclasses

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from meterseal.commands.agent import CommandAnswerer
from meterseal.commands.lifecycle import CommandState, CommandStateRefused
from meterseal.commands.log import LogEntry, check_log, decode_entry, encode_entry
from meterseal.commands.logfile import CommandLogFile
from meterseal.commands.model import Action, CommandFormatError, Outcome
from meterseal.crypto.keys import generate_meter_key
from meterseal.crypto.suites import P256
from tests.commands.conftest import NOW, World


def _full_log(world: World) -> list[LogEntry]:
    """M1 disconnected (done), M2 read (done, values), M1 reconnected (refused), M1 expired."""
    desk, answerer = world.desk, world.answerer
    first = desk.issue("M1", Action.DISCONNECT, NOW)
    admitted = answerer.admit(first.signed, NOW)
    assert admitted.command is not None
    desk.record(answerer.answer(first.signed, admitted.command, Outcome.DONE, "", NOW), NOW)
    read = desk.issue("M2", Action.READ, NOW)
    command = answerer.admit(read.signed, NOW).command
    assert command is not None
    values = [("1.0.1.8.0", 123_456)]
    desk.record(answerer.answer(read.signed, command, Outcome.DONE, "", NOW, values), NOW)
    late = desk.issue("M1", Action.CONNECT, NOW, ttl=10)
    refused = answerer.admit(late.signed, NOW + 11)
    assert refused.result is not None
    desk.record(refused.result, NOW + 11)
    desk.issue("M1", Action.SET_CLOCK, NOW, ttl=10, argument=NOW)
    assert [t.command.id for t in desk.expire(NOW + 20)] == ["M1#3"]
    return desk.log.entries()


def test_a_full_log_checks_out_for_the_authority_and_the_customer(world: World) -> None:
    entries = _full_log(world)
    assert [e.kind for e in entries] == [
        "command", "result", "command", "result", "command", "result", "command", "unanswered"
    ]  # fmt: skip
    report = check_log(entries, {world.key.kid: world.key.signer()}, world.meter_signers())
    assert report.holds
    assert report.unchecked_results == 0
    states = {t.command.id: t.state for t in report.commands.values()}
    assert states == {
        "M1#1": CommandState.DONE,
        "M2#1": CommandState.DONE,
        "M1#2": CommandState.REFUSED,
        "M1#3": CommandState.UNANSWERED,
    }
    (read,) = report.of_meter("M2")
    assert read.result is not None
    assert read.result.values == (("1.0.1.8.0", 123_456),)
    mine = check_log(entries, {world.key.kid: world.key.signer()}, meter="M2")
    assert mine.holds
    assert [t.command.id for t in mine.commands.values()] == ["M2#1"]
    assert mine.unchecked_results == 1  # the customer check without the meter's key


def test_counters_follow_the_log_per_meter(world: World) -> None:
    assert world.desk.issue("M1", Action.READ, NOW).command.id == "M1#1"
    assert world.desk.issue("M2", Action.READ, NOW).command.id == "M2#1"
    assert world.desk.issue("M1", Action.READ, NOW).command.id == "M1#2"


def test_a_damaged_log_issues_nothing(world: World) -> None:
    world.desk.issue("M1", Action.READ, NOW)
    data = bytearray(world.desk.log.path.read_bytes())
    data[-40] ^= 0x01  # inside the entry's body or digests
    world.desk.log.path.write_bytes(bytes(data))
    with pytest.raises(CommandFormatError):
        world.desk.issue("M1", Action.READ, NOW)


def test_an_edited_entry_is_named(world: World) -> None:
    entries = _full_log(world)
    signers = {world.key.kid: world.key.signer()}
    # The operator rewrites "disconnect" as "read" in the first command (re-signing is not
    # open to them without the key, so they keep the signature): the chain breaks there.
    edited = entries.copy()
    body = entries[0].body.replace(b"disconnect", b"connect\x00\x00\x00")
    edited[0] = dataclasses.replace(entries[0], body=body)
    assert check_log(edited, signers).problems == ["entry 1 differs from what was recorded"]
    removed = entries[:3] + entries[4:]
    assert check_log(removed, signers).problems == ["entry 5 does not follow the entry before it"]


def test_a_rechained_forgery_is_caught_by_the_signatures(world: World) -> None:
    # Someone who rewrites the chain from the edit on still cannot sign as the operator or
    # as the meter: a result from another meter's key, appended properly, is named.
    signers = {world.key.kid: world.key.signer()}
    issued = world.desk.issue("M1", Action.DISCONNECT, NOW)
    command = world.answerer.admit(issued.signed, NOW).command
    assert command is not None
    impostor = dict(world.meters, M1=generate_meter_key("M1", P256))
    fake = CommandAnswerer(world.verifier, impostor).answer(
        issued.signed, command, Outcome.DONE, "", NOW
    )
    world.desk.log.append("result", NOW, fake)
    report = check_log(world.desk.log.entries(), signers, world.meter_signers())
    assert report.problems == ["entry 2: the result of M1#1 is not signed by the meter"]


def test_a_second_answer_and_an_answer_to_nothing_are_refused(world: World) -> None:
    issued = world.desk.issue("M1", Action.DISCONNECT, NOW)
    command = world.answerer.admit(issued.signed, NOW).command
    assert command is not None
    result = world.answerer.answer(issued.signed, command, Outcome.DONE, "", NOW)
    assert world.desk.record(result, NOW).tracked.state is CommandState.DONE
    assert not world.desk.record(result, NOW).appended  # the same answer again: deduplicated
    failed = world.answerer.answer(issued.signed, command, Outcome.FAILED, "relay stuck", NOW)
    with pytest.raises(CommandStateRefused):
        world.desk.record(failed, NOW)  # a different second answer
    stray = world.answerer.answer(b"never issued", command, Outcome.DONE, "", NOW)
    with pytest.raises(CommandStateRefused):
        world.desk.record(stray, NOW)
    assert len(world.desk.log.entries()) == 2


def test_entries_round_trip() -> None:
    entry = LogEntry(3, "result", 17, b"body", bytes(32), bytes(range(32)))
    assert decode_entry(encode_entry(entry)) == entry
    with pytest.raises(CommandFormatError):
        decode_entry(b"\xa0")


@settings(max_examples=60, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_any_changed_byte_of_the_log_file_is_noticed(world: World, data: st.DataObject) -> None:
    log = world.desk.log
    if not log.path.exists():
        _full_log(world)
    original = log.path.read_bytes()
    position = data.draw(st.integers(0, len(original) - 1), label="position")
    flip = data.draw(st.integers(1, 255), label="xor")
    damaged = bytearray(original)
    damaged[position] ^= flip
    copy = CommandLogFile(log.path.with_suffix(".damaged"))
    copy.path.write_bytes(bytes(damaged))
    signers = {world.key.kid: world.key.signer()}
    try:
        report = check_log(copy.entries(), signers, world.meter_signers())
    except CommandFormatError:
        return
    assert not report.holds


@settings(max_examples=40, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_any_reordering_or_dropped_entry_is_noticed(world: World, data: st.DataObject) -> None:
    entries = world.desk.log.entries() or _full_log(world)
    changed = data.draw(st.permutations(entries), label="order")
    if data.draw(st.booleans(), label="drop"):
        del changed[data.draw(st.integers(0, len(changed) - 2), label="dropped")]
    signers = {world.key.kid: world.key.signer()}
    assert check_log(changed, signers).holds == (changed == entries)
