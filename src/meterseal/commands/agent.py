"""The agent's side of a command (sans-IO): admit it through the verifier, then sign its result.

The agent runtime drives two steps around the meter's own I/O: `admit` verifies a signed
command (a refusal of a command for one of the agent's meters is answered with a signed
`refused` result; one it cannot attribute to its meters is only counted), and `answer` signs
what the meter did. Results are signed with the meter's key, so a result names the meter
that acted, not the agent process.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from meterseal.commands.model import Command, Outcome, Result, digest, sign_result
from meterseal.commands.verify import CommandRefused, CommandVerifier, Refusal
from meterseal.crypto.keys import MeterKey, kid_of, public_bytes


@dataclass(frozen=True, slots=True)
class Admission:
    """The verifier's verdict on one signed command: the command to act on, or a refusal."""

    command: Command | None
    refusal: Refusal | None = None
    result: bytes | None = None  # the signed `refused` result, when a meter of ours can sign it


class CommandAnswerer:
    """Admits commands for the agent's meters and signs their results with the meters' keys."""

    def __init__(self, verifier: CommandVerifier, meter_keys: Mapping[str, MeterKey]) -> None:
        self.verifier = verifier
        self.meter_keys = dict(meter_keys)
        self.kids = {m: kid_of(public_bytes(k.public_key())) for m, k in meter_keys.items()}

    def admit(self, signed: bytes, now: int) -> Admission:
        """Verify `signed` at `now` (Unix seconds): act on `command`, or report the refusal."""
        try:
            return Admission(self.verifier.check(signed, now))
        except CommandRefused as refused:
            command = refused.command
            result = None
            # A foreign command's meter is not ours to sign for; a forged one is signed for
            # only as "refused", which says nothing the forger did not already choose.
            if command is not None and command.meter_id in self.meter_keys:
                result = self.answer(signed, command, Outcome.REFUSED, refused.reason.value, now)
            return Admission(None, refused.reason, result)

    def answer(
        self,
        signed: bytes,
        command: Command,
        outcome: Outcome,
        reason: str,
        now: int,
        values: Sequence[tuple[str, int]] = (),
    ) -> bytes:
        """The signed result of `command` (whose signed bytes are `signed`)."""
        key = self.meter_keys[command.meter_id]
        result = Result(
            digest(signed), command.meter_id, command.counter, outcome, reason, now, tuple(values)
        )
        return sign_result(
            result, key.private_key, self.kids[command.meter_id], key.suite.signature
        )
