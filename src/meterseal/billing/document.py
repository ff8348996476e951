"""A customer's bill as a document: the signed bill's figures, its readings by day, a code.

Everything a document shows comes from signed bytes. The charges, energy and meters are the
bill's own (its billing signature verified). The consumption by day is rebuilt from the
meters' signed originals that the bill's Merkle root commits to: each must hash to its
manifest leaf, the manifest must give the signed root, each meter signature must verify
(an UNSIGNED import, on a bill allowed to count them, is its committed record, and counted
as such), and the measured and estimated energy per meter must come out as the bill
states, or no document is made. The verification code is the first 100 bits of the SHA-256
of the signed bill's payload: `meterseal verify-bill` prints the same code for the bill file
it checks.
"""

from __future__ import annotations

import base64
import datetime as dt
import enum
import hashlib
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple

from cryptography.exceptions import InvalidSignature

from meterseal.billing import hashing
from meterseal.billing.bill import (
    SIGNED_BILL,
    Bill,
    ManifestEntry,
    manifest_from_cbor,
    verify_signed_bill,
)
from meterseal.billing.completeness import (
    Period,
    SlotReading,
    assess,
    estimation_rule,
    missing_slots,
)
from meterseal.billing.compute import BillPacket
from meterseal.billing.unsigned import UnsignedRecordError, is_unsigned, unsigned_from_cbor
from meterseal.crypto.cose import CoseFormatError
from meterseal.crypto.countersign import verify_countersignature
from meterseal.crypto.packet import verify_signed_originals
from meterseal.crypto.registry import MeterDirectory
from meterseal.crypto.signing import VerifyingKey
from meterseal.errors import InvalidPacket, MetersealError

CODE_CHARACTERS = 20  # base32: 5 bits each, 100 bits of the digest
CODE_GROUP = 4
DAY = 86_400


class DocumentError(MetersealError):
    """No document: the stored readings or a signature do not back the bill's figures."""


def verification_code(signed_bill: bytes) -> str:
    """The code printed on a bill: SHA-256 of the signed payload, 100 bits, base32 groups.

    The payload (the bill's canonical CBOR) is the same in the billing-signed and in the
    countersigned bill, so either file gives the code.
    """
    digest = hashlib.sha256(SIGNED_BILL.parse(signed_bill).payload).digest()
    text = base64.b32encode(digest).decode("ascii")[:CODE_CHARACTERS]
    return "-".join(text[i : i + CODE_GROUP] for i in range(0, CODE_CHARACTERS, CODE_GROUP))


class AuditState(enum.Enum):
    """What the metrology authority said of the bill, as far as the document's maker knows."""

    COUNTERSIGNED = "countersigned by the metrology authority (countersignature verified)"
    COUNTERSIGNED_UNCHECKED = "countersigned by the metrology authority (not checked here)"
    DISCREPANCIES = "audited: discrepancies found, not countersigned"
    NOT_AUDITED = "not yet audited by the metrology authority"


@dataclass(frozen=True, slots=True)
class AuditInput:
    """The authority's side: the countersigned bill if any, the latest verdict, its key."""

    countersigned: bytes | None = None
    latest_clean: bool | None = None  # None: never audited
    authority_key: VerifyingKey | None = None
    authority_kid: bytes | None = None


@dataclass(frozen=True, slots=True)
class DayUse:
    """One day's energy (UTC day) over the customer's meters: measured and estimated."""

    day: dt.date
    measured_wh: int
    estimated_wh: int

    @property
    def total_wh(self) -> int:
        """Measured plus estimated."""
        return self.measured_wh + self.estimated_wh


