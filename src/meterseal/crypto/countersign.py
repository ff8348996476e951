"""COSE countersignatures (RFC 9338) on a COSE_Sign1: how the metrology authority signs a bill.

A version-2 countersignature (header label 11) covers the body's protected header, the
payload and the body's own signature, so the authority vouches for this exact signed bill,
not merely for its content. It sits in the unprotected header, which the first signature
does not cover: countersigning never disturbs the billing service's signature.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

import cbor2
from cryptography.exceptions import InvalidSignature

from meterseal.crypto import cose
from meterseal.crypto.cose import CoseFormatError
from meterseal.crypto.signing import ES256, SigningKey, VerifyingKey

COUNTERSIGNATURE_V2 = 11  # RFC 9338 section 3.1
COUNTERSIGNATURE_LEGACY = 7  # RFC 8152, verify-only in RFC 9338
_SCHEME = ES256()


@dataclass(frozen=True, slots=True)
class Countersignature:
    """One COSE_Countersignature: [protected, unprotected, signature]."""

    protected: bytes
    unprotected: dict[int, Any]
    signature: bytes

    @property
    def kid(self) -> bytes | None:
        """The countersigner's key id, if it named one."""
        kid = self.unprotected.get(cose.KID)
        return kid if isinstance(kid, bytes) else None


def countersign_structure(
    context: str,
    body_protected: bytes,
    sign_protected: bytes,
    payload: bytes,
    other_fields: Sequence[bytes] = (),
    external_aad: bytes = b"",
) -> bytes:
    """The Countersign_structure (RFC 9338 section 3.3) that a countersigner signs."""
    items: list[Any] = [context, body_protected, sign_protected, external_aad, payload]
    if other_fields:
        items.append(list(other_fields))
    return cbor2.dumps(items)


def _v2_to_be_signed(body: cose.Sign1, protected: bytes) -> bytes:
    return countersign_structure(
        "CounterSignatureV2", body.protected, protected, body.payload, (body.signature,)
    )


def countersign(signed: bytes, key: SigningKey, kid: bytes) -> bytes:
    """`signed` (a COSE_Sign1) with one more ES256 version-2 countersignature by `key`."""
    body = cose.parse_sign1(signed)
    protected = cose.dumps({cose.ALG: _SCHEME.cose_alg})
    signature = _SCHEME.sign(key, _v2_to_be_signed(body, protected))
    mine = [protected, {cose.KID: kid}, signature]
    # One countersignature stands alone; several form an array (RFC 9338 section 3.1).
    existing = [[c.protected, c.unprotected, c.signature] for c in countersignatures(body)]
    unprotected = dict(body.unprotected)
    unprotected[COUNTERSIGNATURE_V2] = [*existing, mine] if existing else mine
    return replace(body, unprotected=unprotected).encode()


def countersignatures(body: cose.Sign1) -> list[Countersignature]:
    """The version-2 countersignatures on `body` (one or an array of them)."""
    value = body.unprotected.get(COUNTERSIGNATURE_V2)
    if value is None:
        return []
    if not isinstance(value, list | tuple) or not value:
        raise CoseFormatError("countersignature must be an array")
    many = value if isinstance(value[0], list | tuple) else [value]
    return [_parse(item) for item in many]


def _parse(item: Any) -> Countersignature:
    if not isinstance(item, list | tuple) or len(item) != 3:
        raise CoseFormatError("a COSE_Countersignature has three fields")
    protected, unprotected, signature = item
    if not isinstance(unprotected, cose.MAP_TYPES):
        raise CoseFormatError("countersignature unprotected header must be a map")
    cose.header_map(protected)
    return Countersignature(protected, dict(unprotected), cose.expect_bytes(signature))


def verify_countersignature(signed: bytes, public_key: VerifyingKey, kid: bytes) -> None:
    """Raise InvalidSignature unless an ES256 countersignature by `kid` covers `signed`."""
    body = cose.parse_sign1(signed)
    for item in countersignatures(body):
        if item.kid != kid:
            continue
        if cose.header_map(item.protected).get(cose.ALG) != _SCHEME.cose_alg:
            raise InvalidSignature("countersignature algorithm is not ES256")
        _SCHEME.verify(public_key, item.signature, _v2_to_be_signed(body, item.protected))
        return
    raise InvalidSignature("no countersignature by this key")
