"""The agent's check of a command before it acts (sans-IO): one reason for each refusal, counted.

The agent beside a meter trusts only the operator command keys it was given (by key id) and
its own record of the highest counter it accepted for its meters. A command is refused when
it is not one (malformed), carries no signature (unsigned), names a key it does not know or
is signed by another scheme (unknown signer), does not verify (bad signature), is for another
meter (foreign), has expired or was issued further ahead than the clock skew allows, or does
not raise the meter's counter (replayed). Checks run in that order, so a forged command
never moves the counter and a reason never depends on what a forger chose for the rest.
"""

from __future__ import annotations

import enum
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from meterseal.commands.model import (
    COMMAND_TYPE,
    Command,
    CommandFormatError,
    decode_command,
    open_typed,
    signature_valid,
)
from meterseal.crypto import cose
from meterseal.crypto.signing import SignatureScheme, VerifyingKey
from meterseal.errors import MetersealError

CLOCK_SKEW = 300  # seconds a command's issue time may lie ahead of the agent's clock


class Refusal(enum.StrEnum):
    """Why the agent refused a command (one reason each)."""

    MALFORMED = "malformed"
    UNSIGNED = "unsigned"
    UNKNOWN_SIGNER = "unknown signer"
    BAD_SIGNATURE = "bad signature"
    FOREIGN = "foreign meter"
    EXPIRED = "expired"
    NOT_YET_VALID = "not yet valid"
    REPLAYED = "replayed"


class CommandRefused(MetersealError):
    """The verifier refused a command; `reason` says which check failed."""

    def __init__(self, reason: Refusal, command: Command | None = None) -> None:
        super().__init__(f"command refused: {reason.value}")
        self.reason = reason
        self.command = command


@dataclass(frozen=True, slots=True)
class Signer:
    """An operator command key the agent trusts: its scheme and public key."""

    scheme: SignatureScheme
    public_key: VerifyingKey


class CommandVerifier:
    """Checks commands for the meters one agent serves, remembering each meter's last counter."""

    def __init__(
        self,
        meters: Iterable[str],
        signers: Mapping[bytes, Signer],
        last_counters: Mapping[str, int] | None = None,
    ) -> None:
        self.meters = frozenset(meters)
        self.signers = dict(signers)
        self.last_counters: dict[str, int] = dict(last_counters or {})
        self.counts: Counter[str] = Counter()

    def check(self, signed: bytes, now: int) -> Command:
        """The command in `signed` if the agent may act on it now; CommandRefused if not.

        Acceptance raises the meter's counter at once: the same command twice is a replay
        even when the meter failed to carry it out the first time (the head-end sends a new one).
        """
        try:
            command = self._verified(signed, now)
        except CommandRefused as refusal:
            self.counts[refusal.reason.value] += 1
            raise
        self.last_counters[command.meter_id] = command.counter
        self.counts["accepted"] += 1
        return command

    def _verified(self, signed: bytes, now: int) -> Command:
        try:
            opened = open_typed(signed, COMMAND_TYPE)
            command = decode_command(opened.body.payload)
        except CommandFormatError:
            raise CommandRefused(_unsigned_or_malformed(signed)) from None
        if not opened.body.signature:
            raise CommandRefused(Refusal.UNSIGNED, command)
        signer = self.signers.get(opened.kid) if opened.kid is not None else None
        if signer is None or opened.body.headers.get(cose.ALG) != signer.scheme.cose_alg:
            raise CommandRefused(Refusal.UNKNOWN_SIGNER, command)
        if not signature_valid(opened.body, signer.scheme, signer.public_key):
            raise CommandRefused(Refusal.BAD_SIGNATURE, command)
        if command.meter_id not in self.meters:
            raise CommandRefused(Refusal.FOREIGN, command)
        if now > command.expires_at:
            raise CommandRefused(Refusal.EXPIRED, command)
        if command.issued_at > now + CLOCK_SKEW:
            raise CommandRefused(Refusal.NOT_YET_VALID, command)
        if command.counter <= self.last_counters.get(command.meter_id, 0):
            raise CommandRefused(Refusal.REPLAYED, command)
        return command


def _unsigned_or_malformed(signed: bytes) -> Refusal:
    """A bare command payload (no COSE_Sign1 around it) is unsigned; anything else malformed."""
    try:
        decode_command(signed)
    except CommandFormatError:
        return Refusal.MALFORMED
    return Refusal.UNSIGNED
