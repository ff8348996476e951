"""pycose (an independent COSE implementation) reads our packets, and we read its messages.

pycose 1.1.0 knows RS256, ES256, EdDSA, RSA-OAEP-256, ECDH-ES+HKDF-256 on EC2 keys and
AES-GCM. It has no ChaCha20/Poly1305, no X25519 key agreement, no ML-DSA and no HPKE, so
the ed25519 suite's outer layer and the whole pq suite are skipped, with that reason.
"""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Mapping
from dataclasses import dataclass
from importlib.metadata import version
from typing import Any, TypeVar

import cbor2
import pytest
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import serialization
from pycose import headers
from pycose.algorithms import CoseAlgorithm
from pycose.exceptions import CoseException
from pycose.keys.cosekey import CoseKey
from pycose.keys.curves import P256 as PycoseP256
from pycose.keys.ec2 import EC2Key
from pycose.keys.keyparam import EC2KpD
from pycose.messages.cosemessage import CoseMessage
from pycose.messages.encmessage import EncMessage
from pycose.messages.recipient import DirectKeyAgreement, KeyWrap
from pycose.messages.sign1message import Sign1Message

from meterseal.crypto import certs, cose, packet, reading_codec
from meterseal.crypto.keys import HeadEndKeys, MeterKey, generate_meter_key
from meterseal.crypto.registry import MeterRegistry
from meterseal.crypto.suites import P256, PAPER, SUITES, CipherSuite
from meterseal.errors import InvalidPacket, RejectReason
from meterseal.model import Reading

NOW = dt.datetime(2026, 11, 1, 12, 0, tzinfo=dt.UTC)
PYCOSE = f"pycose {version('pycose')}"
M = TypeVar("M", bound=CoseMessage)


@dataclass
class Deployment:
    headend: HeadEndKeys
    registry: MeterRegistry
    meters: dict[str, MeterKey]


@pytest.fixture(scope="module")
def deployment() -> Deployment:
    ca_key, ca_cert = certs.create_ca("pycose interop CA", now=NOW, rng=os.urandom)
    registry = MeterRegistry(ca_cert)
    meters = {}
    for suite in SUITES.values():
        key = generate_meter_key(f"M-interop-{suite.name}", suite)
        cert = certs.issue_meter_certificate(
            ca_key, ca_cert, key.meter_id, key.public_key(), now=NOW, rng=os.urandom
        )
        registry.register(cert, suite, "C-1", "R-1")
        meters[suite.name] = key
    return Deployment(HeadEndKeys.generate(), registry, meters)


def _reading(meter: MeterKey) -> Reading:
    return Reading(meter.meter_id, 7, 1_793_000_000, 900, 1234)


def _public_pem(key: Any) -> str:
    pem: bytes = key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return pem.decode()


def _private_pem(key: Any) -> str:
    pem: bytes = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return pem.decode()


def _mutable(item: Any) -> Any:
    if isinstance(item, list | tuple):
        return [_mutable(x) for x in item]
    if isinstance(item, Mapping):
        return {k: _mutable(v) for k, v in item.items()}
    return item


def _pycose_decode(cls: type[M], tag: int, data: bytes) -> M:
    """cls.decode(data), working around pycose 1.1.0 on cbor2 6.

    cbor2 6 decodes the contents of a tag as tuples and frozendicts, which pycose's
    CoseMessage.decode refuses ("Bytes cannot be decoded as COSE message"); the same
    structure as lists and dicts goes through pycose's own from_cose_obj.
    """
    item = cbor2.loads(data)
    assert isinstance(item, cbor2.CBORTag)
    assert item.tag == tag
    message: M = cls.from_cose_obj(_mutable(item.value), True)
    return message


def _pycose_algorithm(alg: int) -> Any:
    try:
        return CoseAlgorithm.from_id(alg)
    except CoseException:
        return None


