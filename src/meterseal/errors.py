"""One exception root for meterseal; `InvalidPacket` is the only thing a remote sender sees."""

from __future__ import annotations

import enum
import sys


class MetersealError(Exception):
    """Root of every error meterseal raises on purpose."""

    def diagnostics(self) -> str:
        """Text for the CLI: what went wrong and, where known, what to do about it."""
        return str(self)


EXIT_REFUSED = 2  # the exit code of a process that stopped on a MetersealError


def exit_code_for(error: MetersealError) -> int:
    """Print `error`'s diagnostics on stderr; the exit code of a process that stops on it.

    The one mapping of a MetersealError to a process's end: the CLI's `main()` and every
    service process (`runtime.lifecycle.run_main`) use it.
    """
    print(f"error: {error.diagnostics()}", file=sys.stderr, flush=True)
    return EXIT_REFUSED


class RejectReason(enum.StrEnum):
    """Why a packet was refused; kept server-side for logs and counters, never sent back."""

    OVERSIZED = "oversized"
    MALFORMED = "malformed"
    UNKNOWN_SUITE = "unknown_suite"
    DECRYPT_FAILED = "decrypt_failed"
    UNKNOWN_METER = "unknown_meter"
    REVOKED_METER = "revoked_meter"
    CERTIFICATE_INVALID = "certificate_invalid"
    SUITE_MISMATCH = "suite_mismatch"
    BAD_SIGNATURE = "bad_signature"
    METER_MISMATCH = "meter_mismatch"
    BAD_READING = "bad_reading"
    STALE_COUNTER = "stale_counter"
    REPLAYED_COUNTER = "replayed_counter"
    FUTURE_TIMESTAMP = "future_timestamp"
    STALE_TIMESTAMP = "stale_timestamp"
    METER_INTEGRITY = "meter_integrity"  # the meter's integrity monitor judged it malicious


class InvalidPacket(MetersealError):
    """A packet could not be opened; opaque to the sender, with `reason` for the server only."""

    def __init__(self, reason: RejectReason) -> None:
        super().__init__("invalid packet")
        self.reason = reason

    def diagnostics(self) -> str:
        """Server-side text including the precise reason."""
        return f"invalid packet (reason: {self.reason.value})"


class ConfigurationError(MetersealError):
    """A deployment, key file or setting is missing or wrong."""


class KeyFileError(ConfigurationError):
    """A key file is unreadable, has unsafe permissions or needs a passphrase."""


class CertificateError(MetersealError):
    """A certificate does not chain to the deployment CA or does not carry a meter id."""


class ReadingError(MetersealError):
    """A reading violates its schema (range, type or missing field)."""


class StorageError(MetersealError):
    """The database refused or failed an operation; nothing of that transaction was kept."""


class KvsError(MetersealError):
    """The secure KVS refused an operation (policy, placement, integrity); nothing half-done."""


class ObjectNotFound(KvsError):
    """The secure KVS holds no object of that name in that bucket."""


class MeterDriverError(MetersealError):
    """A meter protocol driver could not get a usable answer from the meter.

    `skip` names the failure for the sealing agent's counters (what it skipped and why).
    """

    skip = "driver_error"


class MeterTimeout(MeterDriverError):
    """The meter did not answer (or not completely) within the driver's deadline."""

    skip = "timeout"


class MeterFrameError(MeterDriverError):
    """The meter's answer was malformed: bad CRC, wrong length or a frame cut short."""

    skip = "bad_frame"


class PartialFrame(MeterFrameError):
    """The meter sent part of a frame and fell silent."""

    skip = "partial_frame"


class WrongMeterSerial(MeterDriverError):
    """The meter answered for another serial number than the one addressed."""

    skip = "wrong_serial"

    def __init__(self, expected: str, answered: str) -> None:
        super().__init__(f"meter {answered!r} answered for {expected!r}")
        self.expected = expected
        self.answered = answered


class SealedMessageRefused(MeterDriverError):
    """A sealed meter message did not open: wrong keys, tampered, or a replay."""

    skip = "bad_seal"


class MeterUnsupported(MeterDriverError):
    """The meter or its driver does not implement the requested function."""

    skip = "unsupported"
