"""The four named cipher suites, each a signature scheme plus a key-establishment scheme."""

from __future__ import annotations

from dataclasses import dataclass

from meterseal.crypto import envelope, signing
from meterseal.crypto.envelope import KeyEstablishment
from meterseal.crypto.signing import SignatureScheme


@dataclass(frozen=True)
class CipherSuite:
    """A named suite: how meters sign and how packets reach the head-end."""

    name: str
    signature: SignatureScheme
    encryption: KeyEstablishment
    content_alg: int
    recipient_alg: int
    summary: str

    @property
    def identifiers(self) -> tuple[int, int, int]:
        """(signature alg, content or HPKE alg, recipient alg) as they appear in COSE headers."""
        return (self.signature.cose_alg, self.content_alg, self.recipient_alg)


PAPER = CipherSuite(
    name="paper",
    signature=signing.RS256(key_size=1024),
    encryption=envelope.RsaOaepKeyTransport(content=envelope.A128GCM),
    content_alg=envelope.A128GCM.cose_alg,
    recipient_alg=envelope.RSA_OAEP_256,
    summary="RS256 (RSA-1024) + RSA-OAEP-256 (RSA-4096) + A128GCM: the SGX billing paper's sizes",
)
P256 = CipherSuite(
    name="p256",
    signature=signing.ES256(),
    encryption=envelope.EcdhEsHkdf256(content=envelope.A128GCM, curve="P-256"),
    content_alg=envelope.A128GCM.cose_alg,
    recipient_alg=envelope.ECDH_ES_HKDF_256,
    summary="ES256 + ECDH-ES+HKDF-256 (P-256) + A128GCM: DLMS/COSEM suite 1 shape (default)",
)
ED25519 = CipherSuite(
    name="ed25519",
    signature=signing.EdDSA(),
    encryption=envelope.EcdhEsHkdf256(content=envelope.CHACHA20_POLY1305, curve="X25519"),
    content_alg=envelope.CHACHA20_POLY1305.cose_alg,
    recipient_alg=envelope.ECDH_ES_HKDF_256,
    summary="EdDSA (Ed25519) + ECDH-ES+HKDF-256 (X25519) + ChaCha20/Poly1305",
)
PQ = CipherSuite(
    name="pq",
    signature=signing.MLDSA44(),
    encryption=envelope.HpkeIntegrated(),
    content_alg=envelope.HpkeIntegrated().cose_alg,
    recipient_alg=0,
    summary="ML-DSA-44 + HPKE-9 (ML-KEM-768+X25519, SHAKE256, AES-256-GCM), post-quantum hybrid",
)

SUITES: dict[str, CipherSuite] = {s.name: s for s in (PAPER, P256, ED25519, PQ)}
DEFAULT_SUITE = P256

_BY_HEADERS: dict[tuple[int, int, int], CipherSuite] = {
    (s.encryption.message_tag, s.content_alg, s.recipient_alg): s for s in SUITES.values()
}


def suite_named(name: str) -> CipherSuite:
    """Look a suite up by name; KeyError lists the known names."""
    try:
        return SUITES[name]
    except KeyError:
        raise KeyError(f"unknown suite {name!r}; known: {', '.join(SUITES)}") from None


def suite_for_headers(tag: int, content_alg: int, recipient_alg: int) -> CipherSuite | None:
    """The suite whose outer COSE message has this tag and these algorithm ids, if any."""
    return _BY_HEADERS.get((tag, content_alg, recipient_alg))
