"""The bill: what a customer owes for a period, with the evidence that binds it to the readings.

A bill is canonical CBOR (text keys, decimal strings for money, no floats) signed by the
billing service (COSE_Sign1, ES256) and countersigned by the metrology authority after its
audit (RFC 9338). Beside it, the manifest lists the packets in bill order with their Merkle
leaf hashes; the bill's Merkle root commits to the manifest, so the manifest needs no
signature of its own.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from fractions import Fraction
from typing import Any, NamedTuple

from meterseal.billing import hashing
from meterseal.billing.completeness import Duplicate, Period, PeriodError
from meterseal.billing.tariff import ChargeLine, Charges
from meterseal.crypto import cose
from meterseal.crypto.cose import CoseFormatError
from meterseal.crypto.signing import SigningKey, VerifyingKey
from meterseal.errors import MetersealError
from meterseal.transparency.documents import DocumentType

BILL_FORMAT = 2  # 2 added kind, refers, reason and estimated_over_limit; 1 still decodes
KINDS = ("bill", "credit", "rebill")  # a credit cancels the bill it refers to, a rebill replaces it
CONTENT_TYPE = "application/meterseal-bill+cbor"
CHAIN_CONTEXT = "meterseal bill chain v1"
HASH_BYTES = 32  # a manifest leaf hash (SHA-256)
_native_manifest: Callable[[Sequence[str], Sequence[int], Sequence[bytes]], bytes | None] | None = (
    # getattr: an extension built before the encoder existed still loads; Python encodes then.
    getattr(hashing.NATIVE, "encode_manifest", None)
)


class BillFormatError(MetersealError):
    """Bytes that should be a bill, a signed bill or a manifest are not one."""


class BillSignatureError(MetersealError):
    """A bill's signature or countersignature does not verify with the key given."""


SIGNED_BILL = DocumentType(CONTENT_TYPE, "bill", BillFormatError, BillSignatureError)


@dataclass(frozen=True, slots=True)
class MeterStatement:
    """One meter's share of a bill: completeness, and measured and estimated energy."""

    meter_id: str
    expected: int
    received: int
    measured_wh: int
    estimated_wh: int
    gaps: tuple[tuple[int, int], ...]
    duplicates: tuple[Duplicate, ...]
    outside: tuple[int, ...]
    # [start, end) when the meter was the customer's for part of the period only (moved in or
    # out); None: the whole period. On the bill only when set.
    window: tuple[int, int] | None = None


@dataclass(frozen=True, slots=True)
class Bill:
    """A customer's bill for one period: statements per meter, charges and the evidence roots."""

    bill_id: str
    customer_id: str
    period: Period
    issued_at: int
    tariff_id: str
    tariff_version: int
    tariff_digest: bytes
    estimation: str
    meters: tuple[MeterStatement, ...]
    charges: Charges
    packets: int
    chain_head: bytes
    merkle_root: bytes
    kind: str = "bill"
    refers: tuple[str, bytes] | None = None  # (bill id, its log leaf hash): cancelled or replaced
    reason: str = ""  # why a credit or rebill was issued
    # The estimated-share limit (percent) this bill exceeds, billed on the operator's explicit
    # allowance (`bill --allow-estimated`); None: within the limit when it was billed.
    estimated_over_limit: Decimal | None = None
    # Wh of UNSIGNED imported readings billed, when the bill was made with them allowed; None:
    # meter-signed readings only. On the bill only when set.
    unsigned_wh: int | None = None
    # [start, end) the standing charge is for when every meter was the customer's for part of
    # the period only (moved in or out: `compute.standing_span`); None: the whole period. On
    # the bill only when set.
    standing: tuple[int, int] | None = None

    @property
    def estimated_slots(self) -> int:
        """Slots with no reading, whose energy the estimation rule filled in (all meters)."""
        return sum(m.expected - m.received for m in self.meters)

    @property
    def estimated_share(self) -> Fraction:
        """The estimated part of the period: estimated slots over expected slots (0 if none)."""
        expected = sum(m.expected for m in self.meters)
        return Fraction(self.estimated_slots, expected) if expected else Fraction(0)

    @property
    def energy_wh(self) -> int:
        """Billed energy: measured plus estimated, over every meter."""
        return sum(m.measured_wh + m.estimated_wh for m in self.meters)

    @property
    def estimated_wh(self) -> int:
        """The part of `energy_wh` that was estimated, never measured."""
        return sum(m.estimated_wh for m in self.meters)

    def context(self) -> bytes:
        """h0's input: who, when, which meters and which tariff the chain belongs to."""
        return bill_context(
            self.customer_id,
            self.period,
            [m.meter_id for m in self.meters],
            self.tariff_id,
            self.tariff_version,
            self.tariff_digest,
        )

    def to_cbor(self) -> bytes:
        """Canonical CBOR: the payload the billing key signs."""
        return cose.dumps(_bill_map(self))

    @classmethod
    def from_cbor(cls, data: bytes) -> Bill:
        """Decode and check a bill; BillFormatError on anything off-schema."""
        try:
            return _bill_from_map(cose.loads_strict(data))
        except (CoseFormatError, KeyError, TypeError, ValueError, InvalidOperation) as exc:
            raise BillFormatError(f"not a meterseal bill: {exc}") from None