def _require_signature(suite: CipherSuite) -> Any:
    algorithm = _pycose_algorithm(suite.signature.cose_alg)
    if algorithm is None:
        pytest.skip(f"{PYCOSE} has no {suite.signature.name} (COSE alg {suite.signature.cose_alg})")
    return algorithm


def _require_encryption(suite: CipherSuite) -> None:
    if suite.encryption.message_tag != cose.TAG_ENCRYPT:
        pytest.skip(
            f"{PYCOSE} has no HPKE integrated encryption ({suite.encryption.name}, "
            f"COSE alg {suite.content_alg})"
        )
    if _pycose_algorithm(suite.content_alg) is None:
        pytest.skip(
            f"{PYCOSE} has no COSE alg {suite.content_alg} (ChaCha20/Poly1305), and its "
            "ECDH-ES recipient (DirectKeyAgreement) only takes EC2 keys, not X25519"
        )


def _seal(deployment: Deployment, suite: CipherSuite) -> tuple[bytes, Reading]:
    meter = deployment.meters[suite.name]
    reading = _reading(meter)
    blob = packet.seal(reading, meter, deployment.headend.public(), suite, now=NOW, rng=os.urandom)
    return blob, reading


def _flip_ciphertext(blob: bytes) -> bytes:
    item = cbor2.loads(blob)
    fields = _mutable(item.value)
    ciphertext = bytearray(fields[2])
    ciphertext[0] ^= 1
    fields[2] = bytes(ciphertext)
    return cbor2.dumps(cbor2.CBORTag(item.tag, fields))


# --- pycose reads what packet.seal writes ----------------------------------------------------


@pytest.mark.parametrize("name", list(SUITES))
def test_pycose_verifies_our_sign1(deployment: Deployment, name: str) -> None:
    suite = SUITES[name]
    algorithm = _require_signature(suite)
    blob, reading = _seal(deployment, suite)
    signed = packet.open(blob, deployment.headend, deployment.registry, now=NOW).signed_original
    meter = deployment.meters[name]

    message = _pycose_decode(Sign1Message, cose.TAG_SIGN1, signed)
    assert message.phdr[headers.Algorithm] is algorithm
    assert message.phdr[headers.KID] == meter.meter_id.encode()
    assert message.payload == reading_codec.encode_reading(reading)
    message.key = CoseKey.from_pem_public_key(_public_pem(meter.public_key()))
    assert message.verify_signature()

    stranger = generate_meter_key("M-stranger", suite)
    message.key = CoseKey.from_pem_public_key(_public_pem(stranger.public_key()))
    assert not message.verify_signature()
    parsed = cose.parse_sign1(signed)
    signature = bytearray(parsed.signature)
    signature[-1] ^= 1
    forged = cose.Sign1(
        parsed.protected, parsed.headers, {}, parsed.payload, bytes(signature)
    ).encode()
    message = _pycose_decode(Sign1Message, cose.TAG_SIGN1, forged)
    message.key = CoseKey.from_pem_public_key(_public_pem(meter.public_key()))
    assert not message.verify_signature()


@pytest.mark.parametrize("name", list(SUITES))
def test_pycose_decrypts_our_packet(deployment: Deployment, name: str) -> None:
    suite = SUITES[name]
    _require_encryption(suite)
    blob, _ = _seal(deployment, suite)
    signed = packet.open(blob, deployment.headend, deployment.registry, now=NOW).signed_original
    kid, private_key = deployment.headend.for_suite(suite)

    message = _pycose_decode(EncMessage, cose.TAG_ENCRYPT, blob)
    recipient: Any
    [recipient] = message.recipients
    assert recipient.get_attr(headers.KID) == kid
    recipient.key = CoseKey.from_pem_private_key(_private_pem(private_key))
    assert message.decrypt(recipient) == signed

    message = _pycose_decode(EncMessage, cose.TAG_ENCRYPT, _flip_ciphertext(blob))
    [recipient] = message.recipients
    recipient.key = CoseKey.from_pem_private_key(_private_pem(private_key))
    with pytest.raises(InvalidTag):
        message.decrypt(recipient)