@dataclass(frozen=True, slots=True)
class BillDocument:
    """What a customer's bill document shows, every figure from signed bytes."""

    bill: Bill
    code: str
    days: tuple[DayUse, ...]
    hours: tuple[tuple[int, int], ...]  # (measured, estimated) Wh per hour of the day (UTC)
    audit: AuditState
    standing: str | None = None  # in the bill log: in force, credited by …, superseded by …
    unsigned: int = 0  # billed readings that are UNSIGNED imports (no meter signature)
    unsigned_wh: int = 0

    @property
    def readings(self) -> tuple[int, int]:
        """Readings received and expected, over every meter."""
        meters = self.bill.meters
        return sum(m.received for m in meters), sum(m.expected for m in meters)


def bill_document(
    signed_bill: bytes,
    manifest: bytes,
    packets: Sequence[BillPacket],
    *,
    billing_key: VerifyingKey,
    meters: MeterDirectory,
    audit: AuditInput,
    standing: str | None = None,
) -> BillDocument:
    """The document of a stored bill: `packets` are the store's rows of its manifest's keys.

    `standing` is the bill's place in the log (`billing.ledger`), printed as given. A credit
    note has no consumption of its own: it cancels a bill whose document has it.
    """
    bill = verify_signed_bill(signed_bill, billing_key)
    entries = _manifest(bill, manifest)
    originals = _billed_originals(entries, packets)
    readings = _meter_signed(entries, originals, meters)
    if bill.unsigned_wh is not None and bill.unsigned_wh != readings.unsigned_wh:
        raise DocumentError(
            f"bill {bill.bill_id}: its unsigned readings hold {readings.unsigned_wh} Wh, "
            f"the bill says {bill.unsigned_wh}"
        )
    days, hours = ((), ()) if bill.kind == "credit" else _consumption(bill, readings.by_meter)
    return BillDocument(
        bill,
        verification_code(signed_bill),
        days,
        hours,
        _audit_state(signed_bill, audit),
        standing,
        readings.unsigned,
        readings.unsigned_wh,
    )


def _manifest(bill: Bill, manifest: bytes) -> tuple[ManifestEntry, ...]:
    entries = manifest_from_cbor(manifest)
    leaves = [e.leaf_hash for e in entries]
    if len(entries) != bill.packets or (
        entries and hashing.merkle_root(leaves) != bill.merkle_root
    ):
        raise DocumentError(
            f"bill {bill.bill_id}: its manifest does not give the signed Merkle root"
        )
    return entries


def _billed_originals(
    entries: Sequence[ManifestEntry], packets: Sequence[BillPacket]
) -> list[bytes]:
    """The signed originals in manifest order, each the very bytes the bill committed to."""
    stored = {(p.meter_id, p.counter): p.signed_original for p in packets}
    originals = []
    for e in entries:
        original = stored.get((e.meter_id, e.counter))
        if original is None:
            raise DocumentError(f"billed reading {e.meter_id} #{e.counter} is not in the store")
        originals.append(original)
    for e, leaf in zip(entries, hashing.leaf_hashes(originals), strict=True):
        if leaf != e.leaf_hash:
            raise DocumentError(f"stored reading {e.meter_id} #{e.counter} is not the one billed")
    return originals


class _Readings(NamedTuple):
    """The billed readings per meter with the values they were billed with."""

    by_meter: dict[str, list[SlotReading]]
    unsigned: int  # of them UNSIGNED imports (no meter signature)
    unsigned_wh: int


