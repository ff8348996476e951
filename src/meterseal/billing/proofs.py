"""A customer's proof that one reading is on their bill, checkable with public material only.

The proof carries the meter's signed original, its certificate, its place in the bill's Merkle
tree and the inclusion path. `verify_reading` checks, against the CA certificate and the
billing and authority public keys: the meter's signature, the certificate chain, the billing
service's signature on the bill, the authority's countersignature and the inclusion proof.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.serialization import Encoding

from meterseal.billing.bill import Bill, BillFormatError, ManifestEntry, verify_signed_bill
from meterseal.billing.unsigned import (
    UnsignedReading,
    UnsignedRecordError,
    is_unsigned,
    unsigned_from_cbor,
)
from meterseal.crypto import cose
from meterseal.crypto.cose import CoseFormatError
from meterseal.crypto.countersign import verify_countersignature
from meterseal.crypto.packet import verify_signed_original
from meterseal.crypto.registry import MeterRegistry
from meterseal.crypto.signing import VerifyingKey
from meterseal.crypto.suites import SUITES
from meterseal.errors import CertificateError, InvalidPacket, MetersealError
from meterseal.model import Reading
from meterseal.transparency.merkle import MerkleTree, ProofError, leaf_hash, verify_inclusion

PROOF_FORMAT = 1


class ReadingProofError(MetersealError):
    """A reading proof does not hold; the text says which check failed."""


class ProofNotFound(MetersealError):
    """No proof can be made: unknown bill, reading not on it, original or meter missing."""


class ProofConflict(MetersealError):
    """The stored reading is not the one billed (changed since): its proof could never hold."""


@dataclass(frozen=True, slots=True)
class ReadingProof:
    """One reading's inclusion proof in one bill."""

    bill_id: str
    signed_original: bytes
    meter_certificate: bytes  # DER
    suite: str
    index: int
    tree_size: int
    path: tuple[bytes, ...]

    def to_cbor(self) -> bytes:
        """The proof file's bytes."""
        return cose.dumps(
            {
                "format": PROOF_FORMAT,
                "bill": self.bill_id,
                "reading": self.signed_original,
                "certificate": self.meter_certificate,
                "suite": self.suite,
                "index": self.index,
                "size": self.tree_size,
                "path": list(self.path),
            }
        )

    @classmethod
    def from_cbor(cls, data: bytes) -> ReadingProof:
        """Decode a proof file; BillFormatError if it is not one."""
        keys = {"format", "bill", "reading", "certificate", "suite", "index", "size", "path"}
        try:
            m = cose.loads_strict(data)
            if not isinstance(m, cose.MAP_TYPES) or set(m) != keys or m["format"] != PROOF_FORMAT:
                raise CoseFormatError("not a meterseal reading proof")
            index, size = m["index"], m["size"]
            if type(index) is not int or type(size) is not int:
                raise CoseFormatError("index and size are integers")
            if not isinstance(m["bill"], str) or not isinstance(m["suite"], str):
                raise CoseFormatError("bill and suite are text")
            return cls(
                m["bill"],
                cose.expect_bytes(m["reading"]),
                cose.expect_bytes(m["certificate"]),
                m["suite"],
                index,
                size,
                tuple(cose.expect_bytes(h, 32) for h in m["path"]),
            )
        except (CoseFormatError, TypeError) as exc:
            raise BillFormatError(f"not a reading proof: {exc}") from None


def make_reading_proof(
    bill_id: str,
    manifest: Sequence[ManifestEntry],
    meter_id: str,
    counter: int,
    signed_original: bytes,
    certificate: x509.Certificate,
    suite: str,
) -> ReadingProof:
    """The proof for the manifest entry (meter_id, counter); ProofNotFound if it is not on it."""
    index = next(
        (i for i, e in enumerate(manifest) if e.meter_id == meter_id and e.counter == counter),
        None,
    )
    if index is None:
        raise ProofNotFound(f"meter {meter_id} counter {counter} is not on bill {bill_id}")
    tree = MerkleTree(e.leaf_hash for e in manifest)
    der = certificate.public_bytes(Encoding.DER)
    return ReadingProof(
        bill_id, signed_original, der, suite, index, tree.size, tuple(tree.inclusion_proof(index))
    )