def bill_context(
    customer_id: str,
    period: Period,
    meter_ids: Sequence[str],
    tariff_id: str,
    tariff_version: int,
    tariff_digest: bytes,
) -> bytes:
    """The canonical bytes hashed into h0 of the bill's chain."""
    return cose.dumps(
        [
            CHAIN_CONTEXT,
            customer_id,
            [period.start, period.end, period.interval],
            sorted(meter_ids),
            [tariff_id, tariff_version, tariff_digest],
        ]
    )


def _statement_map(m: MeterStatement) -> dict[str, Any]:
    return _with(_statement_base(m), "window", None if m.window is None else list(m.window))


def _with(mapping: dict[str, Any], key: str, value: object | None) -> dict[str, Any]:
    """`mapping` with an optional key, present only when its value is not None."""
    if value is not None:
        mapping[key] = value
    return mapping


def _optional(item: Any, key: str) -> tuple[Any, Any]:
    """A map without an optional key, and that key's value (None if absent)."""
    if not isinstance(item, cose.MAP_TYPES) or key not in item:
        return item, None
    rest = {k: v for k, v in item.items() if k != key}
    return rest, item[key]


def _statement_base(m: MeterStatement) -> dict[str, Any]:
    return {
        "meter": m.meter_id,
        "expected": m.expected,
        "received": m.received,
        "measured_wh": m.measured_wh,
        "estimated_wh": m.estimated_wh,
        "gaps": [list(g) for g in m.gaps],
        "duplicates": [[d.timestamp, d.billed, list(d.extra)] for d in m.duplicates],
        "outside": list(m.outside),
    }


def _bill_map(b: Bill) -> dict[str, Any]:
    standing = None if b.standing is None else list(b.standing)
    return _with(_with(_bill_base(b), "unsigned_wh", b.unsigned_wh), "standing", standing)


def _bill_base(b: Bill) -> dict[str, Any]:
    return {
        "format": BILL_FORMAT,
        "bill": b.bill_id,
        "customer": b.customer_id,
        "period": [b.period.start, b.period.end, b.period.interval],
        "issued_at": b.issued_at,
        "tariff": [b.tariff_id, b.tariff_version, b.tariff_digest],
        "estimation": b.estimation,
        "meters": [_statement_map(m) for m in b.meters],
        "currency": b.charges.currency,
        "lines": [
            [li.label, li.energy_wh, str(li.unit_price), str(li.amount)] for li in b.charges.lines
        ],
        "total": str(b.charges.total),
        "energy_wh": b.energy_wh,
        "evidence": {"packets": b.packets, "chain": b.chain_head, "merkle_root": b.merkle_root},
        "kind": b.kind,
        "refers": None if b.refers is None else list(b.refers),
        "reason": b.reason,
        "estimated_over_limit": (
            None if b.estimated_over_limit is None else str(b.estimated_over_limit)
        ),
    }


_BILL_KEYS_V1 = frozenset(
    (
        "format",
        "bill",
        "customer",
        "period",
        "issued_at",
        "tariff",
        "estimation",
        "meters",
        "currency",
        "lines",
        "total",
        "energy_wh",
        "evidence",
    )
)
_BILL_KEYS = _BILL_KEYS_V1 | {"kind", "refers", "reason", "estimated_over_limit"}


def _int(value: Any) -> int:
    if type(value) is not int:
        raise TypeError(f"expected an integer, got {value!r}")
    return value


def _str(value: Any) -> str:
    if not isinstance(value, str):
        raise TypeError(f"expected text, got {value!r}")
    return value


def _decimal(value: Any) -> Decimal:
    number = Decimal(_str(value))
    if not number.is_finite():
        raise ValueError(f"not a finite amount: {value!r}")
    return number


def _exact_keys(item: Any, keys: frozenset[str]) -> Mapping[str, Any]:
    if not isinstance(item, cose.MAP_TYPES) or set(item) != keys:
        raise ValueError("unexpected or missing fields")
    return item


