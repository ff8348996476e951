"""The added section's content: (1) HV, (2) the behaviour trace T, (3) DSig over both (sans-IO).

Layout: 8-byte magic, 4-byte big-endian length, then a COSE_Sign1 (ES256, by the platform
key) whose payload is canonical CBOR {format, hv, trace, signer}, then zero padding up to the
section's fixed capacity. The capacity is fixed before HV is computed, so filling the section
in never moves a byte that HV covers. Extraction (paper step 2) fails on a missing or
malformed section; DSig fails when a byte of HV or T changed after signing.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from meterseal.crypto import cose
from meterseal.crypto.cose import CoseFormatError
from meterseal.integrity.errors import DsigError, ExtractionError, TraceFormatError
from meterseal.integrity.platform_key import PlatformKey
from meterseal.integrity.trace import TraceModel

MAGIC = b"MSINTEG1"
CONTENT_TYPE = "application/meterseal-integrity-section+cbor"
SECTION_FORMAT = 1
HV_SIZE = 32
SLACK = 64  # room for a signer label or encoding that grows between placeholder and final
_HEADER = struct.Struct(">8sI")
_FIELDS = frozenset({"format", "hv", "trace", "signer"})


@dataclass(frozen=True, slots=True)
class IntegritySection:
    """What the section carries once extracted and its DSig verified."""

    hv: bytes
    trace: TraceModel
    signer: str  # the platform key's label: "software key (no TPM)" here

    def payload(self) -> bytes:
        """The signed CBOR payload."""
        return cose.dumps(
            {
                "format": SECTION_FORMAT,
                "hv": self.hv,
                "trace": self.trace.to_cbor(),
                "signer": self.signer,
            }
        )


def capacity_for(trace: TraceModel, key: PlatformKey) -> int:
    """The section size to reserve for `trace` signed by `key` (before HV is known)."""
    probe = encode(IntegritySection(bytes(HV_SIZE), trace, key.label), key, capacity=None)
    return len(probe) + SLACK


def encode(section: IntegritySection, key: PlatformKey, capacity: int | None) -> bytes:
    """Sign (HV, T) with the platform key (DSig) and frame it, padded to `capacity` bytes."""
    if len(section.hv) != HV_SIZE:
        raise ValueError("HV is a 32-byte SHA-256 digest")
    signed = key.sign(section.payload(), CONTENT_TYPE)
    framed = _HEADER.pack(MAGIC, len(signed)) + signed
    if capacity is None:
        return framed
    if len(framed) > capacity:
        raise ValueError(f"the signed section needs {len(framed)} bytes, {capacity} reserved")
    return framed.ljust(capacity, b"\0")


def _frame(content: bytes) -> cose.Sign1:
    if len(content) < _HEADER.size:
        raise ExtractionError("the integrity section is too short to hold a header")
    magic, length = _HEADER.unpack_from(content)
    if magic != MAGIC:
        raise ExtractionError("the integrity section does not start with its magic")
    end = _HEADER.size + length
    if end > len(content) or any(content[end:]):
        raise ExtractionError("the integrity section's length or padding is wrong")
    try:
        return cose.parse_sign1(content[_HEADER.size : end])
    except CoseFormatError as exc:
        raise ExtractionError(f"the integrity section is not a COSE_Sign1: {exc}") from None


def _decode(body: cose.Sign1) -> IntegritySection:
    try:
        item = cose.loads_strict(body.payload)
        if not isinstance(item, cose.MAP_TYPES) or set(item) != _FIELDS:
            raise CoseFormatError("the payload is {format, hv, trace, signer}")
        if item["format"] != SECTION_FORMAT or not isinstance(item["signer"], str):
            raise CoseFormatError(f"section format {item['format']!r} is not {SECTION_FORMAT}")
        hv = cose.expect_bytes(item["hv"], HV_SIZE)
        trace = TraceModel.from_cbor(cose.expect_bytes(item["trace"]))
    except (CoseFormatError, TraceFormatError) as exc:
        raise ExtractionError(f"the integrity section is malformed: {exc}") from None
    return IntegritySection(hv, trace, item["signer"])


def extract(content: bytes) -> IntegritySection:
    """The section's HV and trace without checking DSig (for inspection only)."""
    return _decode(_frame(content))


def extract_verified(content: bytes, key: PlatformKey) -> IntegritySection:
    """Extract the section (paper step 2), checking DSig before trusting a byte of it."""
    body = _frame(content)
    if not key.verifies(body, CONTENT_TYPE):
        raise DsigError("DSig over (HV, trace) does not verify with the platform key")
    return _decode(body)