def _meter_signed(
    entries: Sequence[ManifestEntry], originals: Sequence[bytes], meters: MeterDirectory
) -> _Readings:
    """Each meter's readings as its signature says (every signature verified).

    An UNSIGNED import (a bill made with them allowed) has no signature to check: its values
    are its record's, which the bill's Merkle root commits to, and the page says how many.
    """
    by_meter: dict[str, list[SlotReading]] = defaultdict(list)
    imported = [i for i, original in enumerate(originals) if is_unsigned(original)]
    unsigned_wh = 0
    for i in imported:
        e = entries[i]
        try:
            record = unsigned_from_cbor(originals[i])
        except UnsignedRecordError as exc:
            raise DocumentError(f"reading {e.meter_id} #{e.counter}: {exc}") from None
        if (record.meter_id, record.counter) != (e.meter_id, e.counter):
            raise DocumentError(f"reading {e.meter_id} #{e.counter} is recorded as another")
        by_meter[e.meter_id].append(SlotReading(record.counter, record.timestamp, record.energy_wh))
        unsigned_wh += record.energy_wh
    skip = set(imported)
    signed = [
        (e, o) for i, (e, o) in enumerate(zip(entries, originals, strict=True)) if i not in skip
    ]
    outcomes = verify_signed_originals([o for _, o in signed], meters)
    for (e, _), outcome in zip(signed, outcomes, strict=True):
        if isinstance(outcome, InvalidPacket):
            raise DocumentError(
                f"reading {e.meter_id} #{e.counter}: meter signature refused "
                f"({outcome.reason.value})"
            )
        r = outcome.reading
        if (r.meter_id, r.counter) != (e.meter_id, e.counter):
            raise DocumentError(f"reading {e.meter_id} #{e.counter} is signed as {r.meter_id}")
        by_meter[r.meter_id].append(SlotReading(r.counter, r.timestamp, r.energy_wh))
    return _Readings(by_meter, len(imported), unsigned_wh)


def _consumption(
    bill: Bill, readings: dict[str, list[SlotReading]]
) -> tuple[tuple[DayUse, ...], tuple[tuple[int, int], ...]]:
    """Energy by UTC day (measured, estimated) and by hour of day, checked against the bill."""
    period = bill.period
    rule = estimation_rule(bill.estimation)
    first_day = period.start // DAY
    measured_by_day: dict[int, int] = defaultdict(int)
    estimated_by_day: dict[int, int] = defaultdict(int)
    hours = [[0, 0] for _ in range(24)]  # measured, estimated
    for statement in bill.meters:
        # A meter the customer had for part of the period (moved in or out) counts its dates.
        window = statement.window
        span = period if window is None else Period(window[0], window[1], period.interval)
        completeness, measured = assess(statement.meter_id, span, readings[statement.meter_id])
        estimated = rule.estimate(measured, missing_slots(span, completeness.gaps))
        shown = (sum(measured.values()), sum(estimated.values()), completeness.gaps)
        billed = (statement.measured_wh, statement.estimated_wh, statement.gaps)
        if shown != billed:
            raise DocumentError(
                f"meter {statement.meter_id}: its signed readings give {shown[0]} Wh measured "
                f"and {shown[1]} Wh estimated, the bill {billed[0]} and {billed[1]}"
            )
        for kind, (slots, by_day) in enumerate(
            ((measured, measured_by_day), (estimated, estimated_by_day))
        ):
            for slot, wh in slots.items():
                start = span.slot_start(slot)
                by_day[start // DAY - first_day] += wh
                hours[start % DAY // 3600][kind] += wh
    last_day = (period.end - 1) // DAY
    days = tuple(
        DayUse(
            dt.datetime.fromtimestamp((first_day + i) * DAY, dt.UTC).date(),
            measured_by_day[i],
            estimated_by_day[i],
        )
        for i in range(last_day - first_day + 1)
    )
    return days, tuple((m, e) for m, e in hours)


def _audit_state(signed_bill: bytes, audit: AuditInput) -> AuditState:
    if audit.countersigned is not None:
        if SIGNED_BILL.parse(audit.countersigned).payload != SIGNED_BILL.parse(signed_bill).payload:
            raise DocumentError("the countersigned bill is not this bill")
        if audit.authority_key is None or audit.authority_kid is None:
            return AuditState.COUNTERSIGNED_UNCHECKED
        try:
            verify_countersignature(audit.countersigned, audit.authority_key, audit.authority_kid)
        except (InvalidSignature, CoseFormatError) as exc:
            raise DocumentError(f"the authority's countersignature does not hold: {exc}") from None
        return AuditState.COUNTERSIGNED
    if audit.latest_clean is False:
        return AuditState.DISCREPANCIES
    return AuditState.NOT_AUDITED
