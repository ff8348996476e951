"""The command log (sans-IO): every command and its result, hash-chained, checkable by anyone.

Entries are of three kinds: `command` (the signed command as issued), `result` (the agent's
signed result) and `unanswered` (the head-end's note that a command expired with no result;
its body is the command's digest). Each entry's digest is SHA-256 over the previous digest and
the entry's canonical encoding, as in the administrators' change log (`accounts.changes`):
an entry edited, removed, inserted or moved breaks the chain at that entry. Beyond the chain,
`check_log` verifies each command's operator signature, that counters only grow per meter,
each result's meter signature (when the checker holds the meter's key) and that every result
answers one command once (the lifecycle table, replayed). The metrology authority checks the
whole log; a customer checks the same log for their own meter (`meter=`): the chain is always
checked whole, since one meter's entries alone do not chain.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from meterseal.commands.lifecycle import ANSWER, CommandEvent, CommandState, step
from meterseal.commands.model import (
    COMMAND_TYPE,
    RESULT_TYPE,
    Command,
    CommandFormatError,
    Result,
    decode_command,
    decode_result,
    digest,
    open_typed,
    signature_valid,
)
from meterseal.commands.verify import Signer
from meterseal.crypto import cose
from meterseal.crypto.cose import CoseFormatError
from meterseal.runtime.transitions import TransitionError

GENESIS = bytes(32)
KINDS = ("command", "result", "unanswered")
_DOMAIN = b"meterseal-command-log-v1\x00"


@dataclass(frozen=True, slots=True)
class LogEntry:
    """One stored entry: its place, kind, time (Unix ms), body and chain digests."""

    seq: int
    kind: str
    at_ms: int
    body: bytes
    previous: bytes
    digest: bytes


def entry_digest(previous: bytes, seq: int, kind: str, at_ms: int, body: bytes) -> bytes:
    """The digest of an entry following the entry whose digest is `previous`."""
    return hashlib.sha256(_DOMAIN + previous + cose.dumps([seq, kind, at_ms, body])).digest()


def next_entry(last: LogEntry | None, kind: str, at_ms: int, body: bytes) -> LogEntry:
    """The entry that follows `last` (None: the first of the log)."""
    if kind not in KINDS:
        raise ValueError(f"unknown log entry kind {kind!r}")
    seq, previous = (1, GENESIS) if last is None else (last.seq + 1, last.digest)
    return LogEntry(
        seq, kind, at_ms, body, previous, entry_digest(previous, seq, kind, at_ms, body)
    )


def encode_entry(entry: LogEntry) -> bytes:
    """One entry as canonical CBOR (how the log file stores it)."""
    return cose.dumps(
        [entry.seq, entry.kind, entry.at_ms, entry.body, entry.previous, entry.digest]
    )


def decode_entry(data: bytes) -> LogEntry:
    """An entry from its stored bytes; CommandFormatError if they are not one."""
    try:
        item: Any = cose.loads_strict(data)
        if not isinstance(item, cose.ARRAY_TYPES) or len(item) != 6:
            raise CoseFormatError("a log entry has six fields")
        seq, kind, at_ms, body, previous, chained = item
        if type(seq) is not int or type(at_ms) is not int or not isinstance(kind, str):
            raise CoseFormatError("seq and time are integers, kind text")
        return LogEntry(
            seq,
            kind,
            at_ms,
            cose.expect_bytes(body),
            cose.expect_bytes(previous, 32),
            cose.expect_bytes(chained, 32),
        )
    except CoseFormatError as exc:
        raise CommandFormatError(f"not a command-log entry: {exc}") from None


@dataclass
class Tracked:
    """What the log says of one command: the command, its digest, state and answer."""

    command: Command
    digest: bytes
    state: CommandState
    result: Result | None = None
    result_checked: bool = False  # whether the result's meter signature was verified


@dataclass
class LogReport:
    """What a check of the log found: problems (empty: it holds) and the commands' states."""

    entries: int = 0
    problems: list[str] = field(default_factory=list)
    commands: dict[bytes, Tracked] = field(default_factory=dict)

    @property
    def unchecked_results(self) -> int:
        """Results of meters whose key the checker did not hold (signature not verified)."""
        return sum(t.result is not None and not t.result_checked for t in self.commands.values())

    @property
    def holds(self) -> bool:
        """Whether the log checked out."""
        return not self.problems

    def of_meter(self, meter_id: str) -> list[Tracked]:
        """The commands of one meter, in the log's order."""
        return [t for t in self.commands.values() if t.command.meter_id == meter_id]


