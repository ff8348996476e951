"""Typed signed documents: a COSE_Sign1 whose protected header names its content type.

Bills, bill-log tree heads and audit-log heads are such documents (ES256), and so are a
meter's integrity reports (its suite's scheme). The content type sits in the protected header,
so a signature over one kind of document never passes for another. A `DocumentType` names the
kind and the errors its readers raise: each log keeps its own.
"""

from __future__ import annotations

from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature

from meterseal.crypto import cose
from meterseal.crypto.cose import CoseFormatError
from meterseal.crypto.signing import ES256, SignatureScheme, SigningKey, VerifyingKey
from meterseal.errors import MetersealError

CONTENT_TYPE_LABEL = 3  # COSE header parameter "content type" (RFC 9052 section 3.1)
_SCHEME = ES256()


class DocumentFormatError(MetersealError):
    """Bytes that should be a typed signed document are not one (or of another type)."""


class DocumentSignatureError(MetersealError):
    """A typed document's signature does not verify with the key given."""


def sign_typed(
    payload: bytes,
    content_type: str,
    key: SigningKey,
    kid: bytes,
    scheme: SignatureScheme = _SCHEME,
) -> bytes:
    """A COSE_Sign1 over `payload` (ES256 unless `scheme` says), content type and kid protected."""
    protected = cose.dumps(
        {cose.ALG: scheme.cose_alg, CONTENT_TYPE_LABEL: content_type, cose.KID: kid}
    )
    signature = scheme.sign(key, cose.sig_structure1(protected, payload))
    return cose.Sign1(protected, {}, {}, payload, signature).encode()


def is_es256(body: cose.Sign1) -> bool:
    """Whether `body`'s protected header says ES256, the only algorithm of typed documents."""
    return body.headers.get(cose.ALG) == _SCHEME.cose_alg


def signature_holds(body: cose.Sign1, key: VerifyingKey) -> bool:
    """Whether `body` carries a valid ES256 signature by `key`."""
    if not is_es256(body):
        return False
    try:
        _SCHEME.verify(key, body.signature, body.to_be_signed())
    except InvalidSignature:
        return False
    return True


@dataclass(frozen=True, slots=True)
class DocumentType:
    """One kind of typed document: its content type, its name in messages and its errors."""

    content_type: str
    name: str
    format_error: type[MetersealError] = DocumentFormatError
    signature_error: type[MetersealError] = DocumentSignatureError

    def sign(self, payload: bytes, key: SigningKey, kid: bytes) -> bytes:
        """`payload` signed as a document of this type."""
        return sign_typed(payload, self.content_type, key, kid)

    def parse(self, signed: bytes) -> cose.Sign1:
        """The COSE_Sign1 in `signed`, unverified; `format_error` unless it is of this type."""
        try:
            body = cose.parse_sign1(signed)
        except CoseFormatError as exc:
            raise self.format_error(f"not a signed {self.name}: {exc}") from None
        if body.headers.get(CONTENT_TYPE_LABEL) != self.content_type:
            raise self.format_error(f"the signed object is not a {self.name}")
        return body

    def verify(self, body: cose.Sign1, key: VerifyingKey) -> None:
        """Raise `signature_error` unless `body` carries a valid ES256 signature by `key`."""
        if not is_es256(body):
            raise self.signature_error(f"the {self.name} is not signed with ES256")
        if not signature_holds(body, key):
            raise self.signature_error(f"the {self.name}'s signature does not verify")