_STATEMENT_KEYS = frozenset(
    (
        "meter",
        "expected",
        "received",
        "measured_wh",
        "estimated_wh",
        "gaps",
        "duplicates",
        "outside",
    )
)


def _statement_from_map(item: Any) -> MeterStatement:
    item, window = _optional(item, "window")
    m = _exact_keys(item, _STATEMENT_KEYS)
    return MeterStatement(
        _str(m["meter"]),
        _int(m["expected"]),
        _int(m["received"]),
        _int(m["measured_wh"]),
        _int(m["estimated_wh"]),
        tuple((_int(a), _int(b)) for a, b in m["gaps"]),
        tuple(
            Duplicate(_int(t), _int(billed), tuple(_int(c) for c in extra))
            for t, billed, extra in m["duplicates"]
        ),
        tuple(_int(c) for c in m["outside"]),
        window=None if window is None else (_int(window[0]), _int(window[1])),
    )


def _bill_from_map(item: Any) -> Bill:
    item, standing = _optional(item, "standing")
    item, unsigned_wh = _optional(item, "unsigned_wh")
    m: Mapping[str, Any]
    if isinstance(item, cose.MAP_TYPES) and item.get("format") == 1:  # bills signed before v2
        old = {"kind": "bill", "refers": None, "reason": "", "estimated_over_limit": None}
        m = {**_exact_keys(item, _BILL_KEYS_V1), **old}
    else:
        m = _exact_keys(item, _BILL_KEYS)
        if m["format"] != BILL_FORMAT:
            raise ValueError(f"bill format {m['format']!r} is not {BILL_FORMAT}")
    kind = _str(m["kind"])
    if kind not in KINDS:
        raise ValueError(f"bill kind {kind!r} is not one of {', '.join(KINDS)}")
    refers = None
    if m["refers"] is not None:
        refers_id, refers_hash = m["refers"]
        refers = (_str(refers_id), cose.expect_bytes(refers_hash, 32))
    if (refers is None) != (kind == "bill"):
        raise ValueError(f"a {kind} {'must' if kind != 'bill' else 'cannot'} refer to a bill")
    over = m["estimated_over_limit"]
    start, end, interval = (_int(x) for x in m["period"])
    tariff_id, tariff_version, tariff_digest = m["tariff"]
    evidence = _exact_keys(m["evidence"], frozenset(("packets", "chain", "merkle_root")))
    lines = tuple(
        ChargeLine(_str(label), _int(wh), _decimal(unit), _decimal(amount))
        for label, wh, unit, amount in m["lines"]
    )
    try:
        period = Period(start, end, interval)
    except PeriodError as exc:
        raise ValueError(str(exc)) from None
    bill = Bill(
        _str(m["bill"]),
        _str(m["customer"]),
        period,
        _int(m["issued_at"]),
        _str(tariff_id),
        _int(tariff_version),
        cose.expect_bytes(tariff_digest, 32),
        _str(m["estimation"]),
        tuple(_statement_from_map(s) for s in m["meters"]),
        Charges(_str(m["currency"]), lines, _decimal(m["total"])),
        _int(evidence["packets"]),
        cose.expect_bytes(evidence["chain"], 32),
        cose.expect_bytes(evidence["merkle_root"], 32),
        kind,
        refers,
        _str(m["reason"]),
        None if over is None else _decimal(over),
        unsigned_wh=None if unsigned_wh is None else _int(unsigned_wh),
        standing=None if standing is None else (_int(standing[0]), _int(standing[1])),
    )
    if bill.energy_wh != _int(m["energy_wh"]):
        raise ValueError("energy_wh is not the sum of the meter statements")
    return bill


def sign_bill(bill: Bill, key: SigningKey, kid: bytes) -> bytes:
    """The bill as a COSE_Sign1 by the billing service's ES256 key."""
    return SIGNED_BILL.sign(bill.to_cbor(), key, kid)


def parse_signed_bill(signed: bytes) -> tuple[Bill, cose.Sign1]:
    """The bill inside a COSE_Sign1, unverified (BillFormatError if either layer is off)."""
    body = SIGNED_BILL.parse(signed)
    return Bill.from_cbor(body.payload), body


def verify_signed_bill(signed: bytes, billing_key: VerifyingKey) -> Bill:
    """The bill if the billing service's signature holds; BillSignatureError otherwise."""
    bill, body = parse_signed_bill(signed)
    SIGNED_BILL.verify(body, billing_key)
    return bill


