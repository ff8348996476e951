"""cryptography's private single-shot HPKE with aad is RFC 9180, and HpkeIntegrated binds headers.

The pq suite calls `_encrypt_with_aad` / `_decrypt_with_aad` from cryptography's Rust
bindings (the public `Suite.encrypt` takes no aad). RFC 9180 has no vectors for the
X-Wing KEM or the SHAKE256 KDF, so these tests pin the functions on the RFC's base-mode
DHKEM(X25519, HKDF-SHA256) vectors: decryption of the vectors' first encryption, and an
independent RFC 9180 key schedule that must open what `_encrypt_with_aad` produces.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
from pathlib import Path
from typing import Any

import pytest
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.bindings._rust import openssl as _rust_openssl
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import mlkem, x25519
from cryptography.hazmat.primitives.ciphers.aead import AESGCM, ChaCha20Poly1305
from cryptography.hazmat.primitives.hpke import AEAD, KDF, KEM, Suite
from cryptography.hazmat.primitives.kdf.hkdf import HKDFExpand

from meterseal.crypto import cose, envelope
from meterseal.crypto.keys import HybridKemKey

VECTORS = Path(__file__).resolve().parents[1] / "vectors" / "hpke"
ENTRIES: list[dict[str, Any]] = json.loads(
    (VECTORS / "rfc9180-base-x25519-sha256.json").read_text(encoding="utf-8")
)
AEADS = {1: AEAD.AES_128_GCM, 2: AEAD.AES_256_GCM, 3: AEAD.CHACHA20_POLY1305}
KEY_LENGTHS = {1: 16, 2: 32, 3: 32}
KEM_X25519_ID = 0x0020
KDF_HKDF_SHA256_ID = 0x0001
MODE_BASE = 0

HPKE_ENCRYPT = _rust_openssl.hpke._encrypt_with_aad
HPKE_DECRYPT = _rust_openssl.hpke._decrypt_with_aad


def _h(text: str) -> bytes:
    return bytes.fromhex(text)


def _suite(entry: dict[str, Any]) -> Suite:
    return Suite(KEM.X25519, KDF.HKDF_SHA256, AEADS[entry["aead_id"]])


def _ids(entry: dict[str, Any]) -> str:
    return f"aead{entry['aead_id']}"


# --- an independent RFC 9180 base-mode receiver (sections 4, 4.1, 5.1, 5.2) ------------------


def _labeled_extract(suite_id: bytes, salt: bytes, label: bytes, ikm: bytes) -> bytes:
    # HKDF-Extract(salt, ikm) = HMAC-Hash(salt, ikm); an empty salt is HashLen zero bytes,
    # which HMAC pads to the same key.
    return hmac.new(salt, b"HPKE-v1" + suite_id + label + ikm, hashlib.sha256).digest()


def _labeled_expand(suite_id: bytes, prk: bytes, label: bytes, info: bytes, length: int) -> bytes:
    labeled_info = length.to_bytes(2, "big") + b"HPKE-v1" + suite_id + label + info
    return HKDFExpand(hashes.SHA256(), length, labeled_info).derive(prk)


def _rfc9180_receiver(
    entry: dict[str, Any], enc: bytes, private_key: x25519.X25519PrivateKey, info: bytes
) -> tuple[bytes, bytes, bytes]:
    """(shared_secret, key, base_nonce) for a base-mode DHKEM(X25519, HKDF-SHA256) context."""
    kem_suite = b"KEM" + KEM_X25519_ID.to_bytes(2, "big")
    dh = private_key.exchange(x25519.X25519PublicKey.from_public_bytes(enc))
    kem_context = enc + private_key.public_key().public_bytes_raw()
    eae_prk = _labeled_extract(kem_suite, b"", b"eae_prk", dh)
    shared_secret = _labeled_expand(kem_suite, eae_prk, b"shared_secret", kem_context, 32)

    hpke_suite = (
        b"HPKE"
        + KEM_X25519_ID.to_bytes(2, "big")
        + KDF_HKDF_SHA256_ID.to_bytes(2, "big")
        + entry["aead_id"].to_bytes(2, "big")
    )
    psk_id_hash = _labeled_extract(hpke_suite, b"", b"psk_id_hash", b"")
    info_hash = _labeled_extract(hpke_suite, b"", b"info_hash", info)
    context = bytes([MODE_BASE]) + psk_id_hash + info_hash
    secret = _labeled_extract(hpke_suite, shared_secret, b"secret", b"")
    key = _labeled_expand(hpke_suite, secret, b"key", context, KEY_LENGTHS[entry["aead_id"]])
    base_nonce = _labeled_expand(hpke_suite, secret, b"base_nonce", context, 12)
    return shared_secret, key, base_nonce


def _aead_open(entry: dict[str, Any], key: bytes, nonce: bytes, ct: bytes, aad: bytes) -> bytes:
    cipher = ChaCha20Poly1305(key) if entry["aead_id"] == 3 else AESGCM(key)
    return cipher.decrypt(nonce, ct, aad)


# --- the vectors ------------------------------------------------------------------------------


def test_vendored_selection_and_envelope_binding() -> None:
    assert sorted(e["aead_id"] for e in ENTRIES) == [1, 2, 3]
    for entry in ENTRIES:
        assert (entry["mode"], entry["kem_id"], entry["kdf_id"]) == (MODE_BASE, 32, 1)
        assert entry["encryptions"][0]["aad"]
        assert entry["info"]
    # The functions tested here are the very ones the pq suite calls.
    assert envelope._HPKE_ENCRYPT is HPKE_ENCRYPT
    assert envelope._HPKE_DECRYPT is HPKE_DECRYPT


@pytest.mark.parametrize("entry", ENTRIES, ids=_ids)
def test_independent_key_schedule_matches_vector(entry: dict[str, Any]) -> None:
    # Guards the reference receiver used below against the RFC's intermediate values.
    private = x25519.X25519PrivateKey.from_private_bytes(_h(entry["skRm"]))
    shared_secret, key, base_nonce = _rfc9180_receiver(
        entry, _h(entry["enc"]), private, _h(entry["info"])
    )
    assert shared_secret == _h(entry["shared_secret"])
    assert key == _h(entry["key"])
    assert base_nonce == _h(entry["base_nonce"])


@pytest.mark.parametrize("entry", ENTRIES, ids=_ids)
def test_decrypt_with_aad_opens_rfc9180_vector(entry: dict[str, Any]) -> None:
    private = x25519.X25519PrivateKey.from_private_bytes(_h(entry["skRm"]))
    assert private.public_key().public_bytes_raw() == _h(entry["pkRm"])
    enc = _h(entry["enc"])
    assert enc == _h(entry["pkEm"])
    assert len(enc) == KEM.X25519.enc_length()
    first = entry["encryptions"][0]
    assert first["nonce"] == entry["base_nonce"]  # sequence number 0: what single-shot uses
    sealed = enc + _h(first["ct"])  # RFC 9180 section 6.1: Seal returns (enc, ct)
    info, aad, plaintext = _h(entry["info"]), _h(first["aad"]), _h(first["pt"])

    assert HPKE_DECRYPT(_suite(entry), sealed, private, info=info, aad=aad) == plaintext

    for wrong in (
        {"info": info, "aad": aad + b"!"},
        {"info": info, "aad": None},
        {"info": info + b"!", "aad": aad},
        {"info": b"", "aad": aad},
    ):
        with pytest.raises(InvalidTag):
            HPKE_DECRYPT(_suite(entry), sealed, private, **wrong)
    with pytest.raises(InvalidTag):  # the public API has no aad, so cannot open it
        _suite(entry).decrypt(sealed, private, info=info)
    with pytest.raises(InvalidTag):
        HPKE_DECRYPT(
            _suite(entry), sealed[:-1] + bytes([sealed[-1] ^ 1]), private, info=info, aad=aad
        )


@pytest.mark.parametrize("entry", ENTRIES, ids=_ids)
def test_encrypt_with_aad_is_rfc9180_seal(entry: dict[str, Any]) -> None:
    private = x25519.X25519PrivateKey.from_private_bytes(_h(entry["skRm"]))
    info, aad, plaintext = (
        _h(entry["info"]),
        _h(entry["encryptions"][0]["aad"]),
        _h(entry["encryptions"][0]["pt"]),
    )
    sealed = HPKE_ENCRYPT(_suite(entry), plaintext, private.public_key(), info=info, aad=aad)
    enc_length = KEM.X25519.enc_length()
    assert len(sealed) == enc_length + len(plaintext) + 16
    enc, ct = sealed[:enc_length], sealed[enc_length:]
    assert enc != _h(entry["enc"])  # a fresh ephemeral key per call

    _, key, base_nonce = _rfc9180_receiver(entry, enc, private, info)
    assert _aead_open(entry, key, base_nonce, ct, aad) == plaintext
    with pytest.raises(InvalidTag):
        _aead_open(entry, key, base_nonce, ct, b"")
    assert HPKE_DECRYPT(_suite(entry), sealed, private, info=info, aad=aad) == plaintext


# --- HpkeIntegrated (the pq suite's COSE_Encrypt0) ------------------------------------------

KID = b"\x01\x02\x03\x04\x05\x06\x07\x08"
PLAINTEXT = b"a signed reading"


@pytest.fixture(scope="module")
def hybrid_key() -> HybridKemKey:
    return HybridKemKey(mlkem.MLKEM768PrivateKey.generate(), x25519.X25519PrivateKey.generate())


def _sealed_fields(hybrid_key: HybridKemKey) -> list[Any]:
    blob = envelope.HpkeIntegrated().seal(PLAINTEXT, hybrid_key.public(), KID, os.urandom)
    return list(cose.untag(cose.loads_strict(blob), cose.TAG_ENCRYPT0))


def test_hpke_integrated_round_trip(hybrid_key: HybridKemKey) -> None:
    scheme = envelope.HpkeIntegrated()
    fields = _sealed_fields(hybrid_key)
    protected, unprotected, ciphertext = fields
    assert cose.header_map(protected) == {cose.ALG: scheme.cose_alg}
    assert set(unprotected) == {cose.KID, envelope.HEADER_EK}
    assert len(unprotected[envelope.HEADER_EK]) == KEM.MLKEM768_X25519.enc_length()
    assert len(ciphertext) == len(PLAINTEXT) + 16

    assert scheme.open(fields, hybrid_key.private(), KID) == PLAINTEXT

    # The documented parameters: empty info, aad = Enc_structure("Encrypt0", protected).
    sealed = unprotected[envelope.HEADER_EK] + ciphertext
    aad = cose.enc_structure("Encrypt0", protected)
    assert HPKE_DECRYPT(scheme.hpke, sealed, hybrid_key.private(), info=b"", aad=aad) == PLAINTEXT
    with pytest.raises(InvalidTag):
        HPKE_DECRYPT(
            scheme.hpke,
            sealed,
            hybrid_key.private(),
            info=b"",
            aad=cose.enc_structure("Encrypt", protected),
        )


@pytest.mark.parametrize(
    "protected",
    [
        bytes.fromhex("a101190038"),  # {1: 56} again, 56 in a two-byte argument
        bytes.fromhex("a1011839"),  # {1: 57}
    ],
    ids=["same-map-other-bytes", "other-alg"],
)
def test_hpke_integrated_protected_header_is_authenticated(
    hybrid_key: HybridKemKey, protected: bytes
) -> None:
    fields = _sealed_fields(hybrid_key)
    assert protected != fields[0]
    fields[0] = protected
    with pytest.raises(InvalidTag):
        envelope.HpkeIntegrated().open(fields, hybrid_key.private(), KID)


def test_hpke_integrated_rejects_tampering(hybrid_key: HybridKemKey) -> None:
    scheme = envelope.HpkeIntegrated()
    fields = _sealed_fields(hybrid_key)
    with pytest.raises(envelope.WrongRecipient):
        scheme.open(fields, hybrid_key.private(), KID[::-1])
    ciphertext = bytearray(fields[2])
    ciphertext[0] ^= 1
    with pytest.raises(InvalidTag):
        scheme.open([fields[0], fields[1], bytes(ciphertext)], hybrid_key.private(), KID)
    ek = bytearray(fields[1][envelope.HEADER_EK])
    ek[-1] ^= 1  # in the X25519 share
    unprotected = {cose.KID: KID, envelope.HEADER_EK: bytes(ek)}
    with pytest.raises(InvalidTag):
        scheme.open([fields[0], unprotected, fields[2]], hybrid_key.private(), KID)
    other = HybridKemKey(mlkem.MLKEM768PrivateKey.generate(), x25519.X25519PrivateKey.generate())
    with pytest.raises(InvalidTag):
        scheme.open(fields, other.private(), KID)
