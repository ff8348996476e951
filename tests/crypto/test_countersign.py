"""COSE countersignatures (RFC 9338) on signed bills, and the COSE WG's countersignature vector."""

from __future__ import annotations

import json
from pathlib import Path

import cbor2
import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric import ec, ed25519

from meterseal.crypto import cose
from meterseal.crypto.countersign import (
    COUNTERSIGNATURE_LEGACY,
    countersign,
    countersign_structure,
    countersignatures,
    verify_countersignature,
)
from meterseal.crypto.signing import ES256

VECTOR = (
    Path(__file__).resolve().parents[1] / "vectors" / "cose-wg" / "countersign" / "signed1-01.json"
)


def _signed(key: ec.EllipticCurvePrivateKey) -> bytes:
    protected = cose.dumps({cose.ALG: -7})
    payload = b"a bill"
    signature = ES256().sign(key, cose.sig_structure1(protected, payload))
    return cose.Sign1(protected, {}, {}, payload, signature).encode()


def test_the_cose_wg_vector_countersignature_structure_and_signature() -> None:
    # The vector is an RFC 8152 (label 7) countersignature: the same structure without
    # other_fields, context "CounterSignature". Our builder must produce its bytes exactly.
    vector = json.loads(VECTOR.read_text())
    message = cose.parse_sign1(bytes.fromhex(vector["output"]["cbor"]))
    protected, _unprotected, signature = message.unprotected[COUNTERSIGNATURE_LEGACY]
    to_be_signed = countersign_structure(
        "CounterSignature", message.protected, protected, message.payload
    )
    assert (
        to_be_signed.hex().upper() == vector["intermediates"]["countersigners"][0]["ToBeSign_hex"]
    )
    key = vector["input"]["sign0"]["countersign"]["signers"][0]["key"]
    public = ed25519.Ed25519PublicKey.from_public_bytes(bytes.fromhex(key["x_hex"]))
    public.verify(signature, to_be_signed)
    with pytest.raises(InvalidSignature):
        public.verify(signature, to_be_signed.replace(b"content", b"contenT"))


def test_countersign_keeps_the_first_signature_and_verifies() -> None:
    billing, authority = (
        ec.generate_private_key(ec.SECP256R1()),
        ec.generate_private_key(ec.SECP256R1()),
    )
    signed = _signed(billing)
    countersigned = countersign(signed, authority, b"authority")
    body = cose.parse_sign1(countersigned)
    ES256().verify(billing.public_key(), body.signature, body.to_be_signed())
    verify_countersignature(countersigned, authority.public_key(), b"authority")
    assert [c.kid for c in countersignatures(body)] == [b"authority"]


def test_a_second_countersignature_is_appended() -> None:
    billing = ec.generate_private_key(ec.SECP256R1())
    one, two = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    twice = countersign(countersign(_signed(billing), one, b"one"), two, b"two")
    assert [c.kid for c in countersignatures(cose.parse_sign1(twice))] == [b"one", b"two"]
    verify_countersignature(twice, one.public_key(), b"one")
    verify_countersignature(twice, two.public_key(), b"two")


def test_countersignature_binds_the_body_signature_and_payload() -> None:
    billing, authority = (
        ec.generate_private_key(ec.SECP256R1()),
        ec.generate_private_key(ec.SECP256R1()),
    )
    countersigned = countersign(_signed(billing), authority, b"authority")
    tag = cbor2.loads(countersigned)
    protected, unprotected, payload, signature = tag.value
    for changed in (
        [protected, unprotected, b"another bill", signature],
        [protected, unprotected, payload, bytes(64)],
    ):
        with pytest.raises(InvalidSignature):
            verify_countersignature(
                cbor2.dumps(cbor2.CBORTag(18, changed)), authority.public_key(), b"authority"
            )
    with pytest.raises(InvalidSignature):
        verify_countersignature(countersigned, billing.public_key(), b"authority")
    with pytest.raises(InvalidSignature, match="no countersignature"):
        verify_countersignature(countersigned, authority.public_key(), b"someone else")
