"""A crash in the middle of an append: the torn tail is found, set aside and never an entry."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from meterseal.commands.log import check_log, encode_entry, next_entry
from meterseal.commands.logfile import MAX_RECORD, CommandLogFile, TornTail
from meterseal.commands.model import Action, CommandFormatError
from tests.command_line import invoke
from tests.commands.conftest import NOW, World


def _torn_record(world: World) -> tuple[bytes, bytes]:
    """The log's octets and the record the next append would write after them."""
    for action in (Action.DISCONNECT, Action.READ, Action.CONNECT):
        world.desk.issue("M1", action, NOW)
    whole = world.desk.log.path.read_bytes()
    entry = next_entry(world.desk.log.entries()[-1], "unanswered", NOW * 1000, bytes(32))
    record = encode_entry(entry)
    return whole, len(record).to_bytes(4, "big") + record


@settings(max_examples=40, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_every_cut_of_an_append_is_a_torn_tail_and_recovery_keeps_the_rest(
    world: World, data: st.DataObject
) -> None:
    log = world.desk.log
    if not log.path.with_suffix(".whole").exists():
        whole, record = _torn_record(world)
        log.path.with_suffix(".whole").write_bytes(whole)
        log.path.with_suffix(".record").write_bytes(record)
    whole = log.path.with_suffix(".whole").read_bytes()
    record = log.path.with_suffix(".record").read_bytes()
    cut = data.draw(st.integers(1, len(record) - 1), label="cut")
    zeros = data.draw(st.booleans(), label="zero-filled")  # the size reached disk, not the data
    tail = bytes(cut) if zeros else record[:cut]
    crashed = CommandLogFile(log.path.with_name(f"crashed-{cut}-{zeros}.log"))
    crashed.path.write_bytes(whole + tail)
    complete = CommandLogFile(log.path.with_suffix(".whole")).entries()

    contents = crashed.read()
    assert contents.entries == complete  # every complete entry, and nothing of the torn one
    assert contents.torn == TornTail(len(whole), cut)
    with pytest.raises(CommandFormatError, match="torn last entry"):
        crashed.entries()  # a reader that wants the whole log is told, never handed less
    assert crashed.recover() == TornTail(len(whole), cut)
    assert crashed.path.read_bytes() == whole
    assert crashed.path.with_name(f"{crashed.path.name}.torn-{len(whole)}").read_bytes() == tail
    assert crashed.recover() is None
    signers = {world.key.kid: world.key.signer()}
    assert check_log(crashed.entries(), signers).holds


def test_the_head_end_appends_after_a_crash_and_the_log_checks(world: World) -> None:
    whole, record = _torn_record(world)
    log = world.desk.log
    log.path.write_bytes(whole + record[:-7])  # the power failed seven octets short
    issued = world.desk.issue("M1", Action.READ, NOW)  # recovers under the append's lock
    assert log.recovered == [TornTail(len(whole), len(record) - 7)]
    assert issued.command.counter == 4  # chained on the last complete entry
    assert [e.seq for e in log.entries()] == [1, 2, 3, 4]
    assert check_log(log.entries(), {world.key.kid: world.key.signer()}).holds


def test_the_portal_lists_the_log_after_another_process_crashed_mid_append(
    world: World,
) -> None:
    whole, record = _torn_record(world)
    world.desk.log.path.write_bytes(whole + record[:9])  # `command send` died while writing
    report = world.desk.report()
    assert report.holds
    assert [t.command.id for t in report.commands.values()] == ["M1#1", "M1#2", "M1#3"]
    assert world.desk.log.recovered == [TornTail(len(whole), 9)]


def test_damage_in_front_of_complete_entries_is_no_torn_tail(world: World) -> None:
    whole, _ = _torn_record(world)
    damaged = bytearray(whole)
    damaged[2] = 0x7F  # the first record's length now runs past the end of the file
    log = world.desk.log
    log.path.write_bytes(bytes(damaged))
    for attempt in (log.read, log.recover, lambda: world.desk.issue("M1", Action.READ, NOW)):
        with pytest.raises(CommandFormatError, match="the record at byte 0 is damaged"):
            attempt()
    assert log.path.read_bytes() == bytes(damaged)  # nothing was cut away


def test_the_command_line_recovers_and_the_checker_reports_a_torn_tail(tmp_path: Path) -> None:
    d = ["-d", str(tmp_path)]
    assert invoke(["command", "keygen", *d]).exit_code == 0
    assert invoke(["command", "send", "M1", "disconnect", *d]).exit_code == 0
    log = tmp_path / "commands.log"
    whole = log.read_bytes()
    log.write_bytes(whole + whole[:30])  # an append cut short (a record's first 30 octets)
    checked = invoke(["command", "verify-log", str(log), *d])
    assert checked.exit_code == 1
    text = " ".join(checked.output.split())
    assert f"the log ends in a torn last entry of 30 bytes at byte {len(whole)}" in text
    assert "NOT VERIFIED" in text
    assert log.read_bytes() == whole + whole[:30]  # the checker changes nothing
    sent = invoke(["command", "send", "M1", "connect", *d])  # the head-end's next start
    assert sent.exit_code == 0, sent.output
    text = " ".join(sent.output.split())
    assert f"recovered {log}: a torn last entry of 30 bytes at byte {len(whole)}" in text
    assert "M1#2 connect issued (log entry 2)" in text
    assert invoke(["command", "verify-log", str(log), *d]).exit_code == 0


def test_a_result_too_long_for_a_record_is_refused_and_the_log_stays_whole(world: World) -> None:
    import cbor2

    from meterseal.commands.model import Outcome
    from meterseal.crypto import cose

    issued = world.desk.issue("M1", Action.READ, NOW)
    command = world.answerer.admit(issued.signed, NOW).command
    assert command is not None
    signed = world.answerer.answer(issued.signed, command, Outcome.DONE, "", NOW)
    # The unprotected header is outside the signature: anyone handling the file can pad it.
    protected, _, payload, signature = cose.untag(cose.loads_strict(signed), cose.TAG_SIGN1)
    padded = cbor2.dumps(cbor2.CBORTag(cose.TAG_SIGN1, [protected, {99: bytes(MAX_RECORD)},
                                                         payload, signature]))  # fmt: skip
    with pytest.raises(CommandFormatError, match="longer than a log record"):
        world.desk.record(padded, NOW + 1)
    log = world.desk.log
    assert [e.kind for e in log.entries()] == ["command"]  # still read, nothing appended
    world.desk.record(signed, NOW + 1)  # the answer as signed is still taken
    assert [e.kind for e in log.entries()] == ["command", "result"]