# --- packet.open reads what pycose writes ----------------------------------------------------


def _pycose_sign1(meter: MeterKey, reading: Reading, algorithm: Any) -> bytes:
    message = Sign1Message(
        phdr={
            headers.Algorithm: algorithm,
            headers.KID: meter.meter_id.encode(),
            cose.CWT_CLAIMS: {cose.CLAIM_IAT: int(NOW.timestamp())},
        },
        payload=reading_codec.encode_reading(reading),
    )
    message.key = CoseKey.from_pem_private_key(_private_pem(meter.private_key))
    encoded: bytes = message.encode()
    return encoded


@pytest.mark.parametrize("name", list(SUITES))
def test_packet_open_accepts_pycose_sign1(deployment: Deployment, name: str) -> None:
    suite = SUITES[name]
    algorithm = _require_signature(suite)
    meter = deployment.meters[name]
    reading = _reading(meter)
    kid, public_key = deployment.headend.public().for_suite(suite)

    signed = _pycose_sign1(meter, reading, algorithm)
    blob = suite.encryption.seal(signed, public_key, kid, os.urandom)
    opened = packet.open(blob, deployment.headend, deployment.registry, now=NOW)
    assert opened.reading == reading
    assert opened.signed_original == signed

    impostor = MeterKey(meter.meter_id, suite, generate_meter_key("M-x", suite).private_key)
    forged = suite.encryption.seal(
        _pycose_sign1(impostor, reading, algorithm), public_key, kid, os.urandom
    )
    with pytest.raises(InvalidPacket) as info:
        packet.open(forged, deployment.headend, deployment.registry, now=NOW)
    assert info.value.reason is RejectReason.BAD_SIGNATURE


def _pycose_recipient(suite: CipherSuite, deployment: Deployment) -> Any:
    kid, public_key = deployment.headend.public().for_suite(suite)
    peer = CoseKey.from_pem_public_key(_public_pem(public_key))
    if suite is PAPER:
        key_wrap = KeyWrap(
            uhdr={headers.Algorithm: CoseAlgorithm.from_id(suite.recipient_alg), headers.KID: kid}
        )
        key_wrap.key = peer
        return key_wrap
    assert suite is P256
    recipient = DirectKeyAgreement(
        phdr={headers.Algorithm: CoseAlgorithm.from_id(suite.recipient_alg)},
        uhdr={headers.KID: kid},
    )
    local_attrs: dict[Any, Any] = {headers.StaticKey: peer}
    recipient.local_attrs = local_attrs
    # pycose 1.1.0 derives the CEK before the recipient's encode() would create the
    # ephemeral key, so the sender supplies it (and publishes its public half) itself.
    ephemeral = EC2Key.generate_key(crv=PycoseP256)
    recipient.key = ephemeral
    public_half = dict(ephemeral)
    del public_half[EC2KpD]
    recipient.uhdr_update({headers.EphemeralKey: public_half})
    return recipient


@pytest.mark.parametrize("name", list(SUITES))
def test_packet_open_accepts_pycose_packet(deployment: Deployment, name: str) -> None:
    suite = SUITES[name]
    algorithm = _require_signature(suite)
    _require_encryption(suite)
    meter = deployment.meters[name]
    reading = _reading(meter)
    signed = _pycose_sign1(meter, reading, algorithm)

    message = EncMessage(
        phdr={headers.Algorithm: CoseAlgorithm.from_id(suite.content_alg)},
        uhdr={headers.IV: os.urandom(12)},
        payload=signed,
        recipients=[_pycose_recipient(suite, deployment)],
    )
    blob: bytes = message.encode()
    opened = packet.open(blob, deployment.headend, deployment.registry, now=NOW)
    assert opened.reading == reading
    assert opened.suite is suite
    assert opened.signed_original == signed

    with pytest.raises(InvalidPacket) as info:
        packet.open(_flip_ciphertext(blob), deployment.headend, deployment.registry, now=NOW)
    assert info.value.reason is RejectReason.DECRYPT_FAILED