def check_chain(entries: Sequence[LogEntry], start: bytes = GENESIS) -> list[str]:
    """Problems of the chain (empty: each entry links to the one before and is as recorded)."""
    previous = start
    for index, entry in enumerate(entries, start=1):
        if entry.seq != index or entry.previous != previous:
            return [f"entry {entry.seq} does not follow the entry before it"]
        if entry.digest != entry_digest(previous, entry.seq, entry.kind, entry.at_ms, entry.body):
            return [f"entry {entry.seq} differs from what was recorded"]
        previous = entry.digest
    return []


def check_log(
    entries: Sequence[LogEntry],
    signers: Mapping[bytes, Signer],
    meter_keys: Mapping[str, Signer] | None = None,
    meter: str | None = None,
) -> LogReport:
    """Check the chain, then every entry (of `meter` only, if given): see the module."""
    report = LogReport(entries=len(entries), problems=check_chain(entries))
    if report.problems:
        return report  # nothing after a break is anchored
    last_counter: dict[str, int] = {}
    for entry in entries:
        problem = _check_entry(entry, signers, meter_keys or {}, last_counter, report)
        if problem is not None and (meter is None or problem[0] in (None, meter)):
            report.problems.append(f"entry {entry.seq}: {problem[1]}")
    if meter is not None:
        report.commands = {d: t for d, t in report.commands.items() if t.command.meter_id == meter}
    return report


def _check_entry(
    entry: LogEntry,
    signers: Mapping[bytes, Signer],
    meter_keys: Mapping[str, Signer],
    last_counter: dict[str, int],
    report: LogReport,
) -> tuple[str | None, str] | None:
    """(meter id or None, problem) of one entry, or None; updates the report's commands."""
    try:
        if entry.kind == "command":
            return _command_entry(entry, signers, last_counter, report)
        if entry.kind == "result":
            return _result_entry(entry, meter_keys, report)
        if entry.kind == "unanswered":
            tracked = report.commands.get(entry.body)
            if tracked is None:
                return None, "marks unanswered a command the log does not hold"
            tracked.state = step(tracked.state, CommandEvent.EXPIRE)
            return None
        return None, f"unknown kind {entry.kind!r}"
    except CommandFormatError as exc:
        return None, str(exc)


def _command_entry(
    entry: LogEntry,
    signers: Mapping[bytes, Signer],
    last_counter: dict[str, int],
    report: LogReport,
) -> tuple[str | None, str] | None:
    opened = open_typed(entry.body, COMMAND_TYPE)
    command = decode_command(opened.body.payload)
    signer = signers.get(opened.kid) if opened.kid is not None else None
    if signer is None or not signature_valid(opened.body, signer.scheme, signer.public_key):
        return command.meter_id, f"command {command.id} is not signed by a known operator key"
    if command.counter <= last_counter.get(command.meter_id, 0):
        return command.meter_id, f"command {command.id} does not raise the meter's counter"
    last_counter[command.meter_id] = command.counter
    report.commands[digest(entry.body)] = Tracked(
        command, digest(entry.body), step(None, CommandEvent.ISSUE)
    )
    return None


def _result_entry(
    entry: LogEntry, meter_keys: Mapping[str, Signer], report: LogReport
) -> tuple[str | None, str] | None:
    opened = open_typed(entry.body, RESULT_TYPE)
    result = decode_result(opened.body.payload)
    tracked = report.commands.get(result.command_digest)
    if tracked is None:
        return result.meter_id, "a result for a command the log does not hold"
    command = tracked.command
    if (result.meter_id, result.counter) != (command.meter_id, command.counter):
        return command.meter_id, f"the result of {command.id} names another command"
    key = meter_keys.get(command.meter_id)
    if key is not None and not signature_valid(opened.body, key.scheme, key.public_key):
        return command.meter_id, f"the result of {command.id} is not signed by the meter"
    try:
        tracked.state = step(tracked.state, ANSWER[result.outcome])
    except TransitionError:
        return command.meter_id, f"a second answer to {command.id}"
    tracked.result = result
    tracked.result_checked = key is not None
    return None


def pending(report: LogReport) -> Iterable[Tracked]:
    """Commands the log shows issued and not yet answered."""
    return (t for t in report.commands.values() if t.state is CommandState.ISSUED)


def last_counter(entries: Sequence[LogEntry], meter_id: str) -> int:
    """The highest counter of the commands the log holds for `meter_id` (0: none).

    CommandFormatError if the log's chain breaks or a command entry does not decode: a
    counter taken from a damaged log could repeat one the agent already accepted.
    """
    problems = check_chain(entries)
    if problems:
        raise CommandFormatError(f"the command log does not check: {problems[0]}")
    highest = 0
    for entry in entries:
        if entry.kind == "command":
            command = decode_command(open_typed(entry.body, COMMAND_TYPE).body.payload)
            if command.meter_id == meter_id:
                highest = max(highest, command.counter)
    return highest
