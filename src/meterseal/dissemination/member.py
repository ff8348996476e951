"""A member's side: ask for admission, take key handouts, open and seal publications."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from cryptography.hazmat.primitives.asymmetric import ed25519, x25519
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from meterseal.dissemination.admission import AdmissionRequest, check_member_name
from meterseal.dissemination.errors import CannotDecrypt
from meterseal.dissemination.groupkeys import KeyStore
from meterseal.dissemination.handout import Entry, HandoutReceiver
from meterseal.dissemination.levels import PrivacyLevel, Role
from meterseal.dissemination.publication import (
    VERSION,
    AttrValue,
    Header,
    Payload,
    Value,
    decode_header,
    decode_payload,
    split_publication,
    validate_fields,
)
from meterseal.dissemination.subscription import Subscription
from meterseal.dissemination.wire import (
    EMPTY_MAP,
    byte_string,
    encode_header,
    encode_map,
    header_prefix,
    text,
    uint,
)
from meterseal.trust.attestation import Attester
from meterseal.trust.measurement import Measurement

Rng = Callable[[int], bytes]
_LEVEL = {level: int(level) for level in PrivacyLevel}
_NO_ATTRS: dict[str, AttrValue] = {}  # shared and never mutated: encoded as an empty map


@dataclass(frozen=True, slots=True)
class Delivery:
    """An opened publication: its header and its values."""

    header: Header
    values: dict[str, Value]


class MemberClient:
    """One member: an ephemeral X25519 key (the one its quote binds) and the keys it holds."""

    def __init__(
        self,
        name: str,
        role: Role,
        publisher: str,
        publisher_key: ed25519.Ed25519PublicKey,
        *,
        private_key: x25519.X25519PrivateKey | None = None,
    ) -> None:
        self.name = check_member_name(name)
        self.role = role
        self._private = private_key or x25519.X25519PrivateKey.generate()
        self.keys = KeyStore()
        self.receiver = HandoutReceiver(name, self._private, publisher, publisher_key, self.keys)

    @property
    def public_key(self) -> bytes:
        """The raw X25519 public key handouts are sealed to."""
        return self._private.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)

    def request(
        self,
        nonce: bytes,
        subscriptions: tuple[tuple[PrivacyLevel, Subscription], ...] = (),
        *,
        attester: Attester | None = None,
        measurement: Measurement | None = None,
    ) -> AdmissionRequest:
        """The admission request answering `nonce`, with a quote if an attester is given."""
        quote = b""
        if attester is not None:
            if measurement is None:
                raise ValueError("an attested request needs the member's measurement")
            quote = attester.quote(measurement, nonce, self.public_key)
        return AdmissionRequest(self.name, self.role, self.public_key, nonce, quote, subscriptions)

    def accept(self, handout: bytes) -> list[Entry]:
        """Take a handout (HandoutRejected if it is not for us, forged or replayed)."""
        return self.receiver.accept(handout)

    @property
    def link_key(self) -> bytes | None:
        """The link key the last admission handed out (framed transports need it)."""
        return self.receiver.link_key

    def open(self, item: object) -> Delivery:
        """Open one publication; MalformedPublication or CannotDecrypt if it cannot be."""
        header, sealed = split_publication(item)
        fields = decode_header(header)
        values = decode_payload(self.keys.open(fields, header, sealed))
        return Delivery(Header.from_fields(fields), values)

    def open_fields(self, item: list[bytes]) -> tuple[list[Any], dict[str, Value]]:
        """The fast path for trusted batches: (header fields, values) of one publication."""
        header, sealed = item
        fields = decode_header(header, strict=False)
        return fields, decode_payload(self.keys.open(fields, header, sealed))

    def can_open(self, item: object) -> bool:
        """Whether this member can read `item`'s payload (a leakage check, never raises)."""
        try:
            self.open(item)
        except (CannotDecrypt, ValueError):
            return False
        return True


class Publisher:
    """Seals publications with the keys its member holds; numbers them and stamps nonces.

    The nonce is a 4-byte salt drawn once per publisher instance followed by the 8-byte
    sequence number, so one key never sees the same nonce twice from this instance, and
    two instances collide only if their salts do.
    """

    def __init__(self, name: str, keys: KeyStore, *, rng: Rng, checked: bool = True) -> None:
        self.name = check_member_name(name)
        # checked: validate every header before sealing (a bad one raises here, not at the
        # router); a hot producer whose inputs are typed may skip it, the router still checks.
        self.checked = checked
        self.keys = keys
        self.seq = 0
        self._salt = rng(4)
        self._prefixes: dict[tuple[PrivacyLevel, str], bytes] = {}
        self._tails: dict[tuple[int, int, int], bytes] = {}

    def seal(
        self,
        level: PrivacyLevel,
        kind: str,
        values: Payload,
        *,
        at: int,
        region: str = "",
        customer: bytes = b"",
        start: int = 0,
        interval: int = 0,
        attrs: Mapping[str, AttrValue] | None = None,
    ) -> list[bytes]:
        """The publication `[header, sealed]` of `values` at `level`; `at` in microseconds."""
        keys = self.keys
        ident = keys.sealing_id(level, customer)
        seq = self.seq = self.seq + 1
        if self.checked or attrs:
            fields = [
                VERSION, _LEVEL[level], kind, self.name, seq, at, region, customer, start,
                interval, ident[1], ident[3], dict(attrs) if attrs else _NO_ATTRS,
            ]  # fmt: skip
            validate_fields(fields)
            header = encode_header(fields)
        else:  # wire.encode_header, with the constant start and end kept
            prefix = self._prefixes.get((level, kind))
            if prefix is None:
                prefix = header_prefix(_LEVEL[level], kind, self.name)
                self._prefixes[(level, kind)] = prefix
            tail = self._tails.get((interval, ident[1], ident[3]))
            if tail is None:
                tail = uint(interval) + uint(ident[1]) + uint(ident[3]) + EMPTY_MAP
                if len(self._tails) > 64:
                    self._tails.clear()
                self._tails[(interval, ident[1], ident[3])] = tail
            header = b"".join(
                (prefix, uint(seq), uint(at), text(region), byte_string(customer), uint(start),
                 tail)
            )  # fmt: skip
        nonce = self._salt + seq.to_bytes(8, "big")
        return [header, nonce + keys.aead(ident).encrypt(nonce, encode_map(values), header)]