@dataclass(frozen=True, slots=True)
class VerifiedReading:
    """What a successful check establishes: this reading is on this audited bill."""

    bill: Bill
    reading: Reading | UnsignedReading  # UnsignedReading: an import no meter signed
    index: int

    @property
    def unsigned(self) -> bool:
        """Whether the reading is an UNSIGNED import (meter certificate checked, no signature)."""
        return isinstance(self.reading, UnsignedReading)


def verify_reading(
    signed_bill: bytes,
    proof: ReadingProof,
    *,
    ca_certificate: x509.Certificate,
    billing_key: VerifyingKey,
    authority_key: VerifyingKey,
    authority_kid: bytes,
) -> VerifiedReading:
    """Check both bill signatures, the meter's signature and the inclusion proof."""
    bill = verify_bill_signatures(
        signed_bill,
        billing_key=billing_key,
        authority_key=authority_key,
        authority_kid=authority_kid,
    )
    if proof.bill_id != bill.bill_id:
        raise ReadingProofError(f"the proof is for bill {proof.bill_id}, not {bill.bill_id}")
    reading: Reading | UnsignedReading
    if is_unsigned(proof.signed_original):
        reading = _unsigned(proof, ca_certificate, bill)
    else:
        reading = _meter_signed(proof, ca_certificate)
    if reading.meter_id not in {m.meter_id for m in bill.meters}:
        raise ReadingProofError(f"meter {reading.meter_id} is not on this bill")
    if proof.tree_size != bill.packets:
        raise ReadingProofError(f"proof for {proof.tree_size} packets, bill has {bill.packets}")
    try:
        verify_inclusion(
            leaf_hash(proof.signed_original),
            proof.index,
            proof.tree_size,
            proof.path,
            bill.merkle_root,
        )
    except ProofError as exc:
        raise ReadingProofError(f"inclusion proof: {exc.diagnostics()}") from None
    return VerifiedReading(bill, reading, proof.index)


def verify_bill_signatures(
    signed_bill: bytes,
    *,
    billing_key: VerifyingKey,
    authority_key: VerifyingKey,
    authority_kid: bytes,
) -> Bill:
    """The bill, if the billing signature and the authority's countersignature both hold."""
    try:
        bill = verify_signed_bill(signed_bill, billing_key)
    except MetersealError as exc:
        raise ReadingProofError(f"bill: {exc.diagnostics()}") from None
    try:
        verify_countersignature(signed_bill, authority_key, authority_kid)
    except (InvalidSignature, CoseFormatError) as exc:
        raise ReadingProofError(f"the authority's countersignature does not hold: {exc}") from None
    return bill


def _unsigned(proof: ReadingProof, ca_certificate: x509.Certificate, bill: Bill) -> UnsignedReading:
    """An UNSIGNED import on a bill that allows them; its meter's certificate must chain."""
    if bill.unsigned_wh is None:
        raise ReadingProofError(
            "an UNSIGNED import, but the bill counts meter-signed readings only"
        )
    try:
        reading = unsigned_from_cbor(proof.signed_original)
    except UnsignedRecordError as exc:
        raise ReadingProofError(exc.diagnostics()) from None
    registry = MeterRegistry(ca_certificate)
    suite = SUITES.get(proof.suite)
    if suite is None:
        raise ReadingProofError(f"unknown suite {proof.suite!r}")
    try:
        certificate = x509.load_der_x509_certificate(proof.meter_certificate)
        registry.register(certificate, suite, customer_id="-", region_id="-")
    except (CertificateError, ValueError) as exc:
        raise ReadingProofError(f"meter certificate: {exc}") from None
    if registry.get(reading.meter_id) is None:
        raise ReadingProofError(f"the certificate is not meter {reading.meter_id}'s")
    return reading


def _meter_signed(proof: ReadingProof, ca_certificate: x509.Certificate) -> Reading:
    suite = SUITES.get(proof.suite)
    if suite is None:
        raise ReadingProofError(f"unknown suite {proof.suite!r}")
    registry = MeterRegistry(ca_certificate)
    try:
        certificate = x509.load_der_x509_certificate(proof.meter_certificate)
        registry.register(certificate, suite, customer_id="-", region_id="-")
        return verify_signed_original(proof.signed_original, registry).reading
    except (CertificateError, ValueError) as exc:
        raise ReadingProofError(f"meter certificate: {exc}") from None
    except InvalidPacket as exc:
        raise ReadingProofError(f"meter signature: {exc.diagnostics()}") from None
