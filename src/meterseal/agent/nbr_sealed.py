"""The asynchronous, encrypted NBR 14522 of the SecureCloud paper, sealed with meterseal's COSE.

The paper's deployment changed NBR 14522 "to run in an asynchronous communication system"
and encrypted "all ABNT request and response messages" between meters holding a key pair
and the public key of the collector. Here a message carries unchanged NBR 14522 blocks (the
command, or every response block of it, CRCs included) with a request id, which pairs a
response with its request whatever order they travel in, and the sender's counter, which
only rises (across connections too: `nbr_sealed_link`), so a replayed message is refused.
It is sealed as meterseal seals readings: signed by the sender (COSE_Sign1 with the suite's
signature scheme, kid = the sender's name), then encrypted to the recipient (the suite's key
establishment, kid = the recipient's name).
No cipher of its own: `crypto.cose`, `crypto.signing` and `crypto.envelope` do the work.

On the wire each sealed message is preceded by its length (4 octets, big-endian).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import cbor2
from cryptography.exceptions import InvalidSignature, InvalidTag
from cryptography.hazmat.primitives.asymmetric import ec

from meterseal.crypto import cose
from meterseal.crypto.cose import CoseFormatError
from meterseal.crypto.suites import P256, CipherSuite
from meterseal.errors import SealedMessageRefused

MAX_MESSAGE = 64 * 1024  # a month of load profile is ~55 response blocks of 258 octets
LENGTH = 4


@dataclass(frozen=True)
class Party:
    """One end of a sealed link, as it knows itself: name, signing and decryption keys."""

    name: str  # the reader's id, or the meter's serial number
    signing: ec.EllipticCurvePrivateKey  # ES256
    decryption: ec.EllipticCurvePrivateKey  # ECDH-ES on P-256

    def peer(self) -> Peer:
        """What the other end needs to know of this one."""
        return Peer(self.name, self.signing.public_key(), self.decryption.public_key())


@dataclass(frozen=True)
class Peer:
    """The other end of a sealed link: its name, verifying key and encryption key."""

    name: str
    verifying: ec.EllipticCurvePublicKey
    encryption: ec.EllipticCurvePublicKey


def new_party(name: str, suite: CipherSuite = P256) -> Party:
    """A party with fresh keys for `suite` (P-256: ES256 signatures, ECDH-ES to P-256)."""
    if suite is not P256:
        raise ValueError("sealed NBR 14522 links use the p256 suite")
    return Party(
        name, ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    )


@dataclass(frozen=True, slots=True)
class SealedMessage:
    """NBR 14522 blocks with the request they belong to and the sender's counter."""

    request: int
    counter: int
    frames: tuple[bytes, ...]


@dataclass
class Sealer:
    """Seals this party's messages to one peer and opens the peer's, refusing replays."""

    me: Party
    peer: Peer
    rng: Callable[[int], bytes]
    suite: CipherSuite = P256
    sent: int = 0  # the counter of the last message sealed
    heard: int = 0  # the highest counter opened from the peer

    def seal(self, request: int, frames: tuple[bytes, ...]) -> bytes:
        """The sealed message (length prefix included) carrying `frames` for `request`."""
        self.sent += 1
        payload = cbor2.dumps([request, self.sent, list(frames)])
        protected = cose.dumps(
            {cose.ALG: self.suite.signature.cose_alg, cose.KID: self.me.name.encode()}
        )
        signature = self.suite.signature.sign(
            self.me.signing, cose.sig_structure1(protected, payload)
        )
        signed = cose.Sign1(protected, {}, {}, payload, signature).encode()
        sealed = self.suite.encryption.seal(
            signed, self.peer.encryption, self.peer.name.encode(), self.rng
        )
        return len(sealed).to_bytes(LENGTH, "big") + sealed

    def open(self, sealed: bytes) -> SealedMessage:
        """The peer's message in `sealed` (no length prefix); SealedMessageRefused otherwise."""
        try:
            outer = cose.loads_strict(sealed)
            if not isinstance(outer, cbor2.CBORTag) or outer.tag != cose.TAG_ENCRYPT:
                raise CoseFormatError("not a COSE_Encrypt")
            signed = self.suite.encryption.open(
                outer.value, self.me.decryption, self.me.name.encode()
            )
            sign1 = cose.parse_sign1(signed)
            if sign1.headers.get(cose.KID) != self.peer.name.encode():
                raise SealedMessageRefused(f"not signed by {self.peer.name}")
            self.suite.signature.verify(self.peer.verifying, sign1.signature, sign1.to_be_signed())
            message = _message(cose.loads_strict(sign1.payload))
        except (CoseFormatError, InvalidTag, InvalidSignature, ValueError, TypeError) as exc:
            raise SealedMessageRefused(
                f"a sealed message from {self.peer.name} did not open"
            ) from exc
        if message.counter <= self.heard:
            raise SealedMessageRefused(
                f"{self.peer.name} sent counter {message.counter} after {self.heard}: a replay"
            )
        self.heard = message.counter
        return message


def _message(value: Any) -> SealedMessage:
    if (
        not isinstance(value, list)
        or len(value) != 3
        or type(value[0]) is not int
        or type(value[1]) is not int
        or not isinstance(value[2], list)
        or not all(isinstance(f, bytes) for f in value[2])
    ):
        raise CoseFormatError("a sealed NBR 14522 message is [request, counter, [frames]]")
    return SealedMessage(value[0], value[1], tuple(value[2]))


def message_length(prefix: bytes) -> int:
    """The length a 4-octet prefix announces; SealedMessageRefused if it is too long."""
    length = int.from_bytes(prefix, "big")
    if not 0 < length <= MAX_MESSAGE:
        raise SealedMessageRefused(f"a sealed message of {length} octets")
    return length
