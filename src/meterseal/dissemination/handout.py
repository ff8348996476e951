"""Key handouts: group keys sealed to a member's attested key, signed by the publisher.

A handout is the CBOR array `[1, meta, sealed, signature]`. `meta` (canonical CBOR) names
the publisher, the member, a serial that grows with every handout to that member, and when
it was issued. `sealed` is HPKE (X25519, HKDF-SHA256, AES-128-GCM, RFC 9180 base mode) of
the key entries to the member's ephemeral public key, the one its attestation bound, with
`meta` in the HPKE info. The publisher's Ed25519 key signs meta and sealed together, since
HPKE base mode does not say who sealed. A member refuses a handout that is not for it, not
signed by its publisher, or whose serial is not above the last one it took (a replay).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

import cbor2
from cryptography.exceptions import InvalidSignature, InvalidTag
from cryptography.hazmat.primitives.asymmetric import ed25519, x25519
from cryptography.hazmat.primitives.hpke import AEAD, KDF, KEM, Suite

from meterseal.dissemination.errors import HandoutRejected, Reason
from meterseal.dissemination.groupkeys import KEY_LENGTH, KeyStore
from meterseal.dissemination.levels import PrivacyLevel

SUITE: Final = Suite(KEM.X25519, KDF.HKDF_SHA256, AEAD.AES_128_GCM)
_INFO: Final = b"meterseal key handout v1\x00"
_SIGNED: Final = b"meterseal key handout signature v1\x00"
MAX_HANDOUT: Final = 4 * 1024 * 1024

MASTER, CUSTOMER, CEPOCH, LINK = "master", "customer", "cepoch", "link"


@dataclass(frozen=True)
class Entry:
    """One thing handed out: a level master, a customer key, a customer epoch or a link key."""

    kind: str
    level: int = 0
    epoch: int = 0
    customer: bytes = b""
    cepoch: int = 0
    key: bytes = b""

    def to_cbor(self) -> list[Any]:
        """[kind, level, epoch, customer, cepoch, key]."""
        return [self.kind, self.level, self.epoch, self.customer, self.cepoch, self.key]


@dataclass(frozen=True)
class Meta:
    """Who handed out to whom, in which order, and when."""

    publisher: str
    member: str
    serial: int
    issued_at: int

    def encode(self) -> bytes:
        """Canonical CBOR of the meta map."""
        value = {
            "publisher": self.publisher,
            "member": self.member,
            "serial": self.serial,
            "issued_at": self.issued_at,
        }
        encoded: bytes = cbor2.dumps(value, canonical=True)
        return encoded


def seal_handout(
    meta: Meta,
    entries: list[Entry],
    member_key: x25519.X25519PublicKey,
    signing_key: ed25519.Ed25519PrivateKey,
) -> bytes:
    """The handout carrying `entries` to the member (HPKE-sealed, then signed)."""
    encoded_meta = meta.encode()
    plaintext = cbor2.dumps([e.to_cbor() for e in entries])
    sealed = SUITE.encrypt(plaintext, member_key, _INFO + encoded_meta)
    signature = signing_key.sign(_SIGNED + encoded_meta + sealed)
    handout: bytes = cbor2.dumps([1, encoded_meta, sealed, signature])
    return handout


def _reject(reason: Reason, detail: str) -> HandoutRejected:
    return HandoutRejected(reason, detail)


def _parse(handout: object) -> tuple[bytes, bytes, bytes, dict[str, Any]]:
    if type(handout) is not bytes or len(handout) > MAX_HANDOUT:
        raise _reject(Reason.MALFORMED_HANDOUT, "a handout is bytes of <= 4 MiB")
    try:
        outer = cbor2.loads(handout)
        meta_bytes, sealed, signature = outer[1:]
        meta = cbor2.loads(meta_bytes)
        if outer[0] != 1 or not all(type(x) is bytes for x in (meta_bytes, sealed, signature)):
            raise ValueError("version or types")
        if type(meta) is not dict or set(meta) != {"publisher", "member", "serial", "issued_at"}:
            raise ValueError("meta fields")
        if type(meta["serial"]) is not int or type(meta["member"]) is not str:
            raise ValueError("meta types")
    except (cbor2.CBORDecodeError, ValueError, TypeError, IndexError, KeyError) as exc:
        raise _reject(Reason.MALFORMED_HANDOUT, str(exc)) from exc
    return meta_bytes, sealed, signature, meta


def _entry(item: object) -> Entry:
    if type(item) is not list or len(item) != 6:
        raise ValueError("an entry is an array of 6")
    kind, level, epoch, customer, cepoch, key = item
    if kind not in (MASTER, CUSTOMER, CEPOCH, LINK) or type(customer) is not bytes:
        raise ValueError(f"unknown entry {kind!r}")
    if not all(type(x) is int and x >= 0 for x in (level, epoch, cepoch)):
        raise ValueError("entry numbers must be unsigned integers")
    if type(key) is not bytes or len(key) != (0 if kind == CEPOCH else KEY_LENGTH):
        raise ValueError("entry key has the wrong length")
    if kind in (MASTER, CUSTOMER) and level not in PrivacyLevel._value2member_map_:
        raise ValueError("entry names an unknown level")
    return Entry(kind, level, epoch, customer, cepoch, key)


class HandoutReceiver:
    """A member's side: checks handouts and installs their keys into its KeyStore."""

    def __init__(
        self,
        member: str,
        private_key: x25519.X25519PrivateKey,
        publisher: str,
        publisher_key: ed25519.Ed25519PublicKey,
        keys: KeyStore,
    ) -> None:
        self.member = member
        self._private = private_key
        self.publisher = publisher
        self._publisher_key = publisher_key
        self.keys = keys
        self.last_serial = 0
        self.link_key: bytes | None = None

    def accept(self, handout: bytes) -> list[Entry]:
        """Install the handout's keys; HandoutRejected with a reason if it is not acceptable."""
        meta_bytes, sealed, signature, meta = _parse(handout)
        try:
            self._publisher_key.verify(signature, _SIGNED + meta_bytes + sealed)
        except InvalidSignature as exc:
            raise _reject(Reason.MALFORMED_HANDOUT, "not signed by the publisher") from exc
        if meta["member"] != self.member or meta["publisher"] != self.publisher:
            raise _reject(Reason.HANDOUT_NOT_FOR_US, f"handout for {meta['member']!r}")
        if meta["serial"] <= self.last_serial:
            raise _reject(Reason.REPLAYED_HANDOUT, f"serial {meta['serial']} already seen")
        try:
            plaintext = SUITE.decrypt(sealed, self._private, _INFO + meta_bytes)
            entries = [_entry(item) for item in cbor2.loads(plaintext)]
        except (InvalidTag, cbor2.CBORDecodeError, ValueError, TypeError) as exc:
            raise _reject(Reason.MALFORMED_HANDOUT, "sealed entries do not open") from exc
        self.last_serial = meta["serial"]
        for entry in entries:
            self._install(entry)
        return entries

    def _install(self, entry: Entry) -> None:
        if entry.kind == MASTER:
            self.keys.install_master(entry.level, entry.epoch, entry.key)
        elif entry.kind == CUSTOMER:
            self.keys.install_customer(entry.epoch, entry.customer, entry.cepoch, entry.key)
        elif entry.kind == CEPOCH:
            self.keys.install_cepoch(entry.customer, entry.cepoch)
        else:
            self.link_key = entry.key
