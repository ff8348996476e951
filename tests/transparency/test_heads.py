"""Signed tree heads and typed documents: one head type, each log's encoding kept byte for byte."""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from meterseal.billing.bill import BillFormatError, BillSignatureError
from meterseal.billing.billlog import BILL_LOG_HEAD
from meterseal.crypto import cose
from meterseal.integrity.auditlog import AUDIT_LOG_HEAD, AuditLogError
from meterseal.transparency.documents import (
    CONTENT_TYPE_LABEL,
    DocumentFormatError,
    DocumentSignatureError,
    DocumentType,
    sign_typed,
)
from meterseal.transparency.heads import HeadFormat, TreeHead

ROOT = bytes(range(32))
KID = b"k" * 8
NOTE = DocumentType("application/example+cbor", "note")


@pytest.fixture(scope="module")
def key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def test_the_bill_log_head_payload_is_the_published_map() -> None:
    head = TreeHead(3, ROOT, 1_790_812_800)
    expected = cose.dumps({"size": 3, "root": ROOT, "issued_at": 1_790_812_800})
    assert BILL_LOG_HEAD.payload(head) == expected
    assert BILL_LOG_HEAD.decode(expected) == head


def test_the_audit_log_head_payload_names_milliseconds_and_signer() -> None:
    head = TreeHead(7, ROOT, 1_790_812_800_123, "software key (no TPM)")
    expected = cose.dumps(
        {"size": 7, "root": ROOT, "issued_at_ms": 1_790_812_800_123, "signer": head.signer}
    )
    assert AUDIT_LOG_HEAD.payload(head) == expected
    assert AUDIT_LOG_HEAD.decode(expected) == head


def test_a_head_verifies_under_its_key_and_content_type(key: ec.EllipticCurvePrivateKey) -> None:
    head = TreeHead(2, ROOT, 10)
    signed = BILL_LOG_HEAD.sign(head, key, KID)
    assert BILL_LOG_HEAD.verified(signed, key.public_key()) == head
    other = ec.generate_private_key(ec.SECP256R1()).public_key()
    with pytest.raises(BillSignatureError, match="does not verify"):
        BILL_LOG_HEAD.verified(signed, other)
    # The audit log's reader refuses a bill-log head even where the same key signed both.
    with pytest.raises(AuditLogError, match="not a security audit-log head"):
        AUDIT_LOG_HEAD.verified(signed, key.public_key())


@pytest.mark.parametrize(
    "item",
    [
        {"size": 1, "root": ROOT},
        {"size": 1, "root": ROOT, "issued_at": 1, "signer": "x"},
        {"size": -1, "root": ROOT, "issued_at": 1},
        {"size": True, "root": ROOT, "issued_at": 1},
        {"size": 1, "root": ROOT[:31], "issued_at": 1},
        {"size": 1, "root": ROOT, "issued_at": 1.5},
        [1, ROOT, 1],
    ],
)
def test_an_off_schema_head_is_a_format_error(
    key: ec.EllipticCurvePrivateKey, item: object
) -> None:
    signed = sign_typed(cose.dumps(item), BILL_LOG_HEAD.document.content_type, key, KID)
    with pytest.raises(BillFormatError, match="not a signed bill-log tree head"):
        BILL_LOG_HEAD.verified(signed, key.public_key())


def test_a_head_is_encoded_with_a_signer_exactly_where_its_log_names_one() -> None:
    with pytest.raises(ValueError, match="name a signer"):
        AUDIT_LOG_HEAD.payload(TreeHead(1, ROOT, 1))
    with pytest.raises(ValueError, match="omit a signer"):
        BILL_LOG_HEAD.payload(TreeHead(1, ROOT, 1, "software key (no TPM)"))
    fmt = HeadFormat(NOTE, "issued_at", names_signer=True)
    with pytest.raises(DocumentFormatError, match="signer is text"):
        fmt.decode(cose.dumps({"size": 1, "root": ROOT, "issued_at": 1, "signer": 5}))


def test_a_document_of_another_type_or_not_cose_is_refused(
    key: ec.EllipticCurvePrivateKey,
) -> None:
    with pytest.raises(DocumentFormatError, match="not a signed note"):
        NOTE.parse(b"\xa0")
    signed = sign_typed(b"payload", "application/other+cbor", key, KID)
    with pytest.raises(DocumentFormatError, match="not a note"):
        NOTE.parse(signed)
    body = NOTE.parse(NOTE.sign(b"payload", key, KID))
    assert body.headers[CONTENT_TYPE_LABEL] == NOTE.content_type
    assert body.payload == b"payload"
    NOTE.verify(body, key.public_key())


def test_a_document_not_signed_with_es256_is_refused(key: ec.EllipticCurvePrivateKey) -> None:
    protected = cose.dumps({cose.ALG: -8, CONTENT_TYPE_LABEL: NOTE.content_type})
    forged = cose.Sign1(protected, {}, {}, b"payload", b"\x00" * 64).encode()
    with pytest.raises(DocumentSignatureError, match="not signed with ES256"):
        NOTE.verify(NOTE.parse(forged), key.public_key())
