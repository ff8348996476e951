"""Encryption to the head-end: COSE_Encrypt with one recipient, or COSE_Encrypt0 with HPKE.

Three key-establishment schemes cover the four suites:
RSA-OAEP-256 key transport (paper), ECDH-ES + HKDF-256 direct key agreement over P-256 or
X25519 (p256, ed25519), and HPKE integrated encryption with ML-KEM-768+X25519 (pq).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, cast

import cbor2
from cryptography.hazmat.bindings._rust import openssl as _rust_openssl
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa, x25519
from cryptography.hazmat.primitives.ciphers.aead import AESGCM, ChaCha20Poly1305
from cryptography.hazmat.primitives.hpke import (
    AEAD,
    KDF,
    KEM,
    MLKEM768X25519PrivateKey,
    MLKEM768X25519PublicKey,
    Suite,
)
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from meterseal.crypto import cose, fixed
from meterseal.crypto.cose import CoseFormatError

Rng = Callable[[int], bytes]
HeadEndPrivateKey = (
    rsa.RSAPrivateKey
    | ec.EllipticCurvePrivateKey
    | x25519.X25519PrivateKey
    | MLKEM768X25519PrivateKey
)
HeadEndPublicKey = (
    rsa.RSAPublicKey | ec.EllipticCurvePublicKey | x25519.X25519PublicKey | MLKEM768X25519PublicKey
)

IV_LENGTH = 12
P256_COORD = 32
X25519_LENGTH = 32
X25519_P = 2**255 - 19
ECDH_ES_HKDF_256 = -25
RSA_OAEP_256 = -41
# HPKE integrated-encryption header for the encapsulated key (draft-ietf-cose-hpke-27, "ek").
HEADER_EK = -4

_ECDH = ec.ECDH()
_SHA256 = hashes.SHA256()
_P256 = ec.SECP256R1()
_OKP_LABELS = frozenset({cose.KTY, cose.CRV, cose.X})
_EC2_LABELS = frozenset({cose.KTY, cose.CRV, cose.X, cose.Y})
_ALG_ONLY = frozenset({cose.ALG})
_IV_ONLY = frozenset({cose.IV})
_TRANSPORT_LABELS = frozenset({cose.ALG, cose.KID})
_AGREEMENT_LABELS = frozenset({cose.EPHEMERAL_KEY, cose.KID})
_HPKE_LABELS = frozenset({cose.KID, HEADER_EK})
_OAEP = padding.OAEP(mgf=padding.MGF1(hashes.SHA256()), algorithm=hashes.SHA256(), label=None)


@dataclass(frozen=True)
class ContentCipher:
    """A COSE content-encryption AEAD: its algorithm id, key length and implementation."""

    name: str
    cose_alg: int
    key_length: int
    factory: Callable[[bytes], AESGCM | ChaCha20Poly1305]

    def encrypt(self, key: bytes, iv: bytes, plaintext: bytes, aad: bytes) -> bytes:
        """Ciphertext with the 16-byte tag appended."""
        return self.factory(key).encrypt(iv, plaintext, aad)

    def decrypt(self, key: bytes, iv: bytes, ciphertext: bytes, aad: bytes) -> bytes:
        """Plaintext, or cryptography.exceptions.InvalidTag."""
        return self.factory(key).decrypt(iv, ciphertext, aad)


A128GCM = ContentCipher("A128GCM", 1, 16, AESGCM)
A256GCM = ContentCipher("A256GCM", 3, 32, AESGCM)
CHACHA20_POLY1305 = ContentCipher("ChaCha20/Poly1305", 24, 32, ChaCha20Poly1305)


class KeyEstablishment(Protocol):
    """How a COSE message gets its content key to the head-end, and back."""

    @property
    def name(self) -> str:
        """See the implementing classes."""
        ...

    @property
    def message_tag(self) -> int:
        """See the implementing classes."""
        ...

    def seal(self, plaintext: bytes, public_key: HeadEndPublicKey, kid: bytes, rng: Rng) -> bytes:
        """The tagged COSE message carrying `plaintext` to the holder of `public_key`."""
        ...

    def open(self, fields: Sequence[Any], private_key: HeadEndPrivateKey, kid: bytes) -> bytes:
        """The plaintext; raises CoseFormatError or cryptography errors on any mismatch."""
        ...


def _content_fields(fields: Sequence[Any]) -> tuple[bytes, Mapping[int, Any], bytes, bytes]:
    if len(fields) != 4:
        raise CoseFormatError("COSE_Encrypt has four fields")
    protected, unprotected, ciphertext, recipients = fields
    headers = cose.expect_map(cose.envelope_header_map(protected), _ALG_ONLY, _ALG_ONLY)
    iv = cose.expect_bytes(cose.expect_map(unprotected, _IV_ONLY, _IV_ONLY)[cose.IV], IV_LENGTH)
    if not isinstance(recipients, cose.ARRAY_TYPES) or len(recipients) != 1:
        raise CoseFormatError("exactly one recipient")
    recipient = recipients[0]
    if not isinstance(recipient, cose.ARRAY_TYPES) or len(recipient) != 3:
        raise CoseFormatError("a recipient has three fields")
    return protected, headers, iv, cose.expect_bytes(ciphertext)


def _recipient(fields: Sequence[Any]) -> Sequence[Any]:
    # Only called after _content_fields has checked the recipients' shape.
    recipient: Sequence[Any] = fields[3][0]
    return recipient


class WrongRecipient(CoseFormatError):
    """The message names a head-end key (kid) that is not ours."""


def _check_kid(value: Any, kid: bytes) -> None:
    if value != kid:
        raise WrongRecipient("recipient kid is not this head-end's key")


def _encrypt_message(
    content: ContentCipher, cek: bytes, plaintext: bytes, recipient: list[Any], rng: Rng
) -> bytes:
    protected = cose.dumps({cose.ALG: content.cose_alg})
    iv = rng(IV_LENGTH)
    ciphertext = content.encrypt(cek, iv, plaintext, cose.enc_structure("Encrypt", protected))
    message = [protected, {cose.IV: iv}, ciphertext, [recipient]]
    return cbor2.dumps(cbor2.CBORTag(cose.TAG_ENCRYPT, message))


def _decrypt_message(
    content: ContentCipher, layer: tuple[bytes, Mapping[int, Any], bytes, bytes], cek: bytes
) -> bytes:
    protected, headers, iv, ciphertext = layer
    if type(headers[cose.ALG]) is not int or headers[cose.ALG] != content.cose_alg:
        raise CoseFormatError("content algorithm does not match the suite")
    return content.decrypt(cek, iv, ciphertext, cose.enc_structure("Encrypt", protected))


@dataclass(frozen=True)
class RsaOaepKeyTransport:
    """RSAES-OAEP w/ SHA-256 (COSE -41, RFC 8230) wraps a random CEK; the SGX paper's RSA-4096."""

    content: ContentCipher
    name: str = "RSA-OAEP-256"
    message_tag: int = cose.TAG_ENCRYPT

    def seal(self, plaintext: bytes, public_key: HeadEndPublicKey, kid: bytes, rng: Rng) -> bytes:
        assert isinstance(public_key, rsa.RSAPublicKey)
        cek = rng(self.content.key_length)
        wrapped = public_key.encrypt(cek, _OAEP)
        recipient = [b"", {cose.ALG: RSA_OAEP_256, cose.KID: kid}, wrapped]
        return _encrypt_message(self.content, cek, plaintext, recipient, rng)

    def open(self, fields: Sequence[Any], private_key: HeadEndPrivateKey, kid: bytes) -> bytes:
        assert isinstance(private_key, rsa.RSAPrivateKey)
        layer = _content_fields(fields)
        protected, unprotected, wrapped = _recipient(fields)
        if protected != b"":
            raise CoseFormatError("key transport recipient has no protected header")
        cose.expect_map(unprotected, _TRANSPORT_LABELS, _TRANSPORT_LABELS)
        _check_kid(unprotected[cose.KID], kid)
        cek = private_key.decrypt(cose.expect_bytes(wrapped, private_key.key_size // 8), _OAEP)
        if len(cek) != self.content.key_length:
            raise CoseFormatError("wrapped key has the wrong length")
        return _decrypt_message(self.content, layer, cek)


def cose_key_public(key: ec.EllipticCurvePublicKey | x25519.X25519PublicKey) -> dict[int, Any]:
    """The COSE_Key map of an ephemeral P-256 or X25519 public key."""
    if isinstance(key, x25519.X25519PublicKey):
        return {cose.KTY: cose.KTY_OKP, cose.CRV: cose.CRV_X25519, cose.X: key.public_bytes_raw()}
    numbers = key.public_numbers()
    return {
        cose.KTY: cose.KTY_EC2,
        cose.CRV: cose.CRV_P256,
        cose.X: numbers.x.to_bytes(P256_COORD, "big"),
        cose.Y: numbers.y.to_bytes(P256_COORD, "big"),
    }


def cose_key_load(value: Any) -> ec.EllipticCurvePublicKey | x25519.X25519PublicKey:
    """Parse an ephemeral COSE_Key strictly; non-canonical X25519 encodings are refused."""
    if not isinstance(value, cose.MAP_TYPES) or not all(
        type(value.get(label)) is int for label in (cose.KTY, cose.CRV)
    ):
        raise CoseFormatError("COSE_Key needs integer kty and crv")
    if value[cose.KTY] == cose.KTY_OKP:
        key = cose.expect_map(value, _OKP_LABELS, _OKP_LABELS)
        raw = cose.expect_bytes(key[cose.X], X25519_LENGTH)
        # X25519 ignores the top bit and reduces mod p; refusing both keeps one encoding per key.
        if key[cose.CRV] != cose.CRV_X25519 or int.from_bytes(raw, "little") >= X25519_P:
            raise CoseFormatError("not a canonical X25519 key")
        return x25519.X25519PublicKey.from_public_bytes(raw)
    key = cose.expect_map(value, _EC2_LABELS, _EC2_LABELS)
    if key[cose.KTY] != cose.KTY_EC2 or key[cose.CRV] != cose.CRV_P256:
        raise CoseFormatError("not a P-256 key")
    point = (
        b"\x04"
        + cose.expect_bytes(key[cose.X], P256_COORD)
        + cose.expect_bytes(key[cose.Y], P256_COORD)
    )
    return ec.EllipticCurvePublicKey.from_encoded_point(_P256, point)


@dataclass(frozen=True)
class EcdhEsHkdf256:
    """ECDH-ES + HKDF-256 direct key agreement (COSE -25, RFC 9053 section 6.3) on one curve."""

    content: ContentCipher
    curve: str  # "P-256" or "X25519"
    name: str = "ECDH-ES+HKDF-256"
    message_tag: int = cose.TAG_ENCRYPT

    def _ephemeral(self, rng: Rng) -> ec.EllipticCurvePrivateKey | x25519.X25519PrivateKey:
        if self.curve == "X25519":
            return x25519.X25519PrivateKey.from_private_bytes(rng(X25519_LENGTH))
        order = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551
        scalar = int.from_bytes(rng(40), "big") % (order - 1) + 1
        return ec.derive_private_key(scalar, ec.SECP256R1())

    def _derive(self, shared: bytes, recipient_protected: bytes) -> bytes:
        info = cose.kdf_context(
            self.content.cose_alg, self.content.key_length * 8, recipient_protected
        )
        return HKDF(_SHA256, self.content.key_length, salt=None, info=info).derive(shared)

    def seal(self, plaintext: bytes, public_key: HeadEndPublicKey, kid: bytes, rng: Rng) -> bytes:
        ephemeral = self._ephemeral(rng)
        if isinstance(ephemeral, x25519.X25519PrivateKey):
            assert isinstance(public_key, x25519.X25519PublicKey)
            shared = ephemeral.exchange(public_key)
        else:
            assert isinstance(public_key, ec.EllipticCurvePublicKey)
            shared = ephemeral.exchange(ec.ECDH(), public_key)
        protected = cose.dumps({cose.ALG: ECDH_ES_HKDF_256})
        recipient = [
            protected,
            {cose.EPHEMERAL_KEY: cose_key_public(ephemeral.public_key()), cose.KID: kid},
            b"",
        ]
        return _encrypt_message(
            self.content, self._derive(shared, protected), plaintext, recipient, rng
        )

    def open(self, fields: Sequence[Any], private_key: HeadEndPrivateKey, kid: bytes) -> bytes:
        layer = _content_fields(fields)
        protected, unprotected, ciphertext = _recipient(fields)
        cose.expect_map(cose.envelope_header_map(protected), _ALG_ONLY, _ALG_ONLY)
        cose.expect_map(unprotected, _AGREEMENT_LABELS, _AGREEMENT_LABELS)
        _check_kid(unprotected[cose.KID], kid)
        if ciphertext != b"":
            raise CoseFormatError("direct key agreement carries no wrapped key")
        peer = cose_key_load(unprotected[cose.EPHEMERAL_KEY])
        # Branch on our own curve, not on key classes: ABC isinstance checks are slow here.
        try:
            if self.curve == "X25519":
                x_key = cast(x25519.X25519PrivateKey, private_key)
                shared = x_key.exchange(cast(x25519.X25519PublicKey, peer))
            else:
                ec_key = cast(ec.EllipticCurvePrivateKey, private_key)
                shared = ec_key.exchange(_ECDH, cast(ec.EllipticCurvePublicKey, peer))
        except TypeError as exc:
            raise CoseFormatError("ephemeral key is on the wrong curve") from exc
        return _decrypt_message(self.content, layer, self._derive(shared, protected))

    def open_direct(
        self, message: fixed.DirectEncrypt, private_key: HeadEndPrivateKey, kid: bytes
    ) -> bytes:
        """`open` for a message `fixed.direct_encrypt` has read: the same checks and primitives.

        The reader has already held the message to the one shape `seal` writes; what is left
        are the checks on values: the head-end kid, the content algorithm and the curve.
        """
        return self.finish_direct(message, self.agree_direct(message, private_key, kid))

    def agree_direct(
        self, message: fixed.DirectEncrypt, private_key: HeadEndPrivateKey, kid: bytes
    ) -> bytes:
        """The first half of `open_direct`: the checks, then the shared secret (ECDH / X25519)."""
        _check_kid(message.kid, kid)  # first, as in `open`: a stranger's packet is not ours
        if message.content_alg != self.content.cose_alg or message.curve != self.curve:
            raise CoseFormatError("content algorithm or curve does not match the suite")
        if self.curve == "X25519":
            peer = x25519.X25519PublicKey.from_public_bytes(message.point)
            return cast(x25519.X25519PrivateKey, private_key).exchange(peer)
        point = ec.EllipticCurvePublicKey.from_encoded_point(_P256, message.point)
        return cast(ec.EllipticCurvePrivateKey, private_key).exchange(_ECDH, point)

    def finish_direct(self, message: fixed.DirectEncrypt, shared: bytes) -> bytes:
        """The second half of `open_direct`: content key from `shared`, then the AEAD."""
        cek = self._derive(shared, message.recipient_protected)
        aad = cose.enc_structure("Encrypt", message.protected)
        return self.content.factory(cek).decrypt(message.iv, message.ciphertext, aad)


_HPKE_ENCRYPT = _rust_openssl.hpke._encrypt_with_aad
_HPKE_DECRYPT = _rust_openssl.hpke._decrypt_with_aad


@dataclass(frozen=True)
class HpkeIntegrated:
    """HPKE integrated encryption in COSE_Encrypt0 (draft-ietf-cose-hpke-27 section 3.2).

    HPKE-9 of draft-ietf-cose-hpke-pq-pqt-01: KEM MLKEM768-X25519 (X-Wing, 0x647a), KDF
    SHAKE256, AEAD AES-256-GCM; COSE alg value 56 is that draft's assumed, not yet
    IANA-assigned, value. HPKE info is empty and aad is the Enc_structure ("Encrypt0").
    The single-shot API with aad is cryptography's private `_encrypt_with_aad`, checked
    against the RFC 9180 vectors in tests.
    """

    cose_alg: int = 56
    name: str = "HPKE-9"
    message_tag: int = cose.TAG_ENCRYPT0

    @property
    def hpke(self) -> Suite:
        """The HPKE cipher suite (KEM, KDF, AEAD)."""
        return Suite(KEM.MLKEM768_X25519, KDF.SHAKE256, AEAD.AES_256_GCM)

    def seal(self, plaintext: bytes, public_key: HeadEndPublicKey, kid: bytes, rng: Rng) -> bytes:
        assert isinstance(public_key, MLKEM768X25519PublicKey)
        protected = cose.dumps({cose.ALG: self.cose_alg})
        aad = cose.enc_structure("Encrypt0", protected)
        sealed = _HPKE_ENCRYPT(self.hpke, plaintext, public_key, info=b"", aad=aad)
        enc_length = KEM.MLKEM768_X25519.enc_length()
        message = [protected, {cose.KID: kid, HEADER_EK: sealed[:enc_length]}, sealed[enc_length:]]
        return cbor2.dumps(cbor2.CBORTag(cose.TAG_ENCRYPT0, message))

    def open(self, fields: Sequence[Any], private_key: HeadEndPrivateKey, kid: bytes) -> bytes:
        assert isinstance(private_key, MLKEM768X25519PrivateKey)
        if len(fields) != 3:
            raise CoseFormatError("COSE_Encrypt0 has three fields")
        protected, unprotected, ciphertext = fields
        cose.expect_map(cose.envelope_header_map(protected), _ALG_ONLY, _ALG_ONLY)
        cose.expect_map(unprotected, _HPKE_LABELS, _HPKE_LABELS)
        _check_kid(unprotected[cose.KID], kid)
        enc = cose.expect_bytes(unprotected[HEADER_EK], KEM.MLKEM768_X25519.enc_length())
        sealed = enc + cose.expect_bytes(ciphertext)
        aad = cose.enc_structure("Encrypt0", protected)
        plaintext: bytes = _HPKE_DECRYPT(self.hpke, sealed, private_key, info=b"", aad=aad)
        return plaintext
