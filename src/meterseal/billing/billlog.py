"""The append-only bill log: an RFC 9162 Merkle log of signed bills and its signed tree heads.

Leaf i is the i-th signed bill's bytes. After each append the billing service signs the new
tree head (size, root, time). Anyone holding two heads can demand a consistency proof and
check that the log only grew: no bill was removed or rewritten between them.
"""

from __future__ import annotations

from dataclasses import dataclass

from meterseal.billing.bill import CONTENT_TYPE_LABEL, BillFormatError, sign_typed, verify_typed
from meterseal.billing.merkle import leaf_hash
from meterseal.crypto import cose
from meterseal.crypto.cose import CoseFormatError
from meterseal.crypto.signing import SigningKey, VerifyingKey

HEAD_CONTENT_TYPE = "application/meterseal-bill-log-head+cbor"


@dataclass(frozen=True, slots=True)
class TreeHead:
    """The bill log at one size: how many bills, their Merkle root, when it was signed."""

    tree_size: int
    root: bytes
    issued_at: int

    def to_cbor(self) -> bytes:
        """Canonical CBOR payload of a signed tree head."""
        return cose.dumps({"size": self.tree_size, "root": self.root, "issued_at": self.issued_at})


def bill_leaf(signed_bill: bytes) -> bytes:
    """The log's leaf hash of a signed bill."""
    return leaf_hash(signed_bill)


def sign_tree_head(head: TreeHead, key: SigningKey, kid: bytes) -> bytes:
    """A COSE_Sign1 over `head` by the billing key."""
    return sign_typed(head.to_cbor(), HEAD_CONTENT_TYPE, key, kid)


def verify_tree_head(signed: bytes, billing_key: VerifyingKey) -> TreeHead:
    """The tree head if the billing key signed it; BillSignatureError or BillFormatError if not."""
    try:
        body = cose.parse_sign1(signed)
        if body.headers.get(CONTENT_TYPE_LABEL) != HEAD_CONTENT_TYPE:
            raise CoseFormatError("not a bill-log tree head")
        item = cose.loads_strict(body.payload)
        if not isinstance(item, cose.MAP_TYPES) or set(item) != {"size", "root", "issued_at"}:
            raise CoseFormatError("a tree head has size, root and issued_at")
        size, issued = item["size"], item["issued_at"]
        if type(size) is not int or type(issued) is not int or size < 0:
            raise CoseFormatError("size and issued_at are non-negative integers")
        head = TreeHead(size, cose.expect_bytes(item["root"], 32), issued)
    except CoseFormatError as exc:
        raise BillFormatError(f"not a signed tree head: {exc}") from None
    verify_typed(body, billing_key, "tree head")
    return head
