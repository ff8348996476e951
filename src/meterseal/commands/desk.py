"""The head-end's command desk: issue signed commands, record the agents' results, all logged.

The desk runs on the head-end's trusted side, where the operator command key lives. Issuing
takes the meter's next counter from the log (one above the highest it holds for the meter),
signs the command and appends it before anyone sends it: a command that was sent is always
in the log. A result is appended only if it answers a command the log holds and that has no
answer yet (the lifecycle table decides), so the log never holds an answer to nothing.
Results travel through shared directories and an agent that crashed may hand one over twice,
so `record` deduplicates on the signed original: the answer the log already holds for that
command (same command digest, same result) is not appended again; nor is an agent's refusal
of a replayed copy of a command the log shows answered (the copy is no new command).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from meterseal.commands.keys import SCHEME, OperatorKey
from meterseal.commands.lifecycle import ANSWER, CommandEvent, step
from meterseal.commands.log import (
    LogEntry,
    LogReport,
    Tracked,
    check_log,
    last_counter,
    pending,
)
from meterseal.commands.logfile import CommandLogFile
from meterseal.commands.model import (
    RESULT_TYPE,
    Action,
    Command,
    Outcome,
    decode_result,
    open_typed,
    sign_command,
)
from meterseal.commands.verify import Refusal, Signer


def outbox_name(command: Command) -> str:
    """The file an issued command waits in: METER-COUNTER.cose."""
    return f"{command.meter_id}-{command.counter}.cose"


DEFAULT_TTL = 900  # seconds a command stays valid: a quarter hour, one reading interval


@dataclass(frozen=True, slots=True)
class Issued:
    """A command as issued: the command, its signed bytes and its log entry."""

    command: Command
    signed: bytes
    entry: LogEntry


@dataclass(frozen=True, slots=True)
class Recorded:
    """What `record` did with a result: the command's state, and whether it was appended."""

    tracked: Tracked
    appended: bool
    note: str = ""  # why not, when it was not


class CommandDesk:
    """Issues commands with the operator key and keeps the command log."""

    def __init__(
        self,
        key: OperatorKey,
        log: CommandLogFile,
        meter_keys: dict[str, Signer] | None = None,
        outbox: Path | None = None,
    ) -> None:
        self.key = key
        self.log = log
        self.meter_keys = meter_keys or {}
        self.outbox = outbox  # where issued commands wait for the agents (None: nowhere)

    def report(self, meter: str | None = None) -> LogReport:
        """The log checked with this desk's own key (and the meter keys it knows); a torn
        tail another process's crash left is recovered first (the desk keeps the log)."""
        self.log.recover()
        return check_log(
            self.log.entries(), {self.key.kid: self.key.signer()}, self.meter_keys, meter
        )

    def issue(
        self,
        meter_id: str,
        action: Action,
        now: float,
        ttl: int = DEFAULT_TTL,
        argument: int | None = None,
        by: str = "",
    ) -> Issued:
        """Sign and log a new command for `meter_id`, with the meter's next counter."""
        issued_at = int(now)
        made: list[tuple[Command, bytes]] = []

        def make(entries: list[LogEntry]) -> bytes:
            command = Command(
                meter_id,
                action,
                last_counter(entries, meter_id) + 1,
                issued_at,
                issued_at + ttl,
                argument,
                by,
            )
            made.append(
                (command, sign_command(command, self.key.private_key, self.key.kid, SCHEME))
            )
            return made[-1][1]

        entry = self.log.append_after("command", int(now * 1000), make)
        issued = Issued(made[-1][0], made[-1][1], entry)
        if self.outbox is not None:
            self.outbox.mkdir(parents=True, exist_ok=True)
            (self.outbox / outbox_name(issued.command)).write_bytes(issued.signed)
        return issued

    def record(self, signed_result: bytes, now: float) -> Recorded:
        """Append an agent's signed result; CommandFormatError or the table's refusal if it
        answers nothing the log holds, or answers a command a second time differently. The
        answer the log already holds, or a refused replay of an answered command, is not
        appended (see the module)."""
        result = decode_result(open_typed(signed_result, RESULT_TYPE).body.payload)
        report = self.report(result.meter_id)
        tracked = report.commands.get(result.command_digest)
        if tracked is not None and tracked.result is not None:
            if tracked.result == result:
                return Recorded(tracked, False, "already logged")
            if (result.outcome, result.reason) == (Outcome.REFUSED, Refusal.REPLAYED.value):
                return Recorded(tracked, False, "a replayed copy, refused by the agent")
        state = tracked.state if tracked is not None else None
        after = step(state, ANSWER[result.outcome])  # refuses a second answer, or one to nothing
        self.log.append("result", int(now * 1000), signed_result)
        assert tracked is not None  # step(None, answer) raised above
        tracked.state, tracked.result = after, result
        return Recorded(tracked, True)

    def expire(self, now: float) -> list[Tracked]:
        """Mark unanswered every issued command whose expiry has passed; those marked."""
        marked = []
        for tracked in list(pending(self.report())):
            if now > tracked.command.expires_at:
                tracked.state = step(tracked.state, CommandEvent.EXPIRE)
                self.log.append("unanswered", int(now * 1000), tracked.digest)
                marked.append(tracked)
        return marked
