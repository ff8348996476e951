"""Signed tree heads: a log at one size (leaf count, Merkle root, time), signed by its owner.

Every log publishes `TreeHead`s. A root does not commit to its tree's size, so a head signs
both. Logs differ only in the head's encoding, which their verifiers already hold: the bill
log says `issued_at` in seconds, the integrity audit log `issued_at_ms` and the kind of key
that signed (`signer`). A `HeadFormat` is one such encoding, under its own content type.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, NamedTuple

from meterseal.crypto import cose
from meterseal.crypto.cose import CoseFormatError
from meterseal.crypto.signing import SigningKey, VerifyingKey
from meterseal.transparency.documents import DocumentType
from meterseal.transparency.merkle import HASH_SIZE


@dataclass(frozen=True, slots=True)
class TreeHead:
    """A log at one size: its leaf count, its Merkle root, when (and maybe by what) signed."""

    size: int
    root: bytes
    issued_at: int  # in the unit of the log's HeadFormat
    signer: str | None = None  # the kind of key, for logs whose heads name it


class SignedTreeHead(NamedTuple):
    """A tree head and the signed bytes (COSE_Sign1) it was read from."""

    head: TreeHead
    signed: bytes


@dataclass(frozen=True, slots=True)
class HeadFormat:
    """One log's encoding of its heads: document type, time field, whether it names the signer."""

    document: DocumentType
    time_field: str  # "issued_at" (seconds) or "issued_at_ms"
    names_signer: bool = False

    def payload(self, head: TreeHead) -> bytes:
        """Canonical CBOR of `head`: what the log's key signs."""
        item: dict[str, Any] = {
            "size": head.size,
            "root": head.root,
            self.time_field: head.issued_at,
        }
        if self.names_signer != (head.signer is not None):  # a caller's bug, not input
            raise ValueError(f"this log's heads {'name' if self.names_signer else 'omit'} a signer")
        if head.signer is not None:
            item["signer"] = head.signer
        return cose.dumps(item)

    def decode(self, payload: bytes) -> TreeHead:
        """The head in a signed payload; the document's format error if it is not one."""
        fields = {"size", "root", self.time_field} | ({"signer"} if self.names_signer else set())
        try:
            item = cose.loads_strict(payload)
            if not isinstance(item, cose.MAP_TYPES) or set(item) != fields:
                raise CoseFormatError(f"a tree head has {', '.join(sorted(fields))}")
            size, issued, signer = item["size"], item[self.time_field], item.get("signer")
            if type(size) is not int or type(issued) is not int or size < 0:
                raise CoseFormatError(f"size (non-negative) and {self.time_field} are integers")
            if self.names_signer and not isinstance(signer, str):
                raise CoseFormatError("the signer is text")
            return TreeHead(size, cose.expect_bytes(item["root"], HASH_SIZE), issued, signer)
        except CoseFormatError as exc:
            raise self.document.format_error(f"not a signed {self.document.name}: {exc}") from None

    def sign(self, head: TreeHead, key: SigningKey, kid: bytes) -> bytes:
        """`head` as a signed document of this log."""
        return self.document.sign(self.payload(head), key, kid)

    def verified(self, signed: bytes, key: VerifyingKey) -> TreeHead:
        """The head in `signed` if `key` signed it; the document's errors if not."""
        body = self.document.parse(signed)
        head = self.decode(body.payload)
        self.document.verify(body, key)
        return head