class ManifestEntry(NamedTuple):
    """One packet of a bill, in bill order: which meter and counter, and its Merkle leaf hash.

    A tuple (2,880 per bill, built when billing and again when auditing), and so encoded by
    CBOR as the array [meter, counter, leaf hash] it is.
    """

    meter_id: str
    counter: int
    leaf_hash: bytes


def manifest_to_cbor(entries: Sequence[tuple[str, int, bytes]]) -> bytes:
    """The manifest as CBOR: [[meter, counter, leaf hash], …], deterministically encoded."""
    return encode_manifest(
        [e[0] for e in entries], [e[1] for e in entries], [e[2] for e in entries]
    )


def encode_manifest(
    meter_ids: Sequence[str], counters: Sequence[int], leaf_hashes: Sequence[bytes]
) -> bytes:
    """The manifest of the entries given column by column (the billing service has columns).

    The bill's C extension (`billing.hashing.NATIVE`) writes it when built, ~20 ns an entry;
    `py_encode_manifest` defines the bytes and encodes whatever the C encoder declines.
    """
    if _native_manifest is not None:  # columns of different lengths: declined, refused below
        encoded = _native_manifest(meter_ids, counters, leaf_hashes)
        if encoded is not None:
            return encoded
    return py_encode_manifest(meter_ids, counters, leaf_hashes)


def py_encode_manifest(
    meter_ids: Sequence[str], counters: Sequence[int], leaf_hashes: Sequence[bytes]
) -> bytes:
    """`encode_manifest` in Python: the definition the C encoder is tested against.

    Written by hand (a meter's [meter, … head once, then the counter and the hash): cbor2
    spends ~0.6 µs an entry, ~1.8 ms a 2,880-packet bill, this ~0.2 µs. Tests hold it to
    `cose.dumps`; an entry off the shape is encoded as it is, for the decoder to refuse.
    """
    if not len(meter_ids) == len(counters) == len(leaf_hashes):
        raise ValueError("manifest columns of different lengths")
    parts = [_head(0x80, len(leaf_hashes))]
    add = parts.append
    last: str | None = None
    head = b""
    for meter_id, counter, leaf in zip(meter_ids, counters, leaf_hashes, strict=True):
        if meter_id != last:
            last, head = meter_id, b"\x83" + cose.dumps(_str(meter_id))
        # A meter's counters spend most of their life in 4-byte heads: that case first.
        if type(counter) is int and 0x10000 <= counter < 0x100000000 and len(leaf) == 32:
            add(head + b"\x1a" + counter.to_bytes(4) + b"\x58\x20" + leaf)
        elif type(counter) is int and 0 <= counter < 2**64 and len(leaf) == 32:
            add(head + _head(0x00, counter) + b"\x58\x20" + leaf)
        else:
            return cose.dumps([list(e) for e in zip(meter_ids, counters, leaf_hashes, strict=True)])
    return b"".join(parts)


def _head(major: int, value: int) -> bytes:
    """A CBOR head (major type bits in `major`) with its argument in the shortest form."""
    if value < 24:
        return bytes((major | value,))
    if value < 0x100:
        return bytes((major | 24, value))
    if value < 0x10000:
        return bytes((major | 25,)) + value.to_bytes(2)
    if value < 0x100000000:
        return bytes((major | 26,)) + value.to_bytes(4)
    return bytes((major | 27,)) + value.to_bytes(8)


def manifest_from_cbor(data: bytes) -> tuple[ManifestEntry, ...]:
    """Decode a manifest; BillFormatError if it is not one."""
    try:
        items = cose.loads_strict(data)
        if type(items) is not list or set(map(type, items)) - {list}:
            raise TypeError("a manifest is an array of arrays")
        if set(map(len, items)) - {3}:
            raise TypeError("a manifest entry is [text, integer, bytes]")
        if not items:
            return ()
        # Column by column, each check one C-level pass: per-entry Python cost ~1 ms a bill.
        meters, counters, leaves = zip(*items, strict=True)
        if set(map(type, meters)) != {str} or set(map(type, counters)) != {int}:
            raise TypeError("a manifest entry is [text, integer, bytes]")
        if set(map(type, leaves)) != {bytes}:
            raise TypeError("a manifest entry is [text, integer, bytes]")
        if set(map(len, leaves)) != {HASH_BYTES}:
            raise ValueError("a leaf hash has 32 bytes")
        return tuple(map(ManifestEntry._make, items))
    except (CoseFormatError, TypeError, ValueError) as exc:
        raise BillFormatError(f"not a bill manifest: {exc}") from None
